"""Batch schedulers: what this tool asks of one (submit, query, cancel, find a job). SLURM today;
another is one class here and an entry in SCHEDULERS (the launcher table picks it up)."""

import os

from .fail import Fail
from .shell import run_command


class Slurm:
    """What this tool asks of a batch scheduler, for SLURM. Another scheduler (PBS/Torque: qsub,
    qstat -f, qdel; LSF: bsub, bjobs, bkill) is another class with these methods and an entry in
    SCHEDULERS; the job script (bootstrap.sh's fj_job) reads the node's name from
    $SLURMD_NODENAME, else `hostname`."""

    name = "slurm"
    submit_command = "sbatch"
    query_command = "squeue"
    ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED", "COMPLETING")

    def script_header(self, job_name, log, options):
        """The #SBATCH lines: ours (name, output), then the user's (which may override them)."""
        lines = ["#SBATCH --job-name=%s" % job_name, "#SBATCH %s" % sbatch_quote("--output=" + log.replace("%", "%%")),
                 "#SBATCH --open-mode=append"]
        return lines + ["#SBATCH %s" % o for o in options]

    def submit(self, script):
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
        the queue; raises Fail when the scheduler cannot be asked."""
        out, err, code = run_command(["squeue", "-h", "-j", job, "-o", "%T|%r|%N|%L"], timeout=30)
        if code != 0:
            if "Invalid job id" in err:
                return None
            raise Fail("scheduler", "squeue", log=err.splitlines()[-3:])
        for line in out.splitlines():
            parts = line.split("|")
            if len(parts) == 4:
                state, reason, node, left = parts
                return {"state": state, "reason": "" if reason in ("None", "(null)") else reason,
                        "node": node or None, "time_left": left if left not in ("", "INVALID") else None}
        return None

    def ended(self, job):
        """(state, reason) of a job that left the queue: from accounting where the cluster keeps
        it (sacct), else from the controller while it remembers the job (scontrol), else None."""
        out, _, code = run_command(["sacct", "-n", "-X", "-P", "-j", job, "-o", "State,Reason,ExitCode"], timeout=30)
        if code == 0:
            for line in out.splitlines():
                parts = line.split("|")
                if len(parts) >= 2 and parts[0]:
                    reason = parts[1] if parts[1] not in ("None", "") else ""
                    return parts[0].split()[0], reason
        out, _, code = run_command(["scontrol", "-o", "show", "job", job], timeout=30)
        if code == 0:
            fields = dict(word.split("=", 1) for word in out.split() if "=" in word)
            if fields.get("JobState"):
                reason = fields.get("Reason", "")
                return fields["JobState"], "" if reason == "None" else reason
        return None

    def cancel(self, job):
        run_command(["scancel", job], timeout=30)

    def find(self, job_name):
        """The ids of this user's queued or running jobs with that name."""
        out, _, code = run_command(["squeue", "-h", "-u", str(os.getuid()), "-n", job_name, "-o", "%i"], timeout=30)
        return out.split() if code == 0 else []


SCHEDULERS = {"slurm": Slurm}


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



def job_answers(addr, port, timeout=3):
    """What Jupyter in a job answers, from here: 'login' (it asks for the password), 'open' (it
    lets anyone in: never ours), or None (nothing answers yet)."""
    import http.client

    try:
        conn = http.client.HTTPConnection(addr, port, timeout=timeout)
        conn.request("GET", "/api/contents", headers={"Host": "localhost:%d" % port})
        status = conn.getresponse().status
        conn.close()
    except (OSError, http.client.HTTPException):
        return None
    return "login" if status in (401, 403) else "open" if status == 200 else None

