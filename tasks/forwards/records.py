"""The records of background tunnels on this machine: one per host and instance, in
$XDG_STATE_HOME/fabjupyter/tunnels/ (pid, local port, host, instance, URL, when started), written
by the process that holds the tunnel (keeper.py) once its forward answers, removed when it ends.

A record is believed only if its pid is alive and is that very keeper: its command line names the
keeper module and the record's key, or (where no command line can be read) the lock the keeper
holds for its life, KEY.keeper, names its pid. A keeper killed without a word (SIGKILL, a reboot) leaves a
record whose pid may since be another program's; such a record is stale, and removed by whoever
holds the key's lock. Starting, reusing and stopping a tunnel take that lock (KEY.lock, a
filelock: flock on Linux and macOS, released when the process ends, however), so two calls at once end with one tunnel."""

import contextlib
import json
import os
import sys
import time
from urllib.parse import quote

from filelock import FileLock, Timeout

from .. import system
from ..errors import HostError
from ..localfiles import read_record, state_path
from ..remote.net import PORT_SPAN

KEEPER_MODULE = f"{__package__}.keeper"  # tasks.forwards.keeper in a checkout, fabjupyter.forwards.keeper installed
LOCK_WAIT = 200  # seconds: another call may be waiting for its keeper (background.START_WAIT, 180 s)
END_WAIT = 10  # seconds a keeper has to close its forward after SIGTERM, before SIGKILL


def key_of(conn, name):
    """The key of a host's instance: how it is reached (user, host, port) and the instance."""
    return f"{conn.user}@{conn.host}:{conn.port}/{name}"


def tunnels_dir():
    return state_path("tunnels")


def _path(key, suffix):
    return tunnels_dir() / (quote(key, safe="@") + suffix)


def record_path(key):
    return _path(key, ".json")


def log_path(key):
    """The keeper's own log: what it did, one stamped line per event."""
    return _path(key, ".log")


def keeper_command(key):
    """The keeper's command line: names the module and the key (how a record's pid is checked),
    and nothing secret. -P: the working directory is not searched for modules (a `tasks` package
    of the user's own there is not ours)."""
    return [sys.executable, "-P", "-m", KEEPER_MODULE, key]


def is_keeper(pid, key):
    """Whether PID is alive and is the keeper of KEY (not a recycled pid of another program)."""
    # cmdline() joins the arguments with a space and ends with one: the key is matched whole
    if system.process_alive(pid, " ".join(["-m", KEEPER_MODULE, key]) + " "):
        return True
    # not that command line, or none can be read (an empty /proc, and ps reads /proc too): then
    # only the lock a living keeper of KEY holds, naming this very pid, says it is one
    return system.process_alive(pid) and system.life_lock_holder(_path(key, ".keeper")) == pid


def hold_keeper_lock(key):
    """In the keeper, before it writes its record: KEY's keeper lock, held (with its pid in it)
    until this process ends, however; see is_keeper. Returns what to keep a reference to."""
    path = _path(key, ".keeper")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return system.hold_for_life(path)


@contextlib.contextmanager
def locked(key, label, wait=LOCK_WAIT):
    """Hold KEY's lock: one start, reuse or stop of that tunnel at a time, across processes."""
    path = _path(key, ".lock")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = FileLock(path, mode=0o600)
    try:
        lock.acquire(timeout=wait, poll_interval=0.05)
    except Timeout:
        raise HostError(label, f"another fabjupyter call has been starting or stopping this tunnel for "
                               f"{wait} s; try again once it is done") from None
    try:
        yield
    finally:
        lock.release()


def write_record(key, record):
    """Write KEY's record whole: to a temporary name (0600), then moved into place, so that a
    reader never sees half of it."""
    path = record_path(key)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(record, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_open(key, tidy=False):
    """KEY's record if its tunnel is open (the pid alive and our keeper of KEY), else None.
    TIDY (only under KEY's lock): a stale record is removed."""
    record = read_record(record_path(key))
    if not record:
        return None
    if record.get("key") == key and is_keeper(record.get("pid"), key):
        return record
    if tidy:
        record_path(key).unlink(missing_ok=True)
    return None


def remove_record(key, pid):
    """Remove KEY's record if it is PID's (a keeper ending removes its own, never a successor's)."""
    if read_record(record_path(key)).get("pid") == pid:
        record_path(key).unlink(missing_ok=True)


def open_records(conn):
    """The records of the open background tunnels to CONN's host (every instance), by name."""
    prefix = key_of(conn, "")
    found: dict[str, dict] = {}
    try:
        paths = sorted(tunnels_dir().glob("*.json"))
    except OSError:
        return found
    for path in paths:
        record = read_record(path)
        key = record.get("key")
        if isinstance(key, str) and key.startswith(prefix) and path == record_path(key) and read_open(key):
            found[record["name"]] = record
    return found


def choose_port(remembered, default, pinned, is_free, avoid=()):
    """(port, note) for a background tunnel. PINNED: DEFAULT itself (--local-port, or hosts.yaml's
    local_port for this host), an error if busy. Else the port it had last time (REMEMBERED) if
    free, so that a URL saved in an IDE keeps working; if another program took it, the next free
    one, said in NOTE. Else DEFAULT (or the first free port after it), skipping the ports other
    hosts had last time (AVOID). IS_FREE(port) says whether a port can be bound now."""
    if pinned:
        if not is_free(default):
            raise ValueError(f"local port {default} is busy; choose another with --local-port")
        return default, None
    start, skip = (remembered, ()) if remembered else (default, set(avoid))
    for port in range(start, min(start + PORT_SPAN, 65536)):
        if port not in skip and is_free(port):
            break
    else:
        raise ValueError(f"local ports {start}-{start + PORT_SPAN - 1} are all busy; choose one with --local-port")
    if remembered and port != remembered:
        return port, f"local port {remembered} (this tunnel's port last time) is taken by another program; using {port}"
    if not remembered and port != default and not is_free(default):
        return port, f"local port {default} is busy; using {port}"
    return port, None


def end(key, record, wait=END_WAIT):
    """End the keeper of RECORD (it closes its forward and removes its record); True once gone.
    SIGKILL after WAIT seconds, and then the record is removed here. (Windows: the first is
    already final (TerminateProcess), and the keeper's ssh child is left running: system.py.)"""
    pid = record["pid"]
    try:
        system.terminate(pid)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + wait
    while is_keeper(pid, key):
        if time.monotonic() > deadline:
            try:
                system.kill(pid)
            except ProcessLookupError:
                pass
            time.sleep(0.1)
            break
        time.sleep(0.05)
    remove_record(key, pid)
    return not is_keeper(pid, key)
