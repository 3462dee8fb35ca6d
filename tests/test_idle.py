"""idle_timeout: Jupyter shuts itself down after that long without activity, culling idle
kernels, so that an idle notebook does not hold a machine (or, in a batch job, an allocation)."""

import json
import time


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
    # Jupyter looks at its activity once a minute
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and fab.status()["running"]:
        time.sleep(3)
    record = fab.status()
    assert not record["running"] and record["stale_pid"], record
    assert "No kernels for " in (fab.home / ".fabjupyter" / "jupyter.log").read_text()  # its own reason
    assert fab.sshhost.processes(fab.user) == []
    # and off again: back to the file without it
    fab.setup("--idle-timeout", "0")
    assert "shutdown_no_activity_timeout" not in config.read_text()
    fab("stop")
