"""This machine's own files: where they live (XDG), and the small JSON records kept between runs
(where Jupyter was last seen, local ports, hosts that ask for a code, background tunnels)."""

import contextlib
import fcntl
import json
import os
import threading
import time
from pathlib import Path


LOCK_WAIT = 10  # seconds to wait for another run's update of a record


def config_path(*parts):
    """$XDG_CONFIG_HOME/fabjupyter/PARTS (~/.config/fabjupyter/...)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(base, "fabjupyter", *parts)


def cache_path(*parts):
    """$XDG_CACHE_HOME/fabjupyter/PARTS (~/.cache/fabjupyter/...)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base, "fabjupyter", *parts)


def state_path(*parts):
    """$XDG_STATE_HOME/fabjupyter/PARTS (~/.local/state/fabjupyter/...): what lives as long as a
    process of ours does (background tunnels, their logs)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base, "fabjupyter", *parts)


def read_record(path):
    """A JSON object kept between runs, or {} where there is none (or it is not one)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def locked(path, wait=LOCK_WAIT):
    """Hold PATH.lock (flock: released when the process ends, however) while the block runs, so
    that runs at the same time (a group's tunnels, cron) take turns at PATH. Raises TimeoutError
    when another run holds it WAIT seconds."""
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path}: another run holds {path.name}.lock") from None
                time.sleep(0.01)
        yield


def write_private(path, text):
    """TEXT as PATH's whole content, mode 0600: written under a temporary name and moved into
    place, so a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o600)  # whatever the umask
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def update_record(path, changes):
    """Merge CHANGES into the record at PATH. Runs at the same time (a group's tunnels, cron) each
    read, merge and write under a lock (locked), so none loses another's update; written whole and
    moved into place. Remembering is a convenience: a failure (or a lock not had within LOCK_WAIT
    seconds) is ignored."""
    path = Path(path)
    try:
        with locked(path):
            record = read_record(path)
            record.update(changes)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}")
            try:
                tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
    except (OSError, TimeoutError):
        pass
