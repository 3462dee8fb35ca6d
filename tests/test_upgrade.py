"""An upgrade of this tool never restarts a user's server unless a setting Jupyter reads has
changed: checked on the real sshd, against a server that an older copy of the tool started."""

import json
import shutil
import subprocess

from .conftest import FAB, ROOT
from .jupyter_http import login_and_list

# The last version whose remote side was the POSIX-sh agent (agent.sh, launcher.sh), with its
# key=value state file and a fingerprint over its own scripts' text.
SH_AGENT_VERSION = "73da02343536bbd8284dc26db01ab7b53783481a"
# The last version with one server per user and host (no instances).
SINGLE_INSTANCE_VERSION = "52eccfa41d1d7e881394d1c2709e40ec61fbbd6e"
PASSWORD = "correct horse"


def run_copy(fab, copy, *args):
    cmd = [*FAB, "-S", str(fab.sshhost.ssh_config), "-H", fab.user, *args]
    r = subprocess.run(cmd, cwd=copy, env=fab.env(), input=PASSWORD + "\n", capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_an_upgrade_from_the_sh_agent_restarts_nothing(fab, tmp_path, local_port):
    old = tmp_path / "previous"
    old.mkdir()
    subprocess.run(f"git -C {ROOT} archive {SH_AGENT_VERSION} fabfile.py tasks | tar -x -C {old}", shell=True, check=True)
    assert (old / "tasks" / "agent.sh").exists()  # really the older design
    run_copy(fab, old, "setup", "--password-stdin")
    pid = int((fab.home / ".fabjupyter" / "pid").read_text().split()[0])
    record = fab.status()  # this version reads the older record
    assert record["running"] and record["pid"] == pid and record["current"] is True, record
    r = fab.setup()
    assert "nothing changed" in r.stdout and fab.status()["pid"] == pid, r.stdout
    assert "refreshed this tool's own run.sh" in r.stdout  # the scripts the old record's checksum covered
    r = fab.setup()  # and it stays taken over, once its scripts are this version's
    assert "nothing changed" in r.stdout and fab.status()["pid"] == pid, r.stdout
    assert "nothing to do" in fab("start").stdout
    assert fab.status()["pid"] == pid and fab.status()["current"] is True
    assert "FJ_ACTIVATE=" in (fab.home / ".fabjupyter" / "settings.sh").read_text()
    # a setting Jupyter reads does restart it (and the older record is replaced by this one's)
    r = fab.setup("--root-dir", "~/work")
    assert "stopped the running Jupyter" in r.stdout and fab.status()["pid"] != pid, r.stdout
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert login_and_list(url, PASSWORD)[1] == 200
    fab.cleanup()
    fab("stop")
    assert fab.sshhost.processes(fab.user) == []


def test_an_upgrade_from_one_server_per_host_keeps_it_as_the_default_instance(fab, tmp_path, local_port):
    """A host set up by the version before instances: its server is the default instance, and
    setup of the default instance restarts nothing; a second instance starts beside it."""
    old = tmp_path / "previous"
    old.mkdir()
    subprocess.run(f"git -C {ROOT} archive {SINGLE_INSTANCE_VERSION} fabfile.py tasks | tar -x -C {old}", shell=True, check=True)
    assert "instance_dir" not in (old / "tasks" / "agent.py").read_text()  # really the older design
    fab.hosts("defaults:\n  launcher: tmux\n")
    run_copy(fab, old, "setup", "--password-stdin")
    pid = fab.status()["pid"]
    r = fab.setup()
    assert "nothing changed" in r.stdout and fab.status()["pid"] == pid, r.stdout
    r = fab.setup("--name", "second", "--port", str(fab.port + 10))
    assert "Jupyter started" in r.stdout, r.stdout
    names = {rec["name"]: rec for rec in map(json.loads, fab("list", "--json").stdout.splitlines())}
    assert names["default"]["pid"] == pid and names["second"]["running"] and names["second"]["pid"] != pid, names
    sessions = fab.as_user("tmux -L fabjupyter ls -F '#{session_name}'").stdout.split()
    assert sorted(sessions) == ["jupyter", "jupyter-second"], sessions
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert login_and_list(url, PASSWORD)[1] == 200
    fab.cleanup()
    fab("stop", "--all")
    assert fab.sshhost.processes(fab.user) == []


def test_a_copy_that_differs_only_in_comments_restarts_nothing(fab, tmp_path):
    """The tool installed again with its packaged files changed in comments only (as an upgrade
    that touched no setting would): setup against the server the original started changes
    nothing but this tool's own run.sh, and says so."""
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(ROOT / "fabfile.py", copy)
    shutil.copytree(ROOT / "tasks", copy / "tasks", ignore=shutil.ignore_patterns("__pycache__"))
    for path in sorted((copy / "tasks" / "remote").glob("*.[ps][yh]")):  # every remote module, the bootstrap too
        path.write_text(path.read_text() + "\n# a comment of a newer version\n")
    r = fab.setup()
    assert "refreshed this tool's own" not in r.stdout, r.stdout  # a first setup: there was nothing to refresh
    pid = fab.status()["pid"]
    r = run_copy(fab, copy, "setup", "--password-stdin")
    assert "nothing changed" in r.stdout and fab.status()["pid"] == pid, r.stdout
    assert "refreshed this tool's own run.sh (not a reason to restart Jupyter)" in r.stdout
    assert "# a comment of a newer version" in (fab.home / ".fabjupyter" / "run.sh").read_text()
    fab("stop")


# The last version before the renovation of issue 28 (the remote side as one agent.py, sent as one
# file; since, the folders of tasks/ and the remote folder joined when sent): its servers must be taken over by this one as they run.
PRE_RENOVATION_VERSION = "3f52cf3d4b2e7a255826fcae8d3157b1cd02d2b7"


def test_an_upgrade_from_before_the_renovation_restarts_nothing(fab, tmp_path, local_port):
    """Servers the previous layout started (nohup for the default instance, tmux for a named one,
    and the other way round on a second named pair) keep running: setup, start and status of this
    version change nothing, each server still logs in with its own password through the tunnel."""
    old = tmp_path / "previous"
    old.mkdir()
    subprocess.run(f"git -C {ROOT} archive {PRE_RENOVATION_VERSION} fabfile.py tasks | tar -x -C {old}", shell=True, check=True)
    assert (old / "tasks" / "agent.py").exists()  # really the older layout
    instances = {  # name: the flags it was set up with (the same flags later: nothing to change)
        "default": ["--launcher", "nohup"],
        "second": ["--name", "second", "--launcher", "tmux", "--port", str(fab.port + 10)],
        "third": ["--name", "third", "--launcher", "nohup", "--port", str(fab.port + 20)],
    }
    fab.hosts("defaults:\n  launcher: tmux\n")  # the default instance's flag overrides this, the fourth's does not
    instances["fourth"] = ["--name", "fourth", "--port", str(fab.port + 30)]
    for flags in instances.values():
        run_copy(fab, old, "setup", "--password-stdin", *flags)
    before = {rec["name"]: rec for rec in map(json.loads, fab("list", "--json").stdout.splitlines())}
    assert {before[n]["launcher"] for n in instances} == {"nohup", "tmux"}, before
    assert all(before[n]["running"] and before[n]["current"] is True for n in instances), before
    for name, flags in instances.items():
        r = fab.setup(*flags)
        assert "nothing changed" in r.stdout, (name, r.stdout)
        assert "stopped" not in r.stdout and "started" not in r.stdout, (name, r.stdout)
        assert "nothing to do" in fab("start", *flags[:2] if name != "default" else []).stdout
    after = {rec["name"]: rec for rec in map(json.loads, fab("list", "--json").stdout.splitlines())}
    assert {n: after[n]["pid"] for n in instances} == {n: before[n]["pid"] for n in instances}, after
    assert all(after[n]["current"] is True for n in instances), after
    sessions = fab.as_user("tmux -L fabjupyter ls -F '#{session_name}'").stdout.split()
    assert sorted(sessions) == ["jupyter-fourth", "jupyter-second"], sessions
    for name in ("default", "second"):
        proc, url, out = fab.tunnel("--local-port", str(local_port), *([] if name == "default" else ["--name", name]))
        assert login_and_list(url, PASSWORD)[1] == 200, (name, out)
        fab.cleanup()
    fab("stop", "--all")
    assert fab.sshhost.processes(fab.user) == []
