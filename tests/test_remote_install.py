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


def test_a_host_that_reaches_its_index_installs_with_its_own_pip(offline, tmp_path):
    """The online path: the host's pip, from the index it is configured with (PIP_INDEX_URL here:
    a local index of wheels served in the host's own namespace), nothing sent from here."""
    import subprocess
    import time

    from .sshhost import free_port

    first = make_fab(offline, "fjinst", tmp_path)
    first("setup", "--dry-run")  # warms this module's cache when the other tests did not
    wheels = [p for p in (Path(os.environ["XDG_CACHE_HOME"]) / "fabjupyter" / "wheels").rglob("*.whl")]
    assert wheels
    index_dir = Path(tempfile.mkdtemp(prefix="fabjupyter-index-"))
    index_dir.chmod(0o755)
    simple_index(wheels, index_dir)
    port = free_port()
    host = SSHHost(users=[("fjonline", "/bin/bash", False, False)], prefix="fabjupyter-online-", netns=("fjonlinens", 51),
                   env={"PIP_INDEX_URL": f"http://127.0.0.1:{port}/simple/"})
    server = subprocess.Popen(["ip", "netns", "exec", host.netns, "python3", "-m", "http.server", "--bind", "127.0.0.1", str(port),
                               "--directory", str(index_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        fab = make_fab(host, "fjonline", tmp_path)
        r = fab.setup()
        assert f"installing {SPEC} into " in r.stdout and f"from http://127.0.0.1:{port}/simple/, by the host's own pip" in r.stdout, r.stdout
        assert "downloading" not in r.stdout and "sent" not in r.stdout, r.stdout
        assert f"installing with pip (from http://127.0.0.1:{port}/simple/)" in r.stdout, r.stdout
        assert f"Jupyter started (JupyterLab {LAB_VERSION}" in r.stdout and fab.status()["own_env"] is True, r.stdout
        fab("stop")
    finally:
        server.terminate()
        server.wait()
        host.close()
        shutil.rmtree(index_dir, ignore_errors=True)
