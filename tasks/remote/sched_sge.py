"""Grid Engine (Sun, Son of, Univa/Altair; Debian's gridengine 8.1.9): qsub -terse, qstat -xml,
qacct, qdel. The job script (bootstrap.sh's fj_job) reads the job's id from $JOB_ID and its
node from $HOSTNAME, both set by Grid Engine."""

import time

from .fail import Fail
from .sched_common import Scheduler, clock, said, seconds_of, unknown, user_name
from .shell import run_command, sh_quote

# qstat's state letters (sge_status(5)), the first that applies: E(rror) before all, then
# d(eletion), suspensions (s, S, T), r(unning), t(ransferring), and the pending ones
STATES = (("E", "ERROR"), ("d", "COMPLETING"), ("s", "SUSPENDED"), ("S", "SUSPENDED"), ("T", "SUSPENDED"),
          ("r", "RUNNING"), ("t", "CONFIGURING"), ("z", "COMPLETED"), ("q", "PENDING"), ("w", "PENDING"),
          ("h", "PENDING"))


def state_of(word):
    """qstat's state (qw, hqw, r, t, Eqw, dr...) as the word the agent reads."""
    for letter, state in STATES:
        if letter in word:
            return state
    return "PENDING"


def qstat_jobs(text, now=None):
    """qstat -xml -r's answer: {job id: {state, reason, node, time_left, name}} (the scheduler's
    own state word is the reason, with the job's error where there is one)."""
    from xml.etree import ElementTree  # here: only Grid Engine's answers need it

    now = time.time() if now is None else now
    jobs = {}
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as e:
        raise ValueError("qstat answered what is not XML (%s): %r" % (e, text[:80]))
    for item in root.iter("job_list"):
        number = (item.findtext("JB_job_number") or "").strip()
        if not number or number in jobs:  # an array job's tasks: its first line speaks for it
            continue
        word = (item.findtext("state") or item.get("state") or "").strip()
        queue = (item.findtext("queue_name") or "").strip()
        node = queue.split("@", 1)[1] if "@" in queue else None
        state = state_of(word)
        left = None
        limit = next((seconds_of(r.text) for r in item.findall("hard_request") if r.get("name") == "h_rt"), None)
        started = started_at(item.findtext("JAT_start_time"))
        if state == "RUNNING" and limit is not None and started is not None:
            left = clock(limit - (now - started))
        jobs[number] = {"state": state, "reason": "" if word == "r" else word, "node": node if state != "PENDING" else None,
                        "time_left": left, "name": (item.findtext("full_job_name") or item.findtext("JB_name") or "").strip()}
    return jobs


def started_at(text):
    """JAT_start_time (2026-12-06T04:10:11, the qmaster's local time) in seconds, or None."""
    try:
        return time.mktime(time.strptime((text or "").strip()[:19], "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None


def qstat_verdict(job):
    """The verdict on qstat -xml -r -u USER's answer for JOB: its entry, None when the list
    no longer has it, unknown when qstat failed ("unable to contact qmaster" while sge_qmaster
    restarts, a timeout) or answered what is no XML."""
    def verdict(out, err, code):
        if code != 0:
            return unknown("qstat: " + said(out, err, code))
        try:
            found = qstat_jobs(out).get(job)
        except ValueError as e:
            return unknown(str(e))
        if found is None:
            return None
        found = dict(found)
        found.pop("name")
        return found
    return verdict


def error_reason(out):
    """qstat -j JOB's "error reason" line, the part that says what failed."""
    for line in out.splitlines():
        if line.startswith("error reason"):
            text = line.split(":", 1)[1].strip() if ":" in line else line
            return text.split("]: ", 1)[1].strip() if "]: " in text else text
    return ""


def scheduling_info(out):
    """qstat -j JOB's first "scheduling info" line: why the scheduler did not start a pending
    job ("" when the cluster does not collect it: schedd_job_info false)."""
    for line in out.splitlines():
        if line.startswith("scheduling info:"):
            text = line.split(":", 1)[1].strip()
            return "" if text.startswith("(Collecting of scheduler job information is turned off)") else text
    return ""


def qacct_ended(out):
    """qacct -j JOB's answer (accounting(5)): (state, reason) of how the job ended, or None."""
    fields = {}
    for line in out.splitlines():
        key, _, value = line.strip().partition(" ")
        if key and key not in fields:
            fields[key] = value.strip()
    failed, status = fields.get("failed"), fields.get("exit_status")
    if failed is None and status is None:
        return None
    code, _, why = (failed or "0").partition(":")
    code, why, status = code.strip(), " ".join(why.split()), " ".join((status or "0").split())  # 137 (Killed)
    if code not in ("", "0"):
        # 37: "qmaster enforced h_rt, h_cpu, or h_vmem limit" (sge_status(5))
        return ("TIMEOUT" if code == "37" else "FAILED"), why or "failed " + code
    if status.split()[0] != "0":
        return "FAILED", "exit status " + status
    return "COMPLETED", ""


def qsub_words(out, err, code):
    """qsub's refusal as one line, in its words (without "Exiting.")."""
    lines = [line.strip() for line in (err + "\n" + out).splitlines() if line.strip() and line.strip() != "Exiting."]
    return "; ".join(lines) or "exit status %d" % code


class Sge(Scheduler):
    name = "sge"
    family = "Grid Engine"  # in help texts: "a Grid Engine job on a compute node"
    PREFIX = "#$"
    submit_command = "qsub"
    query_command = "qstat"
    cancel_command = "qdel"
    STUCK = ("ERROR",)  # Eqw: it stays in the queue until deleted

    def script_header(self, job_name, log, options):
        """The #$ lines: ours (name; sh, whatever the first line says in posix_compliant mode;
        one output, which the script itself sends to LOG), then the user's."""
        lines = ["#$ -N %s" % job_name, "#$ -S /bin/sh", "#$ -j y", "#$ -o /dev/null"]
        return lines + self.option_lines(options)

    def script_body(self, log):
        # Grid Engine writes -o where the job ran, under names it expands ($HOME, $JOB_ID): the
        # job appends its own output to the log instead
        return ["exec >> %s 2>&1" % sh_quote(log)]

    def submit(self, script, job_name=None):
        out, err, code = run_command(["qsub", "-terse", script], timeout=60)
        if code != 0:
            raise Fail("submit_failed", "qsub", log=[qsub_words(out, err, code)])
        first = (out.strip().splitlines() or [""])[0].strip()
        job = first.split(".")[0]  # an array job answers 12.1-10:1
        if not job.isdigit():
            raise Fail("submit_failed", "qsub", log=["qsub answered %r, not a job id" % out.strip()])
        return job

    def query(self, job):
        job_state = self.ask(["qstat", "-xml", "-r", "-u", user_name()], qstat_verdict(job))
        if job_state and job_state["state"] in ("ERROR", "PENDING"):  # why, in qstat -j's words
            out, _, code = run_command(["qstat", "-j", job], timeout=20)
            why = (error_reason if job_state["state"] == "ERROR" else scheduling_info)(out) if code == 0 else ""
            job_state["reason"] += ": " + why if why else ""
        return job_state

    def ended(self, job):
        """How a job that left the list ended, from accounting (qacct), else None."""
        out, _, code = run_command(["qacct", "-j", job], timeout=30)
        return qacct_ended(out) if code == 0 else None

    def find(self, job_name):
        def verdict(out, err, code):
            if code != 0:
                return unknown(said(out, err, code))
            try:
                return [j for j, v in qstat_jobs(out).items() if v["name"] == job_name and v["state"] != "COMPLETED"]
            except ValueError as e:
                return unknown(str(e))
        ids = self.ask(["qstat", "-xml", "-r", "-u", user_name()], verdict)
        return ids if isinstance(ids, list) else []
