"""Issue 15: one authentication for every host `ssh HOST` reaches. A two-factor login node
(publickey, then a one-time code asked by the server: SSHHost(otp=True)), the user's own
ControlMaster, and user certificates (SSHHost(cert=True), no authorized_keys at all).

The two-factor tests run the real `fab` on a terminal of its own (tests/terminal.py), as a user
does: the server's prompt must appear there and nowhere else, once per login, and the sshd's log
says how many logins there were (otp_accepted). Each test gets a fresh account, so a code it types
was never used before (the server refuses a code twice: DISALLOW_REUSE), and its own
XDG_RUNTIME_DIR (where the tool keeps its control sockets with `multiplex: true`)."""

import itertools
import json
import os
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

import pytest

from tasks.ssh.master import MULTIPLEX_PERSIST, RUN_PERSIST

from .conftest import FAB, ROOT, Fab
from .jupyter_http import login_and_list
from .sshhost import SSHHost, control_master_pid, end_control_master, free_port
from .terminal import Terminal
from .test_safety import digests

PROMPT = "Verification code:"
PASSWORD = "two factors"
URL = r"Jupyter is at (\S+)"
MULTIPLEX = "defaults:\n  multiplex: true\n"

_serial = itertools.count(1)


class AuthFab(Fab):
    """Fab with its own XDG_RUNTIME_DIR, an ssh_config that can be swapped (self.config), runs on
    a terminal, fresh one-time codes, and a teardown that also ends the ssh masters left."""

    def __init__(self, sshhost, user, hosts_file):
        super().__init__(sshhost, user, hosts_file)
        self.config = sshhost.ssh_config
        # short: the tool's control sockets go under it, and a Unix socket's path has ~100 bytes
        self.runtime = Path(tempfile.mkdtemp(prefix="fjrun-", dir="/tmp"))
        self.runtime.chmod(0o700)
        self.started = time.time()
        self.terminals = []
        self.used_steps = set()
        self.extra_sockets = []  # control sockets of the test's own (the user's ControlPath)

    def env(self):
        return dict(super().env(), XDG_RUNTIME_DIR=str(self.runtime))

    def args(self, *args, host=None):
        cmd = super().args(*args, host=host)
        cmd[cmd.index("-S") + 1] = str(self.config)
        return cmd

    def terminal(self, *args, stdin_text=None, stdout_file=None):
        """`fab -S CONFIG -H USER ARGS...` on a terminal of its own."""
        term = Terminal(self.args(*args), env=self.env(), cwd=ROOT, stdin_text=stdin_text, stdout_file=stdout_file)
        self.terminals.append(term)
        return term

    def setup_on_terminal(self):
        return self.terminal("setup", "--password-stdin", stdin_text=PASSWORD + "\n")

    def code(self):
        """A code the server takes now and has not been given yet in this test: the current
        window's, else the next one's (it takes one window either side), else wait for a window."""
        while True:
            step = int(time.time() // 30)
            for s in (step, step + 1):
                if s not in self.used_steps:
                    self.used_steps.add(s)
                    return self.sshhost.otp_code(self.user, s * 30 + 15)
            time.sleep(30 - time.time() % 30 + 0.5)

    def answer(self, term, timeout=60):
        """Wait for the server's prompt on TERM and type a good code; returns the code."""
        term.expect(PROMPT, timeout)
        code = self.code()
        term.type(code)
        return code

    def shown(self, term):
        """What TERM showed, and this account's lines of the sshd log: for failure messages."""
        name = self.sshhost.users[self.user].name
        log = [line for line in self.sshhost.sshd_log.read_text(errors="replace").splitlines() if name in line]
        return term.output + "\n--- sshd log, this account ---\n" + "\n".join(log[-30:])

    def control_sockets(self):
        """The tool's control sockets made in this test: in its private directory, wherever the
        tool put it ($XDG_RUNTIME_DIR/fabjupyter/ssh, ~/.cache/fabjupyter/ssh or
        /tmp/fabjupyter-ssh-UID). In the shared ones, only those whose master runs with this
        test's environment (another test run's, or the user's, are left alone)."""
        own = self.runtime / "fabjupyter"
        shared = [Path.home() / ".cache" / "fabjupyter", Path(f"/tmp/fabjupyter-ssh-{os.getuid()}")]
        found = []
        for top in [own, *shared]:
            if not top.is_dir():
                continue
            for path in top.rglob("*"):
                try:
                    st = path.lstat()
                except OSError:
                    continue
                if stat.S_ISSOCK(st.st_mode) and (top == own or (st.st_ctime >= self.started - 1 and self._ours(path))):
                    found.append(path)
        return found

    def _ours(self, sock):
        pid = control_master_pid(sock)
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if pid else []
        except OSError:
            return False
        return f"XDG_RUNTIME_DIR={self.runtime}".encode() in environ

    def cleanup(self):
        try:
            for term in self.terminals:
                term.close()
            super().cleanup()
        finally:
            for sock in self.control_sockets() + self.extra_sockets:
                end_control_master(sock)
            shutil.rmtree(self.runtime, ignore_errors=True)


# --- fixtures ------------------------------------------------------------------------------
def left_behind(host, names):
    """What HOST left on this machine after close(): its system files (PAM's), the accounts NAMES
    in /etc/passwd and /etc/group, its network namespace."""
    left = [str(path) for path in host.system_files() if path.exists()]
    for table in ("/etc/passwd", "/etc/group"):
        entries = {line.split(":", 1)[0] for line in Path(table).read_text().splitlines()}
        left += [f"{table}: {name}" for name in names if name in entries]
    if host.netns and host.owns_netns:
        spaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
        left += [f"network namespace {host.netns}"] if host.netns in spaces else []
    return left


def closed_clean(host):
    """close() HOST, then fail if it left anything behind (left_behind)."""
    names = [user.name for user in host.users.values()]
    host.close()
    left = left_behind(host, names)
    assert not left, f"left behind: {left}"


@pytest.fixture(scope="module")
def otp_host():
    host = SSHHost(users=[], prefix="fabjupyter-otp-", otp=True)
    try:
        yield host
    finally:
        closed_clean(host)


def _fresh_account(host, prefix, tmp_path, cls=None):
    """AuthFab (or CLS, one of its kind) for an account added to HOST now; its processes ended
    afterwards."""
    alias = f"{prefix}{next(_serial)}"
    host.add_user(alias)
    fab = (cls or AuthFab)(host, alias, tmp_path / "hosts.yaml")
    try:
        yield fab
    finally:
        try:
            fab.cleanup()
        finally:
            host.kill_user_processes(alias)


@pytest.fixture
def otp_fab(otp_host, tmp_path):
    """`fab` against a fresh account of the two-factor host (no code of its used yet)."""
    yield from _fresh_account(otp_host, "fjotp", tmp_path)


@pytest.fixture(scope="module")
def cert_host():
    host = SSHHost(users=[], prefix="fabjupyter-cert-", cert=True)
    try:
        yield host
    finally:
        closed_clean(host)


@pytest.fixture(scope="module")
def jump_and_behind():
    """A jump host in a network namespace of its own (this side reaches it over a veth pair), and
    a certificate host on that namespace's own loopback: only the jump host reaches it. The jump
    sshd logs at DEBUG1, so that each forward it makes (direct-tcpip) is in its log."""
    jump = SSHHost(users=[("fjjump", "/bin/bash", False, False)], prefix="fabjupyter-jump-", netns=("fjjumpns", 27),
                   log_level="DEBUG1")
    try:
        behind = SSHHost(users=[], prefix="fabjupyter-behind-", cert=True, inside=(jump, free_port()))
        try:
            yield jump, behind
        finally:
            closed_clean(behind)
    finally:
        closed_clean(jump)


@pytest.fixture
def behind_fab(jump_and_behind, tmp_path):
    """`fab` against a fresh account of the certificate host only the jump host reaches."""
    yield from _fresh_account(jump_and_behind[1], "fjbeh", tmp_path)


@pytest.fixture
def cert_fab(cert_host, tmp_path):
    """`fab` against a fresh account of the certificate host (its key and certificate made now)."""
    yield from _fresh_account(cert_host, "fjcert", tmp_path)


@pytest.fixture
def wrong_key_fab(tmp_path):
    """`fab` with a key the server does not know, against an sshd that also takes passwords (an
    account whose password matches nothing): the key is refused, a password would be asked for."""
    host = SSHHost(users=[("fjpw", "/bin/bash", True, False)], prefix="fabjupyter-pw-", start=False)
    try:
        host.sshd_config.write_text(host.sshd_config.read_text().replace("PasswordAuthentication no", "PasswordAuthentication yes"))
        host.start()
        wrong = tmp_path / "wrong_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
        host.users["fjpw"].identity = wrong
        host.write_ssh_config()
        fab = AuthFab(host, "fjpw", tmp_path / "hosts.yaml")
        try:
            yield fab
        finally:
            fab.cleanup()
    finally:
        host.close()


@pytest.fixture
def own_fab(fab):
    """The session's key-only account (fjtest) with AuthFab's extras."""
    extra = AuthFab(fab.sshhost, fab.user, fab.hosts_file)
    try:
        yield extra
    finally:
        extra.cleanup()


def local_port_of(url):
    return urllib.parse.urlsplit(url).port


def refused(port, timeout=10.0):
    """Whether connecting to 127.0.0.1:PORT is refused (waiting up to TIMEOUT for it to be)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        except OSError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def argv_of(pid):
    """The command line of process PID, as one string ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid):
    """Whether PID runs (a zombie left for this machine's late-reaping PID 1 does not)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text.rsplit(")", 1)[1].split()[0] != "Z"


def gone_within(pid, seconds):
    """Seconds until PID ended, or None if it still runs after SECONDS."""
    start = time.monotonic()
    while alive(pid):
        if time.monotonic() - start > seconds:
            return None
        time.sleep(0.2)
    return time.monotonic() - start


def user_control_config(fab, *lines):
    """An ssh_config giving the test's host the user's own ControlMaster auto and ControlPath
    (cm-%C in a fresh directory), plus LINES; it becomes FAB's. Returns the directory."""
    cm_dir = Path(tempfile.mkdtemp(prefix="fjcm-", dir="/tmp"))
    cfg = cm_dir / "ssh_config"
    cfg.write_text(fab.sshhost.ssh_config.read_text() + f"\nHost {fab.user}\n  ControlMaster auto\n  ControlPath {cm_dir}/cm-%C\n"
                   + "".join(f"  {line}\n" for line in lines))
    fab.config = cfg
    return cm_dir


def end_user_masters(cm_dir):
    for sock in cm_dir.glob("cm-*"):
        end_control_master(sock)
    shutil.rmtree(cm_dir, ignore_errors=True)


def processes_naming(text):
    """pids of this machine's processes whose command line contains TEXT (not zombies)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        if text in argv_of(entry.name) and alive(entry.name):
            found.append(int(entry.name))
    return found


def echo_back(proc, line, timeout=20):
    """Send LINE to PROC (a remote `cat` through ssh) and read it back within TIMEOUT seconds."""
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    if not select.select([proc.stdout], [], [], timeout)[0]:
        return None
    return proc.stdout.readline().rstrip("\n")


# --- the test hosts themselves -------------------------------------------------------------
def test_otp_host_asks_for_a_code(otp_fab):
    """The two-factor sshd as plain OpenSSH meets it: the server's prompt on the terminal, the
    code from oathtool accepted (and not echoed), a wrong one refused."""
    h, alias = otp_fab.sshhost, otp_fab.user
    term = Terminal(["ssh", "-F", str(h.ssh_config), alias, "echo logged-in"])
    otp_fab.terminals.append(term)
    code = otp_fab.answer(term, 20)
    assert term.wait(20) == 0, term.output
    assert "logged-in" in term.output and code not in term.output
    assert h.otp_accepted(alias) == 1
    term = Terminal(["ssh", "-F", str(h.ssh_config), "-o", "NumberOfPasswordPrompts=1", alias, "true"])
    otp_fab.terminals.append(term)
    term.expect(PROMPT, 20)
    term.type(h.otp_wrong_code(alias))
    assert term.wait(20) == 255, term.output
    assert "Permission denied" in term.output
    assert h.otp_accepted(alias) == 1


def test_cert_host_takes_the_certificate_only(cert_fab, tmp_path):
    """The certificate sshd: the key with its certificate beside it logs in; the same key
    without the certificate does not (no authorized_keys anywhere)."""
    h, alias = cert_fab.sshhost, cert_fab.user
    r = subprocess.run(["ssh", "-F", str(h.ssh_config), "-o", "BatchMode=yes", alias, "id -un"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == h.users[alias].name
    bare = tmp_path / "bare_key"
    shutil.copy(h.users[alias].identity, bare)
    bare.chmod(0o600)
    cfg = tmp_path / "bare_config"
    cfg.write_text(h.ssh_config.read_text().replace(str(h.users[alias].identity), str(bare)))
    r = subprocess.run(["ssh", "-F", str(cfg), "-o", "BatchMode=yes", alias, "true"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 255 and "Permission denied" in r.stderr, r.stderr


# --- two-factor ----------------------------------------------------------------------------
def test_setup_and_tunnel_in_one_run_ask_once(otp_fab):
    fab = otp_fab
    term = fab.terminal("setup", "--password-stdin", "tunnel", stdin_text=PASSWORD + "\n")
    code = fab.answer(term, 60)
    url = term.expect(URL, 180).group(1)
    assert login_and_list(url, PASSWORD)[1] == 200
    assert term.count(PROMPT) == 1, term.output
    assert code not in term.output
    assert fab.sshhost.otp_accepted(fab.user) == 1
    term.interrupt()
    assert term.wait(30) in (0, 130), fab.shown(term)
    assert "tunnel closed" in term.output
    assert term.count(PROMPT) == 1, term.output
    assert "Traceback" not in term.output


def test_tunnel_alone_on_a_host_not_known_to_ask_asks_once(otp_fab):
    """`tunnel` by itself, on a host this machine does not yet know asks for a code: its forward
    starts on a guess at once, beside the login that finds out; the guess must not ask too (it
    would: two prompts at once, and a second code refused as reused). One prompt, one login."""
    fab = otp_fab
    term = fab.setup_on_terminal()
    fab.answer(term, 60)
    assert term.wait(180) == 0, fab.shown(term)
    remembered = fab.config_home / "fabjupyter" / "interactive-hosts.json"
    assert remembered.exists()
    remembered.unlink()  # as on a machine that never met this host
    term = fab.terminal("tunnel")
    fab.answer(term, 60)
    url = term.expect(URL, 120).group(1)
    assert login_and_list(url, PASSWORD)[1] == 200
    assert not term.shows_within(PROMPT, 3), term.output
    assert term.count(PROMPT) == 1, term.output
    assert fab.sshhost.otp_accepted(fab.user) == 2  # setup's, and the tunnel's
    term.interrupt()
    assert term.wait(30, fail_on=PROMPT) in (0, 130), fab.shown(term)


def test_multiplex_one_login_for_every_run(otp_fab):
    """multiplex: true: setup, status, tunnel and stop, four runs, one login and one prompt; the
    control socket sits in a private directory; a run with no terminal at all is served by the
    live master without asking."""
    fab = otp_fab
    fab.hosts(MULTIPLEX)
    term = fab.setup_on_terminal()
    fab.answer(term, 60)
    assert term.wait(180) == 0, fab.shown(term)
    assert term.count(PROMPT) == 1
    sockets = fab.control_sockets()
    assert sockets, "no control socket of the tool's after setup"
    for sock in sockets:
        parent = sock.parent.stat()
        assert stat.S_IMODE(parent.st_mode) == 0o700, (sock.parent, oct(parent.st_mode))
        assert parent.st_uid == os.getuid()
        assert stat.S_IMODE(sock.lstat().st_mode) & 0o007 == 0, (sock, oct(sock.lstat().st_mode))

    term = fab.terminal("status")
    assert term.wait(120, fail_on=PROMPT) == 0, fab.shown(term)

    # no terminal at all (cron): the live master serves it, nothing is asked
    r = subprocess.run(fab.args("status", "--json"), cwd=ROOT, env=fab.env(), stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, start_new_session=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["running"] is True
    assert PROMPT not in r.stdout + r.stderr

    term = fab.terminal("tunnel")
    index, m = term.expect_any([PROMPT, URL], 120)
    assert index == 1, f"the tunnel asked again:\n{term.output}"
    assert login_and_list(m.group(1), PASSWORD)[1] == 200
    term.interrupt()
    assert term.wait(30, fail_on=PROMPT) in (0, 130), fab.shown(term)

    term = fab.terminal("stop")
    assert term.wait(120, fail_on=PROMPT) == 0, fab.shown(term)
    assert fab.sshhost.otp_accepted(fab.user) == 1


def test_status_json_stays_pure(otp_fab, tmp_path):
    """The prompt goes to the terminal, not into `status --json > OUT`, and the code typed is not
    shown."""
    fab = otp_fab
    term = fab.setup_on_terminal()
    fab.answer(term, 60)
    assert term.wait(180) == 0, fab.shown(term)
    out = tmp_path / "status.json"
    term = fab.terminal("status", "--json", stdout_file=out)
    code = fab.answer(term, 60)
    assert term.wait(120) == 0, fab.shown(term)
    assert PROMPT in term.output and code not in term.output
    lines = out.read_text().splitlines()
    assert len(lines) == 1, lines
    assert isinstance(json.loads(lines[0]), dict)


@pytest.mark.parametrize("multiplex", [False, True], ids=["paramiko", "multiplex"])
def test_no_terminal_fails_with_one_line(otp_fab, multiplex):
    """No controlling terminal (cron, CI) and a host that asks for a code: one clear line, no
    prompt, no traceback."""
    fab = otp_fab
    if multiplex:
        fab.hosts(MULTIPLEX)
    r = subprocess.run(fab.args("status"), cwd=ROOT, env=fab.env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       start_new_session=True, timeout=120)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert fab.user in lines[0] and "interactive authentication" in lines[0] and "no terminal" in lines[0], lines[0]
    assert PROMPT not in r.stdout
    assert fab.sshhost.otp_accepted(fab.user) == 0


@pytest.mark.parametrize("multiplex", [False, True], ids=["paramiko", "multiplex"])
def test_wrong_code_asks_once_and_changes_nothing(otp_fab, multiplex):
    fab = otp_fab
    if multiplex:
        fab.hosts(MULTIPLEX)
    term = fab.setup_on_terminal()
    term.expect(PROMPT, 60)
    term.type(fab.sshhost.otp_wrong_code(fab.user))
    assert not term.shows_within(PROMPT, 5), f"asked again:\n{term.output}"
    assert term.wait(60, fail_on=PROMPT) == 1, fab.shown(term)
    assert term.count(PROMPT) == 1
    assert "not accept" in term.output
    assert "Traceback" not in term.output
    assert not (fab.home / ".fabjupyter").exists()
    assert fab.sshhost.otp_accepted(fab.user) == 0


# --- the user's own ControlMaster ----------------------------------------------------------
@pytest.mark.parametrize("premade", [False, True], ids=["first-run-makes-it", "running-before"])
def test_users_control_master_survives_the_tunnel(own_fab, premade):
    """ssh_config with ControlMaster auto / ControlPersist: the tunnel works through it, and when it
    ends the master still runs and nothing listens on the tunnel's port any more. A session of the
    user's own on that master, open before and through all the runs, is still there after."""
    fab = own_fab
    cm_dir = user_control_config(fab, "ControlPersist 60")
    cfg = fab.config
    check = ["ssh", "-F", str(cfg), "-O", "check", fab.user]
    accepted = f"Accepted publickey for {fab.sshhost.users[fab.user].name} "
    session = None
    try:
        if premade:
            subprocess.run(["ssh", "-F", str(cfg), "-o", "BatchMode=yes", fab.user, "true"], check=True, timeout=30)
            assert subprocess.run(check, capture_output=True, timeout=30).returncode == 0
            # and a session of the user's own on it, open all along
            session = subprocess.Popen(["ssh", "-F", str(cfg), "-o", "BatchMode=yes", fab.user, "cat"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            assert echo_back(session, "before") == "before"
        logins = fab.sshhost.sshd_log.read_text().count(accepted)
        fab.setup(password=PASSWORD)
        proc, url, out = fab.tunnel()
        assert url, out
        assert login_and_list(url, PASSWORD)[1] == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) in (0, 130), out
        r = subprocess.run(check, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, f"the master is gone: {r.stderr}"
        assert refused(local_port_of(url)), f"something still listens on the tunnel's port {local_port_of(url)}"
        assert fab.status()["running"] is True
        fab("stop")
        # setup, tunnel, status and stop: one login in all (the master's), none with a master before
        assert fab.sshhost.sshd_log.read_text().count(accepted) - logins == (0 if premade else 1)
        if session:  # the user's own session went on through all of it
            assert session.poll() is None, "the user's session on their master ended"
            assert echo_back(session, "after") == "after"
    finally:
        if session:
            session.kill()
            session.wait()
        subprocess.run(["ssh", "-F", str(cfg), "-O", "exit", fab.user], capture_output=True, timeout=30)
        end_user_masters(cm_dir)


def test_users_control_path_without_persist_is_for_this_run_only(own_fab):
    """ssh_config gives a ControlPath and no ControlPersist: the run starts a master there, uses it
    for everything (setup and status in one run: one login), and leaves none behind, as the user's
    first `ssh` would have."""
    fab = own_fab
    cm_dir = user_control_config(fab)
    accepted = f"Accepted publickey for {fab.sshhost.users[fab.user].name} "
    try:
        logins = fab.sshhost.sshd_log.read_text().count(accepted)
        r = fab("setup", "--password-stdin", "status", input=PASSWORD + "\n")
        assert "running" in r.stdout, r.stdout
        assert fab.sshhost.sshd_log.read_text().count(accepted) - logins == 1
        deadline = time.monotonic() + 10
        while processes_naming(str(cm_dir)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not processes_naming(str(cm_dir)), [argv_of(pid) for pid in processes_naming(str(cm_dir))]
        assert not [p for p in cm_dir.glob("cm-*") if p.is_socket()]
    finally:
        end_user_masters(cm_dir)


def test_multiplex_master_is_kept_ten_minutes(own_fab):
    """multiplex: true: the master outlives the run that started it, with ControlPersist=600 (the
    README's "10 minutes" is the value it runs with, seen in its own command line)."""
    fab = own_fab
    fab.hosts(MULTIPLEX)
    fab.setup(password=PASSWORD)
    sockets = fab.control_sockets()
    assert len(sockets) == 1, sockets
    master = control_master_pid(sockets[0])
    assert master, "no master after the run ended"
    assert MULTIPLEX_PERSIST == 600 and "ControlPersist=600" in argv_of(master).split(), argv_of(master)


def test_an_open_tunnel_counts_as_use(own_fab):
    """A master started with a short ControlPersist (the user's ControlPersist 3; `multiplex: true`
    starts it the same way, with 600) stays while a tunnel through it is open and idle far longer
    than that, and ends that long after the tunnel closed."""
    fab = own_fab
    cm_dir = user_control_config(fab, "ControlPersist 3")
    try:
        fab.setup(password=PASSWORD)
        proc, url, out = fab.tunnel()
        assert url, out
        sockets = list(cm_dir.glob("cm-*"))
        assert len(sockets) == 1, sockets
        master = control_master_pid(sockets[0])
        assert master and "ControlPersist=3" in argv_of(master).split(), argv_of(master)
        time.sleep(10)  # idle: nothing through the forward, more than three times the persist
        assert alive(master), "the master ended while the tunnel was open"
        assert login_and_list(url, PASSWORD)[1] == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) in (0, 130)
        took = gone_within(master, 3 + 15)
        assert took is not None, "the master still runs well past its ControlPersist after the tunnel closed"
    finally:
        end_user_masters(cm_dir)


def test_a_killed_runs_master_ends_by_itself(otp_fab):
    """A run killed outright (kill -9: no exit handler, no `ssh -O exit`) while its master serves
    a tunnel: the master, started for this run only, ends by itself RUN_PERSIST (30) s later."""
    fab = otp_fab
    term = fab.terminal("setup", "--password-stdin", "tunnel", stdin_text=PASSWORD + "\n")
    fab.answer(term, 60)
    url = term.expect(URL, 180).group(1)
    assert login_and_list(url, PASSWORD)[1] == 200
    sockets = fab.control_sockets()
    assert len(sockets) == 1, sockets
    master = control_master_pid(sockets[0])
    assert master and f"ControlPersist={RUN_PERSIST}" in argv_of(master).split(), argv_of(master)
    os.kill(term.pid, signal.SIGKILL)
    took = gone_within(master, RUN_PERSIST + 20)
    assert took is not None, f"the master still runs {RUN_PERSIST + 20} s after its run was killed: {argv_of(master)}"


def test_connection_failures_retry_without_asking(otp_fab):
    """The master drops and the host cannot be reached for a while (its sshd is down: connection
    refused): the tunnel keeps trying without asking; once the host is back it asks once and
    reconnects."""
    fab = otp_fab
    fab.hosts(MULTIPLEX)
    host = fab.sshhost
    term = fab.terminal("setup", "--password-stdin", "tunnel", stdin_text=PASSWORD + "\n")
    fab.answer(term, 60)
    url = term.expect(URL, 180).group(1)
    masters = [pid for pid in map(control_master_pid, fab.control_sockets()) if pid]
    assert masters
    host.stop()
    try:
        for pid in masters:
            os.kill(pid, signal.SIGTERM)
        term.expect(r"(?i)lost", 60)
        # the backoff's attempts in this time: 0.5, 1.5, 3.5, 7.5, 12.5 s; all refused
        assert not term.shows_within(PROMPT, 14), f"asked while the host could not be reached:\n{term.output}"
    finally:
        host.start()
    fab.answer(term, 60)
    term.expect(r"reconnected", 120)
    assert login_and_list(url, PASSWORD)[1] == 200
    assert term.count(PROMPT) == 2, term.output
    assert host.otp_accepted(fab.user) == 2
    term.interrupt()
    assert term.wait(30, fail_on=PROMPT) in (0, 130), fab.shown(term)


def test_hosts_of_a_group_ask_one_after_another(otp_fab, otp_host):
    """Two hosts of a group that both ask: one prompt, answered, then the other's; never two at once."""
    fab = otp_fab
    second = f"fjotp{next(_serial)}"
    otp_host.add_user(second)
    try:
        fab.hosts(f"hosts:\n  {fab.user}: {{}}\n  {second}: {{}}\ngroups:\n  pair: [{fab.user}, {second}]\n")
        names = {otp_host.users[alias].name: alias for alias in (fab.user, second)}
        term = Terminal([*FAB, "-S", str(fab.config), "status", "--group", "pair"], env=fab.env(), cwd=ROOT)
        fab.terminals.append(term)
        asked = []
        for _ in range(2):
            m = term.expect(r"\(([^@()\s]+)@[^)]*\)\s*" + PROMPT, 90)
            alias = names[m.group(1)]
            assert alias not in asked, term.output
            asked.append(alias)
            assert not term.shows_within(PROMPT, 4), f"another host asked while this one waited:\n{term.output}"
            term.type(otp_host.otp_code(alias))
        assert term.wait(120, fail_on=PROMPT) == 0, fab.shown(term)
        assert term.count(PROMPT) == 2, term.output
        assert [otp_host.otp_accepted(alias) for alias in (fab.user, second)] == [1, 1]
    finally:
        otp_host.kill_user_processes(second)


def test_no_secret_in_any_exec_on_the_openssh_path(otp_fab, tmp_path):
    """test_safety's record of every execve, on the OpenSSH path (a host that asks: a master, mux
    client sessions, `ssh -O forward`): `setup tunnel` on a terminal under strace -f, and the
    two-factor sshd under strace too. The password, its hash and digest, the one-time code and
    any Jupyter token are in no argument list on either side."""
    if not shutil.which("strace"):
        pytest.fail("strace is missing: .ci/setup installs it")
    fab = otp_fab
    traces = tmp_path / "strace"
    traces.mkdir()
    trace = ["strace", "--seccomp-bpf", "-f", "-e", "trace=execve", "-s", "100000"]
    server = subprocess.Popen([*trace, "-o", str(traces / "sshd"), "-p", str(fab.sshhost.proc.pid)], stderr=subprocess.PIPE,
                              text=True)
    try:
        said = server.stderr.readline()
        assert "attached" in said, said
        term = Terminal([*trace, "-qq", "-o", str(traces / "client"), *fab.args("setup", "--password-stdin", "tunnel")],
                        env=fab.env(), cwd=ROOT, stdin_text=PASSWORD + "\n")
        fab.terminals.append(term)
        code = fab.answer(term, 60)
        url = term.expect(URL, 180).group(1)
        assert login_and_list(url, PASSWORD)[1] == 200
        term.interrupt()
        assert term.wait(60) in (0, 130), fab.shown(term)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(20)
    client = [line for line in (traces / "client").read_text(errors="replace").splitlines() if "execve(" in line]
    execs = client + [line for line in (traces / "sshd").read_text(errors="replace").splitlines() if "execve(" in line]
    # the OpenSSH path was the one taken: a master, a mux client session, the forward added to it
    assert any('"ControlMaster=yes"' in line for line in client), client
    assert any('"ControlMaster=no"' in line and '"-O", "forward"' in line for line in client), client
    assert any("jupyter-lab" in line for line in execs)
    hashed, digest = digests(fab)
    tokens = [json.loads(path.read_text()).get("token") for path in fab.home.rglob("jpserver-*.json")]
    secrets = [PASSWORD, hashed, digest, *[t for t in tokens if t]]
    for secret in secrets:
        for line in execs:
            assert secret not in line, (secret, line)
    code_alone = re.compile(rf"(?<![0-9]){code}(?![0-9])")
    assert not [line for line in execs if code_alone.search(line)], code


# --- user certificates ---------------------------------------------------------------------
@pytest.mark.parametrize("multiplex", [False, True], ids=["paramiko", "multiplex"])
def test_certificate_beside_the_key(cert_fab, multiplex):
    """IdentityFile KEY with KEY-cert.pub beside it, and a host that takes certificates only."""
    fab = cert_fab
    if multiplex:
        fab.hosts(MULTIPLEX)
    fab.setup(password=PASSWORD)
    fab.status()  # one JSON line
    proc, url, out = fab.tunnel()
    assert url, out
    assert login_and_list(url, PASSWORD)[1] == 200
    name = fab.sshhost.users[fab.user].name
    assert f"Accepted publickey for {name} " in fab.sshhost.sshd_log.read_text()
    assert "-CERT " in next(line for line in fab.sshhost.sshd_log.read_text().splitlines() if f"Accepted publickey for {name} " in line)


# --- healing (slow: it waits for reconnections) ---------------------------------------------
def test_tunnel_heals_after_the_master_dies(otp_fab):
    """multiplex: true, a tunnel open: the master dies; the tunnel says so, asks once, reconnects
    with the new code. It dies again and the code is wrong: the tunnel ends with status 1, asking
    no more."""
    fab = otp_fab
    fab.hosts(MULTIPLEX)
    term = fab.terminal("setup", "--password-stdin", "tunnel", stdin_text=PASSWORD + "\n")
    first = fab.answer(term, 60)
    url = term.expect(URL, 180).group(1)
    assert login_and_list(url, PASSWORD)[1] == 200
    assert term.count(PROMPT) == 1

    def kill_master():
        pids = [pid for pid in map(control_master_pid, fab.control_sockets()) if pid]
        assert pids, "no master of the tool's is running"
        for pid in pids:
            os.kill(pid, signal.SIGTERM)

    kill_master()
    term.expect(r"(?i)lost", 60)
    term.expect(PROMPT, 60)
    second = fab.code()
    assert second != first
    term.type(second)
    term.expect(r"reconnected", 120)
    assert login_and_list(url, PASSWORD)[1] == 200
    assert term.count(PROMPT) == 2, term.output
    assert fab.sshhost.otp_accepted(fab.user) == 2

    kill_master()
    term.expect(PROMPT, 60)
    term.type(fab.sshhost.otp_wrong_code(fab.user))
    assert not term.shows_within(PROMPT, 10), f"asked again:\n{term.output}"
    assert term.wait(60, fail_on=PROMPT) == 1, fab.shown(term)
    after = term.output.split(PROMPT)[-1].lower()
    assert "not accept" in after and "the tunnel is closed" in after, after
    assert "Traceback" not in term.output
    assert term.count(PROMPT) == 3


@pytest.mark.parametrize("multiplex", [False, True], ids=["paramiko", "multiplex"])
def test_match_block_certificate_file_and_proxyjump(behind_fab, jump_and_behind, tmp_path, multiplex):
    """What ssh_config says applies on both paths: a `Match originalhost` block gives the host its
    address, account, key and a CertificateFile kept away from the key (so only that line finds
    it), and the way in is a ProxyJump through another sshd. The host listens on the loopback of
    the jump host's network namespace: a path that ignored ProxyJump would reach nothing."""
    fab = behind_fab
    jump, behind = jump_and_behind
    user = behind.users[fab.user]
    elsewhere = tmp_path / "certs" / "mine.pub"
    elsewhere.parent.mkdir()
    shutil.move(Path(f"{user.identity}-cert.pub"), elsewhere)
    config = tmp_path / "match_config"
    config.write_text(
        jump.ssh_config.read_text() + "\nMatch originalhost matched\n"
        f"  HostName {behind.address}\n  Port {behind.port}\n  User {user.name}\n"
        f"  IdentityFile {user.identity}\n  CertificateFile {elsewhere}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {behind.known_hosts}\n  StrictHostKeyChecking yes\n  ProxyJump fjjump\n"
    )
    fab.config = config
    if multiplex:
        fab.hosts(MULTIPLEX)
    # from here the host is not there at all; through the jump host it is
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((behind.address, behind.port), timeout=5).close()
    r = subprocess.run(["ssh", "-F", str(config), "-o", "BatchMode=yes", "-o", "ProxyJump=none", "-o", "ConnectTimeout=10",
                        "matched", "true"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 255 and "Connection refused" in r.stderr, r.stderr

    fab("setup", "--password-stdin", input=PASSWORD + "\n", host="matched")
    assert json.loads(fab("status", "--json", host="matched").stdout)["running"] is True
    proc, url, out = fab.tunnel(cmd=fab.args("tunnel", host="matched"))
    assert url, out
    assert login_and_list(url, PASSWORD)[1] == 200
    log = behind.sshd_log.read_text(errors="replace")
    accepted = [line for line in log.splitlines() if f"Accepted publickey for {user.name} " in line]
    assert accepted and all("-CERT " in line for line in accepted), accepted
    # every connection the host had came through the jump host: one forward of the jump sshd to
    # the host's address and port for each (the sshd's own log of the direct-tcpip requests)
    connections = len(re.findall(rf"^Connection from .* on {re.escape(behind.address)} port {behind.port} ", log, re.M))
    forwards = jump.sshd_log.read_text(errors="replace").count(f"target {behind.address} port {behind.port}")
    assert connections >= len(accepted) > 0
    assert forwards == connections, (forwards, connections)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) in (0, 130)


def test_a_regular_file_at_the_users_control_path_is_left_alone(own_fab):
    """ssh_config's ControlPath names a regular file (connecting to it is refused, as to a dead
    socket): the file is not the tool's to remove. It survives, and the run says why in one line."""
    fab = own_fab
    cm_dir = Path(tempfile.mkdtemp(prefix="fjcm-", dir="/tmp"))
    try:
        path = cm_dir / "cm-file"
        path.write_text("the user's notes\n")
        cfg = cm_dir / "ssh_config"
        cfg.write_text(fab.sshhost.ssh_config.read_text() + f"\nHost {fab.user}\n  ControlMaster auto\n  ControlPath {path}\n")
        fab.config = cfg
        r = fab("status", check=False)
        assert path.read_text() == "the user's notes\n"
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0] and "not a socket" in lines[0], r.stderr
    finally:
        if path.is_socket():  # a master started there after all
            end_control_master(path)
        shutil.rmtree(cm_dir, ignore_errors=True)


def test_wrong_key_where_passwords_are_taken_is_an_authentication_failure(wrong_key_fab):
    """A refused key on a server that would take a password: with no terminal (cron) the line
    says authentication failed (not "interactive authentication ... no terminal"), and the host
    is not remembered as one that asks; on a terminal, OpenSSH asks for the password, a wrong one
    fails, and the host is still not remembered (only a login that succeeded is)."""
    fab = wrong_key_fab
    remembered = fab.config_home / "fabjupyter" / "interactive-hosts.json"
    r = subprocess.run(fab.args("status"), cwd=ROOT, env=fab.env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       start_new_session=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "authentication failed" in lines[0] and "interactive authentication" not in lines[0], r.stderr
    assert not remembered.exists(), remembered.read_text()

    term = fab.terminal("status")
    term.expect("password:", 60)
    term.type("not the password")
    assert term.wait(60) == 1, term.output
    assert "Traceback" not in term.output
    assert not remembered.exists() or fab.user not in remembered.read_text(), remembered.read_text()
