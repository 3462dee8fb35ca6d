"""Real scheduler outputs, read by the parsers the agent reads them with: Grid Engine 8.1.9's
(tests/data/sge) and SLURM's Torque wrappers' (tests/data/pbs); each folder's README says which
run took them and which file is which command. Every file is read here, and what the agent must
conclude from it is asserted: the job's state and node, its time left, the wait's verdict
(Scheduler.verdict: queued, running, ended, unknown), how an ended job ended, a refusal's words.
Job ids and node names come from the samples themselves. The hand-written answers in the forms
the schedulers' documentation gives are in tests/scheduler_samples.py."""

import re
from pathlib import Path

import pytest

from tasks.remote import sched_pbs, sched_sge
from tasks.remote.sched_common import UNKNOWN, clock
from tasks.remote.schedulers import Pbs, Sge

DATA = Path(__file__).parent / "data"

# the sample files the agent never has (it asks qstat -xml -r -u, qstat -j, qacct -j; qstat -f,
# qsub), and what they are used for here instead
NOT_THE_AGENTS = {
    "sge/pending-qstat-j.xml": "qstat -j -xml: the agent reads qstat -j's text",
    "sge/running-qstat-j.xml": "qstat -j -xml",
    "sge/deleted-qstat-j.xml": "qstat -j -xml",
    "sge/gone-qstat-j.xml": "qstat -j -xml",
    "pbs/qstat-running.txt": "qstat's short listing (names cut): the running job's id, to check the others by",
    "pbs/qstat-n1-running.txt": "qstat -n -1's listing: the running job's id and node, to check the others by",
}


def recorded(name):
    """A sample as its command's (stdout, stderr, exit status). Grid Engine's end with
    "[exit N]", after "[stderr]" and the stderr if there was any; PBS's are stdout alone (exit
    None: the README says it)."""
    text = (DATA / name).read_text()
    body, sep, tail = text.rpartition("[exit ")
    if not sep:
        return text, "", None
    out, _, err = body.partition("[stderr]\n")
    return out, err, int(tail.split("]")[0])


def sge(name):
    return recorded("sge/" + name)


def pbs(name):
    return recorded("pbs/" + name)


def replay(answer):
    """A runner for Scheduler.ask that answers ANSWER every time, and counts the times."""
    def runner(argv, timeout):
        runner.calls += 1
        return answer
    runner.calls = 0
    return runner


def test_every_sample_is_read_here():
    files = {p.relative_to(DATA).as_posix() for p in DATA.glob("*/*") if p.name != "README.md"}
    source = Path(__file__).read_text()
    unread = {f for f in files - set(NOT_THE_AGENTS) if '"%s"' % f.split("/", 1)[1] not in source}
    assert not unread, "sample files no test here reads: %s" % sorted(unread)
    assert set(NOT_THE_AGENTS) <= files


# ---------------------------------------------------------------------------------------------
# Grid Engine: Debian 12's 8.1.9, user fjsge. Job 2 stays pending (a disabled queue), job 3 runs,
# is deleted (qdel), then is gone. The agent's query is qstat -xml -r -u USER (qstat_verdict),
# then qstat -j JOB for a job in error (error_reason), and qacct -j JOB once it left the list.

def job_number(name):
    """The job a qstat -j sample is about (its job_number line)."""
    return re.search(r"^job_number:\s+(\d+)$", sge(name)[0], re.M).group(1)


def listing(name):
    """qstat -u's or -s z's rows: {job id: (state word, queue)}."""
    rows = {}
    for line in sge(name)[0].splitlines()[2:]:
        words = line.split()
        rows[words[0]] = (words[4], words[7] if len(words) > 8 else "")  # a waiting job has no queue
    return rows


def sge_query(name, job):
    """What the agent's query makes of a qstat -xml -u sample: (its answer, the wait's verdict)."""
    answer = sched_sge.qstat_verdict(job)(*sge(name))
    return answer, Sge().verdict(answer)


def test_sge_pending_job():
    job = job_number("pending-qstat-j.txt")
    answer, verdict = sge_query("pending-qstat-u.xml", job)
    assert answer == {"state": "PENDING", "reason": "qw", "node": None, "time_left": None}
    assert verdict == "queued"
    assert listing("pending-qstat-u.txt")[job] == ("qw", "")


def test_sge_running_job_on_the_node_of_its_queue():
    job = job_number("running-qstat-j.txt")
    state, queue = listing("running-qstat-u.txt")[job]
    node = queue.split("@")[1]
    assert state == "r" and node
    answer, verdict = sge_query("running-qstat-u.xml", job)
    # taken without -r (README): no hard_request, so no h_rt to count the time left from; the
    # -r form's is in tests/test_schedulers.py (QSTAT_XML)
    assert answer == {"state": "RUNNING", "reason": "", "node": node, "time_left": None}
    assert verdict == "running"
    # the same moment from the pending job's side
    assert sge_query("pending-qstat-u.xml", job) == (answer, "running")
    # with -r, the same job's h_rt (qstat -j shows it) as a hard_request (in the form of
    # QSTAT_XML): the time left counts from its JAT_start_time
    limit = re.search(r"^hard resource_list:\s+h_rt=(\S+)$", sge("running-qstat-j.txt")[0], re.M).group(1)
    start = re.search(r"<JAT_start_time>(.*)</JAT_start_time>", sge("running-qstat-u.xml")[0]).group(1)
    started = sched_sge.started_at(start)
    assert started is not None
    xml = sge("running-qstat-u.xml")[0].replace(
        "<slots>1</slots>", '<slots>1</slots>\n      <hard_request name="h_rt" resource_contribution="0.000000">%s</hard_request>' % limit, 1)
    assert sched_sge.qstat_jobs(xml, now=started + 60)[job]["time_left"] == clock(int(limit) - 60)


def test_sge_deleted_job_is_completing_then_gone():
    job = job_number("deleted-qstat-j.txt")
    # qstat -u, at once after qdel: dr, still listed; the wait goes on
    state, queue = listing("deleted-qstat-u.txt")[job]
    assert state == "dr" and queue == listing("running-qstat-u.txt")[job][1]
    completing = {"state": sched_sge.state_of(state), "reason": state, "node": None, "time_left": None}
    assert completing["state"] == "COMPLETING" and Sge().verdict(completing) == "queued" and Sge().listed(completing)
    # qstat -xml -u, a moment later (test_sgecluster.py's capture() asks it after qstat -u): no
    # longer listed, and the agent asks accounting how it ended
    answer, verdict = sge_query("deleted-qstat-u.xml", job)
    assert (answer, verdict) == (None, "ended")
    # the pending job is untouched
    assert sge_query("deleted-qstat-u.xml", job_number("pending-qstat-j.txt"))[1] == "queued"
    # and among the finished ones (-s z): z, not active
    assert listing("deleted-qstat-s-z.txt")[job][0] == "z" and sched_sge.state_of("z") not in Sge.ACTIVE


def test_sge_gone_job_has_ended():
    out, err, code = sge("gone-qstat-j.txt")
    assert (out, code) == ("", 1) and err.startswith("Following jobs do not exist:")
    job = err.split()[-1]
    assert sge_query("gone-qstat-u.xml", job) == (None, "ended")
    assert job not in listing("gone-qstat-u.txt") and listing("gone-qstat-s-z.txt")[job][0] == "z"


def test_sge_qmaster_down_is_unknown_never_ended():
    out, err, code = sge("qmaster-down-qstat-u.xml")
    job = job_number("running-qstat-j.txt")  # any job (README): the one that ran
    answer, verdict = sge_query("qmaster-down-qstat-u.xml", job)
    assert verdict == "unknown" and answer["state"] == UNKNOWN and answer["node"] is None
    assert answer["reason"].startswith("qstat: ") and "unable to send message to qmaster" in answer["reason"]
    # asked again (TRIES), and unknown still: nothing treats the job as ended
    runner = replay((out, err, code))
    answer = Sge().ask(["qstat", "-xml", "-r", "-u", "fjsge"], sched_sge.qstat_verdict(job), runner=runner, sleep=lambda s: None)
    assert runner.calls == 3 and Sge().verdict(answer) == "unknown"
    assert Sge().listed(answer)


@pytest.mark.parametrize("name", ["pending-qstat-j.txt", "running-qstat-j.txt", "deleted-qstat-j.txt", "gone-qstat-j.txt",
                                  "qmaster-down-qstat-j.txt"])
def test_sge_qstat_j_has_no_error_reason(name):
    # none of these jobs is in error (E): scheduling info is no error reason
    out, err, code = sge(name)
    assert code in (0, 1) and sched_sge.error_reason(out) == ""


def test_sge_every_state_word_of_the_listings():
    words = {}
    for name in ("pending-qstat-u.txt", "running-qstat-u.txt", "deleted-qstat-u.txt", "gone-qstat-u.txt",
                 "pending-qstat-s-z.txt", "running-qstat-s-z.txt", "deleted-qstat-s-z.txt", "gone-qstat-s-z.txt"):
        words.update((state, sched_sge.state_of(state)) for state, _ in listing(name).values())
    assert words == {"qw": "PENDING", "r": "RUNNING", "dr": "COMPLETING", "z": "COMPLETED"}


def test_sge_qacct_of_the_deleted_job():
    out, err, code = sge("deleted-qacct-j.txt")
    assert code == 0 and re.search(r"^jobnumber\s+(\d+)", out, re.M).group(1) == job_number("deleted-qstat-j.txt")
    # failed 100 "assumedly after job", exit_status 137 (Killed): qdel's SIGKILL
    assert sched_sge.qacct_ended(out) == ("FAILED", "assumedly after job")


# ---------------------------------------------------------------------------------------------
# PBS: slurm-wlm-torque 22.05.8 over the SLURM test cluster. The agent's query is qstat -f JOB
# (text, once qstat -f -F json is refused), read by qstat_text and pbs_job; a job that left
# stays listed as C a while; qsub's refusal is read by qsub_words.

def pbs_sample(name):
    """A qstat -f sample's one job: (its id, its attributes)."""
    out, _, _ = pbs(name)
    [(job, attrs)] = sched_pbs.qstat_text(out).items()
    assert re.search(r"^Job Id:\t(\S+)$", out, re.M).group(1) == job
    return job, attrs


def pbs_query(name, now=None):
    """What the agent's query makes of a qstat -f sample (exit 0): (its answer, the wait's verdict)."""
    job, _ = pbs_sample(name)
    answer = sched_pbs.qstat_verdict(job, "text", now)(pbs(name)[0], "", 0)
    return answer, Pbs().verdict(answer)


def running_job():
    """The running job's id and node, from qstat -n -1's line (its node last, as NODE/CPUS);
    qstat's short listing has the same id."""
    line = pbs("qstat-n1-running.txt")[0].splitlines()[-1].split()
    assert pbs("qstat-running.txt")[0].splitlines()[-1].split()[0] == line[0]
    return line[0], line[-1].split("/")[0]


def test_pbs_queued_job():
    answer, verdict = pbs_query("qstat-f-queued.txt")
    assert answer == {"state": "PENDING", "reason": "Q", "node": None, "time_left": None}
    assert verdict == "queued"


def test_pbs_running_job_on_its_exec_host_with_time_from_walltime():
    job, node = running_job()
    assert pbs_sample("qstat-f-running.txt")[0] == job
    attrs = pbs_sample("qstat-f-running.txt")[1]
    # the wrapper's mtime is the start, its ctime the end of the time limit (README)
    minute_in = sched_pbs.ctime_seconds(attrs["mtime"]) + 60
    answer, verdict = pbs_query("qstat-f-running.txt", now=minute_in)
    assert answer == {"state": "RUNNING", "reason": "", "node": node, "time_left": "4:00"}
    assert answer["time_left"] == clock(sched_pbs.ctime_seconds(attrs["ctime"]) - minute_in)
    assert verdict == "running"


@pytest.mark.parametrize("name", ["qstat-f-finished.txt", "qstat-f-deleted.txt", "qstat-f-queued-deleted.txt"])
def test_pbs_ended_jobs_are_completed(name):
    # C for every ended job, with no exit status: finished by itself, or deleted running or queued
    answer, verdict = pbs_query(name)
    _, attrs = pbs_sample(name)
    node = sched_pbs.first_node(attrs.get("exec_host"))
    assert answer == {"state": "COMPLETED", "reason": "C", "node": node, "time_left": None}
    assert verdict == "ended" and not Pbs().listed(answer)
    assert (node is None) == (name == "qstat-f-queued-deleted.txt")
    if name == "qstat-f-deleted.txt":
        assert node == running_job()[1]


def test_pbs_no_walltime_is_no_time_left():
    # no -l walltime: the wrapper says SLURM's INFINITE (2**32 - 1 minutes) as a duration
    _, attrs = pbs_sample("qstat-f-no-walltime.txt")
    answer, verdict = pbs_query("qstat-f-no-walltime.txt")
    assert (answer["state"], answer["time_left"], verdict) == ("PENDING", None, "queued")
    # once it runs: the running sample with this walltime, a minute in; no time limit, no time left
    _, running = pbs_sample("qstat-f-running.txt")
    unlimited = dict(running, **{"Resource_List.walltime": attrs["Resource_List.walltime"]})
    minute_in = sched_pbs.ctime_seconds(running["mtime"]) + 60
    assert sched_pbs.pbs_job(unlimited, now=minute_in) == {"state": "RUNNING", "reason": "", "node": running_job()[1], "time_left": None}


def test_pbs_sample_times_are_read():
    for name in ("qstat-f-queued.txt", "qstat-f-running.txt", "qstat-f-deleted.txt", "qstat-f-queued-deleted.txt",
                 "qstat-f-finished.txt", "qstat-f-no-walltime.txt"):
        _, attrs = pbs_sample(name)
        times = [attrs[k] for k in ("qtime", "mtime", "ctime") if k in attrs]
        assert times and all(sched_pbs.ctime_seconds(t) is not None for t in times), (name, times)


# answers the README (and tests/test_pbscluster.py) describe, kept as no file: an unknown or
# forgotten id (nothing said, exit 153), the controller not answering ("Problem loading jobs.",
# exit 140 for a timeout, 8 for a refused connection), and no JSON form
@pytest.mark.parametrize("answer, expected", [
    (("", "", 153), "ended"),
    (("", "Problem loading jobs.\n", 140), "unknown"),
    (("", "Problem loading jobs.\n", 8), "unknown"),
])
def test_pbs_answers_without_a_job(answer, expected):
    job, _ = running_job()
    runner = replay(answer)
    got = Pbs().ask(["qstat", "-f", job], sched_pbs.qstat_verdict(job, "text"), runner=runner, sleep=lambda s: None)
    assert Pbs().verdict(got) == expected
    if expected == "ended":
        assert got is None and runner.calls == 1
    else:
        assert got["state"] == UNKNOWN and got["reason"] == "qstat: Problem loading jobs." and runner.calls == 3


def test_pbs_no_json_form_means_text():
    assert sched_pbs.qstat_verdict("2", "json")("", "Unknown option: F\nUsage:\n", 2) == "text"


def test_pbs_qsub_refused_in_sbatch_s_words():
    out, err, _ = pbs("qsub-refused.txt")
    words = sched_pbs.qsub_words(out, err, 1)
    assert words == "invalid partition specified: nosuch; Batch job submission failed: Invalid partition name specified"
    assert "\n" not in words and all(w in out for w in words.split("; "))
