"""The real test clusters as the launcher lifecycle tests (tests/test_batch.py) use them, one
class a scheduler, so that each test is written once and runs on SLURM, Grid Engine and PBS:

    slurm  SlurmCluster (tests/slurmcluster.py): sbatch, squeue, scancel
    pbs    the same SLURM cluster through Debian's Torque wrappers (slurm-wlm-torque: qsub, qstat
           and qdel first on the test users' PATH, tests/test_pbscluster.py says what they do)
    sge    SgeCluster (tests/sgecluster.py): Grid Engine 8.1.9's qmaster and execd

A site says how to ask its scheduler what the test needs to know (the user's active jobs, a
job's end), the options that keep a job queued or make the scheduler refuse it, what its
batch script's directive lines look like, and how to take its controller away for a moment."""

import contextlib
import os
import signal
import time

from .sgecluster import SgeCluster
from .slurmcluster import SlurmCluster, torque_users


def wait_until(test, timeout, every=1.0):
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


class Site:
    """What every site has: the cluster, its test user and another user on the same nodes."""

    kind = ""
    user = other = ""
    prefix = ""  # the directive lines' prefix (#SBATCH)
    pending = ()  # options that keep a job queued, never to start
    pending_reason = ()  # words of which one is in the queued line's reason
    refused = ()  # options the scheduler refuses at submission
    refusal = ""  # words of its refusal (lower case)
    hold = ()  # options that submit a job held (queued until release())
    submit_command = "qsub"  # what this tool runs to submit, as its refusals name it
    timeout_state = ""  # the state of a job that ran out of its time limit, as status says it

    def __init__(self, cluster):
        self.cluster = cluster
        self.node, self.node_addr, self.compute_ns = cluster.node, cluster.node_addr, cluster.compute_ns
        self.login = cluster.login
        self.address = self.node_addr  # where the job's Jupyter listens, as the login node reaches it

    def hosts(self, fab, *options, extra=""):
        """hosts.yaml: the test user's host with this launcher and the job options."""
        quoted = ", ".join('"%s"' % o.replace("\\", "\\\\").replace('"', '\\"') for o in options)
        fab.hosts(f"hosts:\n  {fab.user}:\n    launcher: {self.kind}\n    job_options: [{quoted}]\n{extra}")

    def directive(self, option):
        return f"{self.prefix} {option}"

    def jobs(self):
        """The test user's queued or running jobs' ids (text), as the scheduler lists them."""
        raise NotImplementedError

    def limit(self, hms):
        """The option for a time limit of HMS (00:10:00)."""
        raise NotImplementedError

    def submit(self, script, name, user=None, options=""):
        """Submit SCRIPT (a file in the user's home) by hand as USER (the test user), named
        NAME, with OPTIONS (as the submit command takes them): its id."""
        raise NotImplementedError

    def release(self, job_id):
        """Release a held job (as root)."""
        raise NotImplementedError

    @contextlib.contextmanager
    def controller_away(self):
        """The scheduler's controller does not answer while inside (queries fail or time out);
        jobs go on meanwhile."""
        raise NotImplementedError
        yield

    def reset(self):
        """No jobs, the test users' homes empty."""
        self.cluster.reset()

    def cancel_all(self):
        """No jobs (the homes as they are)."""
        self.cluster.cancel_all()

    def compute_pids(self, user=None):
        return self.cluster.compute_pids(user or self.user)

    def login_pids(self, user=None):
        return self.cluster.login_pids(user or self.user)

    def in_compute(self, *cmd):
        return self.cluster.in_compute(*cmd)


class SlurmSite(Site):
    kind, user, other, prefix = "slurm", "fjslurm", "fjslurmsh", "#SBATCH"
    pending = ("--partition=down",)
    pending_reason = ("PartitionDown", "PartitionInactive")
    refused, refusal = ("--partition=nope",), "invalid partition specified: nope"
    hold, submit_command, timeout_state = ("--hold",), "sbatch", "TIMEOUT"

    def jobs(self):
        return [str(j["id"]) for j in self.cluster.squeue(self.user)]

    def limit(self, hms):
        return f"--time={hms}"

    def submit(self, script, name, user=None, options=""):
        r = self.cluster.run_in_login(user or self.user, f"sbatch --parsable --job-name={name} {options} {script}", check=True)
        return r.stdout.strip().split(";")[0]

    def release(self, job_id):
        self.cluster.slurm("scontrol", "release", job_id, check=True)

    @contextlib.contextmanager
    def controller_away(self):
        # slurmctld stopped: every query waits out MessageTimeout, then fails
        pid = self.cluster.procs["slurmctld"].pid
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)


class PbsSite(SlurmSite):
    """PBS through SLURM's Torque wrappers: the job's state is the wrappers' (C for every ended
    job, no reason for a queued one)."""

    kind, prefix = "pbs", "#PBS"
    pending = ("-q down",)
    pending_reason = ("PENDING (Q)",)
    refused, refusal = ("-q nope",), "invalid partition specified: nope"
    hold, submit_command, timeout_state = ("-h",), "qsub", "COMPLETED"

    def jobs(self):
        # qstat -f as the user: its jobs that are not C (ended; SLURM may still list them as
        # completing)
        r = self.cluster.run_in_login(self.user, "qstat -f")
        jobs, job = [], None
        for line in r.stdout.splitlines():
            if line.startswith("Job Id:"):
                job = line.split(":", 1)[1].strip()
            elif line.strip().startswith("Job_Owner = ") and not line.split("=", 1)[1].strip().startswith(self.login.users[self.user].name + "@"):
                job = None
            elif line.strip().startswith("job_state = ") and job and line.split("=", 1)[1].strip() != "C":
                jobs.append(job)
        return jobs

    def limit(self, hms):
        return f"-l walltime={hms}"

    def submit(self, script, name, user=None, options=""):
        r = self.cluster.run_in_login(user or self.user, f"qsub -N {name} {options} {script}", check=True)
        return r.stdout.strip().splitlines()[-1]


class SgeSite(Site):
    kind, user, other, prefix = "sge", "fjsge", "fjsgesh", "#$"
    pending = ("-q down.q",)
    pending_reason = ("dropped because it is disabled",)
    refused, refusal = ("-q nope.q",), 'job requests unknown queue "nope.q"'
    hold, submit_command, timeout_state = ("-h",), "qsub", "TIMEOUT"

    def __init__(self, cluster):
        super().__init__(cluster)
        self.address = self.node  # Grid Engine knows hosts by name: the job listens on what it resolves to

    def jobs(self):
        return [str(j["id"]) for j in self.cluster.jobs(self.user)]

    def limit(self, hms):
        return f"-l h_rt={hms}"

    def submit(self, script, name, user=None, options=""):
        return str(self.cluster.qsub(user or self.user, f"-N {name} {options} {script}"))

    def release(self, job_id):
        self.cluster.sge("qrls", job_id, check=True)

    def cancel_all(self):
        self.cluster.delete_all()

    @contextlib.contextmanager
    def controller_away(self):
        self.cluster.stop_qmaster()
        try:
            yield
        finally:
            self.cluster.start_qmaster()


SITES = {"slurm": SlurmSite, "pbs": PbsSite, "sge": SgeSite}


class Sites:
    """The clusters of one test module, each built the first time a test asks for it and closed
    by close(): SLURM and PBS share one (its users have the Torque wrappers first on their PATH;
    sbatch and squeue are where they were)."""

    def __init__(self):
        self.clusters, self.sites = {}, {}

    def get(self, kind):
        if kind not in self.sites:
            key = "sge" if kind == "sge" else "slurm"
            if key not in self.clusters:
                self.clusters[key] = SgeCluster() if key == "sge" else SlurmCluster(users=torque_users())
            self.sites[kind] = SITES[kind](self.clusters[key])
        return self.sites[kind]

    def close(self):
        for cluster in self.clusters.values():
            cluster.close()
