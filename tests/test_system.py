"""The operating-system layer of the client (tasks/system.py) and this machine's folders and locks
(tasks/localfiles.py) on Linux: the same paths, syscalls and lock files as the hand-written code
they replaced. What they do on macOS and Windows is checked by .ci/typecheck (mypy per platform),
not here. Pure: no host, no sshd."""

import fcntl
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

from tasks import localfiles, system
from tasks.errors import HostError
from tasks.forwards import forward, records


# --- folders: platformdirs gives what the XDG code gave ------------------------------------------


def _xdg_before(var, default, *parts):
    """localfiles' own functions before platformdirs, verbatim."""
    base = os.environ.get(var) or os.path.expanduser(default)
    return os.path.join(base, "fabjupyter", *parts)


FOLDERS = [
    (localfiles.config_path, "XDG_CONFIG_HOME", "~/.config"),
    (localfiles.cache_path, "XDG_CACHE_HOME", "~/.cache"),
    (localfiles.state_path, "XDG_STATE_HOME", "~/.local/state"),
]


@pytest.mark.parametrize("fn,var,default", FOLDERS, ids=[v for _, v, _ in FOLDERS])
@pytest.mark.parametrize("value", ["set", "unset", "empty"])
def test_folders_are_the_xdg_ones(monkeypatch, tmp_path, fn, var, default, value):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for other in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        monkeypatch.delenv(other, raising=False)
    if value == "set":
        monkeypatch.setenv(var, str(tmp_path / "xdg"))
    elif value == "empty":
        monkeypatch.setenv(var, "")
    assert str(fn("tunnels", "a.json")) == _xdg_before(var, default, "tunnels", "a.json")
    assert str(fn()) == _xdg_before(var, default)
    expected_base = str(tmp_path / "xdg") if value == "set" else os.path.join(tmp_path, "home", default[2:])
    assert str(fn()) == os.path.join(expected_base, "fabjupyter")


def test_folders_are_not_created_by_asking(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    localfiles.state_path("tunnels")
    assert not (tmp_path / "state").exists()


# --- locks: filelock on the same lock files --------------------------------------------------------


def test_record_lock_is_path_dot_lock_and_excludes_another_holder(tmp_path):
    record = tmp_path / "ports.json"
    record.write_text('{"a": 1}\n')
    with localfiles.locked(record):
        assert (tmp_path / "ports.json.lock").exists()
        seen = []

        def other():
            try:
                with localfiles.locked(record, wait=0.2):
                    seen.append("got it")
            except TimeoutError as e:
                seen.append(str(e))

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert seen == [f"{record}: another run holds ports.json.lock"]
    assert record.read_text() == '{"a": 1}\n'  # the record beside its lock is never touched
    with localfiles.locked(record, wait=0):  # free again once released
        pass


def test_lock_waits_for_an_older_version_holding_flock(tmp_path):
    """An older fabjupyter (fcntl.flock on PATH.lock by hand) and this one exclude each other."""
    record = tmp_path / "seen.json"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, sys, time
        f = open({str(record) + '.lock'!r}, "a")
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        print("held", flush=True)
        time.sleep(0.5)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TimeoutError):
            with localfiles.locked(record, wait=0):
                pass
        started = time.monotonic()
        with localfiles.locked(record, wait=5):
            waited = time.monotonic() - started
        assert 0.1 < waited < 5
    finally:
        holder.kill()
        holder.wait()


def test_lock_excludes_an_older_version_while_held(tmp_path):
    record = tmp_path / "seen.json"
    with localfiles.locked(record):
        with open(str(record) + ".lock", "a") as f:
            with pytest.raises(BlockingIOError):
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_update_record_under_the_lock_keeps_every_update(tmp_path):
    record = tmp_path / "ports.json"
    threads = [threading.Thread(target=localfiles.update_record, args=(record, {f"h{i}": i})) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert localfiles.read_record(record) == {f"h{i}": i for i in range(16)}


def test_tunnel_lock_times_out_as_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    key = "me@host:22/default"
    with records.locked(key, "host"):
        assert (tmp_path / "fabjupyter" / "tunnels" / "me@host%3A22%2Fdefault.lock").exists()
        errors = []

        def other():
            try:
                with records.locked(key, "host", wait=0):
                    pass
            except HostError as e:
                errors.append(str(e))

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert errors == ["host: another fabjupyter call has been starting or stopping this tunnel for 0 s; "
                      "try again once it is done"]


# --- processes ------------------------------------------------------------------------------------


@pytest.fixture
def sleeper():
    """A process of ours with a command line no other has."""
    marker = f"fjsystem-{uuid.uuid4().hex}"
    argv = [sys.executable, "-c", "import time; time.sleep(60)", marker]
    proc = subprocess.Popen(argv)
    yield proc, argv
    proc.kill()
    proc.wait()


def test_pids_of_finds_exactly_that_command_line(sleeper):
    proc, argv = sleeper
    deadline = time.monotonic() + 5
    while system.pids_of(argv) != [proc.pid] and time.monotonic() < deadline:
        time.sleep(0.02)  # /proc/PID/cmdline is the exec'd one a moment after fork
    assert system.pids_of(argv) == [proc.pid]
    assert system.pids_of(argv[:-1]) == []  # a prefix is not the command line
    assert system.pids_of(argv + ["more"]) == []
    # where /proc is not there (macOS, an empty /proc): ps, whose column joins the arguments
    assert system._pids_by_ps(argv) == [proc.pid]
    assert system._pids_by_ps(argv[:-1]) == []


def test_process_alive_and_its_command(sleeper):
    proc, argv = sleeper
    deadline = time.monotonic() + 5
    while not system.process_alive(proc.pid, argv[-1]) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert system.process_alive(proc.pid, argv[-1])
    assert not system.process_alive(proc.pid, "fjsystem-not-this-one")
    # macOS's way (no /proc): the whole command line, however long, ending in a space as
    # net.cmdline's does (records.is_keeper matches the key followed by one)
    assert len(" ".join(argv)) > 80 and system._command_by_ps(proc.pid) == " ".join(argv) + " "
    system.kill(proc.pid)
    proc.wait()
    assert not system.process_alive(proc.pid)
    assert not system.process_alive(None)


def test_terminate_is_sigterm(sleeper):
    proc, _ = sleeper
    system.terminate(proc.pid)
    assert proc.wait(5) == -15


def test_new_session_and_death_with_parent():
    """The ssh child of a forward: in a session of its own (Ctrl-C at our terminal is not sent to
    it), and ended (SIGTERM) when the process that started it is killed with SIGKILL."""
    code = textwrap.dedent("""
        import subprocess, sys, time
        from tasks import system
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                 **system.new_session(), **system.dies_with_parent())
        print(child.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    child = None
    try:
        child = int(parent.stdout.readline())
        assert os.getsid(child) == child != os.getsid(0)
        os.kill(parent.pid, 9)
        parent.wait()
        deadline = time.monotonic() + 5
        while system.process_alive(child) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not system.process_alive(child)  # gone (a zombie of PID 1's counts as gone)
    finally:
        parent.kill()
        parent.wait()
        if child and system.process_alive(child):
            os.kill(child, 9)


# --- listening sockets ----------------------------------------------------------------------------


def test_loopback_listener_is_known_and_ours():
    with socket.socket() as s, socket.socket() as other:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        listeners = system.loopback_listeners()
        assert listeners is not None and port in listeners
        assert system.holds_socket(os.getpid(), listeners[port]) is True
        other.bind(("127.0.0.1", 0))  # bound, not listening: not a listener
        assert other.getsockname()[1] not in (system.loopback_listeners() or {})
        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            assert system.holds_socket(sleeper.pid, listeners[port]) is False
        finally:
            sleeper.kill()
            sleeper.wait()
        forward._Listening.at = 0.0
        assert forward.listener_owner_is(os.getpid(), port) is True


def test_no_proc_net_means_cannot_tell(monkeypatch):
    """Where /proc/net/tcp is missing (an empty /proc), the answer is None ("cannot tell"), never an
    empty table, which made every forward look like another program's."""
    real = os.path.exists
    monkeypatch.setattr(os.path, "exists", lambda p: False if p == "/proc/net/tcp" else real(p))
    assert system.loopback_listeners() is None
    forward._Listening.at = 0.0
    assert forward.listener_owner_is(os.getpid(), 1) is None
    forward._Listening.at = 0.0


# --- users, limits --------------------------------------------------------------------------------


def test_user_and_ownership(tmp_path):
    assert system.user_id() == os.getuid()
    assert system.owned_by_me(os.lstat(tmp_path))
    assert system.owned_by_me(os.stat("/")) == (os.getuid() == 0)


def test_unix_socket_is_af_unix():
    with system.unix_socket() as s:
        assert s.family == socket.AF_UNIX and s.type == socket.SOCK_STREAM


def test_raise_open_files_says_the_hard_limit_when_too_low():
    code = textwrap.dedent("""
        import resource
        from tasks import system
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 512))
        print(system.raise_open_files(400), resource.getrlimit(resource.RLIMIT_NOFILE)[0],
              system.raise_open_files(5000))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))).stdout.split()
    assert out == ["None", "512", "512"]
