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
    source = [p.relative_to(ROOT / "tasks").as_posix() for p in (ROOT / "tasks").rglob("*")
              if p.suffix in (".py", ".sh") and "__pycache__" not in p.parts]
    assert "remote/bootstrap.sh" in source and "cli.py" in source, source
    assert [part for part in source if f"fabjupyter/{part}" not in names] == [], names  # every folder, every file


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
    assert subprocess.run([python, "-c", "import fabjupyter.remote.net"], capture_output=True, cwd=tmp_path).returncode == 0


@pytest.fixture(scope="module")
def pipx_bin(dist, tmp_path_factory):
    """`pipx install` of the wheel, as the README says, into a pipx home of this module's own
    (pipx is installed by .ci/setup). Returns the directory of the `fabjupyter` it made."""
    import shutil

    pipx = shutil.which("pipx")
    if not pipx:
        pytest.fail("pipx is missing: run .ci/setup first")
    top = tmp_path_factory.mktemp("pipx")
    env = dict(os.environ, PIPX_HOME=str(top / "home"), PIPX_BIN_DIR=str(top / "bin"), PIPX_MAN_DIR=str(top / "man"))
    r = subprocess.run([pipx, "install", str(dist[0])], env=env, capture_output=True, text=True, cwd=top, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (top / "bin" / "fabjupyter").exists(), r.stdout + r.stderr
    return top / "bin"


def plain_env(home, **more):
    """This machine's environment with none of the inventory's variables: HOME of the test's own."""
    env = {k: v for k, v in os.environ.items() if k not in ("FABRIC_JUPYTER_HOSTS_FILE", "XDG_CONFIG_HOME")}
    env.update(HOME=str(home), PATH=f"{more.pop('bin')}:{env['PATH']}", **more)
    return env


def test_pipx_install_gives_a_working_fabjupyter(pipx_bin, fab, tmp_path):
    exe = pipx_bin / "fabjupyter"
    assert str(exe.resolve()).startswith(str(pipx_bin.parent / "home" / "venvs" / "fabjupyter") + "/"), exe.resolve()
    env = plain_env(tmp_path, bin=pipx_bin)
    r = subprocess.run(["fabjupyter", "--version"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.splitlines()[0] == "fabjupyter 0.1.0", r.stdout + r.stderr
    r = subprocess.run(["fabjupyter", "-S", str(fab.sshhost.ssh_config), "-H", fab.user, "status", "--json"], env=env,
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    record = json.loads(r.stdout)
    assert record["host"] == fab.user and record["running"] is False, record


def test_the_inventory_is_found_in_fabric_yaml_then_here_then_in_config(pipx_bin, fab, tmp_path):
    """FABRIC_JUPYTER_HOSTS_FILE unset (conftest always sets it): jupyter.hosts_file in
    ~/.fabric.yaml wins over ./hosts.yaml, which wins over $XDG_CONFIG_HOME/fabjupyter/hosts.yaml,
    which is ~/.config/fabjupyter/hosts.yaml when XDG_CONFIG_HOME is unset. Each names another
    port for the host; a dry run of setup says which one it would use."""
    from .sshhost import free_port

    home, here = tmp_path / "home", tmp_path / "here"
    here.mkdir()
    (home / ".config" / "fabjupyter").mkdir(parents=True)
    ports = {}

    def inventory(path, name):
        ports[name] = free_port() if not ports else max(ports.values()) + 1
        path.write_text(f"hosts:\n  {fab.user}:\n    port: {ports[name]}\n    socket: false\n")

    def port_used(**more):
        r = subprocess.run(["fabjupyter", "-S", str(fab.sshhost.ssh_config), "-H", fab.user, "setup", "--dry-run"],
                           env=plain_env(home, bin=pipx_bin, **more), capture_output=True, text=True, cwd=here, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        found = [name for name, port in ports.items() if f"port {port}" in r.stdout]
        assert len(found) <= 1, r.stdout
        return found[0] if found else r.stdout

    inventory(home / ".config" / "fabjupyter" / "hosts.yaml", "config")
    assert port_used() == "config"
    xdg = tmp_path / "xdg"
    (xdg / "fabjupyter").mkdir(parents=True)
    inventory(xdg / "fabjupyter" / "hosts.yaml", "xdg")
    assert port_used(XDG_CONFIG_HOME=str(xdg)) == "xdg"
    inventory(here / "hosts.yaml", "here")
    assert port_used() == "here" and port_used(XDG_CONFIG_HOME=str(xdg)) == "here"
    inventory(tmp_path / "elsewhere.yaml", "fabric.yaml")
    (home / ".fabric.yaml").write_text(f"jupyter:\n  hosts_file: {tmp_path / 'elsewhere.yaml'}\n")
    assert port_used() == "fabric.yaml"
    # a file named there that is missing is an error naming it, not a fall back to the others
    (tmp_path / "elsewhere.yaml").unlink()
    r = subprocess.run(["fabjupyter", "-H", fab.user, "status"], env=plain_env(home, bin=pipx_bin), capture_output=True,
                       text=True, cwd=here, timeout=120)
    assert r.returncode == 1 and r.stderr.strip().endswith(f"{tmp_path / 'elsewhere.yaml'}: no such file (set jupyter.hosts_file "
                                                           "or FABRIC_JUPYTER_HOSTS_FILE)"), r.stderr
    assert fab.sshhost.processes(fab.user) == []


def test_zsh_and_fish_complete_a_task_name(pipx_bin, tmp_path):
    """The scripts `--print-completion-script zsh|fish` prints, sourced in a real interactive zsh
    (Tab pressed after `fabjupyter se`) and in fish (its own `complete -C`), give `setup`."""
    import pexpect

    env = plain_env(tmp_path, bin=pipx_bin, TERM="xterm", PS1="READY> ")
    scripts = {}
    for shell in ("zsh", "fish"):
        r = subprocess.run(["fabjupyter", "--print-completion-script", shell], env=env, capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode == 0 and "fabjupyter" in r.stdout, r.stdout + r.stderr
        scripts[shell] = tmp_path / f"completion.{shell}"
        scripts[shell].write_text(r.stdout)

    r = subprocess.run(["fish", "--no-config", "-c", f"source {scripts['fish']}; complete -C 'fabjupyter se'"], env=env,
                       capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 0 and "setup" in r.stdout.split(), r.stdout + r.stderr
    r = subprocess.run(["fish", "--no-config", "-c", f"source {scripts['fish']}; complete -C 'fabjupyter setup --dry'"], env=env,
                       capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert "--dry-run" in r.stdout.split(), r.stdout + r.stderr

    zsh = pexpect.spawn("zsh", ["-f", "-i"], env=env, cwd=str(tmp_path), encoding="utf-8", timeout=30, dimensions=(24, 200))
    try:
        zsh.expect("READY> ")
        zsh.sendline(f"source {scripts['zsh']}; echo LOADED-$?")
        zsh.expect("LOADED-0")
        zsh.expect("READY> ")
        zsh.send("fabjupyter se\t")
        zsh.expect("fabjupyter setup")
        zsh.send("\x15")  # the line typed so far goes
        zsh.sendline("exit")
        zsh.expect(pexpect.EOF)
    finally:
        zsh.close(force=True)
