"""What each command asks of sshd, counted in its DEBUG1 log, against the session floor."""

import signal

from tests.sshhost import free_port

from .harness import PASSWORD, counted
from .host import SESSION_FLOOR_ROW


def round_trip_figures(b):
    """What each command asks of sshd, counted in its DEBUG1 log, against the session floor
    (session_floor_once: one `ssh host sh -s` that sends a script and reads a JSON line).
    Round trips are estimated as 4 per connection (TCP, version and key exchange, the
    ssh-userauth service) plus one per auth request, session opened and reply awaited."""
    print("Remote round trips, counted in sshd's log (LogLevel DEBUG1):", flush=True)
    log = b.host.sshd_log

    def tunnel():
        lp = free_port()
        p = b.fab_popen("far", "tunnel", "--local-port", str(lp))
        try:
            b.until_authenticated(f"http://127.0.0.1:{lp}/")
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait()

    b.reset()
    floor_name = SESSION_FLOOR_ROW
    rows = [(floor_name, counted(log, b.session_floor_once)),
            ("(context) ssh host true", counted(log, b.ssh_true_once)),
            ("fab setup (from nothing)", counted(log, lambda: b.fab("far", "setup", "--password-stdin", input=PASSWORD + "\n"))),
            ("fab setup (again)", counted(log, lambda: b.fab("far", "setup"))),
            ("fab status", counted(log, lambda: b.fab("far", "status"))),
            ("fab tunnel (to a login)", counted(log, tunnel)),
            ("fab restart", counted(log, lambda: b.fab("far", "restart"))),
            ("fab stop", counted(log, lambda: b.fab("far", "stop")))]
    b.trips = trips = {name: 4 * c["connections"] + c["auth"] + c["open session"] + c["awaited"] for name, c in rows}
    # the goal: no round trip more than the floor's apart from the login (OpenSSH's client
    # sends three auth requests where paramiko sends one: fewer for fab, not a goal met)
    besides = {name: trips[name] - c["auth"] for name, c in rows}
    floor = besides[floor_name]
    print("| command | connections | auth requests | sessions | replies awaited | forwarded connections (TCP or socket) | round trips (est.) | goal |")
    print("|---|---|---|---|---|---|---|---|")
    for name, c in rows:
        if name == floor_name or name.startswith("(context)"):
            goal = ""
        elif c["connections"] == 1:  # one session, the floor's exchange: no more round trips than it
            goal = f"{besides[name]} besides the auth requests, <= floor's {floor}: {'met' if besides[name] <= floor else '**missed**'}"
        else:  # the tunnel: a forward's login and the agent's session (How it works)
            goal = "(context: two connections, at once)"
        print(f"| {name} | {c['connections']} | {c['auth']} | {c['open session']} | {c['awaited']} | {c['open direct-tcpip'] + c['open direct-streamlocal@openssh.com']} "
              f"| {trips[name]} | {goal} |")
    b.round_trips = rows
