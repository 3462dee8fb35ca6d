"""idle_timeout: Jupyter shuts itself down after that long without activity, culling idle
kernels, so that an idle notebook does not hold a machine (or, in a batch job, an allocation).

One test for the three kinds of Jupyter at once: each checks its activity on a fixed 60 s timer
(`shutdown_no_activity`, in Server 2, Server 1 and Notebook 6 alike), so the servers wait for it
side by side rather than one minute after another."""

import json
import time

import websocket

from .jupyter_http import Session
from .sshhost import JUPYTER_VENV

IDLE = 5  # the smallest the culler can act on in time: it looks every max(10, min(60, IDLE)) s
LAB3 = JUPYTER_VENV.parent / "lab3"  # JupyterLab 3.6 on Jupyter Server 1.24
NB6 = JUPYTER_VENV.parent / "nb6"  # classic Notebook 6.5
PASSWORD = "idle horse"


def gone(pid):
    """Ended (a zombie that this machine's PID 1 has not reaped yet counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def kernel_pids(fab):
    """The account's ipykernel processes (on the host's /proc: no request that counts as activity)."""
    found = []
    for pid in fab.sshhost.processes(fab.user):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"ipykernel" in f.read() and not gone(pid):
                    found.append(pid)
        except OSError:
            pass
    return found


class Kernel:
    """A kernel started through the server's REST API, with a websocket open on it as a browser
    tab holds one."""

    def __init__(self, url):
        self.session = Session(url)
        assert self.session.login(PASSWORD) == 200
        xsrf = next((c.value for c in self.session.jar if c.name == "_xsrf"), "")
        self.headers = {"X-XSRFToken": xsrf, "Content-Type": "application/json"}
        status, _, body = self.session.request("api/kernels", method="POST", headers=self.headers, data=b"{}")
        assert status == 201, (status, body)
        self.id = json.loads(body)["id"]
        cookie = "; ".join(f"{c.name}={c.value}" for c in self.session.jar)
        self.ws = websocket.create_connection(self.session.base.replace("http", "ws", 1) + f"api/kernels/{self.id}/channels",
                                              cookie=cookie, header=[f"X-XSRFToken: {xsrf}"], timeout=20)

    def listed(self):
        """The ids /api/kernels lists (a request: activity, so asked only until the kernel is gone)."""
        status, body = self.session.get("api/kernels")
        assert status == 200, (status, body)
        return [k["id"] for k in json.loads(body)]


def test_idle_kernels_are_culled_then_jupyter_ends_itself_for_every_kind(fab, fab_dash, fab_zsh, tmp_path):
    # Server 2 (JupyterLab 4 on the PATH): the setting from the command line, on a running server
    fab.hosts_file = tmp_path / "server2" / "hosts.yaml"
    fab.hosts_file.parent.mkdir()
    fab.hosts("")
    fab.setup(password=PASSWORD)
    pid = fab.status()["pid"]
    config = fab.home / ".fabjupyter" / "config" / "jupyter_server_config.json"
    assert "shutdown_no_activity_timeout" not in config.read_text()
    # a setting Jupyter reads: applying it restarts the server
    r = fab.setup("--idle-timeout", str(IDLE), password=PASSWORD)
    assert "stopped the running Jupyter" in r.stdout, r.stdout
    data = json.loads(config.read_text())
    assert data["ServerApp"]["shutdown_no_activity_timeout"] == IDLE
    assert data["MappingKernelManager"] == {"cull_idle_timeout": IDLE, "cull_interval": 10, "cull_connected": True}
    assert fab.status()["pid"] != pid

    # Server 1 (JupyterLab 3) and Notebook 6 (through activate:): the setting from hosts.yaml
    hosts = {
        fab_dash: f"jupyter: {LAB3}/bin/jupyter lab",
        fab_zsh: f"activate: source {NB6}/bin/activate",
    }
    for f, line in hosts.items():
        f.hosts_file = tmp_path / f.user / "hosts.yaml"
        f.hosts_file.parent.mkdir()
        f.hosts(f"defaults:\n  idle_timeout: {IDLE}\nhosts:\n  {f.user}:\n    {line}\n")
        f.setup(password=PASSWORD)
    nb6_config = json.loads((fab_zsh.home / ".fabjupyter" / "config" / "jupyter_notebook_config.json").read_text())
    assert nb6_config["NotebookApp"]["shutdown_no_activity_timeout"] == IDLE, nb6_config

    fabs = {"server2": fab, "server1": fab_dash, "nb6": fab_zsh}
    records, kernels = {}, {}
    for kind, f in fabs.items():
        record = records[kind] = f.status()
        assert record["running"] and record["kind"] == kind, record
        # a kernel, with a websocket on it (cull_connected: a browser tab does not keep it)
        k = kernels[kind] = Kernel(record["url"])
        assert k.listed() == [k.id]
        assert kernel_pids(f), f"{kind}: no kernel process"

    try:
        # culled while the server runs: gone from /api/kernels, its process ended, and the server's
        # own reason in its log, with the websocket still open
        waiting, deadline = set(fabs), time.monotonic() + 90
        while waiting and time.monotonic() < deadline:
            for kind in sorted(waiting):
                if not kernels[kind].listed():
                    waiting.discard(kind)
            time.sleep(1)
        assert not waiting, f"kernels not culled: {waiting}"
        for kind, f in fabs.items():
            assert not gone(records[kind]["pid"]), f"{kind}: the server ended before its kernel was culled"
            log = (f.home / ".fabjupyter" / "jupyter.log").read_text()
            assert f"({kernels[kind].id}) with 1 connections due to " in log, f"{kind}:\n{log}"
            deadline = time.monotonic() + 20
            while kernel_pids(f) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert kernel_pids(f) == [], kind
    finally:
        for k in kernels.values():
            k.ws.close()

    # then the server ends itself: Jupyter looks at its activity once a minute (watched here, on
    # the host's /proc: no SSH round trips, no requests)
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and not all(gone(r["pid"]) for r in records.values()):
        time.sleep(0.5)
    for kind, f in fabs.items():
        record = f.status()
        assert not record["running"] and record["stale_pid"] == records[kind]["pid"], (kind, record)
        log = (f.home / ".fabjupyter" / "jupyter.log").read_text()
        assert "seconds; shutting down." in log, f"{kind}:\n{log}"  # its own reason
        # and status says so: it ended itself, it was not killed
        assert record["idle_shutdown"] >= IDLE, (kind, record)
        out = f("status").stdout
        assert f"shut itself down after {record['idle_shutdown']} s without activity: idle_timeout" in out, out
        assert "killed or crashed" not in out
        assert f.sshhost.processes(f.user) == [], kind

    # and off again: back to the file without it
    fab.setup("--idle-timeout", "0", password=PASSWORD)
    assert "shutdown_no_activity_timeout" not in config.read_text()
    fab("stop")
