"""The fast layer: the agent's decisions, with a temporary HOME on this machine and no sshd (the
same script the client sends, fed to `sh -s`; replies parsed by the client's own code). The
real-sshd tests keep every end-to-end assertion; these pin the decisions, in seconds."""

import dataclasses
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tasks import protocol
from tasks.remote import files, install, net, pack, procs
from tasks.remote.fail import Fail
from tasks.ops.cert import generate

from .localagent import LocalHost, settings
from .sshhost import JUPYTER_VENV, free_port

PASSWORD = "fast layer"


@pytest.fixture
def host(tmp_path):
    h = LocalHost(tmp_path / "home")
    yield h
    try:
        h.stop()
    finally:
        h.kill_all()


def snapshot(h):
    """This tool's files on the host (Jupyter's own log and files go on changing as it runs)."""
    return {p: (p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else b"")
            for p in h.d.rglob("*") if not p.name.startswith("jupyter.log")}


def whats(reply):
    return [c.what for c in reply.changes]


def test_fresh_host_without_a_password_is_asked_for_one_and_keeps_nothing(host):
    reply = host.setup(settings(port=free_port()))
    assert reply.ask == "password" and reply.changes == ()
    assert list(host.home.iterdir()) == []  # not even the lock's directory


def test_a_dry_run_that_would_fail_is_an_error_and_changes_nothing(host):
    reply = host.setup(settings(port=free_port(), jupyter=("/nowhere/jupyter-lab",)), PASSWORD, dry_run=True)
    assert isinstance(reply, protocol.ErrorReply) and reply.code == "no_jupyter" and reply.detail == "/nowhere/jupyter-lab"
    assert list(host.home.iterdir()) == []


def test_a_jupyter_behind_a_shell_wrapper_starts(host):
    """A shell wrapper (as module systems and container runners install): the agent runs in
    python3, never in the wrapper's own interpreter (it was fed to bash), and Jupyter starts
    through the wrapper."""
    wrapper = host.home / "bin" / "jupyter-lab"
    wrapper.parent.mkdir()
    wrapper.write_text(f"#!/bin/bash\nexec {JUPYTER_VENV}/bin/jupyter-lab \"$@\"\n")
    wrapper.chmod(0o755)
    reply = host.setup(settings(port=free_port(), jupyter=(str(wrapper),)), PASSWORD)
    assert not isinstance(reply, protocol.ErrorReply), reply
    assert reply.status.running and reply.change("start")


# (how the host is prepared, what is then asked for, the changes expected)
CASES = {
    "fresh": (None, {}, ["settings", "config", "tool_added", "password", "start"]),
    "configured, not running": ("stopped", {}, ["start"]),
    "running, same settings": ("running", {}, []),
    "running, another port": ("running", {"port": "other"}, ["stop", "start"]),
    "running, another password": ("running", {"password": "another one"}, ["password", "stop", "start"]),
    "running, another launcher": ("running", {"launcher": "tmux"}, ["stop", "start"]),
    "running, another root_dir": ("running", {"root_dir": "~/work"}, ["settings", "stop", "root_dir", "start"]),
    "running, another mode": ("running", {"mode": "public"}, ["settings", "config", "stop", "start"]),
    "running, another activate line": ("running", {"activate": "true"}, ["settings", "stop", "start"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_dry_run_predicts_exactly_what_the_real_run_then_does(host, case):
    prepared, change, expected = CASES[case]
    base = settings(port=free_port())
    cert, key = generate(["localhost", "127.0.0.1"], 30)
    host.run("cert", cert_digest=None, key_digest=None, cert=cert.decode(), key=key.decode(), push=True)
    if prepared:
        assert host.setup(base, PASSWORD).status.running
        if prepared == "stopped":
            host.stop()
    before = host.status()
    password = change.pop("password", PASSWORD)
    if change.get("port") == "other":
        change["port"] = free_port()
    wanted = dataclasses.replace(base, **change)
    files = snapshot(host)
    dry = host.setup(wanted, password, dry_run=True)
    assert snapshot(host) == files  # a dry run writes nothing
    real = host.setup(wanted, password)
    assert whats(real) == expected, real.changes
    assert dry.changes == real.changes  # the same changes, details and diffs included
    assert dry.unchanged == real.unchanged == (expected == [])
    after = host.status()
    assert after.running and (after.pid == before.pid) == ("start" not in expected)


def test_stop_and_its_dry_run_name_the_same_server(host):
    pid = host.setup(settings(port=free_port()), PASSWORD).status.pid
    dry = host.run("stop", dry_run=True)
    assert host.status().pid == pid
    real = host.stop()
    assert dry.changes == real.changes and [(c.what, c.detail) for c in real.changes] == [("stop", str(pid))]
    assert not host.status().running


def test_an_upgrade_that_changes_only_comments_restarts_nothing(host, monkeypatch):
    """The tool's own scripts are not what Jupyter reads: a copy of the tool whose files differ
    only in comments finds nothing to change, and Jupyter keeps its pid."""
    first = host.setup(settings(port=free_port()), PASSWORD)
    pid = first.status.pid
    newer = {name: text + "\n# a comment of a newer version\n" for name, text in pack.sources().items()}
    monkeypatch.setattr(pack, "sources", lambda: dict(newer))  # every remote file, the bootstrap too
    again = host.setup(settings(port=first.status.port), PASSWORD)
    assert again.unchanged and again.status.pid == pid
    assert [(c.what, c.detail) for c in again.changes] == [("tool", "run.sh")]  # refreshed, and said so
    assert "# a comment of a newer version" in (host.d / "run.sh").read_text()


def test_a_socket_in_use_at_the_start_is_an_error_not_a_retry_on_a_port(host):
    """Socket mode, and another process listening at the instance's socket path whenever the
    agent looks away (it removes the file before the start; this one binds it again at once):
    Jupyter exits ("The socket ... is already in use"), which in port mode means a port taken
    meanwhile and a retry on the next one. In socket mode there is no port to add one to: the
    start fails, with Jupyter's own words."""
    path = host.d / "run" / "jupyter.sock"
    held, done = [], threading.Event()

    def squat():
        while not done.is_set():
            if path.parent.is_dir() and not os.path.lexists(path):
                s = socket.socket(socket.AF_UNIX)
                try:
                    s.bind(str(path))
                    s.listen(1)
                    held.append(s)
                except OSError:
                    s.close()
            time.sleep(0.001)

    squatter = threading.Thread(target=squat, daemon=True)
    squatter.start()
    try:
        reply = host.setup(settings(socket=True), PASSWORD)
    finally:
        done.set()
        squatter.join()
        for s in held:
            s.close()
    assert held, "the socket path was never taken"
    assert isinstance(reply, protocol.ErrorReply) and reply.code == "died", reply
    assert any("already in use" in line for line in reply.log), reply.log
    assert not host.status().running


def test_status_stop_and_logs_work_when_the_environment_is_gone(host):
    """They run in the interpreter recorded at the start (then python3), never activate, and
    need no Jupyter on the PATH. With no Python at all, a clear error, from the bootstrap."""
    started = host.setup(settings(port=free_port(), activate="false-if-run-again-would-fail"), PASSWORD)
    assert isinstance(started, protocol.ErrorReply) and started.code == "activate_failed"
    host.setup(settings(port=free_port()), PASSWORD)
    host.path = "/nonexistent"  # no jupyter, no python3, not even sed
    status = host.status()
    assert status.running
    assert host.run("logs", lines=5).exists
    assert host.stop().change("stop").detail == str(status.pid)
    assert not host.status().running
    (host.d / "python").unlink()
    reply = host.run("status")
    assert isinstance(reply, protocol.ErrorReply) and reply.code == "no_python_agent"


def test_logs_leave_out_the_moved_key_warnings_this_tool_causes(host):
    """JupyterLab 4's notebook_shim warns for each key of ours pinned on NotebookApp and LabApp
    (about twenty lines a start): `logs` leaves those out, and keeps one that the user's own
    config causes."""
    (host.home / ".jupyter").mkdir()
    (host.home / ".jupyter" / "jupyter_server_config.json").write_text('{"NotebookApp": {"max_body_size": 536870912}}\n')
    assert host.setup(settings(port=free_port()), PASSWORD).status.running
    log = (host.d / "jupyter.log").read_text()
    assert "'ip' has moved from NotebookApp to ServerApp" in log and "'ip' has moved from LabApp to ServerApp" in log
    lines = host.run("logs", lines=1000).lines
    assert [line for line in lines if "has moved" in line or "moved from" in line] == [
        line for line in log.splitlines() if "'max_body_size' has moved from NotebookApp to ServerApp" in line], lines
    assert any("'max_body_size' has moved" in line for line in lines)


FREEZER = Path("/sys/fs/cgroup/freezer")


@pytest.mark.skipif(os.geteuid() != 0 or not (FREEZER / "cgroup.procs").exists(), reason="needs root and cgroup v1's freezer")
def test_a_process_that_outlives_its_sigkill_is_given_up_on_not_waited_for():
    """A process the kernel holds (state D: here in a frozen cgroup, as one waiting on a hung
    network file system would be) ignores SIGKILL until it is let go. kill() gives up after its
    bound and says so, and stop's end() turns that into an error, rather than holding the run
    (and its lock) for as long as the kernel does."""
    group = FREEZER / f"fabjupyter-test-{os.getpid()}"
    group.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "jupyter-lab"])  # alive() wants "jupyter"
    try:
        (group / "cgroup.procs").write_text(str(proc.pid))
        (group / "freezer.state").write_text("FROZEN")
        deadline = time.monotonic() + 10
        while (group / "freezer.state").read_text().strip() != "FROZEN" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert net.process_state(proc.pid) == "D"
        started = time.monotonic()
        assert procs.kill(proc.pid, term_wait=0.2, kill_wait=0.5) is False
        assert time.monotonic() - started < 3
        with pytest.raises(Fail) as failed:
            procs.end(proc.pid, term_wait=0.2, kill_wait=0.5)
        assert failed.value.code == "not_stopped" and failed.value.detail == f"{proc.pid}, state D"
        assert "not_stopped" in protocol.ERRORS
    finally:
        (group / "freezer.state").write_text("THAWED")
        proc.kill()
        proc.wait(timeout=30)
        group.rmdir()


def test_replies_are_typed_and_strict():
    status = {f.name: None for f in dataclasses.fields(protocol.Status)}
    status.update(running=False, has_password=False, configured=False, unrecorded=[], own_env=False)
    assert protocol.parse(protocol.StatusReply, {"status": status}).status.unrecorded == ()
    for broken in ({**status, "extra": 1}, {k: v for k, v in status.items() if k != "busy"}, {**status, "pid": "12"}):
        with pytest.raises(protocol.ProtocolError):
            protocol.parse(protocol.StatusReply, {"status": broken})


def test_the_checksum_of_an_earlier_version_is_posix_cksum(tmp_path):
    data = b"run.sh\n" * 1000 + bytes(range(256))
    (tmp_path / "f").write_bytes(data)
    out = subprocess.run(["cksum", str(tmp_path / "f")], capture_output=True, text=True).stdout.split()
    assert files.cksum(data) == f"{out[0]}-{out[1]}"


# everything that runs in the host's Python: every module of the remote folder (the agent, ready.py,
# boot.py...), the loader of the script they are joined into, and the agent's `python -c`
REMOTE_PYTHON = dict({name: text for name, text in pack.sources().items() if name.endswith(".py")},
                     **{"pack.py:LOADER": pack.LOADER, "install.py:VERSIONS_PY": install.VERSIONS_PY})


def newer_than(name, source, oldest=(3, 6)):
    """`name:line: what (Python X.Y)` for each use in SOURCE newer than OLDEST (syntax or library)."""
    from .oldpython import problems

    return [f"{name}:{line}: {what}" for line, what in problems(source, oldest)]


def test_the_agent_is_python_3_6():
    """The oldest remote Python the README names: what runs on the host parses as 3.6 code and
    uses no standard-library name or keyword that 3.6 lacks (tests/oldpython.py's table)."""
    found = [p for name, source in REMOTE_PYTHON.items() for p in newer_than(name, source)]
    assert found == [], "\n".join(found)


@pytest.mark.parametrize("snippet, expected", [
    ("import subprocess\nsubprocess.run(['true'], capture_output=True)", "2: subprocess.run(capture_output=) (Python 3.7)"),
    ("import subprocess as sp\nsp.check_output(['true'], text=True)", "2: subprocess.check_output(text=) (Python 3.7)"),
    ("from importlib import metadata", "1: import importlib.metadata (Python 3.8)"),
    ("from datetime import datetime\ndatetime.fromisoformat(s)", "2: datetime.datetime.fromisoformat (Python 3.7)"),
    ("import asyncio\nasyncio.run(main())", "2: asyncio.run (Python 3.7)"),
    ("import contextlib\nwith contextlib.nullcontext():\n    pass", "2: contextlib.nullcontext (Python 3.7)"),
    ("import time\nt = time.time_ns()", "2: time.time_ns (Python 3.7)"),
    ("import math\nmath.prod(a)", "2: math.prod (Python 3.8)"),
    ("from shlex import join", "1: from shlex import join (Python 3.8)"),
    ("import functools\nclass A:\n    @functools.cached_property\n    def a(self): pass",
     "3: functools.cached_property (Python 3.8)"),
    ("name.removeprefix('x')", "1: .removeprefix() (Python 3.9)"),
    ("env = {'a': 1} | other", "1: dict | dict (Python 3.9)"),
    ("def f(a: list[int]): pass", "1: list[...] as a type (Python 3.9)"),
    ("def f():\n    return 1, *rest", "2: return/yield a, *b without parentheses (Python 3.8)"),
    ("for x in y:\n    try:\n        pass\n    finally:\n        continue", "5: continue in finally (Python 3.8)"),
    ("import collections\nP = collections.namedtuple('P', 'a', defaults=[1])", "2: collections.namedtuple(defaults=) (Python 3.7)"),
])
def test_the_python_3_6_check_names_file_and_line_of_each_newer_use(snippet, expected):
    assert newer_than("snippet.py", snippet) == [f"snippet.py:{expected}"]
    assert newer_than("snippet.py", snippet, oldest=(3, 11)) == []


@pytest.mark.parametrize("snippet", [
    "try:\n    from importlib import metadata\nexcept ImportError:\n    metadata = None",
    "import time, sys\nif sys.version_info >= (3, 7):\n    t = time.time_ns()",
    "import subprocess\nsubprocess.run(['true'], stdout=subprocess.PIPE, universal_newlines=True)",
    "def f():\n    return (1, *rest)",
    "import os\nos.readlink('x')",
])
def test_the_python_3_6_check_lets_guarded_and_old_forms_pass(snippet):
    assert newer_than("snippet.py", snippet) == []


def test_newer_syntax_is_a_syntax_error_for_the_python_3_6_check():
    for snippet in ("if (n := 1):\n    pass", "f'{x=}'", "def f(a, /): pass"):
        with pytest.raises(SyntaxError):
            newer_than("snippet.py", snippet)


def test_the_versions_of_an_environment_are_read_without_importlib_metadata_too(tmp_path):
    """VERSIONS_PY runs in the installed environment's Python, as old as the host's: before 3.8
    (no importlib.metadata) it reads the distributions' directory names, with the same answer."""
    python = str(JUPYTER_VENV / "bin" / "python")
    with_metadata = install.venv_versions(python)
    hidden = "import sys\nsys.modules['importlib.metadata'] = None\n" + install.VERSIONS_PY
    r = subprocess.run([python, "-c", hidden], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == with_metadata
    assert set(with_metadata) == {"jupyterlab", "jupyter_server", "ipykernel"}, with_metadata


@pytest.mark.parametrize("line, python", [
    ("'''exec' /opt/long/env/bin/python3 \"$0\" \"$@\"", "/opt/long/env/bin/python3"),
    ("'''exec' \"/opt/my env/bin/python3\" \"$0\" \"$@\"", "/opt/my env/bin/python3"),
])
def test_pips_long_path_form_is_read_quoted_or_not(tmp_path, line, python):
    """pip writes `#!/bin/sh` and an exec line for interpreters with long paths, quoting the
    path only when it has a space: both name the Python that runs Jupyter."""
    script = tmp_path / "jupyter-lab"
    script.write_text(f"#!/bin/sh\n{line}\n' '''\nimport sys\n")
    bootstrap = protocol.BOOTSTRAP
    for shell in ("sh", "bash"):
        r = subprocess.run([shell, "-c", bootstrap + '\nfj_python_of "$1"; printf "%s|%s" "$PY" "$PLAIN"', "sh", str(script)],
                           capture_output=True, text=True)
        assert r.stdout == f"{python}|1", (shell, r.stdout, r.stderr)
