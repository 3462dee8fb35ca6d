"""This tool's own ssh_config file against real hosts: OpenSSH's own client, given that file and
nothing else (as VS Code Remote-SSH runs it), opens the entry's LocalForward and a password login
through it works; on the SLURM test cluster with an sshd on the compute node, the entry lands on
the job's node, through the login node, and is marked once the job has ended. The entries' own
logic, without a host: tests/test_entries.py."""

import contextlib
import json
import shutil
import socket
import subprocess
import time

import pytest

from .conftest import Fab
from .jupyter_http import login_and_list
from .slurmcluster import SlurmCluster
from .sshhost import free_port

PASSWORD = "correct horse"


def entries_file(fab):
    return fab.config_home / "fabjupyter" / "ssh_config"


def ssh_G(path, alias):
    """The options OpenSSH takes for ALIAS from the file alone."""
    r = subprocess.run(["ssh", "-G", "-F", str(path), alias], capture_output=True, text=True, check=True, timeout=30)
    options = {}
    for line in r.stdout.splitlines():
        key, _, value = line.partition(" ")
        options.setdefault(key, []).append(value)
    return options


@contextlib.contextmanager
def ssh_forward(path, alias, port, timeout=60):
    """`ssh -F PATH -N ALIAS`: only the generated file, no option of ours; yields once its
    LocalForward on PORT accepts a connection."""
    proc = subprocess.Popen(["ssh", "-F", str(path), "-N", alias], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"ssh -F {path} -N {alias} exited {proc.returncode}: {proc.stderr.read()}")
            if accepts(port):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing answers on local port {port} after {timeout} s")
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize("tcp", [True, False], ids=["port", "socket"])
def test_openssh_given_only_the_file_forwards_to_jupyter_and_a_login_works(fab, local_port, tcp):
    fab.hosts(f"defaults:\n  local_port: {local_port}\n", tcp=tcp)
    fab.setup()
    path = entries_file(fab)
    alias = f"fabjupyter-{fab.user}"
    options = ssh_G(path, alias)
    assert options["localforward"][0].startswith(f"[127.0.0.1]:{local_port} ")
    assert options["localforward"][0].endswith(".sock") != tcp, options["localforward"]  # the socket, or the port
    with ssh_forward(path, alias, local_port):
        assert login_and_list(f"http://localhost:{local_port}/", PASSWORD)[:2] == (200, 200)
        assert login_and_list(f"http://localhost:{local_port}/", "wrong")[1] != 200  # the password is asked

    # a tunnel told to take another port: the entry takes it too (one URL either way)
    other = free_port()
    proc, url, out = fab.tunnel("--local-port", str(other))
    assert url == f"http://localhost:{other}/", out
    assert ssh_G(path, alias)["localforward"][0].startswith(f"[127.0.0.1]:{other} ")


def test_ssh_config_prints_the_include_line_and_a_second_run_changes_nothing(fab, local_port):
    fab.hosts(f"defaults:\n  local_port: {local_port}\n")
    fab.setup()
    path = entries_file(fab)
    before = path.read_bytes()
    r = fab("ssh-config")
    assert f"fjtest: `ssh fabjupyter-{fab.user}` logs in to the host and forwards http://localhost:{local_port}/" in r.stdout
    assert f"fjtest: {path} unchanged" in r.stdout, r.stdout  # setup wrote it already
    assert f"    Include {path}" in r.stdout  # the one line for ~/.ssh/config (this tool never edits it)
    assert path.read_bytes() == before
    record = json.loads(fab("ssh-config", "--json").stdout)
    assert (record["alias"], record["local_port"], record["forwards"]) == (f"fabjupyter-{fab.user}", local_port, True)
    fab("stop")
    r = fab("ssh-config")
    assert "Jupyter is not running there, so no LocalForward" in r.stdout and "written" in r.stdout, r.stdout
    assert "localforward" not in ssh_G(path, f"fabjupyter-{fab.user}")


def test_a_hosts_yaml_value_that_would_inject_a_directive_is_refused(fab, tmp_path):
    """A key whose path has a quote: Fabric logs in with it, and ssh-config refuses to write it
    (it would end the quoted value and start a directive), one line, exit 1, the file unchanged."""
    fab.setup()
    path = entries_file(fab)
    before = path.read_bytes()
    key = tmp_path / 'k" ProxyCommand "touch pwned'
    shutil.copy(fab.sshhost.client_key, key)
    key.chmod(0o600)
    fab.hosts(f"hosts:\n  {fab.user}:\n    identity: {json.dumps(str(key))}\n")
    assert fab("status").returncode == 0  # the key itself works
    r = fab("ssh-config", check=False)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("fjtest: cannot write its ssh_config entry: IdentityFile ") and "has a quote" in r.stderr
    assert path.read_bytes() == before
    r = fab.setup()  # setup itself succeeds, and says why the entry was not written
    assert "has a quote or a backslash; its ssh_config entry is left as it was" in r.stdout, r.stdout
    assert path.read_bytes() == before


@pytest.fixture(scope="module")
def cluster():
    c = SlurmCluster(node_sshd=True)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def fab_slurm(cluster, tmp_path):
    cluster.reset()
    f = Fab(cluster.login, "fjslurm", tmp_path / "hosts.yaml")
    try:
        yield f
    finally:
        f.cleanup()
        cluster.reset()


def test_a_batch_jobs_entry_lands_on_its_node_through_the_login_node(cluster, fab_slurm, local_port):
    fab = fab_slurm
    fab.hosts(f"defaults:\n  local_port: {local_port}\nhosts:\n  {fab.user}:\n    launcher: slurm\n"
              f"    sbatch: [\"--time=00:10:00\"]\n")
    fab.setup()
    record = fab.status()
    assert record["running"] and record["node"] == cluster.node, record
    path = entries_file(fab)
    alias = f"fabjupyter-{fab.user}"
    options = ssh_G(path, alias)
    assert options["hostname"] == [record["address"]] and options["proxyjump"] == [f"{alias}-login"]

    # OpenSSH with the file alone: on the node, through the login node
    log_before = cluster.node_sshd_log.read_text(errors="replace")
    r = subprocess.run(["ssh", "-F", str(path), alias, "hostname"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=60)
    assert (r.returncode, r.stdout.strip()) == (0, cluster.node), r.stderr
    log = cluster.node_sshd_log.read_text(errors="replace")[len(log_before):]
    user = cluster.login.users[fab.user].name
    assert f"Connection from {cluster.link_addr} port" in log and f"Accepted publickey for {user} " in log, log

    # its LocalForward, from the node to Jupyter there: a password login through it
    with ssh_forward(path, alias, local_port):
        assert login_and_list(f"http://localhost:{local_port}/", PASSWORD)[:2] == (200, 200)

    # the job ends: the entry stays, marked, without its forward
    cluster.slurm("scancel", record["job_id"], check=True)
    cluster.wait_state(record["job_id"], "CANCELLED", timeout=30)
    r = fab("ssh-config")
    assert f"`ssh {alias}` logs in to node {record['address']} of the last job, which has ended" in r.stdout, r.stdout
    options = ssh_G(path, alias)
    assert options["hostname"] == [record["address"]] and "localforward" not in options
    assert f"job {record['job_id']} ended (CANCELLED" in path.read_text()
