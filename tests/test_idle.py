"""idle_timeout: Jupyter shuts itself down after that long without activity, culling idle
kernels, so that an idle notebook does not hold a machine (or, in a batch job, an allocation)."""

import json
import time


def gone(pid):
    """Ended (a zombie that this machine's PID 1 has not reaped yet counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_idle_timeout_shuts_jupyter_down_and_is_a_setting_jupyter_reads(fab):
    fab.setup()
    pid = fab.status()["pid"]
    config = fab.home / ".fabjupyter" / "config" / "jupyter_server_config.json"
    assert "shutdown_no_activity_timeout" not in config.read_text()
    # a setting Jupyter reads: applying it restarts the server
    r = fab.setup("--idle-timeout", "5")
    assert "stopped the running Jupyter" in r.stdout, r.stdout
    data = json.loads(config.read_text())
    assert data["ServerApp"]["shutdown_no_activity_timeout"] == 5
    assert data["MappingKernelManager"] == {"cull_idle_timeout": 5, "cull_interval": 10, "cull_connected": True}
    record = fab.status()
    assert record["running"] and record["pid"] != pid
    # Jupyter looks at its activity once a minute (watched here, on the host's /proc: no SSH round trips)
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and not gone(record["pid"]):
        time.sleep(0.5)
    record = fab.status()
    assert not record["running"] and record["stale_pid"], record
    assert "No kernels for " in (fab.home / ".fabjupyter" / "jupyter.log").read_text()  # its own reason
    # and status says so: it ended itself, it was not killed
    assert record["idle_shutdown"] >= 5, record
    out = fab("status").stdout
    assert f"shut itself down after {record['idle_shutdown']} s without activity: idle_timeout" in out, out
    assert "killed or crashed" not in out
    assert fab.sshhost.processes(fab.user) == []
    # and off again: back to the file without it
    fab.setup("--idle-timeout", "0")
    assert "shutdown_no_activity_timeout" not in config.read_text()
    fab("stop")
