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
import contextlib
import fcntl
import hashlib
import os
import re
import select
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from glob import glob
from pathlib import Path

from ..errors import AuthError, HostError
from .hostkeys import changed_key_message
from ..context import run
from ..localfiles import cache_path, config_path, read_record, update_record

MULTIPLEX_PERSIST = 600  # seconds a `multiplex: true` master outlives its last use (ControlPersist)
RUN_PERSIST = 30  # a master only for this run: ended on exit, and by itself this long after a crash
MASTER_TIMEOUT = 300  # seconds for a master to log in, answering prompts included

# one login that may ask on the terminal at a time: a group's hosts would otherwise ask at once
_asking = threading.Lock()


# --- what ssh_config says -----------------------------------------------------------------------


def _config_files(conn):
    """The ssh_config files the `ssh` client reads for this connection, Includes followed."""
    explicit = getattr(conn.config, "_runtime_ssh_path", None) or conn.config.get("ssh_config_path")
    if explicit:
        roots = [(os.path.expanduser(explicit), os.path.expanduser("~/.ssh"))]
    elif not conn.config.get("load_ssh_configs", True):
        return []
    else:
        roots = [(os.path.expanduser("~/.ssh/config"), os.path.expanduser("~/.ssh")), ("/etc/ssh/ssh_config", "/etc/ssh")]
    found, todo = [], list(roots)
    while todo and len(found) < 64:
        path, base = todo.pop(0)
        if path in found:
            continue
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue
        found.append(path)
        for line in text.splitlines():
            words = line.strip().split()
            if len(words) > 1 and words[0].lower() == "include":
                for pattern in words[1:]:
                    pattern = os.path.expanduser(pattern)
                    full = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
                    todo += [(p, base) for p in sorted(glob(full))]
    return found


_mentions = {}


def _config_mentions_controlpath(conn):
    """Whether any ssh_config file could give a host a ControlPath (read once per run): only then
    is `ssh -G` asked, so that a group of hosts without multiplexing costs nothing here."""
    which = (getattr(conn.config, "_runtime_ssh_path", None), conn.config.get("ssh_config_path"),
             conn.config.get("load_ssh_configs", True))
    if which in _mentions:
        return _mentions[which]
    files = tuple(_config_files(conn))
    if which not in _mentions:
        text = ""
        for path in files:
            try:
                text += Path(path).read_text(errors="replace").lower()
            except OSError:
                pass
        _mentions[which] = "controlpath" in text
    return _mentions[which]


def base_args(conn):
    """`ssh` options that reach the host exactly as Fabric does: the same ssh_config file (-S),
    user, port, identities, connect timeout and gateway."""
    from fabric import Connection

    args = ["ssh"]
    ssh_config = getattr(conn.config, "_runtime_ssh_path", None) or conn.config.get("ssh_config_path")
    if ssh_config:
        args += ["-F", ssh_config]
    elif not conn.config.get("load_ssh_configs", True):
        args += ["-F", "/dev/null"]
    args += ["-l", conn.user, "-p", str(conn.port)]
    keys = conn.connect_kwargs.get("key_filename") or []
    for key in dict.fromkeys([keys] if isinstance(keys, str) else keys):  # Fabric may list one twice
        args += ["-i", key]
    if conn.connect_timeout:
        args += ["-o", f"ConnectTimeout={conn.connect_timeout}"]
    if isinstance(conn.gateway, Connection):
        hops, gateway = [], conn.gateway
        while isinstance(gateway, Connection):
            hops.insert(0, f"{gateway.user}@{gateway.original_host}:{gateway.port}")
            gateway = gateway.gateway
        args += ["-J", ",".join(hops)]
    elif isinstance(conn.gateway, str) and conn.gateway:
        args += ["-o", f"ProxyCommand={conn.gateway}"]
    if conn.host != conn.original_host:
        args += ["-o", f"HostName={conn.host}"]
    return args


def effective_config(conn):
    """`ssh -G`: the options OpenSSH would use for this host, Match blocks and all."""
    r = subprocess.run(base_args(conn) + ["-G", conn.original_host], stdin=subprocess.DEVNULL, capture_output=True, text=True)
    options = {}
    for line in r.stdout.splitlines():
        key, _, value = line.partition(" ")
        options.setdefault(key.lower(), value)
    return options


# --- where our own masters live -----------------------------------------------------------------


def _private_dir(path):
    """PATH as a directory only this user can enter, or None where it cannot be (owned by another)."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.lstat(path)
        if info.st_uid != os.getuid() or not os.path.isdir(path) or os.path.islink(path):
            return None
        if info.st_mode & 0o077:
            os.chmod(path, 0o700)
        return path
    except OSError:
        return None


def control_dir():
    """This tool's directory for control sockets: $XDG_RUNTIME_DIR/fabjupyter/ssh, else
    ~/.cache/fabjupyter/ssh, else /tmp/fabjupyter-ssh-UID when those would make a socket path too
    long for Unix sockets (108 bytes). Mode 0700."""
    candidates = []
    if os.environ.get("XDG_RUNTIME_DIR"):
        candidates.append(os.path.join(os.environ["XDG_RUNTIME_DIR"], "fabjupyter", "ssh"))
    candidates += [str(cache_path("ssh")), f"/tmp/fabjupyter-ssh-{os.getuid()}"]
    for path in candidates:
        if len(path) + 1 + 24 < 100 and _private_dir(path):
            return path
    raise HostError("", f"no private directory for SSH control sockets (tried {', '.join(candidates)})")


def _own_socket(conn):
    """Our master's socket for this user, host, port and ssh_config (a name of our own, so that
    we can look for the master without asking ssh)."""
    key = "\0".join([conn.user, conn.original_host, conn.host, str(conn.port), " ".join(base_args(conn))])
    return os.path.join(control_dir(), hashlib.sha256(key.encode()).hexdigest()[:24])


# --- remembered: hosts that ask for more than a key ---------------------------------------------


def _asks_file():
    return config_path("interactive-hosts.json")


def _host_key(conn):
    return f"{conn.user}@{conn.original_host}:{conn.port}"


def _asking_hosts():
    return read_record(_asks_file())


def remember_asks(host_key):
    """Next time this host goes to the OpenSSH path at once (saving the key-only login attempt)."""
    update_record(_asks_file(), {host_key: "keyboard-interactive"})


# --- the master ---------------------------------------------------------------------------------


def can_prompt():
    """Whether OpenSSH could ask a question: it asks on the controlling terminal."""
    try:
        os.close(os.open("/dev/tty", os.O_RDWR))
        return True
    except OSError:
        return False


class Route:
    """How one host is reached on the OpenSSH path: its master's socket, and who owns it."""

    def __init__(self, conn, path, persist):
        self.path = path  # ssh_config's ControlPath, or ours (multiplex: true, a host that asks)
        self.persist = persist  # ControlPersist for a master we start; 0: this run only
        self.host = conn.original_host
        self.base = base_args(conn)
        self.accept_new = bool(conn.config.get("jupyter", {}).get("accept_new_host_key"))
        self.lock = threading.RLock()
        self.keeper = None  # a connection to the master's socket, held while we use it
        self.generation = 0  # counts the masters seen: a forward belongs to one
        self.started = False  # this run started the master now alive
        self.refused = None  # the master's login was refused: said once, never asked again
        self.remember = None  # the host's key in interactive-hosts.json, once a login here succeeded

    def client_args(self):
        """Options for a mux client: through the master, never a login of its own."""
        return self.base + ["-o", f"ControlPath={self.path}", "-o", "ControlMaster=no", "-o", "BatchMode=yes"]

    def alive(self):
        """Whether the master we hold is still there (its socket closes when it exits)."""
        k = self.keeper
        if k is None:
            return False
        try:
            if select.select([k], [], [], 0)[0] and not k.recv(4096):
                raise OSError
            return True
        except OSError:
            k.close()
            self.keeper = None
            return False

    def _clear_stale(self, label):
        """A socket file whose master is gone (killed, the machine slept) makes a new master give up
        multiplexing; one of this user's that refuses connections is only a leftover. Anything
        else there (a regular file refuses connections too) is not ours to remove: said, and left."""
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return
        except OSError as e:
            raise HostError(label, f"cannot use the control socket {self.path}: {e.strerror}")
        if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
            what = "another user's socket" if stat.S_ISSOCK(info.st_mode) else "not a socket"
            raise HostError(label, f"{self.path} (the ControlPath for {self.host}) is {what}, so no master can start "
                                   "there; nothing was changed; move it away or set another ControlPath")
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(self.path)
        except ConnectionRefusedError:
            try:
                os.unlink(self.path)
            except OSError:
                pass
        except OSError:
            pass
        finally:
            s.close()

    def _hold(self):
        """Connect to the master's socket and keep the connection: while it is open the master
        does not end by ControlPersist, and when the master ends it reads as closed."""
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(2)
        try:
            s.connect(self.path)
            s.recv(4096)  # the master's hello
        except OSError:
            s.close()
            return False
        s.settimeout(None)
        self.keeper = s
        self.generation += 1
        return True

    def ensure(self, label):
        """A live master, started (and logged in, asking on the terminal) if there is none."""
        with self.lock:
            if self.alive():
                return
            if self.refused:
                raise AuthError(label, self.refused + "; not asked again in this run", reason=self.refused)
            if self._hold():  # someone's master (the user's, an earlier run's) is there
                return
            prompt = can_prompt()
            # another run starting a master at this path at the same moment would leave one of
            # the two without multiplexing: one start at a time per path, across processes
            lock_path = os.path.join(control_dir(), hashlib.sha256(self.path.encode()).hexdigest()[:24] + ".lock")
            with open(lock_path, "a") as lock, (_asking if prompt else contextlib.nullcontext()):
                fcntl.flock(lock, fcntl.LOCK_EX)
                if self._hold():  # the other run's master
                    return
                self._clear_stale(label)
                self._start(label, prompt)

    def _start(self, label, prompt):
        args = self.base + ["-o", f"ControlPath={self.path}", "-o", "ControlMaster=yes", "-o", "NumberOfPasswordPrompts=1",
                            "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3",
                            "-o", f"ControlPersist={self.persist or RUN_PERSIST}"]
        if self.accept_new:
            args += ["-o", "StrictHostKeyChecking=accept-new"]
        if not prompt:
            args += ["-o", "BatchMode=yes"]
        args += ["-N", "-f", self.host]
        # -f: to the background once logged in; its stderr goes to a file, as a pipe would stay
        # open as long as the master lives
        with tempfile.TemporaryFile() as err:
            try:
                r = subprocess.run(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=err, timeout=MASTER_TIMEOUT)
                code = r.returncode
            except subprocess.TimeoutExpired:
                code = None
            err.seek(0)
            lines = [line.strip() for line in err.read().decode("utf-8", "replace").splitlines() if line.strip()]
        if code == 0 and self._hold():
            self.started = True
            if self.remember:  # only a host where logging in this way worked is sent this way at once
                remember_asks(self.remember)
                self.remember = None
            return
        if code == 0:
            # it went to the background as a plain session (-N), which nothing would ever end
            _end_strays(args)
            raise HostError(label, f"ssh logged in but made no master at {self.path} ({lines[-1] if lines else 'no word why'})")
        if code is None:
            raise HostError(label, f"logging in took more than {MASTER_TIMEOUT} s (an unanswered prompt?); nothing was changed")
        raise self._failure(label, lines, prompt)

    def _failure(self, label, lines, prompted):
        text = "\n".join(lines)
        last = lines[-1] if lines else "ssh failed"
        denied = re.search(r"Permission denied \(([^)]*)\)", text)
        if denied:
            methods = denied.group(1).split(",")
            asks = "keyboard-interactive" in methods or "password" in methods
            if asks and not prompted and "publickey" in methods:  # no key taken (a second factor comes after one)
                return AuthError(label, f"authentication failed for {self.host} ({last}): no key was accepted (a password "
                                 "would need a terminal); check the user, the key (-i KEY or identity: in hosts.yaml) and ssh-agent")
            if asks and not prompted:
                return AuthError(label, "the host asks for interactive authentication (a one-time code or password) and "
                                 "there is no terminal to ask on; run this from a terminal (once, with multiplex: true in "
                                 "hosts.yaml, to keep that login for later runs)")
            if asks:
                self.refused = "the server did not accept the answer to its prompt (a one-time code or password)"
            else:
                self.refused = (f"authentication failed for {self.host} ({last}); check the user, the key (-i KEY or "
                                "identity: in hosts.yaml) and ssh-agent")
            return AuthError(label, self.refused + ("; nothing was changed; run again with a new code" if asks else ""),
                             reason=self.refused)
        if "HOST IDENTIFICATION HAS CHANGED" in text:
            offending = re.search(r"^Offending \S+ key in (.+):(\d+)$", text, re.M)
            fingerprint = re.search(r"^(SHA256:[A-Za-z0-9+/=]+)", text, re.M)
            name = re.search(r"^Host key for (.+) has changed", text, re.M)
            return HostError(label, changed_key_message(
                name.group(1) if name else self.host, fingerprint.group(1) if fingerprint else "a new key",
                offending.group(1) if offending else "~/.ssh/known_hosts", offending.group(2) if offending else None))
        if "Host key verification failed" in text:
            return HostError(label, f"unknown host key for {self.host} ({last}); if it is right, run again with "
                             "--accept-new-host-key (or StrictHostKeyChecking accept-new in ssh_config)")
        if "Could not resolve hostname" in text:
            return HostError(label, f"cannot resolve host name {self.host!r}; check -H, hosts.yaml or ssh_config")
        if "Connection refused" in text:
            return HostError(label, f"connection refused by {self.host}; is sshd running there, on that port?")
        if "timed out" in text:
            return HostError(label, f"no answer from {self.host} ({last}); check the host and the network")
        return HostError(label, f"SSH to {self.host} failed: {last}")

    def master_pid(self):
        found = re.search(r"pid=(\d+)", self.control("check")[1])
        return int(found.group(1)) if found else None

    def control(self, command, *args):
        """`ssh -O COMMAND` (forward, cancel, exit): (exit status, what it said)."""
        r = subprocess.run(self.client_args() + ["-O", command, *args, self.host], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=30)
        return r.returncode, r.stderr.strip()

    def exit(self):
        """End a master this run started for itself alone."""
        if self.started and self.persist == 0 and self.alive():
            self.control("exit")
        if self.keeper is not None:
            self.keeper.close()
            self.keeper = None


def _route_key(conn):
    return (conn.user, conn.original_host, conn.host, conn.port, tuple(base_args(conn)))


def route_for(conn, settings):
    """The Route for this host if it takes the OpenSSH path, else None (paramiko, the default)."""
    key = _route_key(conn)
    routes = run().routes  # this run's: a host's Route, or None (paramiko)
    with run().routes_lock:
        if key in routes:
            return routes[key]
    route = None
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
        self._stderr = []
        self._reader = threading.Thread(target=lambda: self._stderr.append(self.proc.stderr.read()), daemon=True)
        self._reader.start()

    def close_stdin(self):
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


def _end_strays(argv):
    """End this user's processes whose command line is exactly ARGV (Linux: read from /proc)."""
    wanted = "\0".join(argv).encode() + b"\0"
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if entry.stat().st_uid == os.getuid() and (entry / "cmdline").read_bytes() == wanted:
                os.kill(int(entry.name), 15)
        except (OSError, ValueError):
            continue


def end_process(proc, grace=5):
    """TERM, and KILL after GRACE seconds; returns once it is gone."""
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
