"""The SLURM test cluster itself (tests/slurmcluster.py): jobs submitted over ssh on the login
node run as the user on the compute node, in its network namespace, reachable from the login
node at the node's address only; a down partition keeps a job pending; a time limit ends a job
as TIMEOUT; sbatch's own errors reach the user; sacct has no accounting to read."""

import os
import socket
import subprocess
import time
import urllib.request

import pytest

from .slurmcluster import SlurmCluster, netns_id
from .sshhost import free_port

PORT = 8765  # in the compute namespace: nothing else there


@pytest.fixture(scope="module")
def cluster():
    c = SlurmCluster()
    print(f"SLURM test cluster up in {c.startup_seconds:.2f} s")
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def slurm(cluster):
    cluster.reset()
    yield cluster
    cluster.reset()


def fetch_from_login(cluster, url):
    """An HTTP GET from the login node's network namespace: (status or None, error)."""
    r = cluster.in_login("python3", "-c", f"import urllib.request as u; print(u.urlopen({url!r}, timeout=3).status)")
    return (int(r.stdout) if r.returncode == 0 else None), r.stderr.strip().splitlines()[-1:]


def wait_http(cluster, url, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        status, err = fetch_from_login(cluster, url)
        if status or time.monotonic() > deadline:
            return status, err
        time.sleep(0.2)


def test_config_reaches_every_login_shell(slurm):
    for user in ("fjslurm", "fjslurmsh"):
        r = slurm.run_in_login(user, "echo $SLURM_CONF; sinfo -h -o '%P %a %t %N'")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == str(slurm.conf)
        assert sorted(lines[1:]) == sorted([f"debug* up idle {slurm.node}", f"down down idle {slurm.node}"])


def test_job_learns_the_address_the_login_node_reaches(slurm):
    job = slurm.sbatch("fjslurm", "--time=1 --wrap 'hostname; hostname -I; getent hosts \"$(hostname)\"; "
                                  "echo $SLURMD_NODENAME; scontrol show node \"$SLURMD_NODENAME\" | grep -o \"NodeAddr=[^ ]*\"'")
    info = slurm.wait_state(job, "COMPLETED", timeout=30)
    assert info["NodeList"] == info["BatchHost"] == slurm.node
    out = slurm.run_in_login("fjslurm", f"cat slurm-{job}.out").stdout.splitlines()
    assert [line.split() for line in out] == [[slurm.node], [slurm.node_addr], [slurm.node_addr, slurm.node], [slurm.node],
                                               [f"NodeAddr={slurm.node_addr}"]]
    # and the login node resolves the node's name to the same address
    r = slurm.run_in_login("fjslurm", f"getent hosts {slurm.node}")
    assert r.stdout.split() == [slurm.node_addr, slurm.node]


def test_job_runs_on_the_compute_node_and_scancel_ends_it(slurm):
    job = slurm.sbatch("fjslurm", f"--time=5 --job-name=web --wrap 'exec python3 -m http.server {PORT} --bind $(hostname -I)'")
    info = slurm.wait_state(job, "RUNNING", timeout=30)
    assert info["NodeList"] == slurm.node
    [entry] = slurm.squeue("fjslurm")
    assert (entry["id"], entry["state"], entry["nodes"], entry["partition"], entry["name"]) == (job, "RUNNING", slurm.node, "debug", "web")

    status, err = wait_http(slurm, f"http://{slurm.node_addr}:{PORT}/")
    assert status == 200, err
    # as the user on the login node, by the node's name (the way a tunnel would go)
    r = slurm.run_in_login("fjslurm", f"python3 -c 'import urllib.request as u; print(u.urlopen(\"http://{slurm.node}:{PORT}/\").status)'")
    assert r.stdout.strip() == "200", r.stderr
    # through an ssh tunnel from this machine to the login node, then on to the node's name
    local = free_port()
    tunnel = subprocess.Popen(["ssh", "-F", str(slurm.login.ssh_config), "-N", "-o", "ExitOnForwardFailure=yes",
                               "-L", f"127.0.0.1:{local}:{slurm.node}:{PORT}", "fjslurm"], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while tunnel.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", local), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        assert urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=5).status == 200
    except Exception as e:
        tunnel.terminate()
        raise AssertionError(f"tunnel: {tunnel.communicate(timeout=10)[1]}") from e
    finally:
        if tunnel.poll() is None:
            tunnel.terminate()
            try:
                tunnel.wait(5)
            except subprocess.TimeoutExpired:  # seen here about once in 15 runs (OpenSSH 9.2)
                tunnel.kill()
                tunnel.wait()
    # the server is not on the login node: its loopback has nothing there
    status, err = fetch_from_login(slurm, f"http://127.0.0.1:{PORT}/")
    assert status is None and "Connection refused" in str(err), err

    servers = [pid for pid in slurm.compute_pids("fjslurm") if "http.server" in open(f"/proc/{pid}/cmdline").read()]
    assert len(servers) == 1
    assert os.stat(f"/proc/{servers[0]}").st_uid == slurm.login.users["fjslurm"].uid
    assert netns_id(f"/proc/{servers[0]}/ns/net") == netns_id(f"/run/netns/{slurm.compute_ns}")
    assert servers[0] not in slurm.login_pids()

    r = slurm.run_in_login("fjslurm", f"scancel {job}")
    assert r.returncode == 0, r.stderr
    info = slurm.wait_state(job, "CANCELLED", timeout=30)
    deadline = time.monotonic() + 10
    while slurm.compute_pids("fjslurm") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert slurm.compute_pids("fjslurm") == []
    assert fetch_from_login(slurm, f"http://{slurm.node_addr}:{PORT}/")[0] is None
    assert slurm.squeue("fjslurm") == []  # squeue's default states: pending, running, completing
    [entry] = slurm.squeue("fjslurm", states="all", jobs=[job])
    assert entry["state"] == "CANCELLED"


def test_down_partition_keeps_the_job_pending(slurm):
    job = slurm.sbatch("fjslurm", "-p down --time=1 --wrap 'sleep 60'")
    # until a scheduling pass has looked at it (its reason is None before), within a deadline
    deadline, r = time.monotonic() + 30, None
    while time.monotonic() < deadline:
        r = slurm.run_in_login("fjslurm", f"squeue -h -j {job} -o '%T|%r|%N|%P'")
        if r.stdout.strip() != "PENDING|None||down":
            break
        time.sleep(0.2)
    assert r.stdout.strip() == "PENDING|PartitionDown||down", (r.stdout, r.stderr)
    info = slurm.job(job)
    assert (info["JobState"], info["Reason"], info["NodeList"], info["StartTime"]) == ("PENDING", "PartitionDown", "", "Unknown")
    assert slurm.compute_pids("fjslurm") == []


def test_unknown_partition_is_sbatchs_own_error(slurm):
    r = slurm.sbatch("fjslurm", "-p nosuch --time=1 --wrap true", check=False)
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.splitlines() == [
        "sbatch: error: invalid partition specified: nosuch",
        "sbatch: error: Batch job submission failed: Invalid partition name specified",
    ]
    assert "nosuch" not in [entry["partition"] for entry in slurm.squeue("fjslurm", states="all")]


def test_sacct_has_no_accounting(slurm):
    r = slurm.run_in_login("fjslurm", "sacct")
    assert r.returncode == 1
    assert r.stderr.strip() == "Slurm accounting storage is disabled"


def test_time_limit_ends_the_job_as_timeout(slurm):
    started = time.time()
    job = slurm.sbatch("fjslurm", "--time=1 --wrap 'exec sleep 600'")
    running = slurm.wait_state(job, "RUNNING", timeout=30)
    assert running["TimeLimit"] == "00:01:00"
    assert slurm.squeue("fjslurm")[0]["time_left"] in ("1:00", "0:59", "0:58")
    check = slurm.next_timelimit_check(started + 60)  # the first check after the limit
    info = slurm.wait_state(job, "TIMEOUT", timeout=120)
    ended = time.time()
    print(f"--time=1 job ended {ended - started:.1f} s after sbatch (check expected at +{check - started:.1f} s)")
    assert 60 <= ended - started <= 95
    assert abs(ended - check) < 3
    assert (info["Reason"], info["ExitCode"]) == ("TimeLimit", "0:15")
    assert "DUE TO TIME LIMIT" in slurm.run_in_login("fjslurm", f"cat slurm-{job}.out").stdout
    [entry] = slurm.squeue("fjslurm", states="all", jobs=[job])
    assert (entry["state"], entry["reason"], entry["time_left"]) == ("TIMEOUT", "TimeLimit", "INVALID")
    assert f"JobId={job} " in slurm.jobcomp_log.read_text() and "JobState=TIMEOUT" in slurm.jobcomp_log.read_text()
    deadline = time.monotonic() + 10
    while slurm.compute_pids("fjslurm") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert slurm.compute_pids("fjslurm") == []


def test_finished_job_is_forgotten_after_min_job_age(slurm):
    job = slurm.sbatch("fjslurm", "--time=1 --wrap true")
    assert slurm.wait_state(job, "COMPLETED", timeout=30)["ExitCode"] == "0:0"
    slurm.reconfigure(MinJobAge=2)
    try:
        deadline = time.monotonic() + 70  # the periodic purge runs every 60 s at the latest
        while slurm.job(job) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert slurm.job(job) is None
        r = slurm.run_in_login("fjslurm", f"scontrol show job {job}; squeue -h -j {job}")
        assert r.stderr.splitlines() == ["slurm_load_jobs error: Invalid job id specified"] * 2
    finally:
        slurm.reconfigure(MinJobAge=slurm.min_job_age)
