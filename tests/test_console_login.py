"""A two-factor host without an OpenSSH master (as on Windows, whose OpenSSH has no
ControlMaster; here `control_master: no`, with an `ssh` first on the PATH that refuses to make or
use a master, and says so in its log): the code is asked once per run, on the terminal, by this
tool's own login, which carries the agent's sessions and the tunnel's forward, by port and by
Unix socket. Against the two-factor test sshd of test_auth.py."""

import os
import re
import signal
import subprocess

import pytest

from .conftest import ROOT
from .jupyter_http import login_and_list, run_code
from .test_auth import PASSWORD, PROMPT, URL, AuthFab, _fresh_account, otp_host  # noqa: F401 (a fixture)

NO_MASTER = "defaults:\n  control_master: no\n"

# an ssh that cannot multiplex, as OpenSSH for Windows: every other use is the real ssh's
FAKE_SSH = """#!/bin/sh
echo "$*" >> "$FJ_SSH_LOG"
for a in "$@"; do
    case $a in
        ControlMaster=yes|ControlMaster=auto|ControlMaster=autoask|-O|-M|-MM)
            echo "ControlMaster is not supported on this system" >&2; exit 255 ;;
    esac
done
exec /usr/bin/ssh "$@"
"""


class NoMasterFab(AuthFab):
    def __init__(self, sshhost, user, hosts_file):
        super().__init__(sshhost, user, hosts_file)
        self.bin = hosts_file.parent / "bin"
        self.bin.mkdir()
        (self.bin / "ssh").write_text(FAKE_SSH)
        (self.bin / "ssh").chmod(0o755)
        self.ssh_log = hosts_file.parent / "ssh.log"
        self.ssh_log.write_text("")
        self.hosts(NO_MASTER)

    def env(self):
        return dict(super().env(), PATH=f"{self.bin}:{os.environ['PATH']}", FJ_SSH_LOG=str(self.ssh_log))

    def masters_asked(self):
        """The ssh calls that asked for a master or a mux client (the fake ssh refused them)."""
        return [line for line in self.ssh_log.read_text().splitlines()
                if "ControlMaster=yes" in line or "ControlMaster=auto" in line or " -O " in f" {line} "]


@pytest.fixture
def nm_fab(otp_host, tmp_path):
    """NoMasterFab against a fresh account of the two-factor host (no code of its used yet)."""
    yield from _fresh_account(otp_host, "fjnm", tmp_path, NoMasterFab)


def our_ssh_children(fab):
    """ssh processes this test's fab started (their environment names its fake ssh's log)."""
    mine = f"FJ_SSH_LOG={fab.ssh_log}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                env = open(f"/proc/{entry}/environ", "rb").read().split(b"\0")
                comm = open(f"/proc/{entry}/comm").read().strip()
            except OSError:
                continue
            if mine in env and comm == "ssh":
                found.append(int(entry))
    return found


@pytest.mark.parametrize("tcp", [False, True], ids=["socket", "port"])
def test_setup_and_tunnel_in_one_run_ask_once_without_a_master(nm_fab, tcp):
    fab = nm_fab
    fab.hosts(NO_MASTER, tcp=tcp)
    term = fab.terminal("setup", "--password-stdin", "tunnel", stdin_text=PASSWORD + "\n")
    code = fab.answer(term, 60)
    url = term.expect(URL, 180).group(1)
    # a password login and a kernel through the forward this process carries
    assert login_and_list(url, PASSWORD)[1] == 200
    assert run_code(url, PASSWORD, "print(6 * 7)").strip() == "42"
    assert term.count(PROMPT) == 1 and code not in term.output, term.output
    assert fab.sshhost.otp_accepted(fab.user) == 1  # one login for setup, its sessions and the forward
    assert fab.masters_asked() == [], fab.masters_asked()
    assert our_ssh_children(fab) == []  # no ssh carries the forward: this process does
    term.interrupt()
    assert term.wait(30) in (0, 130), fab.shown(term)
    assert "tunnel closed" in term.output and "Traceback" not in term.output
    assert term.count(PROMPT) == 1, term.output


def test_a_lost_connection_asks_once_again_and_the_tunnel_heals(nm_fab):
    """The login carrying the tunnel is lost (its sshd session killed): the tunnel says so, logs
    in again asking for one new code, and forwards again on the same local port."""
    fab = nm_fab
    term = fab.terminal("setup", "--password-stdin", "tunnel", stdin_text=PASSWORD + "\n")
    fab.answer(term, 60)
    url = term.expect(URL, 180).group(1)
    assert login_and_list(url, PASSWORD)[1] == 200
    sessions = fab.sshhost.session_pids()
    assert sessions
    for pid in sessions:
        os.kill(pid, signal.SIGKILL)
    term.expect("connection lost", 60)
    fab.answer(term, 90)
    term.expect(r"reconnected; Jupyter is at " + re.escape(url), 120)
    assert login_and_list(url, PASSWORD)[1] == 200
    assert term.count(PROMPT) == 2 and fab.sshhost.otp_accepted(fab.user) == 2, fab.shown(term)
    term.interrupt()
    assert term.wait(30, fail_on=PROMPT) in (0, 130), fab.shown(term)
    assert fab.masters_asked() == []


def test_tunnel_alone_asks_once_and_the_next_run_again_once(nm_fab):
    """A host this machine has not met: the tunnel's guess (a plain ssh -L that asks nothing)
    fails, the login on the console asks once and carries the forward; the host is remembered,
    so the next run goes to the console login at once: one prompt each."""
    fab = nm_fab
    term = fab.setup_on_terminal()
    fab.answer(term, 60)
    assert term.wait(180) == 0, fab.shown(term)
    remembered = fab.config_home / "fabjupyter" / "interactive-hosts.json"
    assert remembered.exists()
    term = fab.terminal("tunnel")
    fab.answer(term, 60)
    url = term.expect(URL, 120).group(1)
    assert login_and_list(url, PASSWORD)[1] == 200
    assert not term.shows_within(PROMPT, 3), term.output
    assert term.count(PROMPT) == 1 and fab.sshhost.otp_accepted(fab.user) == 2
    term.interrupt()
    assert term.wait(30, fail_on=PROMPT) in (0, 130), fab.shown(term)
    assert fab.masters_asked() == []


def test_no_terminal_and_a_wrong_code_are_one_line(nm_fab):
    fab = nm_fab
    r = subprocess.run(fab.args("status"), cwd=ROOT, env=fab.env(), stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, start_new_session=True, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    [line] = r.stderr.strip().splitlines()
    assert "interactive authentication" in line and "no terminal" in line, line
    term = fab.setup_on_terminal()
    term.expect(PROMPT, 60)
    term.type(fab.sshhost.otp_wrong_code(fab.user))
    assert not term.shows_within(PROMPT, 5), f"asked again:\n{term.output}"
    assert term.wait(60, fail_on=PROMPT) == 1, fab.shown(term)
    assert term.count(PROMPT) == 1 and "not accept" in term.output and "Traceback" not in term.output
    assert not (fab.home / ".fabjupyter").exists()
    assert fab.sshhost.otp_accepted(fab.user) == 0
    assert fab.masters_asked() == []


def test_the_fake_ssh_refuses_a_master(nm_fab):
    """The fake ssh is what this file's tests rely on: it refuses ControlMaster as OpenSSH for
    Windows does, and passes anything else to the real ssh."""
    fab = nm_fab
    r = subprocess.run(["ssh", "-o", "ControlMaster=yes", "-o", "ControlPath=/tmp/x", "-N", "nohost"], env=fab.env(),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 255 and "not supported" in r.stderr
    assert fab.masters_asked()
    v = subprocess.run(["ssh", "-V"], env=fab.env(), capture_output=True, text=True, timeout=30)
    assert "OpenSSH" in v.stderr
