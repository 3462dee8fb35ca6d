"""The OpenSSH path: a host reached through one `ssh` master connection (ControlMaster) that the
agent's sessions and the tunnel's forwards share, so that a run logs in once.

A host takes this path when
  - ssh_config gives it a ControlPath: the user's own multiplexing, used as configured;
  - hosts.yaml says `multiplex: true`: a master of this tool's own, its control socket in a private
    0700 directory, kept MULTIPLEX_PERSIST seconds after its last use (ControlPersist);
  - logging in asks for more than a key (a one-time code, a password: keyboard-interactive): found
    out by the first login of a run (and remembered), then a master for this run only.
OpenSSH itself asks the questions, on the terminal (/dev/tty), with the server's own words and
without echo; whatever ssh_config says (Match, certificates, ProxyJump, agents) applies as it does
to `ssh HOST`. Sessions and forwards are mux clients with BatchMode, so nothing but the master ever
authenticates, at most once per start of the master, and a refused answer ends the run."""

import atexit
import subprocess
import sys
import threading

from ..context import run
from .master import MULTIPLEX_PERSIST, Route, _asking_hosts, _host_key, _own_socket
from .sshconfig import _config_mentions_controlpath, base_args, effective_config


def _route_key(conn):
    return (conn.user, conn.original_host, conn.host, conn.port, tuple(base_args(conn)))


def route_for(conn, settings):
    """The Route for this host if it takes the OpenSSH path, else None (paramiko, the default)."""
    key = _route_key(conn)
    routes = run().routes  # this run's: a host's Route, or None (paramiko)
    with run().routes_lock:
        if key in routes:
            return routes[key]
    from .console import console_route, master_possible  # console imports this module

    route = None
    if not master_possible(settings):
        # no OpenSSH master here: a host known to ask is logged in to on this console
        return console_route(conn) if _host_key(conn) in _asking_hosts() else _remember_none(key)
    if settings.multiplex:
        route = Route(conn, _own_socket(conn), MULTIPLEX_PERSIST)
    elif _config_mentions_controlpath(conn):
        options = effective_config(conn)
        path = options.get("controlpath", "none")
        if path and path != "none":
            # their ControlPersist for a master we start there; without one, a master for this run
            # only, as their first `ssh` would have been
            persist = options.get("controlpersist", "no")
            route = Route(conn, path, 0 if persist in ("no", "false", "0") else persist)
    if route is None and _host_key(conn) in _asking_hosts():
        route = Route(conn, _own_socket(conn), 0)
    with run().routes_lock:
        return routes.setdefault(key, route)


def _remember_none(key):
    """The paramiko path for this host, unless this run already found that it asks."""
    with run().routes_lock:
        return run().routes.setdefault(key, None)


def interactive_route(conn):
    """The host asked for more than a key: from now on through a master (and next time too, once
    a login through it succeeded)."""
    key = _route_key(conn)
    routes = run().routes
    with run().routes_lock:
        if routes.get(key) is None:
            routes[key] = Route(conn, _own_socket(conn), 0)
            routes[key].remember = _host_key(conn)
        return routes[key]


class Session:
    """One remote command through the master: `ssh HOST COMMAND` as a mux client."""

    def __init__(self, route, label, command):
        route.ensure(label)
        self.proc = subprocess.Popen(route.client_args() + [route.host, command], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stdin = self.proc.stdin
        self.stdout = self.proc.stdout
        self._stderr: list[bytes] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self):
        assert self.proc.stderr is not None  # stderr=PIPE
        self._stderr.append(self.proc.stderr.read())

    def close_stdin(self):
        assert self.proc.stdin is not None  # stdin=PIPE
        self.proc.stdin.close()

    def stderr_text(self):
        self._reader.join()
        return b"".join(self._stderr).decode("utf-8", "replace")

    def exit_status(self):
        return self.proc.wait()

    def close(self):
        end_process(self.proc)

    def lost(self, status):
        """Whether STATUS is ssh's own failure (the master gone, the connection dropped)."""
        return status == 255


def end_process(proc, grace=5):
    """TERM, and KILL after GRACE seconds; returns once it is gone. (Popen's own terminate and
    kill: on Windows both are TerminateProcess, so nothing here needs tasks/system.py.)"""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def finish():
    """At the end of a run: end the masters it started for itself alone."""
    with run().routes_lock:
        routes = [r for r in run().routes.values() if r is not None]
    for route in routes:
        try:
            route.exit()
        except (OSError, subprocess.SubprocessError):
            pass


if sys.platform != "win32":
    atexit.register(finish)
