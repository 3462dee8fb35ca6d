"""Every batch launcher's lifecycle, written once and run on real clusters of each scheduler
(tests/batchsites.py): SLURM, Grid Engine, and PBS through SLURM's Torque wrappers. Jupyter runs
as a batch job on a compute node of a cluster in network namespaces, reached through the login
node's sshd. What only one scheduler has is tested in its own file (tests/test_slurm.py)."""

import json
import os
import queue
import select
import signal
import subprocess
import threading
import time
import urllib.request

import pytest

from .batchsites import Sites, wait_until
from .conftest import ROOT, Fab
from .jupyter_http import login_and_list
from .sshhost import JUPYTER_VENV, jupyter_servers

PASSWORD = "correct horse"
KINDS = ["slurm", "sge", "pbs"]


@pytest.fixture(scope="module")
def sites():
    s = Sites()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(params=KINDS)
def site(request, sites):
    return sites.get(request.param)


@pytest.fixture
def fab(site, tmp_path):
    site.reset()
    f = Fab(site.login, site.user, tmp_path / "hosts.yaml")
    try:
        yield f
    finally:
        f.cleanup()
        site.reset()


def jupyter_pids(site, where):
    """The test user's Jupyter servers on the compute or the login node."""
    return jupyter_servers(site.compute_pids() if where == "compute" else site.login_pids())


def logs_in(url):
    """Whether the password login through URL works now (a forward to a job that is not up
    yet resets the connection)."""
    try:
        return login_and_list(url, PASSWORD)[1] == 200
    except (OSError, AssertionError):
        return False


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


def background(fab, *args):
    """`fab ARGS --password-stdin` running, its own process group, the password given: (process, its stdout's Lines)."""
    proc = subprocess.Popen(fab.args(*args, "--password-stdin"), cwd=ROOT, env=fab.env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    fab.children.append(proc)
    proc.stdin.write((PASSWORD + "\n").encode())
    proc.stdin.close()
    return proc, Lines(proc.stdout)


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

    def __init__(self, site, port):
        other = site.login.users[site.other]
        self.port, self.requests, self.listening = port, [], threading.Event()
        self.proc = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{site.compute_ns}", "setpriv", f"--reuid={other.uid}", f"--regid={other.uid}",
             "--init-groups", "python3", "-u", "-c", HOLDER, site.node_addr, str(port)],
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
def hold(site):
    """hold(port): another user's server on that port of the node (taken once free)."""
    made = []

    def start(port):
        made.append(Holder(site, port))
        return made[-1]

    try:
        yield start
    finally:
        for holder in made:
            holder.close()


def test_a_job_runs_jupyter_on_the_compute_node_reached_through_the_login_node(site, fab, local_port, hold):
    limit = site.limit("00:10:00")
    site.hosts(fab, limit)
    # another user's server holds the first port from `port` on the node: the job takes the next
    busy = hold(fab.port)
    assert busy.listening.wait(30)
    # a dry run shows the batch script and submits nothing
    r = fab("setup", "--dry-run", "--password-stdin", input=PASSWORD + "\n")
    assert "the batch script it would submit:" in r.stdout and f"    {site.directive(limit)}\n" in r.stdout, r.stdout
    assert "    #!/bin/sh" in r.stdout and "fabjupyter-default" in r.stdout, r.stdout
    assert site.jobs() == []

    r = fab.setup()
    [job_id] = site.jobs()
    assert f"{fab.user}: job {job_id} submitted" in r.stdout and f"{fab.user}: job {job_id} RUNNING on {site.node}" in r.stdout, r.stdout
    assert "Jupyter started (JupyterLab 4." in r.stdout and f"job {job_id} on {site.node}" in r.stdout, r.stdout
    assert f"at http://{site.address}:" in r.stdout and "on the node" in r.stdout, r.stdout
    record = fab.status()
    assert record["running"] and record["launcher"] == site.kind
    assert (record["job_id"], record["job_state"], record["node"], record["address"]) == (job_id, "RUNNING", site.node, site.address)
    assert record["time_left"] and record["ended"] is None and record["url"] == f"http://{site.address}:{record['port']}/", record
    assert record["port"] == fab.port + 1 and f"at http://{site.address}:{fab.port + 1}/" in r.stdout, (record, r.stdout)
    # Jupyter runs on the compute node, not on the login node, and listens on the node's address only
    assert jupyter_pids(site, "compute") and not jupyter_pids(site, "login")
    # the job's proof, checked on the node: the process listening on the port is its Jupyter
    where = json.loads((fab.home / ".fabjupyter" / "job.where").read_text())
    assert (where["job_id"], where["ours"], where["port"], where["address"]) == (job_id, True, record["port"], site.address)
    assert where["pid"] in jupyter_pids(site, "compute"), where
    probe = "import socket, sys; s = socket.socket(); s.settimeout(2); sys.exit(s.connect_ex((sys.argv[1], int(sys.argv[2]))))"
    assert site.in_compute("python3", "-c", probe, site.node_addr, str(record["port"])).returncode == 0
    assert site.in_compute("python3", "-c", probe, "127.0.0.1", str(record["port"])).returncode != 0
    [listed] = [json.loads(line) for line in fab("list", "--json").stdout.splitlines()]
    assert (listed["launcher"], listed["job_id"], listed["node"], listed["port"]) == (site.kind, job_id, site.node, record["port"])
    assert f"job {job_id} {site.node}:{record['port']}" in fab("list").stdout
    # its runtime files are in the shared home, not the login node's /run/user
    assert list((fab.home / ".fabjupyter" / "runtime").glob("jpserver-*.json"))

    # the password login, through the login node to the node
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert url, out
    assert login_and_list(url, PASSWORD)[1] == 200 and login_and_list(url, "wrong")[1] == 403

    # again with nothing changed: the same job
    r = fab.setup()
    assert "nothing changed" in r.stdout and site.jobs() == [job_id], r.stdout
    assert fab("logs").stdout.count("Jupyter Server") >= 1

    # restart resubmits; the open tunnel follows the new job. Another user takes the old job's
    # port the moment its Jupyter lets go (the first port from `port` is still held too), so the
    # new job listens elsewhere, and the old forward's target is the other user's server
    old_port = record["port"]
    taker = hold(old_port)
    r = fab("restart")
    assert f"Jupyter stopped (job {job_id})" in r.stdout, r.stdout
    assert taker.listening.is_set(), "the old job's port was not free after its job was gone"
    [new] = site.jobs()
    assert new != job_id
    assert wait_until(lambda: logs_in(url), 60, every=2), "".join(proc.output_lines)
    moved = fab.status()
    assert moved["job_id"] == new and moved["port"] == fab.port + 2, (moved, old_port)
    said = "".join(proc.output_lines)
    assert "Jupyter stopped; the forward to it is closed until the host confirms where it runs" in said, said
    assert f"reconnected; Jupyter is at {url} again" in said, said
    # what the forward reaches now is the new job's Jupyter (its API, and our password), and the
    # old address's new owner never received anything through the tunnel
    assert logs_in(url) and json.loads(urllib.request.urlopen(url + "api", timeout=10).read())["version"]
    assert taker.requests == [] and busy.requests == [], (taker.requests, busy.requests)
    fab.cleanup()

    # changed job options cancel and resubmit, and say so
    site.hosts(fab, site.limit("00:09:00"))
    r = fab.setup()
    assert f"stopped the running Jupyter (job {new})" in r.stdout, r.stdout
    [third] = site.jobs()
    assert third != new

    r = fab("stop")
    assert f"Jupyter stopped (job {third})" in r.stdout, r.stdout
    assert site.jobs() == []
    assert wait_until(lambda: not site.compute_pids(), 20), site.compute_pids()
    assert not fab.status()["running"]


def test_a_job_that_cannot_start_shows_its_reason_and_ctrl_c_cancels_it(site, fab):
    site.hosts(fab, *site.pending, site.limit("00:05:00"))
    proc, out = background(fab, "setup")
    # a line for each change of state or reason: the scheduler's reason comes
    pending = out.until(lambda line: " PENDING (" in line and any(w in line for w in site.pending_reason), 60)
    assert pending, out.lines
    [job_id] = site.jobs()
    proc.send_signal(signal.SIGINT)
    proc.wait(90)
    err = proc.stderr.read().decode()
    assert proc.returncode != 0
    assert f"cancelling job {job_id}" in err and f"job {job_id} cancelled" in err, err
    assert "Traceback" not in err
    assert site.jobs() == []
    assert not fab.status()["running"]


def test_a_queue_timeout_cancels_the_job_and_says_why(site, fab):
    site.hosts(fab, *site.pending, extra="    queue_timeout: 3\n")
    r = fab.setup(check=False)
    assert r.returncode == 1, r.stdout + r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and "was still PENDING (" in err[0] and "after 3 s in the queue; cancelled it" in err[0], err
    assert site.jobs() == []


def test_launcher_job_options_and_queue_timeout_on_the_command_line(site, fab):
    """--launcher, --job-option (repeatable, adding up; SLURM's own name --sbatch too) and
    --queue-timeout, with nothing of the scheduler in hosts.yaml (nor socket: the launcher's
    default, a port, applies)."""
    fab.hosts("", tcp=False)
    second = "--sbatch" if site.kind == "slurm" else "--job-option"
    limit = site.limit("00:07:00")
    flags = ("--launcher", site.kind, f"--job-option={site.pending[0]}", f"{second}={limit}", "--queue-timeout", "3")
    r = fab("setup", "--dry-run", *flags, "--password-stdin", input=PASSWORD + "\n")
    assert "the batch script it would submit:" in r.stdout, r.stdout
    assert f"    {site.directive(site.pending[0])}\n" in r.stdout and f"    {site.directive(limit)}\n" in r.stdout, r.stdout
    assert site.jobs() == []
    r = fab.setup(*flags, check=False)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(err) == 1, r.stdout + r.stderr
    assert "was still PENDING (" in err[0] and "after 3 s in the queue; cancelled it" in err[0], err
    assert site.jobs() == []


def test_the_agent_cancels_the_job_when_its_client_is_gone_without_ctrl_c(site, fab):
    """The client killed hard (fab and its ssh at once: no Ctrl-C, no word to the host): the
    agent on the login node finds it gone at its next line and cancels the queued job."""
    site.hosts(fab, *site.pending, site.limit("00:05:00"))
    proc, out = background(fab, "setup")
    assert out.until(lambda line: " PENDING (" in line, 60), out.lines
    [job_id] = site.jobs()
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: fab and any ssh it started
    proc.wait(10)
    assert wait_until(lambda: site.jobs() == [], 30, every=0.5), site.jobs()
    assert not fab.status()["running"]


def test_the_schedulers_refusal_is_one_line_in_its_own_words(site, fab):
    site.hosts(fab, *site.refused)
    r = fab.setup(check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    [line] = r.stderr.splitlines()
    assert line.startswith(f"{fab.user}: {site.submit_command} refused the job: ") and site.refusal in line.lower(), r.stderr
    assert site.jobs() == []
    assert not (fab.home / ".fabjupyter" / "state").exists()


def test_a_job_of_this_instance_that_no_record_names_is_found_by_name_and_cancelled(site, fab):
    """A run killed right after submitting leaves a job that no record names: the next setup
    finds this user's job of the instance's name and cancels it, and submits its own (one job,
    the one tracked). Another user's job of the same name is not touched."""
    site.hosts(fab, site.limit("00:10:00"))
    for user in (site.user, site.other):
        site.cluster.run_in_login(user, "printf '#!/bin/sh\\nsleep 600\\n' > stray.sh", check=True)
    stray = site.submit("stray.sh", "fabjupyter-default", options=" ".join(site.pending))
    others = site.submit("stray.sh", "fabjupyter-default", user=site.other, options=" ".join(site.pending))
    assert site.jobs() == [stray]
    r = fab.setup()
    assert f"stopped Jupyter (job {stray}), started by a run of this tool that was killed before it recorded it" in r.stdout, r.stdout
    [job_id] = site.jobs()
    assert job_id != stray and fab.status()["job_id"] == job_id
    site.reset()  # the other user's job too
    assert others


def test_a_controller_that_does_not_answer_for_a_while_is_no_ended_job(site, fab):
    """The scheduler's controller away (stopped or killed) while setup waits for the job and
    while status runs: its queries fail, the job is UNKNOWN, never ended, never cancelled; once
    the controller is back, the same job goes on."""
    site.hosts(fab, site.limit("00:10:00"), *site.hold)
    proc, out = background(fab, "setup")
    assert out.until(lambda line: " PENDING (" in line, 60), out.lines
    [job_id] = site.jobs()
    with site.controller_away():
        assert out.until(lambda line: f"job {job_id} UNKNOWN" in line, 90), out.lines
        time.sleep(2)
        assert proc.poll() is None, out.lines
    site.release(job_id)
    assert out.until(lambda line: "Jupyter started" in line, 120), out.lines
    proc.wait(60)
    assert proc.returncode == 0, out.lines + [proc.stderr.read().decode()]
    assert site.jobs() == [job_id]
    with site.controller_away():
        record = fab.status()
        assert (record["running"], record["job_id"], record["job_state"], record["ended"]) == (True, job_id, "UNKNOWN", None), record
    assert site.jobs() == [job_id]
    assert fab.status()["job_state"] == "RUNNING"


def test_a_job_that_hits_its_time_limit_is_reported_as_ended_and_why(site, fab):
    site.hosts(fab, site.limit("00:01:00" if site.kind != "sge" else "00:00:40"))
    fab.setup()
    assert fab.status()["running"]
    # slurmctld looks for jobs over their limit every 30 s: a 1-minute job ends within 90 s (and
    # is COMPLETING for a moment before it has ended)
    assert wait_until(lambda: fab.status()["ended"], 150, every=3)
    record = fab.status()
    assert record["job_state"] == site.timeout_state and record["ended"].startswith(site.timeout_state), record
    r = fab("status")
    assert f"not running (job {record['job_id']} ended: {site.timeout_state}" in r.stdout, r.stdout
    assert wait_until(lambda: not site.compute_pids(), 30)


def test_idle_timeout_ends_the_job_by_itself(site, fab):
    site.hosts(fab, site.limit("00:10:00"), extra="    idle_timeout: 5\n")
    fab.setup()
    job_id = fab.status()["job_id"]
    # Jupyter looks at its activity once a minute; its exit ends the job
    assert wait_until(lambda: site.jobs() == [], 150, every=3)
    # Grid Engine writes a job's accounting (what qacct reads) up to its flush_time, 15 s by
    # default, after the job left qstat: until then the job is ENDED, no longer known
    records = []
    wait_until(lambda: records.append(fab.status()) or records[-1]["job_state"] != "ENDED", 40, every=2)
    record = records[-1]
    assert not record["running"] and record["job_id"] == job_id and record["job_state"] == "COMPLETED", record
    assert wait_until(lambda: not site.compute_pids(), 30)


def test_socket_and_public_mode_are_refused_with_a_batch_launcher(site, fab):
    # in hosts.yaml (public mode without a socket: key too, where the default applies), or on the
    # command line: one line, before anything reaches the host
    cases = [("    socket: true\n", ()), ("    mode: public\n", ()), ("    mode: public\n    socket: false\n", ()),
             ("", ("--mode", "public")), ("", ("--socket",))]
    for extra, flags in cases:
        fab.hosts(f"hosts:\n  {fab.user}:\n    launcher: {site.kind}\n{extra}", tcp=False)
        for args in [("setup", *flags, "--password-stdin")] + ([("status",)] if not flags else []):
            r = fab(*args, input=PASSWORD + "\n", check=False)
            assert r.returncode == 1 and "Traceback" not in r.stderr, (extra, flags, args, r.stdout, r.stderr)
            [line] = r.stderr.splitlines()
            assert f"launcher {site.kind} runs Jupyter on a compute node" in line and "not mode: public" in line, (extra, flags, line)
    assert not (fab.home / ".fabjupyter").exists() and site.jobs() == []


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




def test_a_port_taken_on_the_node_before_jupyter_binds_it_never_sees_the_password(site, fab, local_port):
    """Another user on the compute node binds the port the job chose, after the job's look and
    before Jupyter's bind: the job finds that the listener is not its Jupyter, and setup fails in
    one line with the job cancelled; the other user's server never receives a login."""
    wrapper = fab.home / "gap-lab"
    wrapper.write_text(GAP_WRAPPER.format(python=JUPYTER_VENV / "bin" / "python", lab=str(JUPYTER_VENV / "bin" / "jupyter-lab")))
    wrapper.chmod(0o755)
    site.hosts(fab, site.limit("00:05:00"), extra=f"    jupyter: {wrapper}\n")
    other = site.login.users[site.other]
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
            ["nsenter", f"--net=/run/netns/{site.compute_ns}", "setpriv", f"--reuid={other.uid}", f"--regid={other.uid}",
             "--init-groups", "python3", "-u", "-c", LISTENER, site.node_addr, port],
            env={"HOME": str(other.home), "PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        for line in listener.stdout:
            received.put(line.rstrip("\n"))
            if line.startswith("listening"):
                (fab.home / "gap.held").write_text("")

    holder = threading.Thread(target=hold_the_port, daemon=True)
    holder.start()
    try:
        r = fab.setup(check=False, password=PASSWORD)
        job_left = site.jobs()
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
        assert line.startswith(f"{fab.user}: port {port} on {site.node} was taken by another process"), line
        assert "job was cancelled" in line, line
        assert job_left == [] and site.jobs() == []
        assert not fab.status()["running"]
    finally:
        if listener is not None and listener.poll() is None:
            listener.kill()
            listener.wait()
        holder.join(10)
