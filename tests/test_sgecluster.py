"""The Grid Engine test cluster itself (tests/sgecluster.py): a plain qsub on the login node runs
as the user on the compute node, qstat shows it while it runs, qdel ends it, a disabled queue
keeps a job pending with the scheduler's reason; a second cluster runs beside the first, and
nothing either started is left after close().

With FJ_SGE_SAMPLES=DIR, the qstat outputs of a pending, a running and a deleted job are written
to DIR (tests/data/sge holds a set: parse tests read them)."""

import os
import time
from pathlib import Path

import pytest

from .sgecluster import SgeCluster
from .slurmcluster import cmdline_of, netns_id

JOB = "#!/bin/sh\nhostname\nhostname -I\ngetent hosts \"$(hostname)\"\nid -un\necho \"$JOB_ID $QUEUE $JOB_NAME\"\n"


@pytest.fixture(scope="module")
def cluster():
    c = SgeCluster()
    print(f"Grid Engine test cluster up in {c.startup_seconds:.2f} s")
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def sge(cluster):
    cluster.reset()
    yield cluster
    cluster.reset()


def alive(pid):
    """Whether PID is a process that is not a zombie (the shepherd's: its parent, execd, is
    killed first and it is init's to reap)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def write_script(sge, user, name, text):
    r = sge.run_in_login(user, f"cat > {name}", input=text)
    assert r.returncode == 0, r.stderr


def wait_file(sge, user, name, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        r = sge.run_in_login(user, f"cat {name}")
        if r.returncode == 0 and r.stdout or time.monotonic() > deadline:
            return r.stdout
        time.sleep(0.3)


def test_cluster_is_up_for_every_login_shell(sge):
    for user in ("fjsge", "fjsgesh"):
        r = sge.run_in_login(user, "echo $SGE_ROOT $SGE_CELL; qconf -ss; qconf -sel; qconf -sql")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == [f"{sge.root} default", sge.login_host, sge.node, "all.q", "down.q"]
    assert sge.queue_state("all.q") == ""
    assert sge.queue_state("down.q") == "d"


def test_plain_qsub_runs_on_the_compute_node(sge):
    write_script(sge, "fjsge", "job.sh", JOB)
    job = sge.qsub("fjsge", "job.sh")
    out = wait_file(sge, "fjsge", f"job.sh.o{job}").splitlines()
    user = sge.login.users["fjsge"].name
    assert [line.split() for line in out] == [[sge.node], [sge.node_addr], [sge.node_addr, sge.node], [user],
                                               [str(job), "all.q", "job.sh"]]
    assert sge.wait_state(job, None, timeout=30) is None  # a finished job leaves qstat
    # qacct reads it from the accounting file (flushed every second)
    deadline = time.monotonic() + 10
    while (r := sge.run_in_login("fjsge", f"qacct -j {job}")).returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.3)
    fields = dict(line.split(None, 1) for line in r.stdout.splitlines() if " " in line.strip() and not line.startswith("="))
    assert (fields["hostname"].strip(), fields["owner"].strip(), fields["exit_status"].strip()) == (sge.node, user, "0"), r.stdout
    # and the login node resolves the node's name to the same address
    assert sge.run_in_login("fjsge", f"getent hosts {sge.node}").stdout.split() == [sge.node_addr, sge.node]


def test_qstat_shows_a_running_job_and_qdel_ends_it(sge):
    job = sge.qsub("fjsgesh", "-N web -b y sleep 600")
    assert sge.wait_state(job, "r", timeout=30) == "r"
    [entry] = sge.jobs("fjsgesh")
    assert (entry["id"], entry["state"], entry["name"], entry["queue"]) == (job, "r", "web", f"all.q@{sge.node}")
    r = sge.run_in_login("fjsgesh", "qstat")
    [line] = [line for line in r.stdout.splitlines() if line.split()[:1] == [str(job)]]
    assert line.split()[2:5] == ["web", sge.login.users["fjsgesh"].name, "r"] and f"all.q@{sge.node}" in line.split()

    # the shepherd runs it as `-sh -c sleep 600` (sh is one of the login_shells), which runs sleep
    sleeps = [pid for pid in sge.compute_pids("fjsgesh") if cmdline_of(pid) == "sleep 600"]
    assert len(sleeps) == 1
    assert netns_id(f"/proc/{sleeps[0]}/ns/net") == netns_id(f"/run/netns/{sge.compute_ns}")
    assert sleeps[0] not in sge.login_pids()

    r = sge.run_in_login("fjsgesh", f"qdel {job}")
    assert r.returncode == 0, r.stderr
    sge.wait_state(job, None, timeout=30)
    deadline = time.monotonic() + 10
    while sge.compute_pids("fjsgesh") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sge.compute_pids("fjsgesh") == []


def test_disabled_queue_keeps_the_job_pending(sge):
    job = sge.qsub("fjsge", "-q down.q -b y true")
    deadline = time.monotonic() + 20
    while "dropped because it is disabled" not in (r := sge.run_in_login("fjsge", f"qstat -j {job}")).stdout:
        assert time.monotonic() < deadline, r.stdout
        time.sleep(0.3)
    assert sge.job_state(job) == "qw"
    assert sge.compute_pids("fjsge") == []


def capture(sge, user, job, kind, samples):
    """The qstat outputs of JOB, for the sample files: {file name: text}."""
    name = sge.login.users[user].name
    outputs = {}
    for suffix, command in (("qstat-j.txt", f"qstat -j {job}"), ("qstat-j.xml", f"qstat -j {job} -xml"),
                            ("qstat-u.txt", f"qstat -u {name}"), ("qstat-u.xml", f"qstat -xml -u {name}"),
                            ("qstat-s-z.txt", f"qstat -s z -u {name}")):  # z: finished (zombie) jobs
        r = sge.run_in_login(user, command)
        outputs[f"{kind}-{suffix}"] = r.stdout + (f"[stderr]\n{r.stderr}" if r.stderr else "") + f"[exit {r.returncode}]\n"
    if samples:
        samples.mkdir(parents=True, exist_ok=True)
        for file, text in outputs.items():
            (samples / file).write_text(text)
    return outputs


def test_qstat_of_pending_running_and_deleted_jobs(sge):
    samples = Path(os.environ["FJ_SGE_SAMPLES"]) if os.environ.get("FJ_SGE_SAMPLES") else None
    pending = sge.qsub("fjsge", "-N fabjupyter-pending -q down.q -b y sleep 600")
    running = sge.qsub("fjsge", "-N fabjupyter-running -l h_rt=0:10:0 -b y sleep 600")
    sge.wait_state(running, "r", timeout=30)
    deadline = time.monotonic() + 20
    while "dropped because it is disabled" not in sge.run_in_login("fjsge", f"qstat -j {pending}").stdout:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    out = capture(sge, "fjsge", pending, "pending", samples)
    assert "job_number:                 " in out["pending-qstat-j.txt"] and f"{pending}\n" in out["pending-qstat-j.txt"]
    assert f'queue instance "down.q@{sge.node}" dropped because it is disabled' in out["pending-qstat-j.txt"]
    assert "<state>qw</state>" in out["pending-qstat-u.xml"] and "<state>r</state>" in out["pending-qstat-u.xml"]
    out = capture(sge, "fjsge", running, "running", samples)
    assert f"all.q@{sge.node}" in out["running-qstat-u.txt"]
    assert f"<queue_name>all.q@{sge.node}</queue_name>" in out["running-qstat-u.xml"]  # qstat -j has no host
    assert "hard resource_list:         h_rt=600\n" in out["running-qstat-j.txt"]
    assert sge.run_in_login("fjsge", f"qdel {running}").returncode == 0
    out = capture(sge, "fjsge", running, "deleted", samples)  # at once: qstat may still show it (dr)
    sge.wait_state(running, None, timeout=30)
    out = capture(sge, "fjsge", running, "gone", samples)
    assert out["gone-qstat-j.txt"].endswith("[exit 1]\n")
    if samples:
        deadline = time.monotonic() + 10
        while (r := sge.run_in_login("fjsge", f"qacct -j {running}")).returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.3)
        (samples / "deleted-qacct-j.txt").write_text(r.stdout + f"[exit {r.returncode}]\n")


def test_second_cluster_beside_and_nothing_left_after_close(cluster):
    other = SgeCluster(users=(("fjsge2", "/bin/sh", False, False),), login_index=46, compute_index=47, slots=1)
    try:
        pids = other.daemon_pids()
        assert len(pids) == 2, pids  # qmaster and execd
        job = other.qsub("fjsge2", "-b y sleep 600")
        other.wait_state(job, "r", timeout=30)
        deadline = time.monotonic() + 10  # and the job's shepherd, a moment after qstat says r
        while len(pids := other.daemon_pids()) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(pids) == 3, pids
        base, namespaces, hosts = other.base, (other.login_ns, other.compute_ns), other.netns_hosts
    finally:
        other.close()
    assert [pid for pid in pids if alive(pid)] == []
    assert not base.exists() and not hosts.exists() and not other.login.base.exists()
    assert not [ns for ns in namespaces if os.path.exists(f"/run/netns/{ns}")]
    # the first cluster is untouched
    cluster.reset()
    job = cluster.qsub("fjsge", "-b y hostname")
    assert wait_file(cluster, "fjsge", f"hostname.o{job}").strip() == cluster.node
    cluster.reset()


def test_qmaster_away_for_a_moment(sge):
    samples = Path(os.environ["FJ_SGE_SAMPLES"]) if os.environ.get("FJ_SGE_SAMPLES") else None
    job = sge.qsub("fjsge", "-b y sleep 600")
    sge.wait_state(job, "r", timeout=30)
    sge.stop_qmaster()
    try:
        name = sge.login.users["fjsge"].name
        for suffix, command in (("qstat-j.txt", f"qstat -j {job}"), ("qstat-u.xml", f"qstat -xml -u {name}")):
            r = sge.run_in_login("fjsge", command)
            assert (r.returncode, r.stdout) == (1, ""), r
            assert f'unable to send message to qmaster using port 6444 on host "{sge.login_host}"' in r.stderr, r
            if samples:
                (samples / f"qmaster-down-{suffix}").write_text(f"[stderr]\n{r.stderr}[exit {r.returncode}]\n")
        # the job goes on without it
        assert [pid for pid in sge.compute_pids("fjsge") if cmdline_of(pid) == "sleep 600"]
    finally:
        sge.start_qmaster()
    assert sge.wait_state(job, "r", timeout=30) == "r"
