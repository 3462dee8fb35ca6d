"""The container test images (tests/images.py) and the two runtimes tested for real here, used as
a test host's account over ssh: Charliecloud's ch-run with the directory image, and rootless
podman with the image imported into the account's storage. Besides checking the images, these
tests pin down how each runtime runs Jupyter (which pid, whose child, what a signal stops), which
the container support relies on."""

import fcntl
import json
import os
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from . import images
from .sshhost import JUPYTER_VENV, SSHHost, free_port, kill_pids, wait_port

JUPYTER = f"{JUPYTER_VENV}/bin/jupyter"
PYTHON = f"{JUPYTER_VENV}/bin/python"
# the same network, the host's pids, the account's own uid inside
PODMAN_RUN = ["podman", "run", "--rm", "--pull=never", "--network=host", "--pid=host", "--userns=keep-id"]


def container_host(users, prefix):
    """A test host whose accounts (USERS, as SSHHost takes them) run the test images: the
    runtimes there, the images built, nothing in /tmp from an earlier account with the same uid;
    afterwards every process of theirs ended (conmon, podman's pause) and podman's leftovers gone."""
    for cmd in ("ch-run", "podman", "newuidmap"):
        if not shutil.which(cmd):
            pytest.fail(f"{cmd} is missing: run .ci/setup first")
    images.ensure()
    h = SSHHost(users=users, prefix=prefix)
    uids = [u.uid for u in h.users.values()]
    for uid in uids:
        images.forget_podman(uid)
    try:
        yield h
    finally:
        try:
            kill_pids(lambda: _pids_of(uids), timeout=10.0, survivors_fail=False)
        finally:
            h.close()
            for uid in uids:
                images.forget_podman(uid)


@pytest.fixture(scope="module")
def host():
    yield from container_host([("fjimage", "/bin/bash", True, False), ("fjimgnew", "/bin/bash", True, False)],
                              "fabjupyter-images-")


def ssh(host, alias, script, check=True, timeout=120):
    r = subprocess.run(["ssh", "-F", str(host.ssh_config), "-o", "BatchMode=yes", alias, script],
                       capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{script!r} as {alias} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def _stat(pid):
    """(state, ppid, comm) of PID, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1]), comm


def _alive(pid):
    s = _stat(pid)
    return s is not None and s[0] != "Z"


def _uid(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])


def _pids_of(uids):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _alive(int(entry)):
            try:
                if _uid(entry) in uids:
                    found.append(int(entry))
            except (OSError, TypeError):
                continue
    return found


def _ancestors(pid):
    found = []
    while True:
        s = _stat(pid)
        if s is None or s[1] in (0, 1):
            return found
        pid = s[1]
        found.append(pid)


def _wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"after {timeout} s: not {what}")


def _port_closed(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return False
    except OSError:
        return True


def _server_file(runtime_dir):
    found = sorted(Path(runtime_dir).glob("jpserver-*.json"))
    assert len(found) == 1, found
    return json.loads(found[0].read_text())


def _venv_lab_version():
    dist = next((JUPYTER_VENV / "lib/python3.11/site-packages").glob("jupyterlab-*.dist-info"))
    return re.search(r"^Version: (\S+)$", (dist / "METADATA").read_text(), re.M).group(1)


# --- the images themselves ---------------------------------------------------------------------
def test_images_differ_only_in_the_marker():
    lab, lab2 = images.rootfs("lab"), images.rootfs("lab2")

    def tree(root):
        return {str(p.relative_to(root)) for p in root.rglob("*")}

    assert tree(lab) == tree(lab2)
    assert (lab / "etc/fabjupyter-test-image").read_text() == "lab\n"
    assert (lab2 / "etc/fabjupyter-test-image").read_text() == "lab2\n"
    for d in ("dev", "proc", "sys", "home", "tmp", "run"):
        assert (lab / d).is_dir(), d
    assert (lab / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert (lab / "opt/fabjupyter-test/venv/bin/python").resolve(strict=False) == Path("/usr/bin/python3.11")
    assert os.readlink(lab / "bin") == "usr/bin" and os.readlink(lab / "usr/bin/sh") == "dash"


def test_images_are_built_once():
    before = images.rootfs("lab").stat().st_ino
    images.ensure()
    assert images.rootfs("lab").stat().st_ino == before


def test_images_are_rebuilt_when_what_they_are_made_of_changes():
    manifest = images.ensure()
    assert images.up_to_date(manifest)
    venv_python = next(p for p in manifest["sources"] if p.startswith(f"{JUPYTER_VENV}/lib/") and p.endswith(".py"))
    changed = json.loads(json.dumps(manifest))
    changed["sources"][venv_python][1] += 1  # another mtime
    assert not images.up_to_date(changed)
    fewer = json.loads(json.dumps(manifest))
    del fewer["sources"][venv_python]  # a file the last build did not have
    assert not images.up_to_date(fewer)
    assert not images.up_to_date(dict(manifest, version=images.VERSION - 1))
    libc = next(p for p in manifest["libraries"] if p.endswith("/libc.so.6"))
    assert libc in manifest["sources"]  # a library's update is seen too


def test_images_are_built_under_a_lock():
    """A second test process waits for the build of the first (here: for the lock this test holds)."""
    images.ensure()
    code = "import sys; sys.path.insert(0, sys.argv[1]); from tests import images; images.ensure(); print('ready')"
    with open(images.IMAGES / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        other = subprocess.Popen([sys.executable, "-c", code, str(Path(__file__).resolve().parent.parent)],
                                 stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(3)
            assert other.poll() is None
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    assert other.communicate(timeout=60)[0] == "ready\n"


# --- Charliecloud -------------------------------------------------------------------------------
def test_ch_run_runs_jupyter_and_reads_the_marker(host):
    for name in images.NAMES:
        image = shlex.quote(str(images.rootfs(name)))
        r = ssh(host, "fjimage", f'ch-run -b "$HOME:$HOME" {image} -- {JUPYTER} lab --version;'
                                 f' ch-run {image} -- {PYTHON} -c "print(open(\'{images.MARKER}\').read().strip())"')
        assert r.stdout.split() == [_venv_lab_version(), name], r


def test_every_binary_in_the_image_finds_its_libraries(host):
    root = images.rootfs("lab")
    binaries = sorted("/" + str(p.relative_to(root)) for p in root.rglob("*")
                      if p.is_file() and not p.is_symlink() and images._elf(p))
    assert len(binaries) > 50
    loop = ('for f in "$@"; do /lib64/ld-linux-x86-64.so.2 --list "$f" > /dev/null 2>&1'
            ' && /lib64/ld-linux-x86-64.so.2 --list "$f" | grep "not found" && echo "in $f"; done; echo checked $#')
    r = ssh(host, "fjimage", shlex.join(["ch-run", str(root), "--", "sh", "-c", loop, "sh", *binaries]))
    assert r.stdout.strip() == f"checked {len(binaries)}", r.stdout


def _start(host, alias, command, port):
    """Start COMMAND (a shell line) in the background over ssh as the tool would (nohup, output to
    a log, stdin closed); its pid (the runtime client's: ch-run, podman run) and the account's
    runtime directory."""
    user = host.users[alias]
    runtime_dir = user.home / f"runtime-{port}"
    script = (f"mkdir -p {shlex.quote(str(runtime_dir))} && cd || exit 1\n"
              f"JUPYTER_RUNTIME_DIR={shlex.quote(str(runtime_dir))} nohup {command} > jupyter-{port}.log 2>&1 < /dev/null &\n"
              "echo $!")
    pid = int(ssh(host, alias, script).stdout.strip())
    try:
        wait_port(port, timeout=90)
    except RuntimeError:
        raise AssertionError((user.home / f"jupyter-{port}.log").read_text(errors="replace"))
    return pid, runtime_dir


def _lab_args(port):
    return f"{JUPYTER} lab --no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port={port} --port-retries=0 --ServerApp.token=''"


def test_jupyter_in_ch_run_is_the_ch_run_process(host):
    """ch-run execs the command: Jupyter keeps ch-run's pid, a host pid, in the host's PID and
    network namespaces; its runtime file lands in the home; SIGTERM to that pid stops it all."""
    user, port = host.users["fjimage"], free_port()
    image = shlex.quote(str(images.rootfs("lab")))
    pid, runtime_dir = _start(host, "fjimage", f'ch-run -b "$HOME:$HOME" --cd "$HOME" {image} -- {_lab_args(port)}', port)
    try:
        info = _server_file(runtime_dir)
        assert info["pid"] == pid and info["port"] == port
        assert _uid(pid) == user.uid
        assert _stat(pid)[2] == "jupyter-lab"
        assert os.readlink(f"/proc/{pid}/ns/pid") == os.readlink("/proc/self/ns/pid")
        assert os.readlink(f"/proc/{pid}/ns/net") == os.readlink("/proc/self/ns/net")
        assert info["root_dir"] == str(user.home)  # without --cd, ch-run starts in /
        ssh(host, "fjimage", f"kill -TERM {pid}")
        _wait(lambda: not _alive(pid) and _port_closed(port), 30, "stopped by SIGTERM")
        assert not list(runtime_dir.glob("jpserver-*.json"))
    finally:
        kill_pids(lambda: [pid] if _alive(pid) else [], survivors_fail=False)


# --- rootless podman ----------------------------------------------------------------------------
def test_podman_runs_the_imported_images(host):
    ids = {}
    for name in images.NAMES:
        ref = images.podman_image(host.users["fjimage"].name, name)
        r = ssh(host, "fjimage", f'{shlex.join(PODMAN_RUN)} -v "$HOME:$HOME" {ref} cat {images.MARKER}')
        assert r.stdout == f"{name}\n", r
        ids[name] = ssh(host, "fjimage", shlex.join(["podman", "image", "inspect", "--format", "{{.Id}}", ref])).stdout.strip()
        assert re.fullmatch("[0-9a-f]{64}", ids[name]), ids
    assert ids["lab"] != ids["lab2"]
    assert ssh(host, "fjimage", "podman ps -a -q").stdout == ""  # --rm


def _podman_lab(host, alias, port, name="lab"):
    ref = images.podman_image(host.users[alias].name, name)
    # podman passes none of the session's environment but what -e names (-e NAME: its value there)
    return (f'{shlex.join(PODMAN_RUN)} -v "$HOME:$HOME" -w "$HOME" -e HOME -e JUPYTER_RUNTIME_DIR {ref} {_lab_args(port)}')


def test_jupyter_in_podman_is_conmons_child_and_stops_with_the_client(host):
    """With --pid=host the runtime file's pid is a host pid, but not podman run's: Jupyter is the
    child of conmon, which is no child of the client. SIGTERM to the client (podman run proxies
    signals) stops Jupyter; conmon goes and --rm removes the container."""
    user, port = host.users["fjimage"], free_port()
    client, runtime_dir = _start(host, "fjimage", _podman_lab(host, "fjimage", port), port)
    pid = None
    try:
        info = _server_file(runtime_dir)
        pid = info["pid"]
        assert info["port"] == port and _uid(pid) == user.uid
        assert os.readlink(f"/proc/{pid}/ns/pid") == os.readlink("/proc/self/ns/pid")
        parent = _stat(pid)[1]
        assert _stat(parent)[2] == "conmon"
        assert client not in _ancestors(pid)
        assert ssh(host, "fjimage", "podman ps -q").stdout.strip()
        ssh(host, "fjimage", f"kill -TERM {client}")
        _wait(lambda: not _alive(pid) and not _alive(parent) and _port_closed(port), 30, "stopped by SIGTERM to podman run")
        _wait(lambda: ssh(host, "fjimage", "podman ps -a -q").stdout == "", 30, "the container removed")
        left = [_stat(p)[2] for p in _pids_of([user.uid])]
        assert left in ([], ["podman pause"]), left  # the rootless pause process stays, by design
    finally:
        kill_pids(lambda: [p for p in (client, pid) if p and _alive(p)], survivors_fail=False)


def test_podman_stops_jupyter_when_the_first_client_is_killed(host):
    """podman run re-executes itself in the user namespace; SIGKILL to the first process alone
    (the pid `$!` names) still stops Jupyter: the second gets SIGTERM as it loses its parent and
    proxies it."""
    user, port = host.users["fjimage"], free_port()
    client, runtime_dir = _start(host, "fjimage", _podman_lab(host, "fjimage", port), port)
    pid = _server_file(runtime_dir)["pid"]
    try:
        ssh(host, "fjimage", f"kill -KILL {client}")
        _wait(lambda: not _alive(pid) and _port_closed(port), 30, "stopped")
        _wait(lambda: ssh(host, "fjimage", "podman ps -a -q").stdout == "", 30, "the container removed")
        assert "received signal 15, stopping" in (user.home / f"jupyter-{port}.log").read_text()
    finally:
        kill_pids(lambda: [pid] if _alive(pid) else [], survivors_fail=False)


def test_podman_container_outlives_a_killed_client(host):
    """SIGKILL to every podman run process (as killing a launcher's process group would do):
    nobody proxies a signal, and Jupyter goes on under conmon, its container Up. SIGTERM to
    Jupyter's own pid (the runtime file's) then ends conmon and removes the container."""
    user, port = host.users["fjimage"], free_port()
    client, runtime_dir = _start(host, "fjimage", _podman_lab(host, "fjimage", port), port)
    pid = _server_file(runtime_dir)["pid"]
    try:
        clients = [p for p in _pids_of([user.uid]) if client in (p, *_ancestors(p)) and _stat(p)[2] == "podman"]
        assert client in clients and len(clients) >= 2  # podman re-executes itself in the user namespace
        ssh(host, "fjimage", "kill -KILL " + " ".join(map(str, clients)))
        _wait(lambda: not any(_alive(p) for p in clients), 10, "the clients gone")
        time.sleep(2)
        assert _alive(pid) and not _port_closed(port)
        assert " Up " in ssh(host, "fjimage", "podman ps").stdout
        ssh(host, "fjimage", f"kill -TERM {pid}")
        _wait(lambda: not _alive(pid) and _port_closed(port), 30, "stopped by SIGTERM to its pid")
        _wait(lambda: ssh(host, "fjimage", "podman ps -a -q").stdout == "", 30, "the container removed")
    finally:
        kill_pids(lambda: [pid] if _alive(pid) else [], survivors_fail=False)


def test_podman_in_a_fresh_accounts_first_ssh_session(host):
    """An account that never logged in: no XDG_RUNTIME_DIR (no PAM here), and podman still works,
    keeping its run state in /tmp/podman-run-UID (which outlives the account) and its storage in
    the home."""
    user = host.users["fjimgnew"]
    r = ssh(host, "fjimgnew", 'echo "xdg=${XDG_RUNTIME_DIR-unset}"; podman info --format "{{.Store.GraphRoot}} {{.Store.RunRoot}} {{.Store.GraphDriverName}}"')
    lines = r.stdout.splitlines()
    assert lines[0] == "xdg=unset"
    assert lines[1] == f"{user.home}/.local/share/containers/storage /tmp/podman-run-{user.uid}/containers overlay", r
    assert images.podman_leftovers(user.uid)


def test_missing_images(host):
    """What each runtime says when the image is not there (the tool checks before it starts)."""
    r = ssh(host, "fjimage", "podman run --rm --pull=never localhost/fjtest-missing true", check=False)
    assert r.returncode == 125 and "Error: localhost/fjtest-missing: image not known" in r.stderr, r
    r = ssh(host, "fjimage", "podman image exists localhost/fjtest-missing", check=False)
    assert r.returncode == 1 and r.stdout == "", r
    r = ssh(host, "fjimage", "ch-run /nonexistent/fjtest-image -- true", check=False)
    assert r.returncode == 1, r
    assert re.search(r"ch-run\[\d+\]: error: can't stat: /nonexistent/fjtest-image: No such file or directory", r.stderr), r


def test_ch_run_cannot_bind_where_the_image_has_no_directory(host):
    """A read-only directory image takes binds only onto directories it has: a home at
    /home/USER needs --home or -b /home (this host's homes are under /tmp, shared anyway)."""
    image = shlex.quote(str(images.rootfs("lab")))
    r = ssh(host, "fjimage", f'ch-run -b "$HOME:/home/$USER" {image} -- true', check=False)
    assert r.returncode == 1 and "can't mkdir" in r.stderr and "Read-only file system" in r.stderr, r
    r = ssh(host, "fjimage", f'ch-run --home {image} -- sh -c \'echo "$HOME"; test -O "$HOME" && echo mine\'')
    assert r.stdout.split() == [f"/home/{host.users['fjimage'].name}", "mine"], r


def test_start_cost(host):
    """How long each runtime takes to run `true` (median of 5, timed inside the session)."""
    image = shlex.quote(str(images.rootfs("lab")))
    ref = images.podman_image(host.users["fjimage"].name, "lab")
    costs = {}
    for runtime, command in (("ch-run", f"ch-run {image} -- true"),
                             ("podman", f"{shlex.join(PODMAN_RUN)} {ref} true")):
        loop = (f"for i in 1 2 3 4 5; do s=$(date +%s%N); {command} || exit 1; e=$(date +%s%N);"
                " echo $(( (e - s) / 1000000 )); done")
        times = [int(t) for t in ssh(host, "fjimage", loop, timeout=300).stdout.split()]
        assert len(times) == 5
        costs[runtime] = statistics.median(times)
    print(f"\nmedian start cost, ms: {costs}")
    assert all(ms < 30000 for ms in costs.values()), costs
