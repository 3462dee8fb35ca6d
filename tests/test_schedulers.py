"""The schedulers' answers as the agent reads them, without a scheduler: tables of command
output (each sample says where its form comes from; the long ones are in scheduler_samples.py)
-> parsed result; the job options as directive lines; and the verdict on a query that fails
for a moment (retried, then UNKNOWN: never an ended job). PBS's own parsers are in
test_schedulers_pbs.py; the real clusters are tests/test_slurm.py and its siblings."""

import pytest

from tasks.remote import sched_pbs, sched_sge, sched_slurm
from tasks.remote.fail import Fail
from tasks.remote.sched_common import UNKNOWN, Scheduler, clock, option_words, seconds_of
from tasks.remote.schedulers import SCHEDULERS, Pbs, Sge, Slurm

from .scheduler_samples import EMPTY_XML, PBSPRO_JSON, QSTAT_XML, TIMED_OUT, TORQUE


def state(result):
    """A verdict as one word: the job's state, None (left the queue), or what else it is."""
    return result["state"] if isinstance(result, dict) else result

# ---------------------------------------------------------------------------------------------
# SLURM: squeue -h -j JOB -o '%T|%r|%N|%L' (squeue(1)'s format letters); the error lines as
# SLURM 22.05's squeue prints them (slurm_load_jobs error: ... is slurm_strerror's text)

SQUEUE = [
    (("RUNNING|None|node1|3:59:12\n", "", 0), {"state": "RUNNING", "reason": "", "node": "node1", "time_left": "3:59:12"}),
    (("PENDING|Resources||1-00:00:00\n", "", 0), {"state": "PENDING", "reason": "Resources", "node": None, "time_left": "1-00:00:00"}),
    (("PENDING|(null)||INVALID\n", "", 0), {"state": "PENDING", "reason": "", "node": None, "time_left": None}),
    (("", "", 0), None),  # squeue no longer lists it
    (("", "slurm_load_jobs error: Invalid job id specified\n", 1), None),
    (("", "slurm_load_jobs error: Socket timed out on send/recv operation\n", 1), UNKNOWN),
    (("", "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n", 1), UNKNOWN),
    (("", "squeue did not answer within 20 s", 124), UNKNOWN),  # shell.run_command's timeout
    (("", "squeue: error: Zero Bytes were transmitted or received\n", 1), UNKNOWN),
]


@pytest.mark.parametrize("answer, expected", SQUEUE)
def test_squeue_answers(answer, expected):
    got = sched_slurm.squeue_verdict(*answer)
    if expected == UNKNOWN:
        assert got["state"] == UNKNOWN and got["reason"].startswith("squeue: ") and got["node"] is None, got
        assert answer[1].strip().splitlines()[-1] in got["reason"]
    else:
        assert got == expected


def test_slurm_ended_from_sacct_or_scontrol():
    # sacct -n -X -P -o State,Reason,ExitCode; scontrol -o show job (one line of Key=Value)
    assert sched_slurm.sacct_ended("TIMEOUT|None|0:0\n") == ("TIMEOUT", "")
    assert sched_slurm.sacct_ended("CANCELLED by 1001|None|0:15\n") == ("CANCELLED", "")
    assert sched_slurm.sacct_ended("FAILED|NonZeroExitCode|1:0\n") == ("FAILED", "NonZeroExitCode")
    assert sched_slurm.sacct_ended("") is None
    line = "JobId=57 JobName=fabjupyter-default UserId=alice(1001) JobState=TIMEOUT Reason=TimeLimit Dependency=(null)"
    assert sched_slurm.scontrol_ended(line) == ("TIMEOUT", "TimeLimit")
    assert sched_slurm.scontrol_ended("JobId=57 JobState=COMPLETED Reason=None") == ("COMPLETED", "")
    assert sched_slurm.scontrol_ended("") is None
    assert sched_slurm.squeue_ids("57\n58\n", "", 0) == ["57", "58"]
    assert state(sched_slurm.squeue_ids("", "slurm_load_jobs error: Socket timed out on send/recv operation", 1)) == UNKNOWN


# ---------------------------------------------------------------------------------------------
# Grid Engine: qstat -xml -r (scheduler_samples.py), qstat -j, qacct -j, qsub -terse

TEN_MINUTES_IN = sched_sge.started_at("2026-12-06T04:10:11") + 600


def test_grid_engine_qstat_xml():
    jobs = sched_sge.qstat_jobs(QSTAT_XML, now=TEN_MINUTES_IN)
    assert jobs == {
        "42": {"state": "RUNNING", "reason": "", "node": "node1", "time_left": "50:00", "name": "fabjupyter-default"},
        "45": {"state": "COMPLETING", "reason": "dr", "node": "node2.cluster.example.org", "time_left": None, "name": "fabjupyter-gpu"},
        "43": {"state": "PENDING", "reason": "hqw", "node": None, "time_left": None, "name": "fabjupyter-other"},
        "44": {"state": "ERROR", "reason": "Eqw", "node": None, "time_left": None, "name": "fabjupyter-default"},
    }
    assert sched_sge.qstat_jobs(EMPTY_XML) == {}


# the state words of sge_status(5)'s table, each as the agent reads it
@pytest.mark.parametrize("word, expected", [
    ("qw", "PENDING"), ("hqw", "PENDING"), ("hRwq", "PENDING"), ("Rq", "PENDING"),
    ("r", "RUNNING"), ("hr", "RUNNING"), ("Rr", "RUNNING"), ("t", "CONFIGURING"), ("Rt", "CONFIGURING"),
    ("s", "SUSPENDED"), ("ts", "SUSPENDED"), ("S", "SUSPENDED"), ("tS", "SUSPENDED"), ("T", "SUSPENDED"), ("RtT", "SUSPENDED"),
    ("Eqw", "ERROR"), ("Ehqw", "ERROR"), ("EhRqw", "ERROR"),
    ("dr", "COMPLETING"), ("dt", "COMPLETING"), ("dRs", "COMPLETING"), ("dT", "COMPLETING"), ("z", "COMPLETED"),
])
def test_grid_engine_states(word, expected):
    assert sched_sge.state_of(word) == expected
    assert (expected in Sge.ACTIVE) == (expected not in ("ERROR", "COMPLETED"))


@pytest.mark.parametrize("answer, job, expected", [
    ((QSTAT_XML, "", 0), "42", "RUNNING"),
    ((QSTAT_XML, "", 0), "44", "ERROR"),
    ((QSTAT_XML, "", 0), "99", None),  # the list no longer has it: qstat forgets a finished job at once
    ((EMPTY_XML, "", 0), "42", None),
    # sge_qmaster stopped or restarting: the client's commlib words, exit 1
    (("", "error: commlib error: got select error (Connection refused)\n"
          "unable to contact qmaster using port 6444 on host \"login\"\n", 1), "42", UNKNOWN),
    (("", "error: failed receiving gdi request response for mid=1 (got syncron message receive timeout error).\n", 1), "42", UNKNOWN),
    (("", "qstat did not answer within 20 s", 124), "42", UNKNOWN),
    (("<job_info><queue_info>", "", 0), "42", UNKNOWN),  # cut off: no XML, no verdict on the job
])
def test_grid_engine_query_verdict(answer, job, expected):
    got = sched_sge.qstat_verdict(job)(*answer)
    assert state(got) == expected
    if expected == UNKNOWN:
        assert got["reason"] and "name" not in got
    elif got:
        assert set(got) == {"state", "reason", "node", "time_left"}


def test_grid_engine_error_reason_qacct_and_qsub():
    # qstat -j JOB of a job in Eqw (its "error reason" line, one per task)
    qstat_j = ("job_number:                 44\n"
               "job_name:                   fabjupyter-default\n"
               "error reason    1:          12/06/2026 04:10:11 [1001:4242]: error: can't chdir to /nowhere: No such file or directory\n"
               "scheduling info:            (Collecting of scheduler job information is turned off)\n")
    assert sched_sge.error_reason(qstat_j) == "error: can't chdir to /nowhere: No such file or directory"
    assert sched_sge.error_reason("job_number: 42\n") == ""
    # qacct -j JOB: accounting(5)'s fields; failed 37 is sge_status(5)'s h_rt limit
    qacct = ("==============================================================\n"
             "qname        all.q               \nhostname     node1               \nowner        alice               \n"
             "jobname      fabjupyter-default  \njobnumber    42                  \n"
             "start_time   Sun Dec  6 04:10:11 2026\nend_time     Sun Dec  6 05:10:11 2026\n"
             "failed       %s\nexit_status  %s\n")
    assert sched_sge.qacct_ended(qacct % ("0", "0")) == ("COMPLETED", "")
    assert sched_sge.qacct_ended(qacct % ("37  : qmaster enforced h_rt, h_cpu, or h_vmem limit", "137                 (Killed)")) == \
        ("TIMEOUT", "qmaster enforced h_rt, h_cpu, or h_vmem limit")
    assert sched_sge.qacct_ended(qacct % ("100 : assumedly after job", "137")) == ("FAILED", "assumedly after job")
    assert sched_sge.qacct_ended(qacct % ("0", "3")) == ("FAILED", "exit status 3")
    assert sched_sge.qacct_ended("error: job id 42 not found\n") is None
    # qsub -terse's refusal (stderr, then "Exiting.")
    assert sched_sge.qsub_words("", 'Unable to run job: Job was rejected because job requests unknown queue "nope".\nExiting.\n', 1) == \
        'Unable to run job: Job was rejected because job requests unknown queue "nope".'


# ---------------------------------------------------------------------------------------------
# a query that fails for a moment: asked again, then UNKNOWN; never taken for an ended job


class Answers:
    """A command's answers, one per call, as shell.run_command gives them."""

    def __init__(self, *answers, takes=0.1):
        self.answers, self.calls, self.pauses, self.takes, self.now = list(answers), [], [], takes, 0.0

    def run(self, argv, timeout):
        self.calls.append(argv)
        self.now += self.takes
        return self.answers.pop(0)

    def sleep(self, seconds):
        self.pauses.append(seconds)
        self.now += seconds

    def clock(self):
        return self.now



@pytest.mark.parametrize("answers, expected, calls", [
    ([("RUNNING|None|node1|9:00\n", "", 0)], "RUNNING", 1),
    ([TIMED_OUT, ("RUNNING|None|node1|9:00\n", "", 0)], "RUNNING", 2),  # a blip: asked again
    ([TIMED_OUT, TIMED_OUT, ("", "slurm_load_jobs error: Invalid job id specified\n", 1)], None, 3),
    ([TIMED_OUT, TIMED_OUT, TIMED_OUT], UNKNOWN, 3),  # still failing: unknown, not ended
    ([("", "squeue: No such file or directory", 127)], UNKNOWN, 1),  # shell.run_command's "not there": no use asking again
])
def test_a_failing_query_is_asked_again_then_unknown(answers, expected, calls):
    runner = Answers(*answers)
    got = Slurm().ask(["squeue"], sched_slurm.squeue_verdict, runner=runner.run, sleep=runner.sleep, clock=runner.clock)
    assert state(got) == expected and len(runner.calls) == calls and runner.pauses == [1.0] * (calls - 1)
    if expected == UNKNOWN:
        assert got["reason"] == "squeue: " + answers[-1][1].strip()


@pytest.mark.parametrize("takes, calls", [(0.1, 3), (10.0, 2), (20.0, 1)])
def test_a_query_that_hangs_is_not_waited_for_three_times_over(takes, calls):
    """A controller that hangs: each try waits out the client's timeout (squeue's 10 s, or
    ours of 20 s). Tries go on while they took less than BUDGET seconds in all: a status is
    not a minute of waiting, and a quick failure is still asked again."""
    runner = Answers(TIMED_OUT, TIMED_OUT, TIMED_OUT, takes=takes)
    got = Slurm().ask(["squeue"], sched_slurm.squeue_verdict, runner=runner.run, sleep=runner.sleep, clock=runner.clock)
    assert state(got) == UNKNOWN and len(runner.calls) == calls, runner.calls


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_unknown_is_neither_active_nor_ended(scheduler):
    """UNKNOWN is the scheduler's silence: the job counts as there (listed: stop cancels it by
    id, setup keeps it), yet it is no state of the scheduler's (not ACTIVE, not STUCK)."""
    s = SCHEDULERS[scheduler]()
    assert UNKNOWN not in s.ACTIVE and UNKNOWN not in s.STUCK
    assert s.listed({"state": UNKNOWN, "reason": "", "node": None, "time_left": None})
    assert s.listed({"state": "PENDING", "reason": "", "node": None, "time_left": None})
    assert not s.listed(None) and not s.listed({"state": "COMPLETED", "reason": "", "node": None, "time_left": None})


# ---------------------------------------------------------------------------------------------
# the job script's header: ours, then the user's options, each word quoted for the parser


def refused(fn, *args):
    """The detail of the launch_failed that FN(*ARGS) raises."""
    with pytest.raises(Fail) as failed:
        fn(*args)
    assert failed.value.code == "launch_failed"
    return failed.value.detail


def test_options_are_directive_lines_split_as_a_shell_would():
    assert option_words(["--partition=gpu", "-A", "abc", "-l walltime=01:00:00", "-pe smp 4", "--comment='a b'"], "#X") == [
        ["--partition=gpu"], ["-A", "abc"], ["-l", "walltime=01:00:00"], ["-pe", "smp", "4"], ["--comment=a b"]]
    assert "cannot be a #X option" in refused(option_words, ["--comment='unbalanced"], "#X")


def test_slurm_header_and_its_quoting():
    header = Slurm().script_header("fabjupyter-default", "/home/a b/.fabjupyter/jupyter.log",
                                   ["--time=04:00:00", "-A abc", "--comment='a b#c'"])
    assert header == ["#SBATCH --job-name=fabjupyter-default", '#SBATCH "--output=/home/a b/.fabjupyter/jupyter.log"',
                      "#SBATCH --open-mode=append", "#SBATCH --time=04:00:00", "#SBATCH -A abc", '#SBATCH "--comment=a b\\#c"']
    assert Slurm().script_body("/x") == []


def test_grid_engine_header_and_its_quoting():
    header = Sge().script_header("fabjupyter-default", "/home/a/jupyter.log", ["-l h_rt=01:00:00,h_vmem=4G", "-pe smp 4", "-q '*@node1'",
                                                                              "-A 'my project'"])
    assert header == ["#$ -N fabjupyter-default", "#$ -S /bin/sh", "#$ -j y", "#$ -o /dev/null",
                      "#$ -l h_rt=01:00:00,h_vmem=4G", "#$ -pe smp 4", "#$ -q *@node1", '#$ -A "my project"']
    assert Sge().script_body("/home/a b/jupyter.log") == ["exec >> '/home/a b/jupyter.log' 2>&1"]
    for bad in ['-A "it\'s"', "-A 'a\"b'", "-A 'a\\b'"]:
        assert "cannot be a #$ option (it holds one of \" ' \\ or a line break)" in refused(Sge().script_header, "fabjupyter-default", "/l", [bad]), bad


def test_pbs_header_and_its_quoting():
    header = Pbs().script_header("fabjupyter-gpu", "/home/a/jupyter.log", ["-l select=1:ncpus=4:mem=8gb", "-l walltime=04:00:00",
                                                                          "-q", "gpu", "-A 'my project'"])
    assert header == ["#PBS -N fabjupyter-gpu", "#PBS -S /bin/sh", "#PBS -j oe", "#PBS -o /dev/null",
                      "#PBS -l select=1:ncpus=4:mem=8gb", "#PBS -l walltime=04:00:00", "#PBS -q gpu", '#PBS -A "my project"']
    for bad in ["-A 'a#b'", "-A 'a\\b'", "-A \"it's\""]:
        assert "cannot be a #PBS option" in refused(Pbs().script_header, "fabjupyter-gpu", "/l", [bad]), bad
    assert Sge().script_header("n", "/l", ["-A 'a#b'"])[-1] == '#$ -A "a#b"'  # Grid Engine reads # in a word as it is


@pytest.mark.parametrize("text, seconds", [
    ("01:00:00", 3600), ("1:00:00", 3600), ("10:00", 600), ("42", 42), ("1-00:00:00", 86400), ("00:00:01.5", 1),
    ("Infinite", None), ("UNLIMITED", None), ("", None), (None, None),
])
def test_durations(text, seconds):
    assert seconds_of(text) == seconds


@pytest.mark.parametrize("seconds, text", [(0, "0:00"), (42, "0:42"), (3000, "50:00"), (14352, "3:59:12"), (86400, "1-00:00:00"),
                                           (-5, "0:00"), (None, None)])
def test_clock_is_squeue_s(seconds, text):
    assert clock(seconds) == text


def test_every_scheduler_has_the_whole_interface():
    for name, cls in SCHEDULERS.items():
        assert cls.name == name and issubclass(cls, Scheduler)
        for method in ("script_header", "script_body", "submit", "query", "ended", "cancel", "find", "listed"):
            assert callable(getattr(cls, method)), (name, method)
        assert cls.submit_command and cls.query_command and cls.cancel_command and cls.family


# what waiting for a job makes of each answer: the whole way from a command's output to the
# wait's decision (unknown: no news, the wait goes on and nothing is cancelled; ended: it stops)
VERDICTS = [
    (Slurm, sched_slurm.squeue_verdict, ("RUNNING|None|node1|9:00\n", "", 0), "running"),
    (Slurm, sched_slurm.squeue_verdict, ("PENDING|Priority||9:00\n", "", 0), "queued"),
    (Slurm, sched_slurm.squeue_verdict, ("COMPLETING|None|node1|0:00\n", "", 0), "queued"),
    (Slurm, sched_slurm.squeue_verdict, ("TIMEOUT|TimeLimit|node1|0:00\n", "", 0), "ended"),
    (Slurm, sched_slurm.squeue_verdict, ("", "slurm_load_jobs error: Invalid job id specified\n", 1), "ended"),
    (Slurm, sched_slurm.squeue_verdict, TIMED_OUT, "unknown"),
    (Slurm, sched_slurm.squeue_verdict, ("", "squeue did not answer within 20 s", 124), "unknown"),
    (Sge, sched_sge.qstat_verdict("42"), (QSTAT_XML, "", 0), "running"),
    (Sge, sched_sge.qstat_verdict("43"), (QSTAT_XML, "", 0), "queued"),
    (Sge, sched_sge.qstat_verdict("44"), (QSTAT_XML, "", 0), "ended"),  # Eqw: never runs on its own
    (Sge, sched_sge.qstat_verdict("42"), (EMPTY_XML, "", 0), "ended"),
    (Sge, sched_sge.qstat_verdict("42"), ("", "unable to contact qmaster using port 6444 on host \"login\"\n", 1), "unknown"),
    (Pbs, sched_pbs.qstat_verdict("123.server", "json"), (PBSPRO_JSON, "", 0), "running"),
    (Pbs, sched_pbs.qstat_verdict("124.server", "json"), (PBSPRO_JSON, "", 0), "queued"),
    (Pbs, sched_pbs.qstat_verdict("125.server", "json"), (PBSPRO_JSON, "", 0), "ended"),
    (Pbs, sched_pbs.qstat_verdict("124.server.example.org", "text"), (TORQUE, "", 0), "ended"),  # C, kept a while
    (Pbs, sched_pbs.qstat_verdict("57", "text"), ("", "", 153), "ended"),
    (Pbs, sched_pbs.qstat_verdict("57", "text"), ("", "Problem loading jobs.\n", 255), "unknown"),
    (Pbs, sched_pbs.qstat_verdict("1.server", "json"), ("", "qstat: cannot connect to server server (errno=15010)\n", 1), "unknown"),
]


@pytest.mark.parametrize("cls, verdict, answer, expected", VERDICTS)
def test_what_the_wait_makes_of_each_answer(cls, verdict, answer, expected):
    assert cls().verdict(verdict(*answer)) == expected
