"""Jupyter from a container image, through `fab`, against a real sshd and the two runtimes tested
for real here: rootless podman (the image imported into the account's storage) and Charliecloud's
ch-run (a directory image), with the images of tests/images.py. Apptainer and Singularity are not
packaged for Debian 12: their command line is checked in tests/test_container_args.py.

One test host for the module (an account with its podman storage kept between tests); each test
starts from a home with nothing of this tool's in it."""

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from . import images
from .batchsites import Sites, wait_until
from .conftest import Fab
from .jupyter_http import login_and_list, run_code
from .sshhost import kill_pids
from .test_images import _alive, _pids_of, _stat, _wait, container_host

PASSWORD = "correct horse"
USER = "fjbox"


@pytest.fixture(scope="module")
def host():
    yield from container_host([(USER, "/bin/bash", True, False)], "fabjupyter-containers-")


def fresh_home(host):
    """Nothing of this tool's, no process of the account's but podman's pause process; its podman
    storage stays (importing the image takes a while)."""
    user = host.users[USER]
    # containers first, by podman (a conmon killed leaves its container for dead, and the next
    # --replace of that name waits for an exit that never comes)
    images.as_account(user.name, "podman", "rm", "--all", "--force", "--time", "2")
    # then all but podman's pause process: killed, podman refuses to work until `podman system migrate`
    kill_pids(lambda: [pid for pid, _ in leftovers(host)], timeout=10.0, survivors_fail=False)
    for child in user.home.iterdir():
        if child.name == ".local":
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


@pytest.fixture
def fab(host, tmp_path):
    fresh_home(host)
    f = Fab(host, USER, tmp_path / "hosts.yaml")
    try:
        yield f
    finally:
        f.cleanup()
        fresh_home(host)


def podman(host, *args, check=True):
    r = images.as_account(host.users[USER].name, "podman", *args)
    assert not check or r.returncode == 0, r.stderr
    return r


def podman_ref(host, name="lab"):
    return images.podman_image(host.users[USER].name, name)


def use(fab, image, runtime, extra="", tcp=True):
    fab.hosts(f"hosts:\n  {USER}:\n    container: {image}\n    container_runtime: {runtime}\n{extra}", tcp=tcp)


def image_of(pid):
    """The test image a process runs in (its root's marker file), or "" on the host."""
    try:
        return Path(f"/proc/{pid}/root{images.MARKER}").read_text().strip()
    except OSError:
        return ""


def leftovers(host):
    """The account's processes but podman's own pause process (one per account, kept by podman
    for its user namespace, not a container's)."""
    found = []
    for pid in _pids_of([host.users[USER].uid]):
        s = _stat(pid)
        if s and s[2] not in ("catatonit", "podman pause"):
            found.append((pid, s[2]))
    return found


def check_serves(fab, code="open('/etc/fabjupyter-test-image').read()"):
    """A login through the tunnel, and a kernel's answer (it runs in the image too)."""
    proc, url, out = fab.tunnel()
    assert url, out
    try:
        login, api, body = login_and_list(url, PASSWORD)
        assert (login, api) == (200, 200) and json.loads(body)["type"] == "directory"
        return run_code(url, PASSWORD, f"print({code})").strip()
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("launcher, tcp", [("nohup", True), ("tmux", False)])  # a port; the socket (the default)
def test_podman_image_serves_through_the_tunnel_and_stop_leaves_nothing(host, fab, launcher, tcp):
    ref = podman_ref(host)
    use(fab, ref, "auto", f"    launcher: {launcher}\n", tcp=tcp)  # auto: podman is the first one on this PATH
    r = fab.setup()
    assert "Jupyter started" in r.stdout, r.stdout
    record = fab.status()
    assert record["running"] and record["container"] == ref and record["container_runtime"] == "podman"
    assert record["launcher"] == launcher and bool(record["socket"]) is not tcp
    pid = record["pid"]
    # the recorded pid is Jupyter's own, in the image, in the host's pid namespace
    assert image_of(pid) == "lab" and b"jupyter" in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert f"in the podman image {ref}" in fab("status").stdout
    # its kernels run in the image, and the password is the one given
    assert check_serves(fab) == "lab"
    [listed] = [json.loads(line) for line in fab("list", "--json").stdout.splitlines()]
    assert (listed["container"], listed["container_runtime"]) == (ref, "podman")

    # setup again: nothing restarted
    again = fab.setup()
    assert fab.status()["pid"] == pid and "Jupyter started" not in again.stdout, again.stdout

    fab("stop")
    assert not fab.status()["running"]
    _wait(lambda: not leftovers(host), 20, f"no process left: {leftovers(host)}")
    assert podman(host, "ps", "--all", "--quiet").stdout == ""


def test_podman_image_replaced_under_the_same_name_restarts_and_says_why(host, fab):
    ref, other = podman_ref(host, "lab"), podman_ref(host, "lab2")
    use(fab, ref, "podman")
    fab.setup()
    first = fab.status()["pid"]
    lab_id = podman(host, "image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
    podman(host, "tag", other, ref)  # what a pull or build of a new version under the same name does
    try:
        r = fab.setup()
        assert f"the container image {ref} changed since Jupyter started" in r.stdout, r.stdout
        record = fab.status()
        assert record["running"] and record["pid"] != first and image_of(record["pid"]) == "lab2"
        assert not _alive(first)
        assert "Jupyter started" not in fab.setup().stdout  # and then it is the image it runs
    finally:
        podman(host, "tag", lab_id, ref)


def test_charliecloud_directory_image_with_tmux_and_a_new_image_at_the_same_path(host, fab, tmp_path):
    # a copy the test can replace (images.rootfs is shared by every test)
    image = host.users[USER].home / "images" / "lab"
    image.parent.mkdir()
    shutil.copytree(images.rootfs("lab"), image, symlinks=True)
    subprocess.run(["chown", "-R", f"{host.users[USER].uid}:{host.users[USER].uid}", str(image.parent)], check=True)
    use(fab, "~/images/lab", "charliecloud", "    launcher: tmux\n")
    r = fab.setup()
    record = fab.status()
    assert record["running"] and record["container_runtime"] == "charliecloud", r.stdout
    assert record["container"] == str(image)
    pid = record["pid"]
    assert image_of(pid) == "lab"  # ch-run exec'd Jupyter: the pid is ch-run's, in the image
    assert check_serves(fab) == "lab"
    assert "Jupyter started" not in fab.setup().stdout and fab.status()["pid"] == pid

    # a new directory image put at the path (ch-convert, ch-image build again do this)
    fresh = image.with_name("lab.new")
    shutil.copytree(images.rootfs("lab2"), fresh, symlinks=True)
    os.rename(image, image.with_name("lab.old"))
    os.rename(fresh, image)
    r = fab.setup()
    assert f"the container image {image} changed since Jupyter started" in r.stdout, r.stdout  # ~/ as the host has it
    assert image_of(fab.status()["pid"]) == "lab2"
    fab("stop")
    _wait(lambda: not leftovers(host), 20, f"no process left: {leftovers(host)}")
    assert fab.as_user("tmux ls 2>&1 || true").stdout.count("fabjupyter") == 0


@pytest.mark.parametrize("setting, said", [
    ("    container: /nowhere/lab.sqfs\n    container_runtime: charliecloud\n", "/nowhere/lab.sqfs"),
    ("    container: localhost/no-such-image:1\n    container_runtime: podman\n", "localhost/no-such-image:1"),
    ("    container: /nowhere/lab.sif\n    container_runtime: apptainer\n", "apptainer"),
    ("    container: ~/lab\n    container_runtime: charliecloud\n    gpus: true\n", "charliecloud"),
])
def test_a_missing_image_or_runtime_is_one_line_and_changes_nothing(host, fab, setting, said):
    # first without a container: a server that keeps running through the failed setups
    fab.setup()
    before = fab.status()
    settings = (fab.home / ".fabjupyter" / "settings.sh").read_text()
    fab.hosts(f"hosts:\n  {USER}:\n{setting}")
    r = fab.setup(check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    [line] = r.stderr.strip().splitlines()
    assert said in line, line
    after = fab.status()
    assert after["running"] and after["pid"] == before["pid"] and after.get("container") is None
    assert (fab.home / ".fabjupyter" / "settings.sh").read_text() == settings


@pytest.fixture(scope="module")
def slurm():
    sites = Sites()
    try:
        yield sites.get("slurm")
    finally:
        sites.close()


def test_a_slurm_job_runs_jupyter_from_the_image_on_the_compute_node(slurm, tmp_path):
    slurm.reset()
    fab = Fab(slurm.login, slurm.user, tmp_path / "hosts.yaml")
    try:
        image = images.rootfs("lab")
        slurm.hosts(fab, slurm.limit("00:10:00"), extra=f"    container: {image}\n    container_runtime: charliecloud\n")
        r = fab.setup()
        [job_id] = slurm.jobs()
        record = fab.status()
        assert record["running"] and record["job_id"] == job_id and record["container_runtime"] == "charliecloud", r.stdout
        assert record["container"] == str(image) and f"at http://{slurm.address}:" in r.stdout, r.stdout
        # the job's proof names Jupyter in the image, on the node
        where = json.loads((fab.home / ".fabjupyter" / "job.where").read_text())
        assert where["job_id"] == job_id and where["ours"] and image_of(where["pid"]) == "lab", where
        assert where["pid"] in slurm.compute_pids()
        assert check_serves(fab) == "lab"
        assert "nothing changed" in fab.setup().stdout and slurm.jobs() == [job_id]
        fab("stop")
        assert slurm.jobs() == []
        assert wait_until(lambda: not slurm.compute_pids(), 20), slurm.compute_pids()
    finally:
        fab.cleanup()
        slurm.reset()


def test_podman_clients_killed_leave_jupyter_tracked_and_stop_removes_all(host, fab):
    """SIGKILL to every `podman run` process (an OOM killer, a kill of the launcher's group):
    Jupyter goes on under conmon. It is still the server this tool tracks: setup keeps it, and
    stop ends it and leaves no container."""
    use(fab, podman_ref(host), "podman")
    fab.setup()
    pid = fab.status()["pid"]
    clients = [p for p in _pids_of([host.users[USER].uid]) if (_stat(p) or ("", 0, ""))[2] == "podman"]
    assert clients
    # all at once: stopped first, since the second `podman run` gets SIGTERM when the first dies
    # (its parent-death signal) and would pass it on to Jupyter
    for p in clients:
        os.kill(p, signal.SIGSTOP)
    kill_pids(lambda: [p for p in clients if _alive(p)])
    assert _alive(pid) and fab.status()["running"] and fab.status()["pid"] == pid
    assert "Jupyter started" not in fab.setup().stdout and fab.status()["pid"] == pid
    assert podman(host, "ps", "--quiet").stdout.strip()  # its container, Up
    fab("stop")
    _wait(lambda: not leftovers(host), 20, f"no process left: {leftovers(host)}")
    assert podman(host, "ps", "--all", "--quiet").stdout == ""
