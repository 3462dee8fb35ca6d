"""Fixtures: one real sshd for the session, test accounts reset around every test, and helpers
that run the real `fab` command line against it."""

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .chromium import browser  # noqa: F401  (a fixture, for the browser and site tests)
from .sshhost import JUPYTER_VENV, SSHHost, free_port, kill_pids, proc_files

ROOT = Path(__file__).resolve().parent.parent
FAB = [sys.executable, "-m", "fabric"]

# A suite started in the background by a non-interactive shell (`nohup .ci/run &`) inherits
# SIGINT ignored, and so would every fab it runs: the tests that press Ctrl-C would then see it
# ignored, which no user at a terminal sees. Restored here, for this process and its children.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# this run's own (a second run at once, or one a crash left behind, has another)
NO_TMUX_BIN = Path(f"/tmp/fabjupyter-no-tmux-bin-{os.getpid()}")

# name, login shell, jupyter on the PATH that sshd gives, uid 0 (, a PATH of its own)
USERS = [
    ("fjtest", "/bin/bash", True, False),
    ("fjdash", "/bin/sh", False, False),
    ("fjroot", "/bin/bash", True, True),
    ("fjnotmux", "/bin/bash", True, False, f"{JUPYTER_VENV}/bin:{NO_TMUX_BIN}"),
    ("fjzsh", "/usr/bin/zsh", False, False),
    ("fjfish", "/usr/bin/fish", True, False),
    ("fjtcsh", "/usr/bin/tcsh", True, False),
]


def _no_tmux_bin():
    """A directory with every command of /usr/bin but tmux: a host where tmux is not installed."""
    shutil.rmtree(NO_TMUX_BIN, ignore_errors=True)
    NO_TMUX_BIN.mkdir(mode=0o755)
    for entry in os.scandir("/usr/bin"):
        if entry.name != "tmux":
            (NO_TMUX_BIN / entry.name).symlink_to(entry.path)


@pytest.fixture(scope="session")
def sshhost():
    if not Path(JUPYTER_VENV / "bin" / "jupyter-lab").exists():
        pytest.fail(f"JupyterLab for the test host is missing at {JUPYTER_VENV}: run .ci/setup first")
    _no_tmux_bin()
    h = SSHHost(users=USERS)
    try:
        yield h
    finally:
        h.close()
        shutil.rmtree(NO_TMUX_BIN, ignore_errors=True)


class Fab:
    """The `fab` command line, run from the repository root against the test host."""

    def __init__(self, sshhost, user, hosts_file):
        self.sshhost = sshhost
        self.user = user
        self.hosts_file = hosts_file
        # Jupyter's port for this test: a free one, not 8888 on the loopback that a second run of
        # the suite shares (and so every test also uses `port:`)
        self.port = free_port()
        self.hosts("")
        self.children = []

    @property
    def home(self):
        return self.sshhost.users[self.user].home

    @property
    def config_home(self):
        """This machine's XDG_CONFIG_HOME for the run (local certificate copies land here)."""
        return self.hosts_file.parent / "xdg-config"

    @property
    def state_home(self):
        """This machine's XDG_STATE_HOME for the run (background tunnels' records and logs)."""
        return self.hosts_file.parent / "xdg-state"

    def env(self):
        env = dict(os.environ, FABRIC_JUPYTER_HOSTS_FILE=str(self.hosts_file), XDG_CONFIG_HOME=str(self.config_home),
                   XDG_STATE_HOME=str(self.state_home))
        env.pop("JUPYTER_PORT", None)
        return env

    def args(self, *args, host=None):
        core = []
        while args and args[0].startswith("-"):  # fab's own options go before the task
            core, args = core + list(args[:2]), args[2:]
        return [*FAB, "-S", str(self.sshhost.ssh_config), *core, "-H", host or self.user, *args]

    def __call__(self, *args, input=None, check=True, timeout=240, host=None, ssh_config=True):
        cmd = self.args(*args, host=host)
        if not ssh_config:
            cmd = [*FAB, "-H", host or self.user, *args]
        r = subprocess.run(cmd, cwd=ROOT, env=self.env(), input=input, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{cmd} failed ({r.returncode}):\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        return r

    def setup(self, *args, password="correct horse", **kw):
        return self("setup", *args, "--password-stdin", input=password + "\n", **kw)

    def status(self):
        lines = self("status", "--json").stdout.strip().splitlines()
        assert len(lines) == 1, lines
        return json.loads(lines[0])

    def hosts(self, text, tcp=True):
        """Write hosts.yaml: the text, with this test's port as the default unless it sets one,
        and (TCP: most tests are about a port; the socket default has tests of its own, which say
        tcp=False) socket: false unless it says socket: itself."""
        if "defaults:\n" not in text:
            text = f"defaults:\n  port: {self.port}\n" + text
        elif not text.split("defaults:\n", 1)[1].startswith("  port:"):
            text = text.replace("defaults:\n", f"defaults:\n  port: {self.port}\n", 1)
        if tcp and "socket:" not in text:
            text = text.replace("defaults:\n", "defaults:\n  socket: false\n", 1)
        self.hosts_file.write_text(text)

    def as_user(self, script, check=True):
        return self.sshhost.as_user(self.user, script, check=check)

    def tunnel(self, *args, cmd=None, cwd=ROOT, env=None):
        """Start `fab tunnel` and return once it printed its URL (or ended)."""
        proc = subprocess.Popen(
            cmd or self.args("tunnel", *args),
            cwd=cwd,
            env=env or self.env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.children.append(proc)
        lines, found = [], queue.Queue()
        proc.output_lines = []  # everything it prints, for tests that watch it later

        def read():
            for line in proc.stdout:
                proc.output_lines.append(line)
                found.put(line)
            found.put("")

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                line = found.get(timeout=1)
            except queue.Empty:
                continue
            if not line:
                break
            lines.append(line)
            if "Jupyter is at " in line:
                url = line.split("Jupyter is at ", 1)[1].split()[0]
                return proc, url, "".join(lines)
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        return proc, None, "".join(lines) + proc.stderr.read()

    def keepers(self):
        """pids of the background tunnels this test's `fab` started (their XDG_STATE_HOME is its)."""
        mine = f"XDG_STATE_HOME={self.state_home}".encode()
        return [pid for pid, environ in proc_files("environ")
                if mine in environ.split(b"\0") and b".forwards.keeper" in _cmdline(pid)]

    def cleanup(self):
        for proc in self.children:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        kill_pids(self.keepers, survivors_fail=False)  # their ssh dies with them (its parent-death signal)


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _fab_fixture(sshhost, tmp_path, user):
    sshhost.reset_user(user)
    fab = Fab(sshhost, user, tmp_path / "hosts.yaml")
    try:
        yield fab
    finally:
        fab.cleanup()
        sshhost.reset_user(user)


@pytest.fixture
def fab(sshhost, tmp_path):
    """`fab` against the account `fjtest` (bash, Jupyter on its PATH), fresh for each test."""
    yield from _fab_fixture(sshhost, tmp_path, "fjtest")


@pytest.fixture
def fab_dash(sshhost, tmp_path):
    """`fab` against `fjdash`: login shell dash, no Jupyter on its PATH."""
    yield from _fab_fixture(sshhost, tmp_path, "fjdash")


@pytest.fixture
def fab_root(sshhost, tmp_path):
    """`fab` against `fjroot`: uid 0, as in a container."""
    yield from _fab_fixture(sshhost, tmp_path, "fjroot")


@pytest.fixture
def fab_notmux(sshhost, tmp_path):
    """`fab` against `fjnotmux`: a host without tmux."""
    yield from _fab_fixture(sshhost, tmp_path, "fjnotmux")


@pytest.fixture
def fab_zsh(sshhost, tmp_path):
    """`fab` against `fjzsh`: login shell zsh, no Jupyter on its PATH."""
    yield from _fab_fixture(sshhost, tmp_path, "fjzsh")


@pytest.fixture
def fab_fish(sshhost, tmp_path):
    """`fab` against `fjfish`: login shell fish."""
    yield from _fab_fixture(sshhost, tmp_path, "fjfish")


@pytest.fixture
def fab_tcsh(sshhost, tmp_path):
    """`fab` against `fjtcsh`: login shell tcsh."""
    yield from _fab_fixture(sshhost, tmp_path, "fjtcsh")


@pytest.fixture
def local_port():
    return free_port()
