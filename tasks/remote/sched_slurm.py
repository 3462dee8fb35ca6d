"""SLURM: sbatch, squeue, sacct or scontrol, scancel. The job script (bootstrap.sh's fj_job)
reads the node's name from $SLURMD_NODENAME and its address from `scontrol show node`."""

import os

from .fail import Fail
from .sched_common import Scheduler, said, unknown
from .shell import run_command


def squeue_verdict(out, err, code):
    """squeue -h -j JOB -o %T|%r|%N|%L's answer: {state, reason, node, time_left} while SLURM
    lists the job; None once it left the queue (an invalid job id, or no line); unknown when
    squeue failed otherwise (a timeout, "slurm_load_jobs error: Socket timed out", "Unable to
    contact slurm controller" while slurmctld restarts)."""
    if code != 0:
        return None if "Invalid job id" in err else unknown("squeue: " + said(out, err, code))
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) == 4:
            state, reason, node, left = parts
            return {"state": state, "reason": "" if reason in ("None", "(null)") else reason,
                    "node": node or None, "time_left": left if left not in ("", "INVALID") else None}
    return None


def squeue_ids(out, err, code):
    """squeue -h -o %i's answer: the job ids; unknown when squeue failed."""
    return out.split() if code == 0 else unknown("squeue: " + said(out, err, code))


def sacct_ended(out):
    """sacct -n -X -P -o State,Reason,ExitCode's answer: (state, reason), or None."""
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) >= 2 and parts[0]:
            return parts[0].split()[0], parts[1] if parts[1] not in ("None", "") else ""
    return None


def scontrol_ended(out):
    """scontrol -o show job's answer: (JobState, Reason), or None."""
    fields = dict(word.split("=", 1) for word in out.split() if "=" in word)
    if fields.get("JobState"):
        reason = fields.get("Reason", "")
        return fields["JobState"], "" if reason == "None" else reason
    return None


class Slurm(Scheduler):
    """What this tool asks of a batch scheduler, for SLURM. Another scheduler is another class
    with these methods and an entry in schedulers.SCHEDULERS; the job script (bootstrap.sh's
    fj_job) reads the job's id and node there from the scheduler's variables."""

    name = "slurm"
    family = "SLURM"  # in help texts: "a SLURM job on a compute node"
    PREFIX = "#SBATCH"
    submit_command = "sbatch"
    query_command = "squeue"
    cancel_command = "scancel"

    def quote(self, word):
        return sbatch_quote(word)

    def script_header(self, job_name, log, options):
        """The #SBATCH lines: ours (name, output), then the user's (which may override them)."""
        lines = ["#SBATCH --job-name=%s" % job_name, "#SBATCH %s" % sbatch_quote("--output=" + log.replace("%", "%%")),
                 "#SBATCH --open-mode=append"]
        return lines + self.option_lines(options)

    def submit(self, script, job_name=None):
        """The job id, or Fail with sbatch's own words (one line: its lines, without their
        `sbatch: error: ` prefixes)."""
        out, err, code = run_command(["sbatch", "--parsable", script], timeout=60)
        if code != 0:
            words = [line.strip().replace("sbatch: error: ", "", 1) for line in err.splitlines() if line.strip()]
            raise Fail("submit_failed", "sbatch", log=["; ".join(words) or "exit status %d" % code])
        job = out.strip().split(";")[0]
        if not job.isdigit():
            raise Fail("submit_failed", "sbatch", log=["sbatch answered %r, not a job id" % out.strip()])
        return job

    def query(self, job):
        """{state, reason, node, time_left} while the scheduler lists the job; None once it left
        the queue; state UNKNOWN when the scheduler could not be asked (after a few tries)."""
        return self.ask(["squeue", "-h", "-j", job, "-o", "%T|%r|%N|%L"], squeue_verdict)

    def ended(self, job):
        """(state, reason) of a job that left the queue: from accounting where the cluster keeps
        it (sacct), else from the controller while it remembers the job (scontrol), else None."""
        out, _, code = run_command(["sacct", "-n", "-X", "-P", "-j", job, "-o", "State,Reason,ExitCode"], timeout=30)
        found = sacct_ended(out) if code == 0 else None
        if found:
            return found
        out, _, code = run_command(["scontrol", "-o", "show", "job", job], timeout=30)
        return scontrol_ended(out) if code == 0 else None

    def find(self, job_name):
        """The ids of this user's queued or running jobs with that name ([] when SLURM cannot
        be asked: nothing is cancelled on a guess)."""
        ids = self.ask(["squeue", "-h", "-u", str(os.getuid()), "-n", job_name, "-o", "%i"], squeue_ids)
        return ids if isinstance(ids, list) else []


def sbatch_quote(word):
    """One word of an #SBATCH line as sbatch reads it (its _get_argument: whitespace splits,
    quotes group, a backslash escapes the next character, an unquoted # starts a comment, and
    older versions end a word at # even inside quotes): as it is when nothing in it is special,
    else in double quotes with \\, " and # escaped."""
    text = str(word)
    if "\n" in text or "\r" in text or "\0" in text:
        raise Fail("launch_failed", "%r cannot be an #SBATCH option (it holds a line break)" % text)
    if text and all(c.isalnum() or c in "-_=/.,:+@%" for c in text):
        return text
    return '"%s"' % "".join("\\" + c if c in '\\"#' else c for c in text)
