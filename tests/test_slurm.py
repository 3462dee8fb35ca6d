"""launcher: slurm: Jupyter as a batch job on a compute node of a real SLURM cluster
(tests/slurmcluster.py: slurmctld on a login node with its own sshd, slurmd on a compute node in
another network namespace), reached through the login node."""

import json
import os
import queue
import select
import shlex
import signal
import subprocess
import threading
import time
import urllib.request

import pytest

from tasks.remote.schedulers import Slurm

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


class Lines:
    """A process's output, a line at a time, never blocking past a deadline (select on its
    pipe, not readline)."""

    def __init__(self, stream):
        self.fd, self.buf, self.lines, self.ended = stream.fileno(), b"", [], False

    def until(self, test, timeout):
        """Read until a line passes TEST (that line), or the output ends or TIMEOUT passes (None)."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" in self.buf or (self.ended and self.buf):
                line, _, self.buf = self.buf.partition(b"\n")
                self.lines.append(line.decode(errors="replace"))
                if test(self.lines[-1]):
                    return self.lines[-1]
            left = deadline - time.monotonic()
            if self.ended or left <= 0:
                return None
            if select.select([self.fd], [], [], left)[0]:
                chunk = os.read(self.fd, 65536)
                self.ended = not chunk
                self.buf += chunk


HOLDER = r"""
import socket, sys, time
# another user's server on the compute node: it takes the port as soon as it is free (trying
# for two minutes), answers every request with 404 "holder", and prints each request's start
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
deadline = time.time() + 120
while True:
    try:
        s.bind((sys.argv[1], int(sys.argv[2])))
        break
    except OSError:
        if time.time() > deadline:
            raise
        time.sleep(0.01)
s.listen(16)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.settimeout(5)
    try:
        print(repr(c.recv(65536)[:200]), flush=True)
        c.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 6\r\nConnection: close\r\n\r\nholder")
    except OSError:
        pass
    c.close()
"""


class Holder:
    """HOLDER on the node's address and PORT, as the other test user: .listening once it holds
    the port, .requests what reached it."""

    def __init__(self, cluster, port):
        other = cluster.login.users["fjslurmsh"]
        self.port, self.requests, self.listening = port, [], threading.Event()
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{cluster.compute_ns}", "setpriv", f"--reuid={other.uid}", f"--regid={other.uid}",
             "--init-groups", "python3", "-u", "-c", HOLDER, cluster.node_addr, str(port)],
            env={"HOME": str(other.home), "PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("listening"):
                self.listening.set()
            else:
                self.requests.append(line.rstrip("\n"))

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def hold(cluster):
    """hold(port): another user's server on that port of the node (taken once free)."""
    made = []

    def start(port):
        made.append(Holder(cluster, port))
        return made[-1]

    try:
        yield start
    finally:
        for holder in made:
            holder.close()


def test_a_job_runs_jupyter_on_the_compute_node_reached_through_the_login_node(cluster, fab, local_port, hold):
    slurm_hosts(fab, "--time=00:10:00")
    # another user's server holds the first port from `port` on the node: the job takes the next
    busy = hold(fab.port)
    assert busy.listening.wait(30)
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
    assert record["port"] == fab.port + 1 and f"at http://{cluster.node_addr}:{fab.port + 1}/" in r.stdout, (record, r.stdout)
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

    # restart resubmits; the open tunnel follows the new job. Another user takes the old job's
    # port the moment its Jupyter lets go (the first port from `port` is still held too), so the
    # new job listens elsewhere, and the old forward's target is the other user's server
    old_port = record["port"]
    taker = hold(old_port)
    r = fab("restart")
    assert f"Jupyter stopped (job {job_id})" in r.stdout, r.stdout
    assert taker.listening.is_set(), "the old job's port was not free after its job was gone"
    [new] = cluster.squeue("fjslurm")
    assert new["id"] != job["id"]
    assert wait_until(lambda: logs_in(url), 60, every=2), "".join(proc.output_lines)
    moved = fab.status()
    assert moved["job_id"] == str(new["id"]) and moved["port"] == fab.port + 2, (moved, old_port)
    said = "".join(proc.output_lines)
    assert "Jupyter stopped; the forward to it is closed until the host confirms where it runs" in said, said
    assert f"reconnected; Jupyter is at {url} again" in said, said
    # what the forward reaches now is the new job's Jupyter (its API, and our password), and the
    # old address's new owner never received anything through the tunnel
    assert logs_in(url) and json.loads(urllib.request.urlopen(url + "api", timeout=10).read())["version"]
    assert taker.requests == [] and busy.requests == [], (taker.requests, busy.requests)
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
    out = Lines(proc.stdout)
    pending = out.until(lambda line: " PENDING (" in line, 60)
    assert pending, out.lines
    assert "PartitionDown" in pending or "PartitionInactive" in pending, out.lines
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


def test_launcher_sbatch_and_queue_timeout_on_the_command_line(cluster, fab):
    """--launcher slurm, --job-option and --sbatch (its SLURM name; repeatable, adding up) and
    --queue-timeout, with nothing of SLURM in hosts.yaml (nor socket: the launcher's default, a
    port, applies)."""
    fab.hosts("", tcp=False)
    flags = ("--launcher", "slurm", "--job-option=--partition=down", "--sbatch=--time=00:07:00", "--queue-timeout", "3")
    r = fab("setup", "--dry-run", *flags, "--password-stdin", input=PASSWORD + "\n")
    assert "the batch script it would submit:" in r.stdout, r.stdout
    assert "    #SBATCH --partition=down" in r.stdout and "    #SBATCH --time=00:07:00" in r.stdout, r.stdout
    assert cluster.squeue("fjslurm") == []
    r = fab.setup(*flags, check=False)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(err) == 1, r.stdout + r.stderr
    assert "was still PENDING (PartitionDown" in err[0] and "after 3 s in the queue; cancelled it" in err[0], err
    [job_id] = [line.split("job ", 1)[1].split()[0] for line in r.stdout.splitlines() if line.endswith(" submitted")]
    job = cluster.job(job_id)
    assert (job["JobState"], job["Partition"], job["TimeLimit"]) == ("CANCELLED", "down", "00:07:00"), job
    assert cluster.squeue("fjslurm") == []


def test_the_agent_cancels_the_job_when_its_client_is_gone_without_ctrl_c(cluster, fab):
    """The client killed hard (fab and its ssh at once: no Ctrl-C, no word to the host): the
    agent on the login node finds it gone at its next line and cancels the queued job."""
    slurm_hosts(fab, "--partition=down", "--time=00:05:00")
    proc = subprocess.Popen(fab.args("setup", "--password-stdin"), cwd=ROOT, env=fab.env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    fab.children.append(proc)
    proc.stdin.write((PASSWORD + "\n").encode())
    proc.stdin.close()
    out = Lines(proc.stdout)
    assert out.until(lambda line: " PENDING (" in line, 60), out.lines
    [job] = cluster.squeue("fjslurm")
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: fab and any ssh it started
    proc.wait(10)
    assert wait_until(lambda: cluster.squeue("fjslurm") == [], 30, every=0.5), cluster.squeue("fjslurm")
    assert cluster.job(job["id"])["JobState"] == "CANCELLED"
    assert not fab.status()["running"]


# scontrol as on a cluster whose node records name no NodeAddr (the job's look finds none)
NO_NODEADDR = """#!/bin/sh
/usr/bin/scontrol "$@" | sed 's/NodeAddr=[^ ]* *//'
"""

# sacct as on a cluster that keeps accounting (this one has no slurmdbd, so the real sacct says
# "Slurm accounting storage is disabled"): the answer comes from this cluster's own record of
# ended jobs (its job completion log), in the form asked for (-n -X -P -o State,Reason,ExitCode);
# every call is logged
SACCT = """#!/usr/bin/python3
import os, sys
args = sys.argv[1:]
with open(os.path.expanduser("~/sacct.calls"), "a") as f:
    f.write(" ".join(args) + "\\n")
job = args[args.index("-j") + 1]
for line in open({log!r}):
    if line.startswith("JobId=%s " % job):
        fields = dict(word.split("=", 1) for word in line.split() if "=" in word)
        print("%s|None|%s" % (fields["JobState"], fields.get("ExitCode", "")))
"""


def test_without_nodeaddr_the_nodes_name_then_an_ended_jobs_state_from_sacct_or_no_longer_known(cluster, fab, local_port):
    noaddr = fab.home / "noaddr"
    noaddr.mkdir()
    (noaddr / "scontrol").write_text(NO_NODEADDR)
    (noaddr / "scontrol").chmod(0o755)
    shown = cluster.run_in_login(fab.user, f"PATH=$HOME/noaddr:$PATH scontrol show node {cluster.node}").stdout
    assert f"NodeName={cluster.node}" in shown and "NodeAddr" not in shown, shown
    slurm_hosts(fab, "--time=00:10:00", extra=f"    activate: {json.dumps('PATH=$HOME/noaddr:$PATH')}\n")
    r = fab.setup()
    record = fab.status()
    # the node's name is the address: Jupyter listens on what it resolves to, the login node
    # reaches it by that name, and the login through the tunnel works
    assert record["running"] and (record["node"], record["address"]) == (cluster.node, cluster.node), record
    assert f"at http://{cluster.node}:{record['port']}/" in r.stdout, r.stdout
    assert f"on {cluster.node}: Jupyter on {cluster.node}:{record['port']}" in fab("logs").stdout
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert url, out
    assert login_and_list(url, PASSWORD)[1] == 200
    fab.cleanup()

    # the job ends outside this tool (an administrator's scancel): the scheduler's word, while it remembers
    job_id = record["job_id"]
    cluster.slurm("scancel", job_id, check=True)
    cluster.wait_state(job_id, "CANCELLED", timeout=30)
    ended = fab.status()
    assert (ended["running"], ended["job_state"]) == (False, "CANCELLED") and ended["ended"].startswith("CANCELLED"), ended
    cluster.reconfigure(MinJobAge=2)
    try:
        # forgotten by the controller (MinJobAge, then its purge, every 60 s at the latest), and
        # no accounting: this tool's own record, and says so
        assert wait_until(lambda: cluster.job(job_id) is None, 75), cluster.job(job_id)
        gone = fab.status()
        assert (gone["running"], gone["job_id"], gone["job_state"], gone["ended"]) == (
            False, job_id, "ENDED", "ENDED (no longer known to the scheduler)"), gone
        assert f"job {job_id} ended: ENDED (no longer known to the scheduler)" in fab("status").stdout
        # where the cluster keeps accounting, sacct has it still (the user's PATH on the login
        # node, as a site's module system would give it)
        (fab.home / "bin").mkdir()
        (fab.home / "bin" / "sacct").write_text(SACCT.format(log=str(cluster.jobcomp_log)))
        (fab.home / "bin" / "sacct").chmod(0o755)
        (fab.home / ".bashrc").write_text('PATH="$HOME/bin:$PATH"\n')
        found = fab.status()
        assert (found["running"], found["job_state"], found["ended"]) == (False, "CANCELLED", "CANCELLED"), found
        calls = (fab.home / "sacct.calls").read_text().splitlines()
        assert calls and all(f"-j {job_id}" in call for call in calls), calls
    finally:
        cluster.reconfigure(MinJobAge=cluster.min_job_age)


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
    # in hosts.yaml (public mode without a socket: key too, where the default applies), or on the
    # command line: one line, before anything reaches the host
    cases = [("    socket: true\n", ()), ("    mode: public\n", ()), ("    mode: public\n    socket: false\n", ()),
             ("", ("--mode", "public")), ("", ("--socket",))]
    for extra, flags in cases:
        fab.hosts(f"hosts:\n  {fab.user}:\n    launcher: slurm\n{extra}", tcp=False)
        for args in [("setup", *flags, "--password-stdin")] + ([("status",)] if not flags else []):
            r = fab(*args, input=PASSWORD + "\n", check=False)
            assert r.returncode == 1 and "Traceback" not in r.stderr, (extra, flags, args, r.stdout, r.stderr)
            [line] = r.stderr.splitlines()
            assert "launcher slurm runs Jupyter on a compute node" in line and "not mode: public" in line, (extra, flags, line)
    assert not (fab.home / ".fabjupyter").exists() and cluster.squeue("fjslurm") == []


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
