"""Connecting to a host, every way it can fail turned into one clear sentence."""

import contextlib
import logging
import os
import socket
import time

import paramiko
from paramiko.ssh_exception import NoValidConnectionsError

from . import console, hostkeys, master, openssh
from .master import _host_key, remember_asks
from ..errors import AuthError, HostError, UserError

# paramiko logs transport failures itself; ours is the one message the user sees
logging.getLogger("paramiko").addHandler(logging.NullHandler())


def one_timeout(conn):
    """`fab -t N` puts the timeout in connect_kwargs, which Fabric refuses next to the
    timeouts.connect default we set: keep one, the explicit -t."""
    kwargs = dict(conn.connect_kwargs)
    if "timeout" in kwargs:
        conn.connect_timeout = int(kwargs.pop("timeout"))
    # a port that accepts but never speaks SSH should not hold us longer than a silent one
    if conn.connect_timeout:
        kwargs.setdefault("banner_timeout", conn.connect_timeout)
    conn.connect_kwargs = kwargs


class NeedsInteractive(Exception):
    """The host asks for more than a key (a one-time code, a password): the OpenSSH path asks.
    key_refused: no key was taken and the server would take a password (or code) instead, as
    against a key taken and a code asked next."""

    def __init__(self, key_refused=False):
        super().__init__()
        self.key_refused = key_refused


class _Client(paramiko.SSHClient):
    """paramiko's client, except that where the server asks for keyboard-interactive or a password
    (after a key, or instead of one) it does not print the server's prompt on standard output and
    read standard input: that login is handed to OpenSSH, which asks on the terminal."""

    def _auth(self, username, *args, **kwargs):
        transport = self._transport

        def interactive(*_args, **_kwargs):
            raise NeedsInteractive()

        transport.auth_interactive_dumb = interactive
        try:
            return super()._auth(username, *args, **kwargs)
        except paramiko.AuthenticationException as e:
            allowed = getattr(e, "allowed_types", None)
            if not allowed and transport.is_active():
                try:
                    transport.auth_none(username)
                except paramiko.BadAuthenticationType as none:
                    allowed = none.allowed_types
                except (paramiko.SSHException, OSError):
                    pass
            if {"keyboard-interactive", "password"} & set(allowed or ()):
                raise NeedsInteractive(key_refused=True) from None
            raise


def _certified_key(conn):
    """ssh_config's CertificateFile with the IdentityFile it certifies, as one key for paramiko
    (which itself finds only a certificate beside its key, KEY-cert.pub), or None."""
    cert = conn.ssh_config.get("certificatefile")
    cert = cert[0] if isinstance(cert, list) and cert else cert
    if not cert or "%" in cert:
        return None
    keys = conn.connect_kwargs.get("key_filename") or conn.ssh_config.get("identityfile") or []
    for path in [keys] if isinstance(keys, str) else keys:
        try:
            key = paramiko.PKey.from_path(os.path.expanduser(path))
            key.load_certificate(os.path.expanduser(cert))
            return key
        except (OSError, ValueError, paramiko.SSHException):
            continue  # not this key's certificate, or a key that needs a passphrase
    return None


def auth_failed(t, why=""):
    where = f"{t.conn.user}@{t.conn.host}:{t.conn.port}"
    return AuthError(t.label, f"authentication failed for {where}{why}; check the user, the key (-i KEY or identity: in "
                              "hosts.yaml) and ssh-agent")


def connect(t):
    """Open the SSH connection (once per run and host) and return its transport."""
    conn = t.conn
    if type(conn.client) is paramiko.SSHClient and not conn.is_connected:
        conn.client = _Client()  # its host key policy is set below, as for Fabric's own
    if not conn.is_connected and "pkey" not in conn.connect_kwargs:
        key = _certified_key(conn)
        if key is not None:
            conn.connect_kwargs = dict(conn.connect_kwargs, pkey=key)
    where = f"{conn.user}@{conn.host}:{conn.port}"
    timeout = conn.connect_timeout
    accept_new = bool(conn.config.get("jupyter", {}).get("accept_new_host_key"))
    hostkeys.install(conn, t.label, accept_new)
    started = time.monotonic()

    def fail(message):
        return HostError(t.label, message)

    try:
        conn.open()
    except (UserError, NeedsInteractive):
        raise
    except socket.gaierror:
        raise fail(f"cannot resolve host name {conn.host!r}; check -H, hosts.yaml or ssh_config") from None
    except paramiko.BadHostKeyException:
        raise fail(f"the host key of {conn.host} has CHANGED; this may be an impostor. Check the new key with the host's "
                   f"administrator; if the change is expected, remove the old line: ssh-keygen -R {conn.host} "
                   "(-f FILE for a known_hosts file other than ~/.ssh/known_hosts)") from None
    except paramiko.AuthenticationException:
        raise auth_failed(t) from None
    except NoValidConnectionsError:
        raise fail(f"connection refused by {where}; is sshd running there, on that port?") from None
    except (TimeoutError, socket.timeout):
        raise fail(f"no answer from {where} within {timeout} s; check the host and the network (-t SECONDS waits longer)") from None
    except paramiko.SSHException as e:
        if "banner" in str(e) or (timeout and time.monotonic() - started >= timeout - 0.5):
            raise fail(f"no SSH answer from {where} within {timeout} s; is that an SSH server? (-t SECONDS waits longer)") from None
        raise fail(f"SSH to {where} failed: {e}") from None
    except OSError as e:
        raise fail(f"cannot connect to {where}: {e.strerror or e}") from None
    return conn.client.get_transport()


class _ParamikoSession:
    """One remote command on the paramiko connection, with the same face as openssh.Session."""

    def __init__(self, chan):
        self.chan = chan
        self.stdin = chan.makefile("wb")
        self.stdout = chan.makefile("rb")

    def close_stdin(self):
        self.stdin.flush()
        self.chan.shutdown_write()

    def stderr_text(self):
        return self.chan.makefile_stderr("rb").read().decode("utf-8", "replace")

    def exit_status(self):
        return self.chan.recv_exit_status()

    def close(self):
        self.chan.close()

    def lost(self, status):
        """Whether STATUS says the connection failed rather than the command (never, here: a
        failed connection raises)."""
        return False


@contextlib.contextmanager
def session(t, command, failed):
    """open_session as a block, closed on the way out. An SSH failure inside it ends as one line,
    FAILED (a format with {e}), and the connection is dropped: one that failed once (a network gone
    silent keeps it "active") is not reused, the next call makes a new one."""
    s = None
    try:
        s = open_session(t, command)
        yield s
    except (paramiko.SSHException, OSError, EOFError) as e:
        close_sessions(t)
        raise HostError(t.label, failed.format(e=e)) from None
    finally:
        if s is not None:
            s.close()


def open_session(t, command):
    """Run COMMAND on the host (as `ssh HOST COMMAND` would, through the login shell): on the
    OpenSSH path through its master, else on this run's paramiko connection. A host that turns
    out to ask for a code or password moves to the OpenSSH path here, for the rest of the run."""
    route = openssh.route_for(t.conn, t.settings)
    if route is None:
        try:
            transport = connect(t)
        except NeedsInteractive as e:
            t.conn.close()
            if e.key_refused and not (master.can_prompt() if console.master_possible(t.settings) else console.can_ask()):
                # no key was taken; the password the server would take instead cannot be asked
                # for here (cron): the key is what to fix
                raise auth_failed(t, " (no key was accepted; a password would need a terminal)") from None
            if console.master_possible(t.settings):
                route = openssh.interactive_route(t.conn)
            else:
                route = console.console_route(t.conn)
                remember_asks(_host_key(t.conn))
        else:
            chan = transport.open_session(timeout=30)
            chan.exec_command(command)
            return _ParamikoSession(chan)
    if isinstance(route, console.ConsoleRoute):
        return route.session(t, command)
    return openssh.Session(route, t.label, command)


def close_sessions(t):
    """Drop this host's connection (a failed one is not reused; an interrupted agent notices)."""
    t.conn.close()
