"""PBS on the SLURM test cluster: Debian's slurm-wlm-torque, Torque-style qsub, qstat and qdel
written in Perl over SLURM's Perl API (libslurm-perl), run as a user on the login node the way a
PBS site's users run them. .ci/setup unpacks the package into TORQUE_BIN (it conflicts with
gridengine-client: both are /usr/bin/qsub) and torque_users() puts that directory first on the
PATH sshd gives the test accounts; the wrappers find slurmctld through SLURM_CONF, as sbatch does.

What they do, found here (22.05.8), and what a PBS scheduler class parsing them must expect:
- qsub SCRIPT prints the job id alone: SLURM's number, no ".server" suffix. The script must be
  a file (no stdin). qsub builds sbatch's command line as one unquoted string: a -N, -o or script
  path with a space breaks it. It always passes -o and -e (SCRIPT.oID and SCRIPT.eID by default,
  NAME.oID with -N; no -e with -j oe), and sbatch's command line beats the script's #PBS -o and
  -j: give -N, -o, -j oe, -l walltime=... to qsub itself. sbatch does read the script's #PBS
  lines (-N and -l walltime honoured here, after any #SBATCH ones). The job gets SLURM's
  variables only (no PBS_JOBID, PBS_O_WORKDIR).
- A refusal is several lines on stdout, exit 1 ("There was an error running the Slurm sbatch
  command.", the sbatch command, then sbatch's own lines quoted); nothing on stderr. qsub's own
  errors (a bad -l walltime) go to stderr, exit 255.
- qstat -f ID: Torque's layout ("Job Id:\tID", then "\tname = value" lines, a blank line).
  job_state is Q (pending), R, S, or C for every ended job (completed, cancelled, timed out) while
  SLURM keeps it (MinJobAge); then, or for an id it never had, nothing at all and exit 153 (with
  several ids, exit 0 if one is known). An id with a suffix ("1.host") is never found (exit 153);
  qdel takes it (Perl reads the number) with a warning on stderr.
  exec_host is NODE/CPUS (CPUs the job has there), not Torque's NODE/CPU-INDEX+...; absent while
  queued, kept after the end. Times are the login node's local time as ctime(3): qtime is the
  submission, mtime the start, ctime SLURM's end time (the time limit's end while running): not
  Torque's meanings. Resource_List.walltime is HH:MM:SS, or 71582788:15:00 for no limit (SLURM's
  INFINITE times 60). No resources_used.*, no Walltime.Remaining, no reason for a pending job.
  Job_Owner is USER@ the submitting host as SLURM names it (AllocNode: "localhost" here).
- Plain qstat: a header, a rule, a line a job, names cut to 16 characters; qstat -u USER and -a
  use another layout (host line, names cut to 20) even with -f: a job is found by its full name
  only in qstat -f, which without ids lists every user's jobs.
- A controller that does not answer (or is not running): qstat waits SLURM's MessageTimeout,
  then says "Problem loading jobs." on stderr with an exit status that is Perl's last errno
  (140 for a timeout, 8 for a refused connection here), not an unknown job's 153. With slurmctld not running, qsub
  and qdel say "Unable to contact slurm controller (connect failure)" on stdout, exit 1.
- qstat has no -F json (PBS Pro's) nor -x: "Unknown option: F", the usage, on stderr, exit 2.
- qdel ID ends the job as scancel does (SIGTERM, SIGKILL after KillWait), prints nothing, exit
  0; an ended or unknown job: nothing printed, exit 1.

tests/data/pbs/ holds real outputs of this run's commands, for parse tests (its README says
which is which). FABJUPYTER_PBS_SAMPLES=1 rewrites them from a run; otherwise each is checked to
have the lines, in order, that this run's output has."""

import os
import re
import signal
import time
from pathlib import Path

import pytest

from .slurmcluster import TORQUE_BIN, SlurmCluster, torque_users

SAMPLES = Path(__file__).parent / "data" / "pbs"
JOB_ID = re.compile(r"[0-9]+")

SCRIPTS = {
    # its options as #PBS directives
    "directives.sh": ("#!/bin/sh\n#PBS -N named-inside\n#PBS -o inside.out\n#PBS -j oe\n#PBS -l walltime=00:07:00\n"
                      "hostname\necho to-stderr >&2\necho \"PBS_JOBID=$PBS_JOBID PBS_O_WORKDIR=$PBS_O_WORKDIR\"\nexec sleep 300\n"),
    # says when it is asked to end
    "term.sh": "#!/bin/sh\ntrap 'echo got TERM; exit 0' TERM\nhostname\nsleep 300 &\nwait\n",
    "sleep.sh": "#!/bin/sh\nexec sleep 300\n",
    "quick.sh": "#!/bin/sh\nhostname\necho to-stderr >&2\n",
}


@pytest.fixture(scope="module")
def cluster():
    c = SlurmCluster(users=torque_users())
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def pbs(cluster):
    cluster.reset()
    for script, body in SCRIPTS.items():
        cluster.run_in_login("fjslurm", f"cat > {script}", check=True, input=body)
    yield cluster
    cluster.reset()


def parse_qstat_full(text):
    """`qstat -f` as [{"Job Id": id, attribute: value}] (Torque's layout: a "Job Id:" line, then
    indented "name = value" lines, a blank line after each job)."""
    jobs = []
    for line in text.splitlines():
        if line.startswith("Job Id:"):
            jobs.append({"Job Id": line.split(":", 1)[1].strip()})
        elif " = " in line:
            name, value = line.strip().split(" = ", 1)
            jobs[-1][name] = value
    return jobs


def layout(text):
    """What a sample shares with any run's output: attribute names in order, job_state's value,
    the number of columns of a job's line, and every other line but the host's as it is."""
    out = []
    for line in text.splitlines():
        name, sep, value = line.strip().partition(" = ")
        if line.startswith("Job Id:"):
            out.append("Job Id:")
        elif sep:
            out.append(line if name == "job_state" else name)
        elif line[:1].isdigit():
            out.append(f"a job line of {len(line.split())} columns")
        elif re.fullmatch(r"[^\s:]+:", line):  # the login node's `hostname -f`
            out.append("HOST:")
        else:
            out.append(line)
    return out


def sample(name, text):
    """Keep TEXT as tests/data/pbs/NAME (FABJUPYTER_PBS_SAMPLES=1), or check that the kept one
    has its layout."""
    path = SAMPLES / name
    if os.environ.get("FABJUPYTER_PBS_SAMPLES") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    else:
        assert layout(path.read_text()) == layout(text), f"{path} is stale: FABJUPYTER_PBS_SAMPLES=1 rewrites it"


def run(cluster, command, user="fjslurm"):
    """COMMAND as USER on the login node: (exit status, stdout, stderr)."""
    r = cluster.run_in_login(user, command)
    return r.returncode, r.stdout, r.stderr


def qsub(cluster, args):
    """`qsub ARGS`: the job id, which qsub prints alone on a line."""
    status, out, err = run(cluster, f"qsub {args}")
    assert status == 0 and JOB_ID.fullmatch(out.strip()), (status, out, err)
    return out.strip()


def qstat_full(cluster, job_id):
    status, out, err = run(cluster, f"qstat -f {job_id}")
    assert (status, err) == (0, ""), (status, out, err)
    return out


def wait_file(cluster, name, text, timeout=10):
    """The file's content once it has TEXT (the job's output is written as it runs)."""
    deadline = time.monotonic() + timeout
    while True:
        content = run(cluster, f"cat {name}")[1]
        if text in content or time.monotonic() > deadline:
            return content
        time.sleep(0.2)


def wait_gone(cluster, timeout=10):
    deadline = time.monotonic() + timeout
    while cluster.compute_pids("fjslurm") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cluster.compute_pids("fjslurm") == []


def test_the_commands_are_torques_first_on_the_path(pbs):
    for user in ("fjslurm", "fjslurmsh"):
        for cmd in ("qsub", "qstat", "qdel"):
            assert run(pbs, f"command -v {cmd}", user)[1] == f"{TORQUE_BIN}/{cmd}\n"
    # Perl over SLURM's library, which reads SLURM_CONF as sbatch does; qsub runs the sbatch beside it
    assert (TORQUE_BIN / "qstat").read_text().startswith("#! /usr/bin/perl")
    assert os.path.realpath(TORQUE_BIN / "sbatch") == "/usr/bin/sbatch"


def test_qsub_reads_directives_but_its_own_output_files_win(pbs):
    job = qsub(pbs, "directives.sh")
    pbs.wait_state(int(job), "RUNNING", timeout=30)
    [info] = parse_qstat_full(qstat_full(pbs, job))
    # sbatch reads the #PBS lines -N and -l walltime: qsub gives it none of its own for them
    assert (info["Job_Name"], info["Resource_List.walltime"]) == ("named-inside", "00:07:00")
    # but qsub always gives sbatch -o and -e, and they beat the script's #PBS -o and -j oe
    assert wait_file(pbs, f"directives.sh.e{job}", "to-stderr") == "to-stderr\n"
    assert wait_file(pbs, f"directives.sh.o{job}", "PBS_JOBID") == f"{pbs.node}\nPBS_JOBID= PBS_O_WORKDIR=\n"
    assert sorted(run(pbs, "ls")[1].split()) == sorted([*SCRIPTS, f"directives.sh.e{job}", f"directives.sh.o{job}"])
    assert run(pbs, f"qdel {job}") == (0, "", "")


def test_running_job_then_qdel(pbs):
    job = qsub(pbs, "-N web -j oe -o web.out -l walltime=00:05:00 term.sh")
    running = pbs.wait_state(int(job), "RUNNING", timeout=30)
    text = qstat_full(pbs, job)
    sample("qstat-f-running.txt", text)
    user = pbs.login.users["fjslurm"]
    [info] = parse_qstat_full(text)
    assert info["Job Id"] == job
    assert (info["Job_Name"], info["job_state"], info["queue"], info["exec_host"]) == ("web", "R", "debug", f"{pbs.node}/1")
    assert info["Job_Owner"] == f"{user.name}@{running['AllocNode:Sid'].split(':')[0]}"
    assert (info["euser"], info["egroup"]) == (f"{user.name}({user.uid})", f"{user.name}({user.uid})")
    assert (info["Resource_List.walltime"], info["Resource_List.nodect"], info["Resource_List.ncpus"]) == ("00:05:00", "1", "1")
    ctime = "%a %b %e %H:%M:%S %Y"
    assert info["qtime"] == time.strftime(ctime, time.strptime(running["SubmitTime"], "%Y-%m-%dT%H:%M:%S"))
    assert info["mtime"] == time.strftime(ctime, time.strptime(running["StartTime"], "%Y-%m-%dT%H:%M:%S"))
    assert info["ctime"] == time.strftime(ctime, time.strptime(running["EndTime"], "%Y-%m-%dT%H:%M:%S"))
    assert not [name for name in info if name.startswith("resources_used") or name == "Walltime.Remaining"]

    status, out, err = run(pbs, f"qstat {job}")
    assert (status, err) == (0, "")
    sample("qstat-running.txt", out)
    header, rule, line = out.splitlines()
    assert header.split() == ["Job", "id", "Name", "Username", "Time", "Use", "S", "Queue"]
    assert [line.split()[i] for i in (0, 1, 2, 4, 5)] == [job, "web", user.name, "R", "debug"]
    status, out, err = run(pbs, f"qstat -n -1 {job}")
    sample("qstat-n1-running.txt", out)
    assert out.splitlines()[-1].split()[-1] == f"{pbs.node}/1"

    assert wait_file(pbs, "web.out", pbs.node) == f"{pbs.node}\n"
    assert run(pbs, f"qdel {job}") == (0, "", "")
    pbs.wait_state(int(job), "CANCELLED", timeout=30)
    wait_gone(pbs)
    assert "got TERM" in wait_file(pbs, "web.out", "got TERM").splitlines()
    text = qstat_full(pbs, job)
    sample("qstat-f-deleted.txt", text)
    [info] = parse_qstat_full(text)
    assert (info["Job Id"], info["job_state"], info["exec_host"]) == (job, "C", f"{pbs.node}/1")
    assert run(pbs, f"qstat {job}")[1].splitlines()[-1].split()[4] == "C"
    # the ended job again: nothing said, exit 1
    assert run(pbs, f"qdel {job}") == (1, "", "")


def test_queued_job(pbs):
    job = qsub(pbs, "-N waiting -q down -l walltime=00:05:00 sleep.sh")
    deadline = time.monotonic() + 30
    while pbs.job(int(job))["Reason"] != "PartitionDown" and time.monotonic() < deadline:
        time.sleep(0.2)
    text = qstat_full(pbs, job)
    sample("qstat-f-queued.txt", text)
    [info] = parse_qstat_full(text)
    assert (info["Job Id"], info["Job_Name"], info["job_state"], info["queue"]) == (job, "waiting", "Q", "down")
    assert "exec_host" not in info and "mtime" not in info and "ctime" not in info
    assert "PartitionDown" not in text  # no reason
    assert run(pbs, f"qdel {job}") == (0, "", "")
    pbs.wait_state(int(job), "CANCELLED", timeout=30)
    text = qstat_full(pbs, job)
    sample("qstat-f-queued-deleted.txt", text)
    [info] = parse_qstat_full(text)
    assert info["job_state"] == "C" and "exec_host" not in info


def test_no_time_limit(pbs):
    job = qsub(pbs, "-q down sleep.sh")
    text = qstat_full(pbs, job)
    sample("qstat-f-no-walltime.txt", text)
    [info] = parse_qstat_full(text)
    # no -N: the script's name; no limit: SLURM's INFINITE (2**32 - 1 minutes) taken as a number
    assert (info["Job_Name"], info["Resource_List.walltime"]) == ("sleep.sh", "71582788:15:00")
    assert pbs.job(int(job))["TimeLimit"] == "UNLIMITED"


def test_finished_job_and_its_joined_output(pbs):
    job = qsub(pbs, "-N quick -j oe -o quick.out -l walltime=00:02:00 quick.sh")
    pbs.wait_state(int(job), "COMPLETED", timeout=30)
    text = qstat_full(pbs, job)
    sample("qstat-f-finished.txt", text)
    [info] = parse_qstat_full(text)
    assert (info["Job Id"], info["Job_Name"], info["job_state"], info["exec_host"]) == (job, "quick", "C", f"{pbs.node}/1")
    # -j oe: both streams in -o's file, no other
    assert run(pbs, "cat quick.out")[1] == f"{pbs.node}\nto-stderr\n"
    assert sorted(run(pbs, "ls")[1].split()) == sorted([*SCRIPTS, "quick.out"])


def test_unknown_job_and_suffixed_ids(pbs):
    # an id SLURM never had, or has forgotten (MinJobAge after the end): nothing printed, exit 153
    assert run(pbs, "qstat -f 999999") == (153, "", "")
    assert run(pbs, "qstat 999999") == (153, "", "")
    assert run(pbs, "qdel 999999") == (1, "", "")
    job = qsub(pbs, "-q down sleep.sh")
    # with another id that is known: exit 0
    assert run(pbs, f"qstat -f 999999 {job}")[0] == 0
    # a server suffix: qstat does not know the job; qdel takes the number, and complains
    assert run(pbs, f"qstat -f {job}.{pbs.login_host}") == (153, "", "")
    status, out, err = run(pbs, f"qdel {job}.{pbs.login_host}")
    assert (status, out) == (0, "")
    assert err.startswith(f'Argument "{job}.{pbs.login_host}" isn\'t numeric')
    pbs.wait_state(int(job), "CANCELLED", timeout=30)


def test_no_json_form(pbs):
    status, out, err = run(pbs, "qstat -f -F json")
    assert (status, out) == (2, "")
    assert err.splitlines()[:2] == ["Unknown option: F", "Usage:"]


def test_refusals(pbs):
    known = pbs.squeue("fjslurm", states="all")
    status, out, err = run(pbs, "qsub -q nosuch quick.sh")
    sample("qsub-refused.txt", out)
    assert (status, err) == (1, "")
    assert out.splitlines() == [
        "There was an error running the Slurm sbatch command.",
        "The command was:",
        f"'{TORQUE_BIN}/sbatch -e quick.sh.e%A -o quick.sh.o%A -p nosuch quick.sh 2>&1'",
        "and the output was:",
        "'sbatch: error: invalid partition specified: nosuch",
        " sbatch: error: Batch job submission failed: Invalid partition name specified",
        "'",
    ]
    assert run(pbs, "qsub -l walltime=bogus quick.sh") == (255, "", "Invalid time limit specified (bogus)\n")
    # sbatch's command line is one unquoted string
    status, out, err = run(pbs, "qsub -N 'two words' quick.sh")
    assert status == 1 and "sbatch: error: Unable to open file words.e%A" in out
    assert pbs.squeue("fjslurm", states="all") == known  # nothing queued


def test_a_query_while_the_controller_does_not_answer(pbs):
    job = qsub(pbs, "-l walltime=00:05:00 sleep.sh")
    pbs.wait_state(int(job), "RUNNING", timeout=30)
    ctld = pbs.procs["slurmctld"].pid
    os.kill(ctld, signal.SIGSTOP)
    try:
        started = time.monotonic()
        status, out, err = run(pbs, f"qstat -f {job}")
        waited = time.monotonic() - started
    finally:
        os.kill(ctld, signal.SIGCONT)
    # after SLURM's MessageTimeout (10 s): Perl's die, whose exit status is the last errno
    # (140 here; 8 when slurmctld is not running at all), not the 153 of an unknown job
    assert (out, err) == ("", "Problem loading jobs.\n")
    assert status not in (0, 153) and 9 < waited < 20, (status, waited)
    [info] = parse_qstat_full(qstat_full(pbs, job))
    assert info["job_state"] == "R"
