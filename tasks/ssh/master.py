"""An OpenSSH master connection (ControlMaster) for one host: where its control socket lives,
starting it (OpenSSH asks on the terminal when logging in needs more than a key), holding it while
it is used, and every way starting it can fail as one sentence. tasks/ssh/openssh.py says which
hosts go through one."""

import contextlib
import hashlib
import os
import re
import select
import stat
import subprocess
import tempfile
import threading

from filelock import FileLock

from .. import system
from ..errors import AuthError, HostError
from ..localfiles import cache_path, config_path, read_record, update_record
from .hostkeys import changed_key_message
from .sshconfig import base_args

MULTIPLEX_PERSIST = 600  # seconds a `multiplex: true` master outlives its last use (ControlPersist)
RUN_PERSIST = 30  # a master only for this run: ended on exit, and by itself this long after a crash
MASTER_TIMEOUT = 300  # seconds for a master to log in, answering prompts included

# one login that may ask on the terminal at a time: a group's hosts would otherwise ask at once
_asking = threading.Lock()


# --- where our own masters live -----------------------------------------------------------------


def _private_dir(path):
    """PATH as a directory only this user can enter, or None where it cannot be (owned by another)."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.lstat(path)
        if not system.owned_by_me(info) or not os.path.isdir(path) or os.path.islink(path):
            return None
        if info.st_mode & 0o077:
            os.chmod(path, 0o700)
        return path
    except OSError:
        return None


def control_dir():
    """This tool's directory for control sockets: $XDG_RUNTIME_DIR/fabjupyter/ssh, else
    the cache folder's ssh (~/.cache/fabjupyter/ssh on Linux), else /tmp/fabjupyter-ssh-UID when
    those would make a socket path too long for Unix sockets (108 bytes). Mode 0700. (Windows: no
    /tmp one; its OpenSSH makes no control sockets anyway.)"""
    candidates = []
    if os.environ.get("XDG_RUNTIME_DIR"):
        candidates.append(os.path.join(os.environ["XDG_RUNTIME_DIR"], "fabjupyter", "ssh"))
    candidates.append(str(cache_path("ssh")))
    uid = system.user_id()
    if uid is not None:
        candidates.append(f"/tmp/fabjupyter-ssh-{uid}")
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
        if not stat.S_ISSOCK(info.st_mode) or not system.owned_by_me(info):
            what = "another user's socket" if stat.S_ISSOCK(info.st_mode) else "not a socket"
            raise HostError(label, f"{self.path} (the ControlPath for {self.host}) is {what}, so no master can start "
                                   "there; nothing was changed; move it away or set another ControlPath")
        try:
            s = system.unix_socket()
        except OSError:
            return
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
        try:
            s = system.unix_socket()
        except OSError:
            return False
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
            with (_asking if prompt else contextlib.nullcontext()), FileLock(lock_path, mode=0o600):
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


def _end_strays(argv):
    """End this user's processes whose command line is exactly ARGV (system.pids_of)."""
    for pid in system.pids_of(argv):
        try:
            system.terminate(pid)
        except OSError:
            continue
