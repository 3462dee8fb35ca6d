"""What never happens: a secret in any program's argument list (every exec on both sides is
recorded, on success and on error paths), a value that reaches a shell running as code, and a
script cut off on its way to the host doing anything."""

import json
import os
import shutil
import signal
import subprocess

import pytest

from tasks.ops.password import hash_password
from tasks.protocol import agent_script

from .conftest import ROOT
from .sshhost import JUPYTER_VENV

PASSWORD = "needle-7f3a in argv"
OTHER = "second needle-91c2"


class ExecRecord:
    """strace of every execve: of the test sshd and all it forks (sessions, shells, the agent,
    Jupyter), and of each `fab` run with its children (the tunnel's ssh)."""

    def __init__(self, fab, tmp_path):
        self.fab, self.dir = fab, tmp_path / "strace"
        self.dir.mkdir()
        self.server = subprocess.Popen(
            ["strace", "--seccomp-bpf", "-f", "-e", "trace=execve", "-s", "100000",
             "-o", str(self.dir / "sshd"), "-p", str(fab.sshhost.proc.pid)],
            stderr=subprocess.PIPE, text=True,
        )
        said = self.server.stderr.readline()  # "strace: Process N attached", once it is
        assert "attached" in said, said
        self.runs = 0
        self.outputs = []

    def fab_run(self, *args, input=None):
        """fab ARGS under strace; returns the CompletedProcess."""
        self.runs += 1
        cmd = ["strace", "--seccomp-bpf", "-f", "-qq", "-e", "trace=execve", "-s", "100000",
               "-o", str(self.dir / f"client-{self.runs}"), *self.fab.args(*args)]
        r = subprocess.run(cmd, cwd=ROOT, env=self.fab.env(), input=input, capture_output=True, text=True, timeout=240)
        self.outputs.append(r.stdout + r.stderr)
        return r

    def close(self):
        self.server.send_signal(signal.SIGINT)
        self.server.wait(20)

    def execs(self):
        """Every recorded execve line, both sides."""
        lines = []
        for path in self.dir.iterdir():
            lines += [line for line in path.read_text(errors="replace").splitlines() if "execve(" in line]
        return lines


@pytest.fixture
def record(fab, tmp_path):
    if not shutil.which("strace"):
        pytest.fail("strace is missing: .ci/setup installs it")
    rec = ExecRecord(fab, tmp_path)
    try:
        yield rec
    finally:
        rec.close()


def digests(fab):
    """The stored hash and its digest (the part that must never leave its file)."""
    text = (fab.home / ".fabjupyter/password/jupyter_server_config.json").read_text()
    hashed = text.split('"')[-2]
    assert hashed.startswith("argon2:$argon2id$")
    return hashed, hashed.split("$")[-1]


def test_no_secret_in_any_exec_or_output_on_success_and_error_paths(fab, record, local_port):
    r = record.fab_run("setup", "--password-stdin", input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    first = digests(fab)
    r = record.fab_run("setup", "--password-stdin", input=PASSWORD + "\n")  # same password: the salt round
    assert "nothing changed" in r.stdout, r.stdout
    r = record.fab_run("password", "--password-stdin", input=OTHER + "\n")  # a new one
    assert r.returncode == 0, r.stderr
    second = digests(fab)
    # error paths, after a password was read: no Jupyter there, a root_dir that is a file, public
    # mode on a host whose certificate step fails is not needed: the agent's errors all go one way
    fab.hosts("hosts:\n  fjtest:\n    jupyter: /nowhere/jupyter\n")
    r = record.fab_run("setup", "--password-stdin", input=OTHER + "x\n")
    assert r.returncode == 1 and "no Jupyter found there" in r.stderr, r.stderr
    fab.hosts("")
    fab.as_user("touch afile")
    r = record.fab_run("setup", "--password-stdin", "--root-dir", "afile", input=OTHER + "y\n")
    assert r.returncode == 1 and "not a directory" in r.stderr, r.stderr
    r = record.fab_run("restart")
    assert r.returncode == 0, r.stderr
    # the tunnel: its ssh is recorded on this side
    record.fab_run("status")
    execs = record.execs()
    assert any("sh\", \"-s\"" in line for line in execs), execs[:5]  # the agent was recorded
    assert any("jupyter-lab" in line for line in execs)  # and Jupyter's start
    secrets = [PASSWORD, OTHER, OTHER + "x", OTHER + "y", *first, *second]
    for secret in secrets:
        for line in execs:
            assert secret not in line, (secret, line)
        for out in record.outputs:
            assert secret not in out, (secret, out)
    # the digest only in its one 0600 file, nowhere else on either side (logs included)
    places = [*fab.home.rglob("*"), *fab.config_home.rglob("*"), fab.hosts_file, fab.sshhost.sshd_log]
    holder = fab.home / ".fabjupyter/password/jupyter_server_config.json"
    assert oct(holder.stat().st_mode & 0o777) == "0o600"
    for path in places:
        if path.is_file() and path != holder:
            data = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in data, (secret, path)


CUT_POINTS = 60


def replies(stdout):
    """The lines of an agent's output that the client would take as a reply or an event."""
    found = []
    for line in stdout.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and {"reply", "error", "event"} & set(message):
            found.append(message)
    return found


@pytest.mark.parametrize("shell", ["sh", "bash"])
@pytest.mark.parametrize("action", ["password", "setup"])
def test_a_script_cut_off_in_transit_runs_nothing(tmp_path, shell, action):
    """Every prefix of the agent script that lacks its last line, fed to the shell as the SSH
    session would, with a HOME of its own: nothing is written, nothing starts, nothing is said."""
    request = {"password_hash": hash_password("cut"), "timeout": 60}
    if action == "setup":
        request.update(launcher="nohup", port=8888)
    script = agent_script(action, request, settings_sh="FJ_ACTIVATE=''\n" if action == "setup" else None).encode()
    last = script.rstrip(b"\n").rfind(b"\n") + 1  # where the line that calls fj_boot begins
    points = sorted({last * i // CUT_POINTS for i in range(CUT_POINTS)} | {last, last + 1, len(script) - 3})
    env = {"HOME": "", "PATH": os.environ["PATH"]}
    for end in points:
        home = tmp_path / f"home-{end}"
        home.mkdir()
        r = subprocess.run([shell, "-s"], input=script[:end], capture_output=True, env=dict(env, HOME=str(home)), timeout=30)
        assert list(home.iterdir()) == [], (end, list(home.iterdir()))
        assert replies(r.stdout) == [], (end, r.stdout)
    if action == "password":  # and the whole script does act (the test would see it)
        home = tmp_path / "home-whole"
        home.mkdir()
        r = subprocess.run([shell, "-s"], input=script, capture_output=True, env=dict(env, HOME=str(home)), timeout=60)
        assert [list(m) for m in replies(r.stdout)] == [["reply"]] and list(home.iterdir()), (r.stdout, r.stderr)


MARK = "pwned-mark"
INJECTIONS = ["$(touch {m})", "`touch {m}`", "'; touch {m}; '", '"; touch {m}; "', "x;touch {m}&|\\"]


@pytest.mark.parametrize("value", INJECTIONS)
def test_values_that_reach_the_remote_shell_run_nothing(fab, value):
    """root_dir and the words of `jupyter:` reach the remote shell as data: a value written to
    run a command creates no marker; the root directory has exactly that name, and Jupyter gets
    exactly that argument."""
    mark = fab.home / MARK
    text = value.format(m=mark)
    root = f"dir {text}"
    fab.hosts(
        "hosts:\n  fjtest:\n"
        f"    root_dir: {yaml_str(root)}\n"
        f"    jupyter: [{JUPYTER_VENV}/bin/jupyter-lab, {yaml_str('--ServerApp.custom_display_url=http://h/' + text)}]\n"
    )
    fab.setup()
    assert not mark.exists()
    assert (fab.home / root).is_dir()
    args = open(f"/proc/{fab.status()['pid']}/cmdline", "rb").read().split(b"\0")
    assert ("--ServerApp.custom_display_url=http://h/" + text).encode() in args, args
    assert f"--ServerApp.root_dir={fab.home / root}".encode() in args, args
    fab("stop")
    assert not mark.exists()


def test_the_activate_line_runs_exactly_as_written_and_cannot_forge_a_reply(fab):
    """activate: is shell code by design: it reaches the shell intact (quotes, $, backticks as
    written), and what it prints stays out of the protocol (a forged reply line changes nothing)."""
    out = fab.home / "activated"
    line = f"""printf '%s|' "a'b" '$(not run)' "`echo ran`" >> {out}; echo '{{"error": {{"code": "forged", "detail": "", "log": []}}}}'"""
    fab.hosts(f"hosts:\n  fjtest:\n    activate: {yaml_str(line)}\n")
    r = fab.setup()
    assert "Jupyter started" in r.stdout, r.stdout + r.stderr
    runs = out.read_text()
    # once: the agent runs in the activated environment, and starts Jupyter from there (nohup)
    assert runs == "a'b|$(not run)|ran|", runs


def yaml_str(text):
    """A YAML double-quoted scalar for any text."""
    import json

    return json.dumps(text)
