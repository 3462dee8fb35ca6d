"""Throwaway SSH hosts for tests and the demo: a real OpenSSH sshd on loopback, its own host key,
its own test users (real accounts, homes under one temporary directory), and an ssh_config file
that the client (Fabric with -S, and the tunnel's ssh with -F) uses to reach them.

Needs root (accounts, sshd as root so that it can switch users). Everything it starts is
stopped by close(): sshd, and every process of the test users (Jupyter, tmux, kernels)."""

import base64
import fcntl
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"
JUPYTER_VENV = Path(os.environ.get("FABJUPYTER_TEST_VENV", "/opt/fabjupyter-test/venv"))
STANDARD_PATH = "/usr/local/bin:/usr/bin:/bin"


_slot = None


def run_slot():
    """This run's slot (0-9), held with a lock for the life of the process. Account, network
    namespace, interface and address names carry it, so two runs of the tests at once on one
    machine never touch each other's; slot 0 keeps the plain names. A run that crashed holds
    nothing: the next run in its slot removes what it left (userdel, ip netns del)."""
    global _slot
    if _slot is None:
        for k in range(10):
            handle = open(f"/run/fabjupyter-tests-slot-{k}.lock", "w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            _slot = (k, handle)
            break
        else:
            raise RuntimeError("ten runs of the tests at once on this machine: wait for one to end")
    return _slot[0]


def in_slot(name):
    """A name of this run's: `fjtest` in slot 0, `fjtests3` in slot 3."""
    k = run_slot()
    return name if k == 0 else f"{name}s{k}"


def free_port(start=None):
    """A TCP port that nothing on 127.0.0.1 listens on now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def subnet(index):
    """The /30 of test host INDEX's veth pair (10.231.INDEX in slot 0, 10.232.INDEX in slot 1...)."""
    return f"10.{231 + run_slot()}.{index}"


def wait_port(port, timeout=10.0, host="127.0.0.1"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout} s")


def kill_pids(find, timeout=10.0, survivors_fail=True):
    """SIGKILL what find() returns until it returns nothing (an error if some survive TIMEOUT
    seconds, unless SURVIVORS_FAIL is false)."""
    deadline = time.monotonic() + timeout
    while True:
        pids = find()
        if not pids:
            return
        if time.monotonic() > deadline:
            if not survivors_fail:
                return
            raise RuntimeError(f"processes survive SIGKILL: {pids}")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def jupyter_servers(pids):
    """Those of PIDS that are Jupyter servers (JupyterLab or Notebook; kernels are not, nor is
    this tool's agent, which has Jupyter's command among its arguments for the moment between the
    record and its exit)."""
    found = []
    for pid in pids:
        try:
            args = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if any(a.endswith((b"/jupyter-lab", b"/jupyter-notebook")) for a in args) and b"fabjupyter-agent" not in args:
            found.append(pid)
    return found


def control_master_pid(socket_path):
    """The pid of the ssh master listening on the control socket, or None (`ssh -O check`)."""
    r = subprocess.run(["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-S", str(socket_path), "-O", "check", "x"],
                       capture_output=True, text=True, timeout=30)
    if r.returncode == 0 and "(pid=" in r.stderr:
        return int(r.stderr.split("(pid=", 1)[1].split(")", 1)[0])
    return None


def end_control_master(socket_path):
    """End the ssh master of a control socket (`ssh -O exit`, then SIGKILL if it stays), and
    remove the socket if it is left."""
    pid = control_master_pid(socket_path)
    subprocess.run(["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-S", str(socket_path), "-O", "exit", "x"],
                   capture_output=True, timeout=30)
    if pid:
        kill_pids(lambda: [pid] if os.path.exists(f"/proc/{pid}") and not _zombie(pid) else [], timeout=5.0, survivors_fail=False)
    try:
        os.unlink(socket_path)
    except (FileNotFoundError, IsADirectoryError):
        pass


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@dataclass
class User:
    name: str
    home: Path
    uid: int
    shell: str
    jupyter_on_path: bool
    path: str = None  # the PATH sshd gives the account, if not the usual one
    otp_secret: str = None  # base32 TOTP secret in ~/.google_authenticator (SSHHost(otp=True))
    identity: Path = None  # the account's own key, with KEY-cert.pub beside it (SSHHost(cert=True))


def _run(*cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def interpreter_of(script):
    """The interpreter a script's first line names (pip writes bin/python or bin/python3,
    depending on the machine): what run.sh should start the script with."""
    with open(script) as f:
        first = f.readline()
    assert first.startswith("#!"), first
    return first[2:].split()[0]


def proc_files(name):
    """(pid, contents) of /proc/PID/NAME (cmdline, environ) for every process that can be read."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/{name}", "rb") as f:
                yield int(entry), f.read()
        except OSError:
            continue


class SSHHost:
    """One sshd on 127.0.0.1 serving the given users; `alias(user)` names it in ssh_config."""

    def __init__(self, users=(("fjtest", "/bin/bash", True, False),), prefix="fabjupyter-tests-", netns=None, start=True,
                 log_level="VERBOSE", inside=None, env=None, otp=False, cert=False):
        """users: (name, login shell, Jupyter on the PATH sshd gives, uid 0) for each account.
        netns: (name, index) to run sshd in its own network namespace at 10.231.INDEX.2:22, with its
        own loopback (its Jupyter can have 8888 too), reached over a veth pair from this one.
        log_level: sshd's LogLevel (DEBUG1 logs each channel and request, for counting round trips).
        inside: (another SSHHost with a netns, port): run in that host's namespace on its own
        loopback, 127.0.0.1:PORT there, which nothing outside the namespace can reach.
        env: {NAME: value} that sshd sets in every session of every account (SetEnv), as a site's
        login environment would (SLURM_CONF on a cluster's login node).
        otp: a two-factor host: publickey, then keyboard-interactive through PAM's
        pam_google_authenticator (the server asks "Verification code:"); every account gets a TOTP
        secret (otp_code() gives its current code, otp_accepted() counts its completed logins).
        sshd runs as a copy named sshd-otp-PID-N (this host's own), so PAM reads
        /etc/pam.d/sshd-otp-PID-N (written here, removed by close()) and the system's sshd service
        is untouched; system_files() lists what it wrote outside its directory.
        cert: a host that accepts user certificates of a test CA only (TrustedUserCAKeys,
        AuthorizedKeysFile none): every account gets its own key, certified for its name, with
        KEY-cert.pub beside it, and ssh_config names that key.
        With otp or cert, sshd gives every account Jupyter's PATH (SetEnv) unless it was added with
        jupyter_on_path=False or a path of its own, so accounts added after start() have it too."""
        self.log_level = log_level
        self.otp, self.cert = otp, cert
        self.sshd = SSHD
        self.env = dict(env or {})
        if os.geteuid() != 0:
            raise RuntimeError("the SSH test host needs root (it creates accounts and runs sshd)")
        self.base = Path(tempfile.mkdtemp(prefix=prefix))
        self.base.chmod(0o755)
        if netns:
            netns = (in_slot(netns[0]), netns[1])
        self.netns = netns[0] if netns else None
        self.owns_netns = bool(netns)
        if inside:
            self.netns, self.address, self.port = inside[0].netns, "127.0.0.1", inside[1]
        elif netns:
            self.address, self.port = f"{subnet(netns[1])}.2", 22
        else:
            self.address, self.port = "127.0.0.1", free_port()
        self.proc = None
        self.users = {}
        try:
            if netns and not inside:
                self._make_netns(*netns)
            self._keys()
            if otp:
                self._otp_sshd()
            if cert:
                self._ca()
            for name, shell, on_path, uid0, *path in users:
                self.add_user(name, shell, on_path, uid0=uid0, path=path[0] if path else None)
            self._configure()
            if start:
                self.start()
        except BaseException:
            self.close()
            raise

    def _make_netns(self, name, index):
        subprocess.run(["ip", "netns", "del", name], capture_output=True)  # left by a crashed run
        outside, inside = in_slot(f"fjv{index}"), in_slot(f"fjp{index}")
        net = subnet(index)
        subprocess.run(["ip", "link", "del", outside], capture_output=True)
        for cmd in (
            ["ip", "netns", "add", name],
            ["ip", "link", "add", outside, "type", "veth", "peer", "name", inside],
            ["ip", "link", "set", inside, "netns", name],
            ["ip", "addr", "add", f"{net}.1/30", "dev", outside],
            ["ip", "link", "set", outside, "up"],
            ["ip", "netns", "exec", name, "ip", "addr", "add", f"{net}.2/30", "dev", inside],
            ["ip", "netns", "exec", name, "ip", "link", "set", inside, "up"],
            ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
        ):
            _run(*cmd)

    # --- set-up -------------------------------------------------------------------------
    def _keys(self):
        self.client_key = self.base / "client_key"
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fabjupyter-test-client", "-f", str(self.client_key))
        self.host_key = self.base / "ssh_host_ed25519_key"
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fabjupyter-test-host", "-f", str(self.host_key))
        self.keys_dir = self.base / "authorized_keys"
        self.keys_dir.mkdir(mode=0o755)
        self.keys_dir.chmod(0o755)
        public = (self.base / "client_key.pub").read_text().split()
        self.known_hosts = self.base / "known_hosts"
        host_public = (self.base / "ssh_host_ed25519_key.pub").read_text().split()
        name = self.address if self.port == 22 else f"[{self.address}]:{self.port}"
        self.known_hosts.write_text(f"{name} {host_public[0]} {host_public[1]}\n")
        self._client_public = f"{public[0]} {public[1]}\n"

    def add_user(self, alias, shell="/bin/bash", jupyter_on_path=True, uid0=False, path=None):
        """A fresh account (removed first if a crashed run left it) with its home in self.base.
        alias: the ssh_config Host and the key in self.users; the account's name is this run's
        (in_slot(alias)), the same in slot 0."""
        name = in_slot(alias)
        home = self.base / "home" / alias
        home.parent.mkdir(mode=0o755, exist_ok=True)
        subprocess.run(["userdel", "-f", name], capture_output=True)
        cmd = ["useradd", "-M", "-d", str(home), "-s", shell]
        if uid0:
            cmd += ["-o", "-u", "0", "-g", "0"]
        else:
            cmd += ["-U"]
        _run(*cmd, name)
        _run("usermod", "-p", "*", name)  # not locked: sshd without PAM refuses locked accounts
        info = pwd.getpwnam(name)
        home.mkdir(mode=0o700)
        os.chown(home, info.pw_uid, info.pw_gid)
        keys = self.keys_dir / name
        keys.write_text(self._client_public)
        keys.chmod(0o644)
        user = User(name, home, info.pw_uid, shell, jupyter_on_path, path)
        if self.otp:
            user.otp_secret = self._otp_secret(home, info)
        if self.cert:
            user.identity = self._certified_key(alias, name)
        self.users[alias] = user
        if (self.otp or self.cert) and getattr(self, "ssh_config", None):  # added after set-up
            if not jupyter_on_path or path:
                raise ValueError("accounts added after start() get Jupyter's PATH: add this one in users=")
            self.write_ssh_config()
        return user

    # --- two-factor (otp=True) ------------------------------------------------------------
    PAM_OTP_TEXT = (
        "# fabjupyter tests: the two-factor test sshd (a copy of sshd under this file's name)\n"
        "auth required pam_google_authenticator.so\n"
        "account required pam_permit.so\n"
        "session required pam_permit.so\n"
    )
    _otp_serial = 0

    def _otp_sshd(self):
        """sshd under a name of this host's own (OpenSSH takes the PAM service from its program
        name), and that service's PAM file: one per host, so that closing one host (or another
        run's) never takes the file from under a host still running."""
        SSHHost._otp_serial += 1
        service = f"sshd-otp-{os.getpid()}-{SSHHost._otp_serial}"
        self.sshd = str(self.base / service)
        shutil.copy2(SSHD, self.sshd)
        self.pam_otp = Path("/etc/pam.d") / service
        tmp = self.pam_otp.with_name(f".{service}.tmp")
        tmp.write_text(self.PAM_OTP_TEXT)
        tmp.chmod(0o644)
        tmp.replace(self.pam_otp)

    def system_files(self):
        """The files outside self.base that this host made (PAM's service file): close() removes them."""
        return [p for p in [getattr(self, "pam_otp", None)] if p is not None]

    def _otp_secret(self, home, info):
        secret = base64.b32encode(os.urandom(10)).decode("ascii")
        path = home / ".google_authenticator"
        path.write_text(f'{secret}\n" TOTP_AUTH\n" DISALLOW_REUSE\n')
        os.chown(path, info.pw_uid, info.pw_gid)
        path.chmod(0o400)
        return secret

    def otp_code(self, alias, at=None):
        """The account's TOTP code for the 30 s window of AT (seconds since the epoch; now by
        default). The server takes the windows next to the current one too (its WINDOW_SIZE is 3),
        and DISALLOW_REUSE refuses a window's code once it has been used: a second login in the same
        window can use otp_code(alias, time.time() + 30)."""
        args = ["oathtool", "--totp", "-b", self.users[alias].otp_secret]
        if at is not None:
            args += ["-N", f"@{int(at)}"]
        return _run(*args).stdout.strip()

    def otp_wrong_code(self, alias):
        """Six digits the server refuses now: none of the codes of the windows around this one."""
        now = time.time()
        valid = {self.otp_code(alias, now + 30 * k) for k in range(-3, 4)}
        return next(c for c in ("000000", "111111", "123456", "999999") if c not in valid)

    def otp_accepted(self, alias):
        """How many times the account completed a login (publickey, then the code) on this sshd."""
        name = self.users[alias].name
        return self.sshd_log.read_text(errors="replace").count(f"Accepted keyboard-interactive/pam for {name} ")

    # --- user certificates (cert=True) ----------------------------------------------------
    def _ca(self):
        self.ca_key = self.base / "user_ca"
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fabjupyter-test-user-ca", "-f", str(self.ca_key))
        self.user_keys = self.base / "user_keys"
        self.user_keys.mkdir(mode=0o700)

    def _certified_key(self, alias, name):
        """The account's key (user_keys/ALIAS) and its certificate for principal NAME beside it
        (user_keys/ALIAS-cert.pub, where OpenSSH and paramiko look for it)."""
        key = self.user_keys / alias
        for path in (key, Path(f"{key}.pub"), Path(f"{key}-cert.pub")):
            path.unlink(missing_ok=True)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"fabjupyter-test-{alias}", "-f", str(key))
        _run("ssh-keygen", "-q", "-s", str(self.ca_key), "-I", f"fabjupyter-test-{alias}", "-n", name, "-V", "-5m:+1d", f"{key}.pub")
        return key

    def accepted_publickey(self, alias):
        """How many times the account's key (or certificate) was accepted by this sshd (with otp,
        the first of the two steps: sshd logs it as "Partial publickey")."""
        name = self.users[alias].name
        text = self.sshd_log.read_text(errors="replace")
        return text.count(f"Accepted publickey for {name} ") + text.count(f"Partial publickey for {name} ")

    def _configure(self):
        os.makedirs("/run/sshd", exist_ok=True)
        lines = [
            f"Port {self.port}",
            f"ListenAddress {self.address}",
            f"HostKey {self.host_key}",
            f"PidFile {self.base / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.keys_dir}/%u" if not self.cert else "AuthorizedKeysFile none",
            "UsePAM no" if not self.otp else "UsePAM yes",
            "StrictModes no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no" if not self.otp else "KbdInteractiveAuthentication yes",
            "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password",
            "Subsystem sftp internal-sftp",
            f"LogLevel {self.log_level}",
            "MaxStartups 100",
            "MaxSessions 100",
        ]
        if self.otp:
            lines.append("AuthenticationMethods publickey,keyboard-interactive")
        if self.cert:
            lines.append(f"TrustedUserCAKeys {self.ca_key}.pub")
        # sshd takes the first SetEnv line only, and a Match block's replaces the global one:
        # every line carries self.env
        extra = "".join(f" {name}={value}" for name, value in self.env.items())
        if self.otp or self.cert:  # accounts added later get Jupyter's PATH too
            lines.append(f"SetEnv PATH={JUPYTER_VENV}/bin:{STANDARD_PATH}{extra}")
        elif extra:
            lines.append(f"SetEnv{extra}")
        for user in self.users.values():
            if (self.otp or self.cert) and not user.path and not user.jupyter_on_path:
                lines += [f"Match User {user.name}", f"    SetEnv PATH={STANDARD_PATH}{extra}"]
            elif user.path:
                lines += [f"Match User {user.name}", f"    SetEnv PATH={user.path}{extra}"]
            elif user.jupyter_on_path:
                lines += [f"Match User {user.name}", f"    SetEnv PATH={JUPYTER_VENV}/bin:{STANDARD_PATH}{extra}"]
        self.sshd_config = self.base / "sshd_config"
        self.sshd_config.write_text("\n".join(lines) + "\n")
        _run(self.sshd, "-t", "-f", str(self.sshd_config))
        self.sshd_log = self.base / "sshd.log"
        self.ssh_config = self.base / "ssh_config"
        self.write_ssh_config()

    def start(self):
        """Start sshd (again, after stop())."""
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.proc = subprocess.Popen(
            [*prefix, self.sshd, "-D", "-e", "-f", str(self.sshd_config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.sshd_log, "ab"),
        )
        if self.netns and self.address == "127.0.0.1":  # only reachable from inside
            deadline = time.monotonic() + 10
            while "Server listening" not in self.sshd_log.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
        else:
            wait_port(self.port, host=self.address)

    def session_pids(self):
        """This sshd's per-connection processes (its descendants named sshd or sshd-session), and
        no other run's: found by parent pid, not by a name pattern."""
        parents, names = {}, {}
        for pid, stat in proc_files("stat"):
            try:
                text = stat.decode(errors="replace")
                parents[pid] = int(text.rsplit(")", 1)[1].split()[1])
                names[pid] = text[text.index("(") + 1 : text.rindex(")")]
            except (ValueError, IndexError):
                continue
        found = []
        for pid in parents:
            p = parents.get(pid)
            while p and p != 1:
                if self.proc and p == self.proc.pid:
                    if names[pid].startswith("sshd"):
                        found.append(pid)
                    break
                p = parents.get(p)
        return found

    def drop_everything(self):
        """sshd goes away completely: its listener stopped and every session of its killed (as a
        host that reboots or a network that drops); start() brings the listener back."""
        sessions = self.session_pids()
        assert sessions, "no session to drop"
        self.stop()
        for pid in sessions:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self):
        """Stop sshd: the host becomes unreachable (connection refused)."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def write_ssh_config(self, extra=""):
        blocks = []
        for alias, user in self.users.items():
            blocks.append(
                "\n".join(
                    [
                        f"Host {alias}",
                        f"    HostName {self.address}",
                        f"    Port {self.port}",
                        f"    User {user.name}",
                        f"    IdentityFile {user.identity or self.client_key}",
                        "    IdentitiesOnly yes",
                        f"    UserKnownHostsFile {self.known_hosts}",
                        "    StrictHostKeyChecking yes",
                    ]
                )
            )
        self.ssh_config.write_text("\n\n".join(blocks) + "\n" + extra)

    # --- use ----------------------------------------------------------------------------
    def as_user(self, name, script, check=True, input=None):
        """Run a shell script as the test user directly (not through sshd): for checks and set-up."""
        user = self.users[name]
        env = {"HOME": str(user.home), "PATH": f"{JUPYTER_VENV}/bin:{STANDARD_PATH}", "USER": user.name, "LANG": "C.UTF-8"}
        cmd = ["sh", "-c", script] if user.uid == 0 else ["setpriv", f"--reuid={user.uid}", f"--regid={user.uid}", "--init-groups", "sh", "-c", script]
        return subprocess.run(cmd, cwd=user.home, env=env, capture_output=True, text=True, check=check, input=input)

    def processes(self, name=None):
        """pids of processes started for test users (found by their HOME), excluding sshd itself."""
        homes = [str(u.home) for alias, u in self.users.items() if name in (None, alias)]
        found = []
        for pid, environ in proc_files("environ"):
            if pid == os.getpid():
                continue
            for item in environ.split(b"\0"):
                if item.startswith(b"HOME=") and item[5:].decode(errors="replace") in homes:
                    found.append(pid)
                    break
        return found

    def kill_user_processes(self, name=None):
        kill_pids(lambda: self.processes(name), timeout=5.0, survivors_fail=False)

    def reset_user(self, name):
        """Back to a fresh account: no processes, no files but the empty home."""
        self.kill_user_processes(name)
        user = self.users[name]
        for child in user.home.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    def close(self):
        try:
            self.kill_user_processes()
        finally:
            self.stop()
            for user in self.users.values():
                subprocess.run(["userdel", "-f", user.name], capture_output=True)
            if self.netns and self.owns_netns:
                subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
            for path in self.system_files():
                path.unlink(missing_ok=True)
            shutil.rmtree(self.base, ignore_errors=True)
