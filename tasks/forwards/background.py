"""Background tunnels (`tunnel --background`): the healing tunnel of heal.py, held by a process of
its own (keeper.py) in a session of its own, its output in a log file, so that it outlives the call
and the terminal. The call returns once the forward answers; a second call finds it (records.py)
and says the same URL; `tunnel --stop`, and `stop` of the server, end it.

The keeper is a fresh `python -m ...keeper KEY`, not a fork of this process: a fork would carry
this run's SSH connections and their threads, half alive. It runs the same `tunnel` task through
the same program, given the command-line options that reach the host as this call did (-S, -i,
-t, -f, the inventory); a password typed at a prompt is not handed on, and nothing secret is in
its command line or its log."""

import json
import os
import select
import subprocess
import sys
import time
import typing
from datetime import datetime, timezone
from pathlib import Path

from .. import system
from ..errors import AuthError, HostError, UserError, sigterm_as_interrupt
from ..remote.net import port_is_free
from . import records
from .ports import remember_ports, remember_seen, saved_ports

# Set by keeper.py in the keeper process: the key it holds and the pipe on which it says "ready".
holding: dict[str, typing.Any] = {}

START_WAIT = 180  # seconds for the keeper to log in and see its forward answer (it has its own timeouts)


def holds():
    """Whether this process is a keeper (its `tunnel` task holds the tunnel in the background)."""
    return bool(holding)


# --- the call: open one, or say the one that is open ---------------------------------------------


def open_background(t, local_port=None):
    """The background tunnel of host T's instance: the open one (same URL, nothing started), else a
    keeper started and its forward answering. Returns the lines to print."""
    if sys.platform == "win32":
        # its keeper is handed a pipe to say it is ready (pass_fds) and read with select(): neither
        # exists for pipes on Windows
        raise UserError("tunnel --background is not available on Windows yet; run `tunnel` in a window of its own")
    key = records.key_of(t.conn, t.name)
    with records.locked(key, t.label):
        record = records.read_open(key, tidy=True)
        if record is not None:
            if local_port is not None and local_port != record["local_port"]:
                raise HostError(t.label, f"its background tunnel is open on local port {record['local_port']}; "
                                         f"`{t.fab('tunnel --stop')}` first to move it to {local_port}")
            return [f"Jupyter is at {record['url']}  (the background tunnel open since {record['started']}, pid "
                    f"{record['pid']}; `{t.fab('tunnel --stop')}` closes it)"]
        port, note = _port_for(t, local_port)
        record = _start_keeper(t, key, port)  # it remembers its port, as a group's tunnel does
    return ([note] if note else []) + [
        f"Jupyter is at {record['url']}  (log in with your password; a background tunnel, pid {record['pid']}, "
        f"log {records.log_path(key)}; `{t.fab('tunnel --stop')}` closes it)"]


def _port_for(t, local_port):
    pinned = local_port is not None or t.pinned_local_port() is not None
    saved = saved_ports()
    avoid = {port for label, port in saved.items() if label != t.label and isinstance(port, int)}
    remembered = saved.get(t.label) if isinstance(saved.get(t.label), int) else None
    try:
        return records.choose_port(remembered, local_port or t.settings.local_port, pinned, port_is_free, avoid)
    except ValueError as e:
        raise HostError(t.label, str(e)) from None


def core_options(t):
    """The `fab` options that reach T's host as this call did: -S, -f, -i, -t."""
    config, options = t.conn.config, []
    if getattr(config, "_runtime_ssh_path", None):
        options += ["-S", os.path.abspath(config._runtime_ssh_path)]
    if getattr(config, "_runtime_path", None):
        options += ["-f", os.path.abspath(config._runtime_path)]
    keys = config.get("connect_kwargs", {}).get("key_filename") or []
    for key in dict.fromkeys([keys] if isinstance(keys, str) else keys):
        options += ["-i", os.path.abspath(os.path.expanduser(str(key)))]
    if t.conn.connect_timeout:
        options += ["-t", str(t.conn.connect_timeout)]
    return options


def _keeper_env(t):
    """The environment of the keeper: ours, with the inventory this call read pinned (its
    working directory is ours too), and our package importable wherever this call ran from."""
    env = dict(os.environ)
    if t.inventory.path and os.path.exists(t.inventory.path):
        env["FABRIC_JUPYTER_HOSTS_FILE"] = os.path.abspath(t.inventory.path)
    if t.conn.config.get("jupyter", {}).get("accept_new_host_key"):
        env["FABRIC_JUPYTER_ACCEPT_NEW_HOST_KEY"] = "1"
    root = str(Path(__file__).resolve().parents[2])  # the folder that holds our package
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _start_keeper(t, key, port):
    """Start the keeper of KEY on local PORT and wait for its word: its record once the forward
    answers, or why it could not."""
    log = records.log_path(key)
    log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    argv = ["fabjupyter", *core_options(t), "-H", t.host, "tunnel", "--local-port", str(port), "--name", t.name]
    ready_r, ready_w = os.pipe()
    # a new tunnel, a new log: the last one's lines were for a process that has ended
    with open(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600), "ab") as out:
        try:
            proc = subprocess.Popen(records.keeper_command(key), stdin=subprocess.PIPE, stdout=out, stderr=out,
                                    pass_fds=(ready_w,), env=_keeper_env(t), **system.new_session())
        finally:
            os.close(ready_w)
    try:
        try:
            assert proc.stdin is not None  # stdin=PIPE
            proc.stdin.write(json.dumps({"argv": argv, "ready_fd": ready_w}).encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass  # it ended at once: its log says why
        said = _read_word(ready_r, START_WAIT)
    except KeyboardInterrupt:
        proc.terminate()  # interrupted while it logs in: no tunnel left behind
        raise
    finally:
        os.close(ready_r)
    if said.get("record"):
        return said["record"]
    try:
        proc.wait(5 if said else 0)  # it said why, and ends
    except subprocess.TimeoutExpired:
        proc.terminate()  # it said nothing in time: not left running unseen
    reason = said.get("error") or f"the background tunnel ended before its forward answered (its log: {log})"
    raise HostError(t.label, reason, code=said.get("code", 1))


def _read_word(fd, wait):
    """The keeper's one JSON line on the pipe FD, or {} if it ends or WAIT passes without one."""
    data, deadline = b"", time.monotonic() + wait
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return {}
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    try:
        return json.loads(data.split(b"\n", 1)[0])
    except ValueError:
        return {}


# --- the keeper: hold the tunnel --------------------------------------------------------------


def _say(word):
    """Tell the call that started us (once): {"record": ...} or {"error": ...}."""
    fd = holding.pop("ready_fd", None)
    if fd is None:
        return
    try:
        os.write(fd, json.dumps(word).encode() + b"\n")
        os.close(fd)
    except OSError:
        pass  # the call was interrupted: the tunnel is held all the same


def hold(t):
    """In the keeper: open the forward on the local port the call chose, write the record, say
    ready, and keep it alive (heal.py) until SIGTERM; the record goes when it ends."""
    from ..ops.ssh_entry import Seen, keep_current
    from .confirmed import open_confirmed  # here: they import ops, which imports records
    from .heal import keep_alive

    key = records.key_of(t.conn, t.name)
    if key != holding.get("key"):  # the options handed on reached the host another way
        _say({"error": f"the background tunnel would reach {key}, not {holding.get('key')}; nothing was started"})
        raise HostError(t.label, f"reached as {key}, not {holding.get('key')}")
    sigterm_as_interrupt()
    port = t.settings.local_port
    try:
        tun, error, where = open_confirmed(t, port, pinned=True)
    except UserError as e:
        _say({"error": e.message if isinstance(e, HostError) else str(e), "code": e.code})
        raise
    if tun is None:
        _say({"error": error})
        raise HostError(t.label, error)
    remember_seen([(t, where)])
    remember_ports({t.label: tun.local_port})
    record = {"key": key, "pid": os.getpid(), "local_port": tun.local_port, "url": tun.url, "host": t.host, "name": t.name,
              "user": t.conn.user, "started": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
              "log": str(records.log_path(key))}
    try:
        holding["lock"] = records.hold_keeper_lock(key)  # for the life of this process
        records.write_record(key, record)
        print(f"{t.label}: Jupyter is at {tun.url}  (background tunnel, pid {os.getpid()})", flush=True)
        # its host's ssh_config entry forwards the same local port (one URL for an IDE either way),
        # written before the call returns
        for line in keep_current([(t, Seen.at(where), tun.local_port)]):
            print(line, flush=True)
        _say({"record": record})
        keep_alive(t, tun)
    except AuthError as e:
        raise AuthError(t.label, f"logging in again failed: {e.reason}; the tunnel is closed") from None
    except KeyboardInterrupt:
        print(f"{t.label}: tunnel closed", flush=True)
    finally:
        tun.close()
        records.remove_record(key, os.getpid())


# --- stop, url, list ------------------------------------------------------------------------------


def stop_background(t, dry_run=False):
    """End host T's instance's background tunnel, if one is open: the line that says so, or None."""
    key = records.key_of(t.conn, t.name)
    if not records.record_path(key).exists():  # most hosts: no lock file made for nothing
        return None
    with records.locked(key, t.label):
        record = records.read_open(key, tidy=not dry_run)
        if record is None:
            return None
        if dry_run:
            return f"would close its background tunnel at {record['url']} (pid {record['pid']})"
        if not records.end(key, record):
            raise HostError(t.label, f"its background tunnel (pid {record['pid']}) did not end even after SIGKILL")
    return f"background tunnel at {record['url']} closed (pid {record['pid']})"


def open_record(t):
    """The record of host T's instance's open background tunnel, or None."""
    return records.read_open(records.key_of(t.conn, t.name))


def url_record(t, record):
    """`url --json`: what an IDE needs."""
    return {"url": record["url"], "local_port": record["local_port"], "host": t.host, "name": t.name,
            "tunnel_pid": record["pid"]}


def run_keeper(argv):
    """The keeper's program: `fabjupyter ... tunnel` with our options, in this process."""
    from ..cli import program

    program.run(argv)


def stamp_lines(stream):
    """STREAM with the time before each line: the keeper's log says when each thing happened."""
    return _Stamped(stream)


class _Stamped:
    def __init__(self, stream):
        self.stream = stream
        self.at_start = True

    def write(self, text):
        for piece in text.splitlines(keepends=True):
            if self.at_start:
                self.stream.write(datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S%z "))
            self.stream.write(piece)
            self.at_start = piece.endswith("\n")
        return len(text)

    def flush(self):
        self.stream.flush()

    def isatty(self):
        return False

    def __getattr__(self, name):  # encoding, errors, fileno...: the stream's own
        return getattr(self.stream, name)
