"""Installed like a tool: the wheel and the sdist that `python -m build` makes install into fresh
venvs (not editable), and the `fabjupyter` command works from an empty directory with the
inventory in $XDG_CONFIG_HOME, against the real sshd and a real Jupyter."""

import json
import os
import subprocess
import sys
import zipfile

import pytest

from .conftest import ROOT
from .jupyter_http import login_and_list

PASSWORD = "correct horse"


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], check=True, capture_output=True)
    wheel = next(out.glob("fabjupyter-*.whl"))
    sdist = next(out.glob("fabjupyter-*.tar.gz"))
    return wheel, sdist


def fresh_venv(path, package):
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    r = subprocess.run([str(path / "bin" / "pip"), "install", "-q", str(package)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return path


@pytest.fixture(scope="module")
def installed(dist, tmp_path_factory):
    return fresh_venv(tmp_path_factory.mktemp("wheel-venv") / "venv", dist[0])


def test_the_wheel_holds_fabjupyter_and_nothing_named_tasks(dist):
    names = zipfile.ZipFile(dist[0]).namelist()
    assert not [n for n in names if n.startswith("tasks/")], names
    for part in ("agent.py", "bootstrap.sh", "ready.py", "boot.py", "cli.py"):
        assert f"fabjupyter/{part}" in names, names


def test_the_sdist_installs_too(dist, tmp_path):
    venv = fresh_venv(tmp_path / "venv", dist[1])
    r = subprocess.run([str(venv / "bin" / "fabjupyter"), "--list"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and "setup" in r.stdout and "tunnel" in r.stdout, r.stdout + r.stderr


def test_fabjupyter_from_any_directory(installed, fab, tmp_path, local_port):
    """setup, status --json, tunnel and a login, stop: from an empty directory, with the
    inventory found in $XDG_CONFIG_HOME/fabjupyter/hosts.yaml (its port is the one used)."""
    exe = str(installed / "bin" / "fabjupyter")
    empty = tmp_path / "empty"
    empty.mkdir()
    xdg = tmp_path / "xdg"
    (xdg / "fabjupyter").mkdir(parents=True)
    (xdg / "fabjupyter" / "hosts.yaml").write_text(f"hosts:\n  {fab.user}:\n    port: {fab.port}\n    socket: false\n")
    env = {k: v for k, v in os.environ.items() if k != "FABRIC_JUPYTER_HOSTS_FILE"}
    env.update(XDG_CONFIG_HOME=str(xdg), HOME=str(tmp_path))  # no ~/.fabric.yaml, no hosts.yaml here
    core = [exe, "-S", str(fab.sshhost.ssh_config), "-H", fab.user]

    def run(*args, input=None):
        return subprocess.run([*core, *args], cwd=empty, env=env, input=input, capture_output=True, text=True, timeout=240)

    r = run("setup", "--password-stdin", input=PASSWORD + "\n")
    assert r.returncode == 0, r.stdout + r.stderr
    record = json.loads(run("status", "--json").stdout)
    assert record["running"] and record["port"] == fab.port, record
    proc, url, out = fab.tunnel(cmd=[*core, "tunnel", "--local-port", str(local_port)], cwd=empty, env=env)
    assert url == f"http://localhost:{local_port}/", out
    assert login_and_list(url, PASSWORD)[1] == 200
    fab.cleanup()
    assert run("stop").returncode == 0
    assert fab.sshhost.processes(fab.user) == []
    assert list(empty.iterdir()) == []  # nothing left in the directory it ran from


def test_the_command_itself(installed, tmp_path):
    exe = str(installed / "bin" / "fabjupyter")
    python = str(installed / "bin" / "python")
    r = subprocess.run([exe, "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert r.stdout.splitlines()[0] == "fabjupyter 0.1.0" and "Fabric 3." in r.stdout, r.stdout
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert "$XDG_CONFIG_HOME/fabjupyter/hosts.yaml" in r.stdout and "Usage: fabjupyter" in r.stdout, r.stdout
    r = subprocess.run([exe, "--help", "setup"], capture_output=True, text=True, cwd=tmp_path)
    assert "--port=INT" in r.stdout, r.stdout
    r = subprocess.run([exe, "-H", "somewhere", "logs", "--lines", "abc"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.strip() == "--lines: must be a whole number (got 'abc')", r.stderr
    script = subprocess.run([exe, "--print-completion-script", "bash"], capture_output=True, text=True, cwd=tmp_path).stdout
    assert "fabjupyter" in script and subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    r = subprocess.run([exe, "--complete", "--", exe, "se"], capture_output=True, text=True, cwd=tmp_path)
    assert "setup" in r.stdout.split(), r.stdout
    assert subprocess.run([python, "-c", "import tasks"], capture_output=True, cwd=tmp_path).returncode != 0
    assert subprocess.run([python, "-c", "import fabjupyter.agent"], capture_output=True, cwd=tmp_path).returncode == 0
