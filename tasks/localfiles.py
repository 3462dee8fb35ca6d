"""This machine's own files: where they live (platformdirs: the XDG folders on Linux, as before;
the system's own on macOS and Windows; a relative $XDG_*_HOME is ignored, as the XDG spec says),
and the small JSON records kept between runs (where Jupyter was last seen, local ports, hosts that
ask for a code, background tunnels)."""

import contextlib
import json
import os
import threading
from pathlib import Path

import platformdirs
from filelock import FileLock, Timeout

APP = "fabjupyter"
LOCK_WAIT = 10  # seconds to wait for another run's update of a record


def config_path(*parts):
    """This tool's configuration folder, PARTS in it. Linux: $XDG_CONFIG_HOME/fabjupyter
    (~/.config/fabjupyter); macOS: the same when $XDG_CONFIG_HOME is set, else ~/Library/Application
    Support/fabjupyter; Windows: %LOCALAPPDATA%\\fabjupyter."""
    return Path(platformdirs.user_config_dir(APP, appauthor=False), *parts)


def cache_path(*parts):
    """This tool's cache folder, PARTS in it. Linux: $XDG_CACHE_HOME/fabjupyter (~/.cache/fabjupyter);
    macOS: the same when $XDG_CACHE_HOME is set, else ~/Library/Caches/fabjupyter; Windows:
    %LOCALAPPDATA%\\fabjupyter\\Cache."""
    return Path(platformdirs.user_cache_dir(APP, appauthor=False), *parts)


def state_path(*parts):
    """This tool's state folder, PARTS in it: what lives as long as a process of ours does
    (background tunnels, their logs). Linux: $XDG_STATE_HOME/fabjupyter (~/.local/state/fabjupyter);
    macOS: the same when $XDG_STATE_HOME is set, else ~/Library/Application Support/fabjupyter;
    Windows: %LOCALAPPDATA%\\fabjupyter."""
    return Path(platformdirs.user_state_dir(APP, appauthor=False), *parts)


def read_record(path):
    """A JSON object kept between runs, or {} where there is none (or it is not one)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def locked(path, wait=LOCK_WAIT):
    """Hold PATH.lock (filelock: flock on Linux and macOS, released when the process ends,
    however) while the block runs, so that runs at the same time (a group's tunnels, cron) take
    turns at PATH. Raises TimeoutError when another run holds it WAIT seconds."""
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mode 0600: the folder is ours alone (filelock would probe the folder for a shared one)
    lock = FileLock(path.with_name(path.name + ".lock"), mode=0o600)
    try:
        lock.acquire(timeout=wait, poll_interval=0.01)
    except Timeout:
        raise TimeoutError(f"{path}: another run holds {path.name}.lock") from None
    try:
        yield
    finally:
        lock.release()


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
