"""The records of background tunnels, pure: the stable local port, stale records (a dead pid, a
pid reused by another program), the lock. No host, no ssh: processes of this machine only."""

import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from tasks import system
from tasks.errors import HostError
from tasks.forwards import records

CONN = SimpleNamespace(user="ann", host="login.example.org", port=22)
KEY = records.key_of(CONN, "default")


@pytest.fixture(autouse=True)
def state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.fixture
def processes():
    """Processes started by a test, ended after it."""
    started = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def sleeper(processes, *args):
    """A process that sleeps; ARGS end its command line (as a keeper's names module and key)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *args])
    processes.append(proc)
    return proc


def keeper_lookalike(processes, key):
    """A process whose command line is a keeper's of KEY (`... -m MODULE KEY`)."""
    return sleeper(processes, "-m", records.KEEPER_MODULE, key)


def record_for(pid, key=KEY, port=8890):
    return {"key": key, "pid": pid, "local_port": port, "url": f"http://localhost:{port}/", "host": "login",
            "name": key.rsplit("/", 1)[1], "started": "2026-12-06T07:00:00+00:00"}


# --- the local port: the same as last time ----------------------------------------------------------

FREE = lambda port: True  # noqa: E731


def free_but(*busy):
    return lambda port: port not in busy


@pytest.mark.parametrize("remembered, default, pinned, is_free, avoid, expected", [
    # the port it had last time, free: the same one (a saved IDE URL keeps working)
    (8891, 8888, False, FREE, {8891}, (8891, None)),
    # taken by another program meanwhile: the next free one, said
    (8891, 8888, False, free_but(8891, 8892), (), (
        8893, "local port 8891 (this tunnel's port last time) is taken by another program; using 8893")),
    # first time: the default, skipping ports other hosts had last time, quietly
    (None, 8888, False, FREE, {8888, 8889}, (8890, None)),
    # first time, the default busy: the next free one, said
    (None, 8888, False, free_but(8888), (), (8889, "local port 8888 is busy; using 8889")),
    # pinned (--local-port, or local_port for this host in hosts.yaml): that one, whatever was remembered
    (8891, 9000, True, FREE, (), (9000, None)),
])
def test_choose_port(remembered, default, pinned, is_free, avoid, expected):
    assert records.choose_port(remembered, default, pinned, is_free, avoid) == expected


def test_a_pinned_port_that_is_busy_is_an_error_not_another_port():
    with pytest.raises(ValueError, match="local port 9000 is busy; choose another with --local-port"):
        records.choose_port(8891, 9000, True, free_but(9000))


def test_no_free_port_within_the_span_is_an_error():
    with pytest.raises(ValueError, match="all busy"):
        records.choose_port(None, 8888, False, lambda port: False)


# --- records: believed only when the pid is our keeper ------------------------------------------------


def test_a_record_is_written_whole_and_private(state_home):
    records.write_record(KEY, record_for(123))
    path = records.record_path(KEY)
    assert path.parent == state_home / "fabjupyter" / "tunnels"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    assert "/" not in path.name


def test_the_record_of_a_live_keeper_is_believed(processes):
    proc = keeper_lookalike(processes, KEY)
    records.write_record(KEY, record_for(proc.pid))
    assert records.read_open(KEY, tidy=True)["pid"] == proc.pid
    assert records.open_records(CONN) == {"default": record_for(proc.pid)}


def test_a_record_whose_pid_is_dead_is_stale_and_removed_under_the_lock(processes):
    proc = keeper_lookalike(processes, KEY)
    proc.kill()
    proc.wait()
    records.write_record(KEY, record_for(proc.pid))
    assert records.read_open(KEY) is None
    assert records.record_path(KEY).exists()  # without the lock, left as it is
    assert records.read_open(KEY, tidy=True) is None
    assert not records.record_path(KEY).exists()


def test_a_record_whose_pid_was_reused_by_another_program_is_stale(processes):
    other = sleeper(processes)  # alive, but not a keeper
    records.write_record(KEY, record_for(other.pid))
    assert records.read_open(KEY, tidy=True) is None
    assert not records.record_path(KEY).exists()
    assert other.poll() is None  # and nothing was done to that program


def test_a_keeper_of_another_instance_is_not_this_ones(processes):
    """The key is matched whole: the keeper of instance "defaults" is not the keeper of "default"."""
    proc = keeper_lookalike(processes, KEY + "s")
    records.write_record(KEY, record_for(proc.pid))
    assert records.read_open(KEY) is None
    assert not records.is_keeper(proc.pid, KEY)
    assert records.is_keeper(proc.pid, KEY + "s")


def lock_holder(processes, key, state_home):
    """A process that holds KEY's keeper lock, as a keeper does, and says so."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from tasks.forwards import records\n"
         "held = records.hold_keeper_lock(sys.argv[1]); print('held', flush=True); time.sleep(60)", key],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, XDG_STATE_HOME=str(state_home)))
    processes.append(proc)
    assert proc.stdout.readline() == "held\n"
    return proc


def holder(key):
    return system.life_lock_holder(records._path(key, ".keeper"))


def test_where_no_command_line_can_be_read_the_keeper_lock_decides(processes, state_home, monkeypatch):
    """No /proc and no ps (no command line matches): a live pid is trusted only while a process
    holds the key's keeper lock with that pid in it, as a keeper does for its life; a pid that
    cannot be checked otherwise is never trusted (and so never signalled)."""
    alive = system.process_alive
    monkeypatch.setattr(system, "process_alive", lambda pid, command=None: alive(pid) and command is None)
    other = sleeper(processes)  # alive, holds no lock
    records.write_record(KEY, record_for(other.pid))
    assert not records.is_keeper(other.pid, KEY)
    assert records.read_open(KEY, tidy=True) is None and not records.record_path(KEY).exists()
    keeper = lock_holder(processes, KEY, state_home)
    assert holder(KEY) == keeper.pid
    assert not records.is_keeper(other.pid, KEY)  # a keeper lives, but the record's pid is not it
    records.write_record(KEY, record_for(keeper.pid))
    assert records.is_keeper(keeper.pid, KEY) and records.read_open(KEY)["pid"] == keeper.pid
    assert holder(records.key_of(CONN, "gpu")) is None  # another instance's: its own lock
    assert records.end(KEY, record_for(keeper.pid))
    assert keeper.wait(5) is not None and holder(KEY) is None
    assert other.poll() is None  # nothing was done to the program that is not a keeper


def test_open_records_are_this_hosts_only(processes):
    mine = keeper_lookalike(processes, records.key_of(CONN, "gpu"))
    other_key = records.key_of(SimpleNamespace(user="ann", host="login.example.org", port=2222), "default")
    theirs = keeper_lookalike(processes, other_key)
    records.write_record(records.key_of(CONN, "gpu"), record_for(mine.pid, records.key_of(CONN, "gpu")))
    records.write_record(other_key, record_for(theirs.pid, other_key))
    assert list(records.open_records(CONN)) == ["gpu"]


def test_a_keeper_removes_its_own_record_never_a_successors():
    records.write_record(KEY, record_for(111))
    records.remove_record(KEY, 222)
    assert records.record_path(KEY).exists()
    records.remove_record(KEY, 111)
    assert not records.record_path(KEY).exists()


def test_end_stops_the_keeper_and_removes_its_record(processes):
    proc = keeper_lookalike(processes, KEY)
    records.write_record(KEY, record_for(proc.pid))
    assert records.end(KEY, record_for(proc.pid))
    assert proc.wait(5) is not None
    assert not records.record_path(KEY).exists()


# --- the lock: one start (or stop) of a tunnel at a time ---------------------------------------------


def test_the_lock_is_held_by_one_caller_at_a_time():
    with records.locked(KEY, "login"):
        started = time.monotonic()
        with pytest.raises(HostError, match="another fabjupyter call"):
            with records.locked(KEY, "login", wait=0.3):
                pass
        assert time.monotonic() - started >= 0.3
        with records.locked(records.key_of(CONN, "gpu"), "login[gpu]", wait=0):  # another instance: its own lock
            pass
    with records.locked(KEY, "login", wait=0):  # released
        pass


def test_the_lock_is_waited_for_across_processes(state_home):
    """A second call at once waits for the first to finish, then goes on (and finds its record)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from tasks.forwards import records\n"
         "with records.locked(sys.argv[1], 'login'):\n    print('held', flush=True); time.sleep(1)", KEY],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, XDG_STATE_HOME=str(state_home)))
    try:
        assert holder.stdout.readline() == "held\n"
        started = time.monotonic()
        with records.locked(KEY, "login", wait=10):
            waited = time.monotonic() - started
        assert 0.5 < waited < 5
    finally:
        holder.kill()
        holder.wait()


# --- what the keeper is handed: the options that reach the host, nothing secret ------------------


def test_the_keeper_gets_the_options_that_reach_the_host_and_no_secret(tmp_path, monkeypatch):
    from fabric import Config, Connection

    from tasks.forwards.background import core_options

    monkeypatch.chdir(tmp_path)
    (tmp_path / "ssh_config").write_text("Host login\n    User ann\n")
    # as `fab -S ssh_config -i ~/.ssh/id_lab --prompt-for-login-password --prompt-for-passphrase` leaves it
    config = Config(lazy=True, overrides={"connect_kwargs": {"key_filename": ["~/.ssh/id_lab"], "password": "s3cret",
                                                              "passphrase": "s3cret"}})
    config.set_runtime_ssh_path("ssh_config")  # relative: the keeper is given it whole
    config.load_ssh_config()
    conn = Connection("login", user="ann", config=config)
    conn.connect_timeout = 7
    options = core_options(SimpleNamespace(conn=conn))
    assert options == ["-S", str(tmp_path / "ssh_config"), "-i", os.path.expanduser("~/.ssh/id_lab"), "-t", "7"]
    assert "s3cret" not in " ".join(options)
    assert records.keeper_command(KEY)[1:] == ["-P", "-m", records.KEEPER_MODULE, KEY]
