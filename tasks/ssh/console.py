"""Logging in without an OpenSSH master: where this machine's ssh cannot multiplex (OpenSSH for
Windows has no ControlMaster), or hosts.yaml says `control_master: no`, a host that asks for more
than a key (a one-time code, a password) is logged in to by paramiko, the questions asked on this
console, once per run. That one login (a ConsoleRoute, this run's for the host) carries the
agent's sessions and the tunnel's forwards (forwards/inproc.py), so nothing asks a second time."""

import getpass
import os
import sys
import threading

import paramiko

from ..context import run
from ..errors import AuthError
from .master import _asking, can_prompt

NO_TERMINAL = ("the host asks for interactive authentication (a one-time code or password) and there is no terminal to "
               "ask on; run this from a terminal")
NOT_ACCEPTED = "the server did not accept the answer to its prompt (a one-time code or password)"


def master_possible(settings):
    """Whether a host that asks may be logged in to through an OpenSSH master: not where
    hosts.yaml says control_master: no, and not on Windows, whose OpenSSH has no ControlMaster
    (Win32-OpenSSH issue 405)."""
    return settings.control_master != "no" and sys.platform != "win32"


def _say(text):
    """TEXT on the terminal (where getpass asks), else standard error; never standard output,
    which may be `status --json > FILE`."""
    try:
        with open("/dev/tty", "w") as tty:
            tty.write(text + "\n")
            return
    except OSError:
        pass
    print(text, file=sys.stderr, flush=True)


def ask(title, instructions, prompts):
    """paramiko's keyboard-interactive handler (run in its transport's thread): the server's
    words, each answer read without echo. Only called where there is a terminal (ensure)."""
    if not prompts:
        return []
    for text in (title, instructions):
        if text and text.strip():
            _say(text.strip())
    return [getpass.getpass(prompt if prompt.endswith(" ") else prompt + " ") for prompt, _echo in prompts]


def can_ask():
    """Whether a question can be put to the user: the controlling terminal (POSIX), or the
    console that standard input is (Windows, which has no /dev/tty; getpass reads the console)."""
    if sys.platform == "win32":
        return sys.stdin is not None and sys.stdin.isatty()
    return can_prompt()


class ConsoleClient(paramiko.SSHClient):
    """paramiko's client, where a host that asks after the key (or instead of one) is answered on
    this console. ASKED is set once a question was put."""

    asked = False

    def _auth(self, username, *args, **kwargs):
        transport = self._transport
        client = self

        def interactive(user, handler=None, submethods=""):
            def counted(title, instructions, prompts):
                client.asked = client.asked or bool(prompts)
                return ask(title, instructions, prompts)

            return transport.auth_interactive(user, counted, submethods)

        transport.auth_interactive_dumb = interactive
        try:
            return super()._auth(username, *args, **kwargs)
        except paramiko.AuthenticationException as e:
            allowed = set(getattr(e, "allowed_types", None) or ())
            if not transport.is_active():
                raise
            if "keyboard-interactive" in allowed:  # no key was taken: the host asks instead
                return interactive(username)
            if "password" in allowed:
                client.asked = True
                return transport.auth_password(username, getpass.getpass(f"{username}'s password: "))
            raise


class ConsoleRoute:
    """This run's one login to a host that asks, made here (asking on this console) and shared by
    every session and forward to it."""

    def __init__(self, conn):
        self.host = conn.original_host
        self.lock = threading.RLock()
        self.conn = None  # the Fabric Connection whose client logged in
        self.refused = None  # said once; never asked again in this run
        self.generation = 0  # counts the logins: a forward belongs to one

    def transport(self):
        conn = self.conn
        t = conn.client.get_transport() if conn is not None else None
        return t if t is not None and t.is_active() else None

    def ensure(self, t):
        """The login, made (asking on the console) if there is none alive; its transport."""
        from .connection import connect  # connection imports this module

        with self.lock:
            live = self.transport()
            if live is not None:
                return live
            if self.refused:
                raise AuthError(t.label, self.refused + "; not asked again in this run", reason=self.refused)
            if not can_ask():  # this route is for a host known to ask
                raise AuthError(t.label, NO_TERMINAL, reason=NO_TERMINAL)
            conn = t.conn
            conn.close()
            conn.client = client = ConsoleClient()
            with _asking:  # one host asks at a time (a group's)
                try:
                    transport = connect(t)
                except AuthError:
                    conn.close()
                    if not client.asked:
                        raise
                    self.refused = NOT_ACCEPTED
                    raise AuthError(t.label, NOT_ACCEPTED + "; nothing was changed; run again with a new code",
                                    reason=NOT_ACCEPTED) from None
            transport.set_keepalive(15)
            self.conn = conn
            self.generation += 1
            return transport

    def session(self, t, command):
        """COMMAND run on the host over this login (as `ssh HOST COMMAND`)."""
        from .connection import _ParamikoSession

        chan = self.ensure(t).open_session(timeout=30)
        chan.exec_command(command)
        return _ParamikoSession(chan)

    def exit(self):
        with self.lock:
            if self.conn is not None:
                self.conn.close()
                self.conn = None


def console_route(conn):
    """This run's ConsoleRoute for CONN's host (made on first use)."""
    from .openssh import _route_key

    key = _route_key(conn)
    with run().routes_lock:
        route = run().routes.get(key)
        if not isinstance(route, ConsoleRoute):
            route = run().routes[key] = ConsoleRoute(conn)
        return route


def pid():
    """The process that listens for a forward carried here: this one."""
    return os.getpid()
