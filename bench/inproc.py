"""The forward this process carries over its own login (forwards/inproc.py: hosts that ask for a
code where no OpenSSH master can be made, as on Windows) against a raw `ssh -N -L` to the same
Jupyter socket (--inproc): a download's throughput and a new connection's latency, at 0 ms and
at the proxy's RTT. The login here is by key (the same carrier: a code changes only how the
login is made)."""

from fabric import Config, Connection

from tasks.forwards.inproc import InprocForward
from tasks.protocol.where import Where
from tests.jupyter_http import Session
from tests.sshhost import free_port, wait_port

from .harness import PASSWORD, USER, ssh_forward
from .throughput import measure_in_turns


class _KeyRoute:
    """What InprocForward asks of a ConsoleRoute: the login's transport, and its generation."""

    generation = 1

    def __init__(self, conn):
        self.conn = conn

    def ensure(self, _t):
        self.conn.open()
        return self.conn.client.get_transport()


def inproc_figures(b, size_mib=100, requests=100):
    b.fab(USER, "setup", "--password-stdin", input=PASSWORD + "\n")
    state = b.status()
    where = Where(state["socket"]) if state.get("socket") else Where(state["port"])
    target = where.forward_target()
    b.host.as_user(USER, f"head -c {size_mib * 1024 * 1024} /dev/zero > big.bin")
    for alias, at in ((USER, "0 ms RTT"), ("far", f"{b.rtt * 1000:.0f} ms RTT")):
        conn = Connection(alias, config=Config(runtime_ssh_path=str(b.host.ssh_config)))
        ours_port, raw_port = free_port(), free_port()
        fwd = InprocForward(_KeyRoute(conn), None, ours_port, where, lambda line: None)
        raw = ssh_forward(b.host.ssh_config, alias, raw_port, target, ("-o", "ControlMaster=no", "-o", "ControlPath=none"))
        try:
            sessions = {}
            for name, lp in (("inproc", ours_port), ("raw", raw_port)):
                wait_port(lp, 30)
                b.until_authenticated(f"http://127.0.0.1:{lp}/")
                sessions[name] = Session(f"http://127.0.0.1:{lp}/")
                sessions[name].login(PASSWORD)

            measured = measure_in_turns(sessions, ("inproc", "raw"), size_mib, requests)
        finally:
            fwd.close()
            raw.terminate()
            raw.wait()
            conn.close()
        ours, base = measured["inproc"], measured["raw"]
        b.row(f"in-process forward (no ControlMaster): throughput ({size_mib} MiB download, median of 4), {at}", ours[0],
              base[0], "raw ssh -N -L", "(context)", True, unit="MiB/s")
        b.row(f"in-process forward: request latency, new connection (median of {requests}), {at}", ours[1], base[1],
              "raw ssh -N -L", "(context)", True, unit="ms")
