"""PBS's answers as the agent reads them, without PBS: Torque's and SLURM's wrapper's qstat -f
text, PBS Pro's qstat -f -F json (tests/scheduler_samples.py), exec_host in every form, the
state letters, the query's verdict and qsub's refusal."""

import pytest

from tasks.remote import sched_pbs
from tasks.remote.sched_common import UNKNOWN
from tasks.remote.schedulers import Pbs

from .scheduler_samples import JSON_GONE, PBSPRO_JSON, TORQUE, WRAPPER
from .test_schedulers import state


def test_torque_text_with_continued_values():
    jobs = sched_pbs.qstat_text(TORQUE)
    assert list(jobs) == ["123.server.example.org", "124.server.example.org"]
    attrs = jobs["123.server.example.org"]
    assert attrs["Variable_List"].endswith("PBS_O_LOGNAME=alice,PBS_O_PATH=/usr/bin:/bin,PBS_O_SHELL=/bin/bash")
    assert attrs["exec_host"] == "node1/0+node1/1" and attrs["Resource_List.walltime"] == "01:00:00"
    assert sched_pbs.pbs_job(attrs) == {"state": "RUNNING", "reason": "", "node": "node1", "time_left": "50:00"}
    assert sched_pbs.pbs_job(jobs["124.server.example.org"]) == {"state": "FAILED", "reason": "exit status 271", "node": None, "time_left": None}


def test_slurm_wrapper_text():
    jobs = sched_pbs.qstat_text(WRAPPER)
    assert list(jobs) == ["57", "58"]
    minute_in = sched_pbs.ctime_seconds("Sun Dec  6 04:10:11 2026") + 60
    assert sched_pbs.pbs_job(jobs["57"], now=minute_in) == {"state": "RUNNING", "reason": "", "node": "node1", "time_left": "9:00"}
    assert sched_pbs.pbs_job(jobs["58"]) == {"state": "PENDING", "reason": "Q", "node": None, "time_left": None}


def test_pbs_pro_json():
    jobs = sched_pbs.qstat_json(PBSPRO_JSON)
    assert jobs["123.server"]["Resource_List.walltime"] == "01:00:00" and jobs["123.server"]["substate"] == "42"
    assert sched_pbs.pbs_job(jobs["123.server"]) == {"state": "RUNNING", "reason": "", "node": "node1", "time_left": "50:00"}
    assert sched_pbs.pbs_job(jobs["124.server"]) == {
        "state": "PENDING", "reason": "Q: Not Running: Insufficient amount of resource: ncpus", "node": None, "time_left": None}
    assert sched_pbs.pbs_job(jobs["125.server"]) == {
        "state": "FAILED", "reason": "exit status -29; Job run at Sun Dec 06 at 03:00 on (node1:ncpus=2) and finished",
        "node": None, "time_left": None}


@pytest.mark.parametrize("exec_host, node", [
    ("node1/0+node1/1", "node1"),  # Torque: one entry per slot
    ("node1/0*2+node2/0*2", "node1"),  # PBS Pro: slots counted
    ("node1.cluster.example.org/0-3+node2/0-3", "node1.cluster.example.org"),  # Torque 4+: ranges
    ("node7/1", "node7"),  # SLURM's wrapper
    ("(node1:ncpus=2)+(node2:ncpus=2)", "node1"),  # PBS Pro's exec_vnode
    ("", None), (None, None),
])
def test_exec_host_first_node(exec_host, node):
    assert sched_pbs.first_node(exec_host) == node


@pytest.mark.parametrize("letter, expected", [
    ("Q", "PENDING"), ("H", "PENDING"), ("W", "PENDING"), ("T", "PENDING"), ("R", "RUNNING"), ("B", "RUNNING"),
    ("E", "COMPLETING"), ("S", "SUSPENDED"), ("U", "SUSPENDED"), ("C", "COMPLETED"), ("F", "COMPLETED"), ("X", "COMPLETED"),
])
def test_pbs_states(letter, expected):
    assert sched_pbs.pbs_job({"job_state": letter})["state"] == expected
    assert (expected in Pbs.ACTIVE) == (letter not in "CFX")



@pytest.mark.parametrize("form, answer, job, expected", [
    ("json", (PBSPRO_JSON, "", 0), "123.server", "RUNNING"),
    ("json", (PBSPRO_JSON, "", 0), "124", "PENDING"),  # an id without the server's name is the same job
    ("json", (JSON_GONE, "qstat: Unknown Job Id 999.server\n", 153), "999.server", None),
    ("json", ("", "qstat: 125.server Job has finished, use -x or -H to obtain historical job information\n", 35), "125.server", None),
    # Torque's qstat and SLURM's wrapper have no -F: this host's qstat speaks text
    ("json", ("", "qstat: invalid option -- 'F'\nusage: qstat [-f [-1]] [-W site_specific] [-x] [job_identifier...]\n", 2), "1", "text"),
    ("json", ("", "Unknown option: F\nUsage:\n    qstat [-f] [-a|-i|-r] [-n [-1]] [-G|-M] [-u user_list]\n", 2), "1", "text"),
    # pbs_server down or restarting, a timeout
    ("json", ("", "Connection refused\nqstat: cannot connect to server server (errno=15010)\n", 1), "123.server", UNKNOWN),
    ("json", ("", "qstat did not answer within 20 s", 124), "123.server", UNKNOWN),
    ("text", (TORQUE, "", 0), "123.server.example.org", "RUNNING"),
    ("text", (TORQUE, "", 0), "124.server.example.org", "FAILED"),
    ("text", (WRAPPER, "", 0), "58", "PENDING"),
    ("text", ("", "qstat: Unknown Job Id Error 999.server.example.org\n", 153), "999.server.example.org", None),
    ("text", ("", "", 153), "99", None),  # the wrapper's "not listed": exit 153, nothing said
    ("text", ("", "Problem loading jobs.\n", 255), "57", UNKNOWN),  # the wrapper while slurmctld restarts
    ("text", ("", "qstat: cannot connect to server server.example.org (errno=111) Connection refused\n", 1), "1", UNKNOWN),
])
def test_pbs_query_verdict(form, answer, job, expected):
    assert state(sched_pbs.qstat_verdict(job, form)(*answer)) == expected


def test_pbs_submit_answers():
    # the SLURM wrapper's refusal: stdout, with sbatch's own line quoted inside
    wrapper = ("There was an error running the Slurm sbatch command.\nThe command was:\n"
               "'/usr/bin/sbatch -o /dev/null -J fabjupyter-default -p nope /home/alice/job.sh 2>&1'\n"
               "and the output was:\n'sbatch: error: invalid partition specified: nope\n"
               "sbatch: error: Batch job submission failed: Invalid partition name specified\n'\n")
    assert sched_pbs.qsub_words(wrapper, "", 1) == \
        "invalid partition specified: nope; Batch job submission failed: Invalid partition name specified"
    assert sched_pbs.qsub_words("", "qsub: Unknown queue\n", 170) == "qsub: Unknown queue"
    assert sched_pbs.same_job("123", "123.server") and sched_pbs.same_job("123.server", "123.server")
    assert not sched_pbs.same_job("1234.server", "123.server")
