"""setup --install on a host with Python and no Jupyter: JupyterLab in an environment of this
tool's own (~/.fabjupyter/venv). The test host is a network namespace with no route to any
package index, so the path exercised is the offline one: wheels downloaded here for the host's
Python and platform, sent in one transfer, installed with --no-index."""

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from .conftest import Fab
from .jupyter_http import login_and_list, run_code
from .sshhost import STANDARD_PATH, SSHHost

PASSWORD = "correct horse"
LAB_VERSION = next(line.split("==")[1].strip() for line in (Path(__file__).parent / "requirements" / "lab.txt").read_text().splitlines()
                   if line.startswith("jupyterlab=="))
SPEC = f"jupyterlab=={LAB_VERSION}"


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    """A host in its own network namespace (no route anywhere but to this machine), with users
    that have Python and no Jupyter; fjnovenv's python3 lacks ensurepip, as Debian's does without
    python3-venv. The local wheel cache is this module's own."""
    tmp = tmp_path_factory.mktemp("install")
    novenv = Path(tempfile.mkdtemp(prefix="fabjupyter-novenv-"))  # where the test users can read (not under pytest's 0700 tmp)
    (novenv / "hide").mkdir(parents=True)
    (novenv / "hide" / "sitecustomize.py").write_text("import sys\nsys.modules['ensurepip'] = None  # as if not installed\n")
    (novenv / "bin").mkdir()
    wrapper = novenv / "bin" / "python3"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={novenv / 'hide'} exec /usr/bin/python3 \"$@\"\n")
    wrapper.chmod(0o755)
    for p in (novenv, novenv / "hide", novenv / "bin"):
        p.chmod(0o755)
    (novenv / "hide" / "sitecustomize.py").chmod(0o644)
    users = [("fjinst", "/bin/bash", False, False), ("fjinst2", "/bin/sh", False, False),
             ("fjnovenv", "/bin/bash", False, False, f"{novenv / 'bin'}:{STANDARD_PATH}")]
    host = SSHHost(users=users, prefix="fabjupyter-install-", netns=("fjinstns", 50))
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp / "cache")
    try:
        yield host
    finally:
        if old is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = old
        host.close()
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(novenv, ignore_errors=True)


def make_fab(host, user, tmp_path):
    host.reset_user(user)
    fab = Fab(host, user, tmp_path / f"{user}.yaml")
    fab.hosts(f"hosts:\n  {user}:\n    install: true\n    install_spec: {SPEC}\n")
    return fab


def test_jupyterlab_installed_from_here_on_an_offline_host(offline, tmp_path, local_port):
    fab = make_fab(offline, "fjinst", tmp_path)
    r = fab.setup()
    out = r.stdout
    assert "downloading the wheels of " + SPEC + " for Python 3." in out, out
    assert "the host does not reach https://pypi.org/simple/" in out and "sent in one transfer" in out, out
    assert "creating this tool's environment" in out and "installing with pip (from the wheels sent)" in out, out
    assert f"installed {SPEC} into " in out and f"jupyterlab {LAB_VERSION}" in out, out
    assert f"Jupyter started (JupyterLab {LAB_VERSION}" in out, out
    venv = fab.home / ".fabjupyter" / "venv"
    record = fab.status()
    assert record["running"] and record["own_env"] is True, record
    args = open(f"/proc/{record['pid']}/cmdline", "rb").read().split(b"\0")
    assert any(a.startswith(str(venv).encode()) for a in args[:2]), args
    assert not (fab.home / ".fabjupyter" / "install").exists()  # the wheels sent are removed
    assert json.loads((venv / "fabjupyter.json").read_text())["versions"]["jupyterlab"] == LAB_VERSION

    proc, url, text = fab.tunnel("--local-port", str(local_port))
    assert url, text
    assert login_and_list(url, PASSWORD)[1] == 200
    assert run_code(url, PASSWORD, "print(6 * 7)").strip() == "42"
    fab.cleanup()

    # a second setup does not install again; an upgrade with nothing newer changes nothing
    r = fab.setup()
    assert "nothing changed" in r.stdout and "installing" not in r.stdout and "creating" not in r.stdout, r.stdout
    r = fab("setup", "--install", "--upgrade")
    assert "already up to date" in r.stdout and "nothing changed" in r.stdout and fab.status()["pid"] == record["pid"], r.stdout
    fab("stop")
    assert offline.processes("fjinst") == []


def test_a_second_host_of_the_same_kind_uses_the_cache_and_a_dry_run_changes_nothing(offline, tmp_path):
    first = make_fab(offline, "fjinst", tmp_path)
    first.setup()  # the cache is warm now (or was)
    first("stop")
    fab = make_fab(offline, "fjinst2", tmp_path)
    r = fab("setup", "--dry-run")
    assert f"would install {SPEC} into " in r.stdout and "from here (the host does not reach" in r.stdout, r.stdout
    assert " MB, sent in one transfer" in r.stdout and "then would write the configuration" in r.stdout, r.stdout
    assert not (fab.home / ".fabjupyter").exists()
    r = fab.setup()
    assert "(from the local cache: " in r.stdout and "downloading" not in r.stdout, r.stdout
    assert fab.status()["own_env"] is True
    fab("stop")


def test_a_host_without_the_venv_module_gets_one_line(offline, tmp_path):
    fab = make_fab(offline, "fjnovenv", tmp_path)
    r = fab.setup(check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot make an environment (no venv/ensurepip module)" in lines[0], lines
    assert "apt install python3." in lines[0] and "-venv" in lines[0]
    assert not (fab.home / ".fabjupyter" / "venv").exists()


def test_a_broken_install_spec_shows_pips_error_and_changes_nothing(offline, tmp_path):
    fab = make_fab(offline, "fjinst2", tmp_path)
    fab.hosts(f"hosts:\n  {fab.user}:\n    install: true\n    install_spec: jupyterlab==0.0.1\n")
    r = fab.setup(check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "pip download (here, for the host's Python and platform) failed; nothing was changed there" in r.stderr, r.stderr
    assert "No matching distribution found for jupyterlab==0.0.1" in r.stderr, r.stderr
    assert not (fab.home / ".fabjupyter" / "venv").exists()
    # and without install: true, the old message says how to get it
    fab.hosts("")
    r = fab.setup(check=False)
    assert "no Jupyter found there" in r.stderr and "--install" in r.stderr, r.stderr


def test_wheels_that_fail_to_unpack_leave_nothing_behind(offline, tmp_path):
    """The tar sent holds a file that is no wheel (here: a cache that lists one): the host refuses
    it in pip's stead, in one line, and keeps neither the wheels sent nor an environment."""
    import re

    fab = make_fab(offline, "fjinst2", tmp_path)
    r = fab("setup", "--dry-run")  # fills (or finds) the cache of wheels for this kind of host
    folder = Path(re.search(r"\((?:from the local cache|downloaded in [\d.]+ s): (.+)\)$", r.stdout, re.M).group(1))
    marker = folder / "complete.json"
    listed = marker.read_text()
    (folder / "notes.txt").write_text("not a wheel\n")
    marker.write_text(json.dumps(dict(json.loads(listed), files=json.loads(listed)["files"] + ["notes.txt"])) + "\n")
    try:
        r = fab.setup(check=False)
    finally:
        marker.write_text(listed)
        (folder / "notes.txt").unlink()
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith(f"{fab.user}: installing failed (the wheels sent)") and "unexpected member 'notes.txt'" in r.stderr, r.stderr
    assert not (fab.home / ".fabjupyter" / "install").exists()
    assert not (fab.home / ".fabjupyter" / "venv").exists()


def simple_index(wheels, root):
    """A PEP 503 package index of these wheels in ROOT/simple (what pip's --index-url reads)."""
    import re

    projects = {}
    for wheel in wheels:
        name = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
        projects.setdefault(name, []).append(wheel)
    for name, files in projects.items():
        folder = root / "simple" / name
        folder.mkdir(parents=True)
        for f in files:
            shutil.copy(f, folder / f.name)
        links = "".join(f'<a href="{f.name}">{f.name}</a><br>\n' for f in files)
        (folder / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    (root / "simple" / "index.html").write_text("<!DOCTYPE html><html><body>\n" + "".join(
        f'<a href="{n}/">{n}</a><br>\n' for n in sorted(projects)) + "</body></html>\n")
    for p in [root, *root.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)


def wait_for_index(netns, url, deadline=30):
    """Until the index answers inside the host's network namespace (or fail at the deadline)."""
    import subprocess
    import time

    probe = f"import urllib.request; urllib.request.urlopen({url!r}, timeout=2).close()"
    end = time.monotonic() + deadline
    while True:
        r = subprocess.run(["ip", "netns", "exec", netns, "python3", "-c", probe], capture_output=True, text=True)
        if r.returncode == 0:
            return
        assert time.monotonic() < end, f"the index at {url} did not answer within {deadline} s: {r.stderr}"
        time.sleep(0.1)


def cached_wheels():
    return sorted({p.name: p for p in (Path(os.environ["XDG_CACHE_HOME"]) / "fabjupyter" / "wheels").rglob("*.whl")}.values())


@pytest.fixture(scope="module")
def online(offline, tmp_path_factory):
    """A host that reaches its package index (PIP_INDEX_URL: a local index of the wheels this
    module downloaded, served in the host's own namespace). Yields (host, index_url, index_dir)."""
    import subprocess

    from .sshhost import free_port

    first = make_fab(offline, "fjinst", tmp_path_factory.mktemp("warm"))
    first("setup", "--dry-run")  # warms this module's cache when the other tests did not
    wheels = cached_wheels()
    assert wheels
    index_dir = Path(tempfile.mkdtemp(prefix="fabjupyter-index-"))
    index_dir.chmod(0o755)
    simple_index(wheels, index_dir)
    port = free_port()
    url = f"http://127.0.0.1:{port}/simple/"
    host = SSHHost(users=[("fjonline", "/bin/bash", False, False)], prefix="fabjupyter-online-", netns=("fjonlinens", 51),
                   env={"PIP_INDEX_URL": url})
    server = subprocess.Popen(["ip", "netns", "exec", host.netns, "python3", "-m", "http.server", "--bind", "127.0.0.1", str(port),
                               "--directory", str(index_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_index(host.netns, url)
        yield host, url, index_dir
    finally:
        server.terminate()
        server.wait()
        host.close()
        shutil.rmtree(index_dir, ignore_errors=True)


def test_a_host_that_reaches_its_index_installs_with_its_own_pip(online, tmp_path):
    """The online path: the host's pip, from the index it is configured with (PIP_INDEX_URL here:
    a local index of wheels served in the host's own namespace), nothing sent from here."""
    host, url, _ = online
    fab = make_fab(host, "fjonline", tmp_path)
    r = fab.setup()
    assert f"installing {SPEC} into " in r.stdout and f"from {url}, by the host's own pip" in r.stdout, r.stdout
    assert "downloading" not in r.stdout and "sent" not in r.stdout, r.stdout
    assert f"installing with pip (from {url})" in r.stdout, r.stdout
    assert f"Jupyter started (JupyterLab {LAB_VERSION}" in r.stdout and fab.status()["own_env"] is True, r.stdout
    fab("stop")


def test_install_from_here_sends_the_wheels_to_a_host_that_reaches_its_index(online, tmp_path):
    host, url, _ = online
    fab = make_fab(host, "fjonline", tmp_path)
    fab.hosts(f"hosts:\n  {fab.user}:\n    install: true\n    install_spec: {SPEC}\n    install_from: here\n")
    r = fab.setup()
    assert f"into {fab.home / '.fabjupyter' / 'venv'} from here (install_from: here): " in r.stdout, r.stdout
    assert "sent in one transfer" in r.stdout and "installing with pip (from the wheels sent)" in r.stdout, r.stdout
    assert "by the host's own pip" not in r.stdout and f"(from {url})" not in r.stdout, r.stdout
    assert json.loads((fab.home / ".fabjupyter" / "venv" / "fabjupyter.json").read_text())["source"] == "here"
    assert fab.status()["own_env"] is True
    fab("stop")


def test_a_pip_failure_on_the_host_removes_the_environment_it_was_making(online, tmp_path):
    """The host's own pip fails (its index has no such version) after the environment was made:
    the environment goes, and nothing else of Jupyter's was written."""
    host, url, _ = online
    fab = make_fab(host, "fjonline", tmp_path)
    fab.hosts(f"hosts:\n  {fab.user}:\n    install: true\n    install_spec: jupyterlab==0.0.1\n")
    r = fab.setup(check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"installing jupyterlab==0.0.1 into " in r.stdout and f"installing with pip (from {url})" in r.stdout, r.stdout
    assert r.stderr.startswith(f"{fab.user}: installing failed (pip install); nothing was changed") and \
        "No matching distribution found for jupyterlab==0.0.1" in r.stderr, r.stderr
    top = fab.home / ".fabjupyter"
    left = sorted(str(p.relative_to(top)) for p in top.rglob("*")) if top.exists() else []
    assert not [p for p in left if p.split("/")[0] in ("venv", "install", "config", "password", "settings.sh", "state", "run.sh")], left
    assert host.processes(fab.user) == []


def test_an_upgrade_that_changes_the_version_restarts_jupyter(online, tmp_path):
    """The index first has an older JupyterLab; setup installs it. Then the current one appears
    there: setup --install --upgrade installs it and restarts Jupyter (another pid, the new
    version running); a second upgrade changes nothing (tested with the offline host above)."""
    import subprocess
    import sys

    host, url, index_dir = online
    major, minor, patch = (int(x) for x in LAB_VERSION.split("."))
    older = f"{major}.{minor}.{patch - 1}" if patch else f"{major}.{minor - 1}.0"
    old_dir = tmp_path / "older"
    r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--dest", str(old_dir),
                        f"jupyterlab=={older}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    wheels = cached_wheels()
    current = [w for w in wheels if w.name.startswith(f"jupyterlab-{LAB_VERSION}-")]
    assert current, wheels

    def serve(files):
        shutil.rmtree(index_dir / "simple")
        simple_index(files, index_dir)

    try:
        serve([w for w in wheels if w not in current] + list(old_dir.glob("*.whl")))
        fab = make_fab(host, "fjonline", tmp_path)
        fab.hosts(f"hosts:\n  {fab.user}:\n    install: true\n    install_spec: jupyterlab\n")
        r = fab.setup()
        assert f"installed jupyterlab into " in r.stdout and f"jupyterlab {older}" in r.stdout, r.stdout
        before = fab.status()
        assert before["running"] and before["version"].startswith(f"JupyterLab {older},"), before
        serve(wheels)
        r = fab("setup", "--install", "--upgrade")
        assert f"upgraded jupyterlab into " in r.stdout and f"jupyterlab {LAB_VERSION}" in r.stdout, r.stdout
        after = fab.status()
        assert after["running"] and after["version"].startswith(f"JupyterLab {LAB_VERSION},") and after["pid"] != before["pid"], (before, after)
        assert not os.path.exists(f"/proc/{before['pid']}") or b"jupyter" not in open(f"/proc/{before['pid']}/cmdline", "rb").read()
        fab("stop")
    finally:
        serve(wheels)


def test_the_activate_lines_python_makes_the_environment_from_a_list_spec(offline, tmp_path):
    """activate: puts another python3 first on the PATH (a link to the system's, in a directory
    of its own, as a `module load python` would): the environment is made with that one, and a
    list install_spec reaches pip as separate requirements (joined, pip would refuse it)."""
    import re

    folder = next(Path(os.environ["XDG_CACHE_HOME"], "fabjupyter", "wheels").glob("*/complete.json"), None)
    if folder is None:
        make_fab(offline, "fjinst2", tmp_path)("setup", "--dry-run")  # this module's cache, for the wheels below
        folder = next(Path(os.environ["XDG_CACHE_HOME"], "fabjupyter", "wheels").glob("*/complete.json"))
    folder = folder.parent
    kernel = next(re.match(r"ipykernel-([^-]+)-", w.name).group(1) for w in folder.glob("ipykernel-*.whl"))
    modules = Path(tempfile.mkdtemp(prefix="fabjupyter-module-"))  # readable by the test users
    try:
        modules.chmod(0o755)
        (modules / "python3").symlink_to("/usr/bin/python3.11")
        fab = make_fab(offline, "fjinst2", tmp_path)
        # the list spec is a new cache key: resolved from the wheels already here, not from an index
        fab.env = lambda: dict(Fab.env(fab), PIP_NO_INDEX="1", PIP_FIND_LINKS=str(folder))
        fab.hosts(f"hosts:\n  {fab.user}:\n    install: true\n    activate: PATH={modules}:$PATH\n"
                  f"    install_spec: [\"{SPEC}\", \"ipykernel=={kernel}\"]\n")
        r = fab.setup()
        assert f"installed {SPEC} ipykernel=={kernel} into " in r.stdout and f"ipykernel {kernel}" in r.stdout, r.stdout
        venv = fab.home / ".fabjupyter" / "venv"
        assert os.readlink(venv / "bin" / "python3") == str(modules / "python3"), os.readlink(venv / "bin" / "python3")
        assert f"home = {modules}\n" in (venv / "pyvenv.cfg").read_text()
        assert json.loads((venv / "fabjupyter.json").read_text())["spec"] == [SPEC, f"ipykernel=={kernel}"]
        record = fab.status()
        assert record["running"] and record["own_env"] is True, record
        fab("stop")
    finally:
        shutil.rmtree(modules, ignore_errors=True)


def test_the_users_own_jupyter_wins_over_this_tools_environment(offline, tmp_path):
    """After an install, status says Jupyter runs from this tool's own environment. Once the
    activate line brings a Jupyter of the user's, install: true only says so in a note, that
    Jupyter runs, and status no longer says 'own environment'."""
    from .sshhost import JUPYTER_VENV

    fab = make_fab(offline, "fjinst", tmp_path)
    fab.setup()
    r = fab("status")
    assert "; Jupyter from this tool's own environment (~/.fabjupyter/venv)" in r.stdout, r.stdout
    fab.hosts(f"hosts:\n  {fab.user}:\n    install: true\n    install_spec: {SPEC}\n    activate: . {JUPYTER_VENV}/bin/activate\n")
    r = fab.setup()
    assert f"note: install: true, but Jupyter was found there ({JUPYTER_VENV}/bin/jupyter-lab): it is used, and nothing was " \
        "installed" in r.stdout, r.stdout
    assert "installing" not in r.stdout and "upgrad" not in r.stdout, r.stdout
    record = fab.status()
    assert record["running"] and record["own_env"] is False, record
    args = open(f"/proc/{record['pid']}/cmdline", "rb").read().split(b"\0")
    assert any(a.startswith(str(JUPYTER_VENV).encode()) for a in args[:2]), args
    r = fab("status")
    assert "own environment" not in r.stdout, r.stdout
    fab("stop")
    # and with no environment of this tool's at all, nothing is installed either
    offline.reset_user(fab.user)
    r = fab.setup()
    assert "note: install: true, but Jupyter was found there" in r.stdout and "installing" not in r.stdout, r.stdout
    assert not (fab.home / ".fabjupyter" / "venv").exists()
    fab("stop")
