"""launcher: slurm, what only SLURM has: the node's address from `scontrol show node` (or its
name where the node record has none), an ended job's state from sacct or the controller's memory,
and #SBATCH's own quoting, on the real SLURM cluster of tests/slurmcluster.py. The lifecycle every
scheduler shares is tests/test_batch.py's, which runs on this cluster too."""

import json
import shlex

import pytest

from tasks.remote.schedulers import Slurm

from .batchsites import wait_until
from .conftest import Fab
from .jupyter_http import login_and_list
from .slurmcluster import SlurmCluster

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
