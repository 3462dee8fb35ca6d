"""Mistakes a user can make: one line on stderr, non-zero exit, no traceback, nothing changed."""

import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time

import pytest

from .conftest import FAB, ROOT
from .jupyter_http import login_and_list
from .sshhost import JUPYTER_VENV


def one_line_error(r):
    assert r.returncode == 1, r.stdout
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def untouched(fab):
    assert not (fab.home / ".fabjupyter").exists()


def test_hosts_yaml_typo_stops_before_anything(fab):
    fab.hosts("defaults:\n  launcher: tmux\nhosts:\n  fjtest:\n    lancher: tmux\n")
    line = one_line_error(fab.setup(check=False))
    assert line == f"{fab.hosts_file}: hosts.fjtest: unknown key 'lancher' (did you mean launcher?)"
    untouched(fab)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("defaults:\n  port: [1\n", ":3: YAML syntax error"),
        ("defaults:\n  port: 99999\n", ": defaults.port: must be a port number 1-65535 (got 99999)"),
        ("defaults:\n  port: eighty\n", ": defaults.port: must be a port number 1-65535 (got 'eighty')"),
        ("defaults:\n  launcher: screen\n", ": defaults.launcher: must be one of nohup, tmux, slurm, sge, pbs (got 'screen')"),
        ("defaults:\n  mode: open\n", ": defaults.mode: must be one of ssh, public (got 'open')"),
        ("defaults:\n  socket: yes please\n", ": defaults.socket: must be true or false (got 'yes please')"),
        ("hosts:\n  fjtest:\n    root_dir: 12\n", ": hosts.fjtest.root_dir: must be a string (got int 12)"),
        ("hosts: [fjtest]\n", ": hosts: must be a mapping of keys to values (got list)"),
        ("hostz: {}\n", ": unknown key 'hostz' (did you mean hosts?)"),
    ],
)
def test_hosts_yaml_problems_name_file_and_key(fab, text, expected):
    fab.hosts(text, tcp=False)  # the text as given: its line numbers are asserted
    line = one_line_error(fab("status", check=False))
    assert line.startswith(str(fab.hosts_file) + expected), line
    untouched(fab)


def test_missing_hosts_file_named_by_the_variable(fab):
    fab.hosts_file.unlink()
    line = one_line_error(fab("status", check=False))
    assert line.startswith(f"{fab.hosts_file}: no such file")


@pytest.mark.parametrize(
    "args, expected",
    [
        (["setup", "--port", "http"], "--port: must be a port number 1-65535 (got 'http')"),
        (["setup", "--port", "0"], "--port: must be a port number 1-65535 (got 0)"),
        (["start", "--launcher", "screen"], "--launcher: must be one of nohup, tmux, slurm, sge, pbs (got 'screen')"),
        (["tunnel", "--local-port", "70000"], "--local-port: must be a port number 1-65535 (got 70000)"),
    ],
)
def test_bad_options(fab, args, expected):
    assert one_line_error(fab(*args, check=False, input="pw\n")) == expected
    untouched(fab)


def test_no_jupyter_on_the_host(fab_dash):
    """fjdash has no Jupyter on its PATH: the error says how to point at one; nothing is written."""
    line = one_line_error(fab_dash.setup(check=False))
    assert line.startswith("fjdash: no Jupyter found there; set `jupyter:`")
    untouched(fab_dash)
    fab_dash.hosts("hosts:\n  fjdash:\n    jupyter: /opt/nowhere/bin/jupyter lab\n")
    line = one_line_error(fab_dash.setup(check=False))
    assert line.startswith("fjdash: no Jupyter found there ('/opt/nowhere/bin/jupyter' not found)")
    untouched(fab_dash)


def test_activate_line_on_a_dash_login_shell(fab_dash, local_port):
    """`source` (a bash word) works in the activation line even where sh is dash."""
    fab_dash.hosts(f"hosts:\n  fjdash:\n    activate: source {JUPYTER_VENV}/bin/activate\n")
    fab_dash.setup()
    proc, url, out = fab_dash.tunnel("--local-port", str(local_port))
    assert url, out
    assert login_and_list(url, "correct horse")[1] == 200


def test_failing_activate_line(fab_dash):
    """One line that says what and what to do, then everything the activation said (a
    three-line error from it is not cut to its first line)."""
    fab_dash.hosts("hosts:\n  fjdash:\n    activate: conda activate nothing-here\n")
    r = fab_dash.setup(check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    first, *said = r.stderr.strip().splitlines()
    assert first == "fjdash: the activate line failed; fix `activate:` in hosts.yaml. It said:"
    assert said and all(line.startswith("    ") for line in said) and "conda" in "".join(said), r.stderr
    fab_dash.hosts("hosts:\n  fjdash:\n    activate: 'echo one >&2; echo two; echo three >&2; false'\n")
    r = fab_dash.setup(check=False)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[1:] == ["    one", "    two", "    three"], r.stderr
    untouched(fab_dash)


def test_jupyter_given_as_a_path(fab_dash):
    fab_dash.hosts(f"hosts:\n  fjdash:\n    jupyter: {JUPYTER_VENV}/bin/jupyter lab\n")
    r = fab_dash.setup()
    assert "JupyterLab" in r.stdout
    assert fab_dash.status()["running"]


def test_root_dir_that_is_a_file(fab):
    fab.as_user("echo x > notes")
    line = one_line_error(fab.setup("--root-dir", "notes", check=False))
    assert line == f"fjtest: root_dir {fab.home}/notes exists but is not a directory; choose another with --root-dir"
    untouched(fab)


def test_unreachable_host_is_quick_and_clear(fab):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    start = time.monotonic()
    r = fab("status", host=f"fjtest@127.0.0.1:{port}", check=False)
    line = one_line_error(r)
    assert line == f"127.0.0.1: connection refused by fjtest@127.0.0.1:{port}; is sshd running there, on that port?"
    assert time.monotonic() - start < 10


def test_silent_port_times_out_with_t(fab):
    """A port that accepts connections but never speaks SSH: -t bounds the wait."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    port = silent.getsockname()[1]
    try:
        start = time.monotonic()
        r = fab("-t", "2", "status", host=f"fjtest@127.0.0.1:{port}", check=False)
        line = one_line_error(r)
        assert line == f"127.0.0.1: no SSH answer from fjtest@127.0.0.1:{port} within 2 s; is that an SSH server? (-t SECONDS waits longer)"
        assert time.monotonic() - start < 6
    finally:
        silent.close()


def test_unknown_host_name(fab):
    line = one_line_error(fab("status", host="no-such-host.invalid", check=False))
    assert line.startswith("no-such-host.invalid: cannot resolve host name 'no-such-host.invalid'")


def test_authentication_failure(fab, tmp_path):
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    config = tmp_path / "ssh_config"
    h = fab.sshhost
    config.write_text(
        f"Host wrongkey\n  HostName 127.0.0.1\n  Port {h.port}\n  User fjtest\n  IdentityFile {key}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {h.known_hosts}\n"
    )
    r = subprocess.run(
        [*FAB, "-S", str(config), "-H", "wrongkey", "status"], cwd=ROOT, env=fab.env(), capture_output=True, text=True
    )
    line = one_line_error(r)
    assert line.startswith(f"wrongkey: authentication failed for fjtest@127.0.0.1:{h.port}")


def test_password_stdin_empty(fab):
    line = one_line_error(fab("setup", "--password-stdin", input="", check=False))
    assert line.startswith("--password-stdin: standard input gave no password")
    untouched(fab)


def test_no_terminal_and_no_password(fab):
    line = one_line_error(fab("setup", input="", check=False))
    assert line == "fjtest: a password is needed and there is no terminal to ask on; use --password-stdin"
    untouched(fab)


def run_in_pty(args, answers, env, timeout=60, interrupt_at=None):
    """Run `fab` on a terminal, typing each answer after the prompt that precedes it.
    Returns (exit code, everything it printed)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, *args], env)
    out = b""
    answered = 0  # how much of the output had been seen at the last answer
    answers = list(answers)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
                if out[answered:].rstrip().endswith(b":"):  # a new prompt
                    answered = len(out)
                    if answers:
                        os.write(fd, answers.pop(0).encode() + b"\n")
                    elif interrupt_at is not None:
                        os.kill(pid, signal.SIGINT)
                        interrupt_at = None
        else:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace")


def test_password_prompt_twice_on_a_terminal(fab):
    args = fab.args("password")[1:]
    code, out = run_in_pty(args, ["first one", "second one"], fab.env())
    assert code == 1 and "the two passwords differ; nothing was changed" in out and "Traceback" not in out
    untouched(fab)
    code, out = run_in_pty(args, [""], fab.env())
    assert code == 1 and "an empty password is not allowed" in out
    untouched(fab)
    code, out = run_in_pty(args, [], fab.env(), interrupt_at=0)
    assert code == 130 and "Traceback" not in out
    untouched(fab)
    code, out = run_in_pty(fab.args("setup")[1:], ["tty horse", "tty horse"], fab.env())
    assert code == 0, out
    assert "Jupyter started" in out and "tty horse" not in out


def test_tmux_missing_for_the_tmux_launcher(fab_notmux):
    line = one_line_error(fab_notmux.setup("--launcher", "tmux", check=False))
    assert line == "fjnotmux: tmux is not installed there; install it, or use --launcher nohup"
    untouched(fab_notmux)
    assert "Jupyter started" in fab_notmux.setup().stdout  # nohup needs nothing more


def test_read_only_home(fab):
    fab.home.chmod(0o555)
    try:
        line = one_line_error(fab.setup(check=False))
        assert line.startswith("fjtest: cannot write there (") and "Permission denied" in line
        assert "is the disk full or the home directory read-only?" in line
    finally:
        fab.home.chmod(0o700)
    untouched(fab)


def test_disk_full(fab):
    """The home directory on a full file system: a clear error, and no half-written file."""
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=64k,mode=0700,uid={fab.sshhost.users['fjtest'].uid}", "tmpfs", str(fab.home)], check=True)
    try:
        fab.as_user("mkdir .fabjupyter; head -c 1000000 /dev/zero > filler", check=False)
        line = one_line_error(fab.setup(check=False))
        assert line.startswith("fjtest: cannot write there (") and "is the disk full" in line
        assert "No space left on device" in line or "I/O error" in line  # dash's printf says the latter
        leftovers = [p.name for p in (fab.home / ".fabjupyter").rglob("*") if p.is_file()]
        assert all(not name.endswith(".tmp") for name in leftovers), leftovers
        assert not (fab.home / ".fabjupyter" / "run.sh").exists() or (fab.home / ".fabjupyter" / "run.sh").stat().st_size > 0
    finally:
        fab.sshhost.kill_user_processes("fjtest")
        subprocess.run(["umount", str(fab.home)], check=True)


def test_a_symlinked_jupyter_is_found_as_jupyter_finds_its_subcommands(fab_dash):
    """`jupyter` on the PATH as a symlink (~/bin/jupyter -> a venv's), nothing beside it: found,
    and JupyterLab runs from the directory of the real file, as `jupyter lab` would find it;
    the same for `jupyter: ~/bin/jupyter lab`."""
    fab_dash.as_user(f"mkdir bin && ln -s {JUPYTER_VENV}/bin/jupyter bin/jupyter")
    for setting in ("activate: export PATH=$HOME/bin:$PATH", "jupyter: ~/bin/jupyter lab"):
        fab_dash.hosts(f"hosts:\n  fjdash:\n    {setting}\n")
        r = fab_dash.setup()
        assert "JupyterLab 4." in r.stdout, r.stdout
        args = open(f"/proc/{fab_dash.status()['pid']}/cmdline", "rb").read().split(b"\0")
        assert str(JUPYTER_VENV / "bin" / "jupyter-lab").encode() in args[:3], (setting, args)
        fab_dash("stop")


def test_the_activated_environment_wins_over_the_path(fab):
    """An activate line whose environment holds only classic Notebook, while JupyterLab is
    elsewhere on the PATH: the activated environment's notebook runs, not that JupyterLab."""
    nb6 = JUPYTER_VENV.parent / "nb6"
    fab.hosts(f"hosts:\n  fjtest:\n    activate: . {nb6}/bin/activate\n")
    r = fab.setup()
    assert "Notebook 6.5" in r.stdout, r.stdout
    args = open(f"/proc/{fab.status()['pid']}/cmdline", "rb").read().split(b"\0")
    assert str(nb6 / "bin" / "jupyter-notebook").encode() in args[:3], args
    assert fab.status()["kind"] == "nb6"
    fab("stop")


@pytest.mark.parametrize("program", ["fab", "fabjupyter"])
@pytest.mark.parametrize("args", [["--help", "setup"], ["--list"]], ids=["help", "list"])
def test_output_into_a_closed_pipe_ends_quietly(program, args):
    """`fab --help setup | head -1`, a pager closed early: the reader is gone before anything is
    written (here: the pipe's read end is closed at once), and the run ends without a traceback."""
    cmd = [*FAB, *args] if program == "fab" else [sys.executable, "-c", "from tasks.cli import main; main()", *args]
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = subprocess.run(cmd, cwd=ROOT, stdout=write_end, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                           timeout=60)
    finally:
        os.close(write_end)
    assert "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr, r.stderr
    assert r.stderr == "", r.stderr


def test_a_tasks_output_into_a_closed_pipe_ends_quietly(fab):
    """`fab -H HOST list | head -0`: a task's own lines, on the real host, to a reader gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        r = subprocess.run(fab.args("list"), cwd=ROOT, env=fab.env(), stdout=write_end, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert r.stderr == "", r.stderr
