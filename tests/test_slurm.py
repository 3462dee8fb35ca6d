"""launcher: slurm: Jupyter as a batch job on a compute node of a real SLURM cluster
(tests/slurmcluster.py: slurmctld on a login node with its own sshd, slurmd on a compute node in
another network namespace), reached through the login node."""

import json
import queue
import shlex
import signal
import subprocess
import threading
import time

import pytest

from tasks.agent import Slurm

from .conftest import ROOT, Fab
from .jupyter_http import login_and_list
from .slurmcluster import SlurmCluster
from .sshhost import JUPYTER_VENV, jupyter_servers

PASSWORD = "correct horse"


@pytest.fixture(scope="module")
def cluster():
    c = SlurmCluster()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def fab(cluster, tmp_path):
    cluster.reset()
    f = Fab(cluster.login, "fjslurm", tmp_path / "hosts.yaml")
    try:
        yield f
    finally:
        f.cleanup()
        cluster.reset()


def slurm_hosts(fab, *options, extra=""):
    fab.hosts(f"hosts:\n  {fab.user}:\n    launcher: slurm\n    sbatch: {json.dumps(list(options))}\n{extra}")


def jupyter_pids(cluster, where):
    """The test user's Jupyter servers on the compute or the login node."""
    return jupyter_servers(cluster.compute_pids("fjslurm") if where == "compute" else cluster.login_pids("fjslurm"))


def logs_in(url):
    """Whether the password login through URL works now (a forward to a job that is not up
    yet resets the connection)."""
    try:
        return login_and_list(url, PASSWORD)[1] == 200
    except (OSError, AssertionError):
        return False


def wait_until(test, timeout, every=1.0):
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


def test_a_job_runs_jupyter_on_the_compute_node_reached_through_the_login_node(cluster, fab, local_port):
    slurm_hosts(fab, "--time=00:10:00")
    # a dry run shows the batch script and submits nothing
    r = fab("setup", "--dry-run", "--password-stdin", input=PASSWORD + "\n")
    assert "the batch script it would submit:" in r.stdout and "    #SBATCH --time=00:10:00" in r.stdout, r.stdout
    assert "    #SBATCH --job-name=fabjupyter-default" in r.stdout and "    #!/bin/sh" in r.stdout
    assert cluster.squeue("fjslurm") == []

    r = fab.setup()
    [job] = cluster.squeue("fjslurm")
    job_id = str(job["id"])
    assert f"{fab.user}: job {job_id} submitted" in r.stdout and f"{fab.user}: job {job_id} RUNNING on {cluster.node}" in r.stdout, r.stdout
    assert "Jupyter started (JupyterLab 4." in r.stdout and f"job {job_id} on {cluster.node}" in r.stdout, r.stdout
    assert f"at http://{cluster.node_addr}:" in r.stdout and "on the node" in r.stdout, r.stdout
    record = fab.status()
    assert record["running"] and record["launcher"] == "slurm"
    assert (record["job_id"], record["job_state"], record["node"], record["address"]) == (job_id, "RUNNING", cluster.node, cluster.node_addr)
    assert record["time_left"] and record["ended"] is None and record["url"] == f"http://{cluster.node_addr}:{record['port']}/"
    # Jupyter runs on the compute node, not on the login node, and listens on the node's address only
    assert jupyter_pids(cluster, "compute") and not jupyter_pids(cluster, "login")
    # the job's proof, checked on the node: the process listening on the port is its Jupyter
    where = json.loads((fab.home / ".fabjupyter" / "job.where").read_text())
    assert (where["job_id"], where["ours"], where["port"], where["address"]) == (job_id, True, record["port"], cluster.node_addr)
    assert where["pid"] in jupyter_pids(cluster, "compute"), where
    probe = "import socket, sys; s = socket.socket(); s.settimeout(2); sys.exit(s.connect_ex((sys.argv[1], int(sys.argv[2]))))"
    assert cluster.in_compute("python3", "-c", probe, cluster.node_addr, str(record["port"])).returncode == 0
    assert cluster.in_compute("python3", "-c", probe, "127.0.0.1", str(record["port"])).returncode != 0
    [listed] = [json.loads(line) for line in fab("list", "--json").stdout.splitlines()]
    assert (listed["launcher"], listed["job_id"], listed["node"], listed["port"]) == ("slurm", job_id, cluster.node, record["port"])
    assert f"job {job_id} {cluster.node}:{record['port']}" in fab("list").stdout
    # its runtime files are in the shared home, not the login node's /run/user
    assert list((fab.home / ".fabjupyter" / "runtime").glob("jpserver-*.json"))

    # the password login, through the login node to the node
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert url, out
    assert login_and_list(url, PASSWORD)[1] == 200 and login_and_list(url, "wrong")[1] == 403

    # again with nothing changed: the same job
    r = fab.setup()
    assert "nothing changed" in r.stdout and [j["id"] for j in cluster.squeue("fjslurm")] == [job["id"]], r.stdout
    assert fab("logs").stdout.count("Jupyter Server") >= 1

    # restart resubmits; the open tunnel follows the new job
    r = fab("restart")
    assert f"Jupyter stopped (job {job_id})" in r.stdout, r.stdout
    [new] = cluster.squeue("fjslurm")
    assert new["id"] != job["id"]
    assert wait_until(lambda: logs_in(url), 60, every=2), "".join(proc.output_lines)
    fab.cleanup()

    # a changed setting (the sbatch options) cancels and resubmits, and says so
    slurm_hosts(fab, "--time=00:09:00")
    r = fab.setup()
    assert f"stopped the running Jupyter (job {new['id']})" in r.stdout, r.stdout
    [third] = cluster.squeue("fjslurm")
    assert third["id"] != new["id"]

    r = fab("stop")
    assert f"Jupyter stopped (job {third['id']})" in r.stdout, r.stdout
    assert cluster.squeue("fjslurm") == []
    assert wait_until(lambda: not cluster.compute_pids("fjslurm"), 20), cluster.compute_pids("fjslurm")
    assert not fab.status()["running"]


def test_a_job_that_cannot_start_shows_its_reason_and_ctrl_c_cancels_it(cluster, fab):
    slurm_hosts(fab, "--partition=down", "--time=00:05:00")
    proc = subprocess.Popen(fab.args("setup", "--password-stdin"), cwd=ROOT, env=fab.env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    fab.children.append(proc)
    proc.stdin.write(PASSWORD + "\n")
    proc.stdin.close()
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if " PENDING (" in line or not line:
            break
    assert " PENDING (" in lines[-1], lines
    assert "PartitionDown" in lines[-1] or "PartitionInactive" in lines[-1], lines
    [job] = cluster.squeue("fjslurm")
    proc.send_signal(signal.SIGINT)
    proc.wait(90)
    err = proc.stderr.read()
    assert proc.returncode != 0
    assert f"cancelling job {job['id']}" in err and f"job {job['id']} cancelled" in err, err
    assert "Traceback" not in err
    assert cluster.squeue("fjslurm") == []
    record = fab.status()
    assert not record["running"]


def test_a_queue_timeout_cancels_the_job_and_says_why(cluster, fab):
    slurm_hosts(fab, "--partition=down", extra="    queue_timeout: 3\n")
    r = fab.setup(check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "was still PENDING (" in err[0] and "after 3 s in the queue; cancelled it" in err[0], err
    assert cluster.squeue("fjslurm") == []


def test_sbatch_refusing_the_options_is_one_line_with_its_own_words(cluster, fab):
    slurm_hosts(fab, "--partition=nope")
    r = fab.setup(check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    [line] = r.stderr.splitlines()
    assert line.startswith(f"{fab.user}: sbatch refused the job: ") and "invalid partition specified: nope" in line.lower(), r.stderr
    assert cluster.squeue("fjslurm") == []
    assert not (fab.home / ".fabjupyter" / "state").exists()


def test_a_job_that_hits_its_time_limit_is_reported_as_ended_and_why(cluster, fab):
    slurm_hosts(fab, "--time=1")
    fab.setup()
    assert fab.status()["running"]
    # slurmctld looks for jobs over their limit every 30 s: a 1-minute job ends within 90 s (and
    # is COMPLETING for a moment before it has ended)
    assert wait_until(lambda: fab.status()["ended"], 150, every=3)
    record = fab.status()
    assert record["job_state"] == "TIMEOUT" and record["ended"].startswith("TIMEOUT"), record
    r = fab("status")
    assert f"not running (job {record['job_id']} ended: TIMEOUT" in r.stdout, r.stdout
    assert wait_until(lambda: not cluster.compute_pids("fjslurm"), 30)


def test_idle_timeout_ends_the_job_by_itself(cluster, fab):
    slurm_hosts(fab, "--time=00:10:00", extra="    idle_timeout: 5\n")
    fab.setup()
    job_id = fab.status()["job_id"]
    # Jupyter looks at its activity once a minute; its exit ends the job
    assert wait_until(lambda: cluster.squeue("fjslurm") == [], 150, every=3)
    record = fab.status()
    assert not record["running"] and record["job_id"] == job_id and record["job_state"] == "COMPLETED", record
    assert wait_until(lambda: not cluster.compute_pids("fjslurm"), 30)


def test_socket_and_public_mode_are_refused_with_slurm(cluster, fab):
    slurm_hosts(fab, extra="    socket: true\n")
    r = fab("status", check=False)
    assert r.returncode == 1 and "launcher slurm runs Jupyter on a compute node" in r.stderr, r.stderr


def test_the_log_path_reaches_sbatch_as_one_word_whatever_it_holds(cluster, fab):
    """#SBATCH --output: a path with a space (a home such as "/home/Jane Doe"), a quote, a # and
    a % reaches sbatch as the one path it is (sbatch splits #SBATCH lines at spaces, reads # as
    a comment and % as a pattern); here through the real sbatch, as the test user."""
    folder = fab.home / 'a b#"c%j'
    fab.as_user(f"mkdir {shlex.quote(folder.name)}")
    log = folder / "jupyter.log"
    header = Slurm().script_header("fabjupyter-quoting", str(log), [])
    assert header[1] == "#SBATCH " + '"--output=' + str(fab.home) + '/a b\\#\\"c%%j/jupyter.log"', header
    script = fab.home / "job.sh"
    script.write_text("\n".join(["#!/bin/sh", *header, "echo written by the job", ""]))
    job_id = cluster.sbatch(fab.user, str(script))
    cluster.wait_state(job_id, ["COMPLETED", "FAILED"], timeout=60)
    assert wait_until(lambda: log.exists() and "written by the job" in log.read_text(), 20), sorted(p.name for p in fab.home.iterdir())


LISTENER = r"""
import socket, sys
# another user's server on the port the job chose: it answers as a Jupyter asking for the
# password would, and prints every request it receives (one repr a line)
s = socket.socket()
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.settimeout(5)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
        while length and len(body) < length[0]:
            chunk = c.recv(65536)
            if not chunk:
                break
            body += chunk
            data += chunk
        print(repr(data), flush=True)
        if data.startswith(b"GET /login"):
            c.sendall(b"HTTP/1.1 200 OK\r\nSet-Cookie: _xsrf=x; Path=/\r\nContent-Length: 5\r\nConnection: close\r\n\r\nlogin")
        elif data.startswith(b"POST"):
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        else:
            c.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    except OSError:
        pass
    c.close()
"""

# The user's `jupyter:` command: JupyterLab, started once the other user holds the port the job
# chose (it waits for the test's word, ~/gap.held), a few seconds later (a slow start): the gap
# between the job's look at the port and Jupyter's bind, made certain
GAP_WRAPPER = """#!{python}
import os, sys, time
ports = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--ServerApp.port=")]
if ports:
    with open(os.path.expanduser("~/gap.port.tmp"), "w") as f:
        f.write(ports[0])
    os.rename(os.path.expanduser("~/gap.port.tmp"), os.path.expanduser("~/gap.port"))
    deadline = time.time() + 60
    while not os.path.exists(os.path.expanduser("~/gap.held")) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(3)
os.execv({lab!r}, [{lab!r}] + sys.argv[1:])
"""


def test_a_port_taken_on_the_node_before_jupyter_binds_it_never_sees_the_password(cluster, fab, local_port):
    """Another user on the compute node binds the port the job chose, after the job's look and
    before Jupyter's bind: the job finds that the listener is not its Jupyter, and setup fails in
    one line with the job cancelled; the other user's server never receives a login."""
    wrapper = fab.home / "gap-lab"
    wrapper.write_text(GAP_WRAPPER.format(python=JUPYTER_VENV / "bin" / "python", lab=str(JUPYTER_VENV / "bin" / "jupyter-lab")))
    wrapper.chmod(0o755)
    slurm_hosts(fab, "--time=00:05:00", extra=f"    jupyter: {wrapper}\n")
    other = cluster.login.users["fjslurmsh"]
    received, listener = queue.Queue(), None

    def hold_the_port():
        nonlocal listener
        deadline = time.monotonic() + 120
        while not (fab.home / "gap.port").exists():
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)
        port = (fab.home / "gap.port").read_text().strip()
        listener = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{cluster.compute_ns}", "setpriv", f"--reuid={other.uid}", f"--regid={other.uid}",
             "--init-groups", "python3", "-u", "-c", LISTENER, cluster.node_addr, port],
            env={"HOME": str(other.home), "PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        for line in listener.stdout:
            received.put(line.rstrip("\n"))
            if line.startswith("listening"):
                (fab.home / "gap.held").write_text("")

    holder = threading.Thread(target=hold_the_port, daemon=True)
    holder.start()
    try:
        r = fab.setup(check=False, password=PASSWORD)
        job_left = cluster.squeue("fjslurm")
        if r.returncode == 0:  # the user goes on to log in, as setup said they could
            proc, url, _ = fab.tunnel("--local-port", str(local_port))
            if url:
                logs_in(url)
        time.sleep(1)
        lines = []
        while not received.empty():
            lines.append(received.get())
        assert lines and lines[0] == "listening", (lines, r.stdout, r.stderr)
        requests = lines[1:]
        assert not [line for line in requests if "horse" in line or line.startswith("b'POST")], requests
        assert r.returncode != 0 and "Traceback" not in r.stderr, r.stdout + r.stderr
        [line] = r.stderr.splitlines()
        port = (fab.home / "gap.port").read_text().strip()
        assert line.startswith(f"{fab.user}: port {port} on {cluster.node} was taken by another process"), line
        assert "job was cancelled" in line, line
        assert job_left == [] and cluster.squeue("fjslurm") == []
        assert not fab.status()["running"]
    finally:
        if listener is not None and listener.poll() is None:
            listener.kill()
            listener.wait()
        holder.join(10)
