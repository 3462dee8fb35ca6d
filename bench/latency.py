"""Setup at a distance: from nothing, again, status and setup tunnel against their floors at the
proxy's RTT, and setup against its floor at several RTTs (--plot)."""

import signal
import time

from tests.sshhost import free_port

from .harness import PASSWORD, authenticated, time_forward, turns
from .host import SESSION_ALLOWANCE, SESSION_FLOOR, SESSION_FLOOR_ROW, Bench
from .jupyter import jupyter_start


def latency_figures(b):
    """setup from nothing, with and without fast_start, setup again, status and setup tunnel, each
    against its floor, at the proxy's RTT. Returns (the setup's floor, a plain Jupyter start)."""
    rtt = b.rtt
    at = f"{rtt * 1000:.0f} ms RTT"  # in the labels: the goals are set at 100 ms (the default)
    print(f"At {at} (delaying proxy in front of sshd):", flush=True)
    b.capture_starts()  # what the floors start, and the configuration their starts read
    # each floor does the same work as its setup: an SSH login, and Jupyter started as the agent
    # starts it; login and start are one sample, summed per run (not medians added afterwards)
    floor, setup_time, fast_floor, fast_time, plain, booted = turns(
        b.runs, b.login_and_start_once, b.setup_once, lambda: b.login_and_start_once(boot=True),
        lambda: b.setup_once(fast_start=True), lambda: jupyter_start(b), lambda: jupyter_start(b, boot=True),
    )
    b.row(f"setup from nothing to authenticated 200, {at}", setup_time, floor,
          "floor (ssh true + plain Jupyter start)", "<= floor + 8 RTT", setup_time <= floor + 8 * rtt)
    b.row(f"setup with fast_start from nothing to authenticated 200, {at}", fast_time, fast_floor,
          "floor (ssh true + Jupyter start through boot.py)", "<= floor + 8 RTT", fast_time <= fast_floor + 8 * rtt)
    b.row("  (context) Jupyter start through boot.py, no SSH (the fast_start gain)", booted, plain,
          "plain Jupyter start", "(context)", True)

    b.setup_once()  # the rest is of the default setup (the turns may have ended on fast_start's)
    # the floor makes the same exchange as fab's one session (a script on stdin, a JSON line
    # back); what fab spends above it is its own work here and the agent's on the host, not
    # the network, so the allowance is in seconds
    session, again, status = turns(b.runs, b.session_floor_once, lambda: b.fab("far", "setup"),
                                   lambda: b.fab("far", "status"))
    # OpenSSH's client asks sshd three times to log in where paramiko asks once: the round trips
    # fab saves on the floor (counted in sshd's log by round_trip_figures, run before) are
    # taken off its allowance, so the goal allows fab SESSION_ALLOWANCE of its own, no more
    trips = getattr(b, "trips", {})
    for name, took, counted_as in ((f"setup again (nothing to do), {at}", again, "fab setup (again)"), (f"status, {at}", status, "fab status")):
        saved = trips.get(SESSION_FLOOR_ROW, 0) - trips.get(counted_as, 0)
        allowed = SESSION_ALLOWANCE - saved * rtt
        b.row(name, took, session, SESSION_FLOOR, f"<= floor - {saved} RTT (fewer round trips, sshd's log) + {SESSION_ALLOWANCE} s",
              took <= session + allowed)

    def raw_forward():
        """raw ssh -L to the running Jupyter: seconds to its first authenticated 200"""
        return time_forward(b.host.ssh_config, "far", b.target(), probe=authenticated, interval=0.02)

    def setup_tunnel():
        b.reset()
        lp = free_port()
        start = time.monotonic()
        p = b.fab_popen("far", "setup", "--password-stdin", "tunnel", "--local-port", str(lp))
        p.stdin.write(PASSWORD + "\n")
        p.stdin.close()
        try:
            b.until_authenticated(f"http://127.0.0.1:{lp}/")
            return time.monotonic() - start
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait()

    def tunnel_floor():
        """one sample: the login and plain start, then a raw ssh -L to the first 200 of the Jupyter
        that the last setup (setup_tunnel's, or the one above) left running"""
        return b.login_and_start_once() + raw_forward()

    base, both = turns(b.runs, tunnel_floor, setup_tunnel)
    b.row(f"setup tunnel to first authenticated 200, {at}", both, base, "floor (ssh true + plain start + raw ssh -L to first 200)",
          "<= 1.2x", both <= 1.2 * base)
    return floor, plain


def rtt_curve(rtts_ms, runs, path):
    """setup from nothing against its floor at several RTTs, drawn to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours, floors = [], []
    for rtt in rtts_ms:
        b = Bench(rtt, runs)
        try:
            b.capture_starts()  # what the floor starts, and the configuration its start reads
            floor, setup_time = turns(runs, b.login_and_start_once, b.setup_once)
        finally:
            b.close()
            b.close_starts()
        ours.append(setup_time)
        floors.append(floor)
        print(f"  {rtt:.0f} ms RTT: setup {setup_time:.2f} s, floor {floor:.2f} s", flush=True)
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot(rtts_ms, ours, "o-", label="fab setup (from nothing to an authenticated 200)")
    ax.plot(rtts_ms, floors, "s--", label="floor: ssh host true + plain Jupyter start")
    ax.plot(rtts_ms, [f + 8 * r / 1000 for f, r in zip(floors, rtts_ms)], ":", color="grey", label="goal: floor + 8 RTT")
    ax.set_xlabel("round-trip time to the host (ms)")
    ax.set_ylabel("seconds (median)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"setup time vs network latency ({time.strftime('%Y-%m-%d')}, 2-core VM)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")
