"""PBS: PBS Pro and OpenPBS (qstat -f -F json), Torque and SLURM's Torque wrappers (qstat -f
text); qsub, qdel, and qselect where there is one. Job ids keep their server suffix
(123.server). The job script (bootstrap.sh's fj_job) reads the job's id from $PBS_JOBID (a
wrapper on SLURM sets $SLURM_JOB_ID instead) and its node from $PBS_NODEFILE."""

import json
import re
import shutil
import time

from .fail import Fail
from .sched_common import Scheduler, clock, plain_or_quoted, said, seconds_of, unknown, user_name
from .shell import run_command, sh_quote

# job_state letters (PBS Pro's qstat(1B); Torque's; the SLURM wrapper writes Q, R, S, C, U)
STATES = {"Q": "PENDING", "H": "PENDING", "W": "PENDING", "T": "PENDING", "R": "RUNNING", "B": "RUNNING",
          "E": "COMPLETING", "S": "SUSPENDED", "U": "SUSPENDED", "C": "COMPLETED", "F": "COMPLETED",
          "X": "COMPLETED", "M": "MOVED"}
ATTRIBUTE = re.compile(r"^\s*([A-Za-z_][\w.]*) = ?(.*)$")
GONE = ("Unknown Job Id", "Job has finished")  # qstat's words for a job it no longer lists
NO_JSON = re.compile(r"(invalid|unknown|illegal|unrecognized) option|usage:", re.I)
NO_LIMIT = (2 ** 32 - 1) * 60  # a SLURM wrapper's walltime without one (71582788:15:00: SLURM's INFINITE minutes)


def qstat_text(text):
    """qstat -f's text ("Job Id: 123.server", then "key = value" lines; a long value goes on
    in lines that are no "key = value", indented): {job id: {key: value}}."""
    jobs, attrs, key = {}, None, None
    for line in text.splitlines():
        if line.startswith("Job Id:"):
            attrs, key = {}, None
            jobs[line.split(":", 1)[1].strip()] = attrs
            continue
        if attrs is None or not line.strip():
            continue
        found = ATTRIBUTE.match(line)
        if found:
            key = found.group(1)
            attrs[key] = found.group(2).strip()
        elif key is not None:
            attrs[key] += line.strip()  # PBS wraps long values at a column, in mid-word
    return jobs


def qstat_json(text):
    """qstat -f -F json's answer: {job id: {key: value}}, nested objects flattened
    (Resource_List.walltime), every value as text."""
    jobs = {}
    for job_id, attrs in (json.loads(text).get("Jobs") or {}).items():
        flat = {}
        for key, value in attrs.items():
            if isinstance(value, dict):
                flat.update(("%s.%s" % (key, k), str(v)) for k, v in value.items())
            else:
                flat[key] = str(value)
        jobs[job_id] = flat
    return jobs


def first_node(exec_host):
    """exec_host's first node: node1/0+node1/1 (Torque), node1/0*2+node2/0*2 (PBS Pro),
    node1/0-3, or exec_vnode's (node1:ncpus=2)+(node2:ncpus=2)."""
    first = (exec_host or "").split("+")[0].strip().strip("()")
    name = first.split("/")[0].split(":")[0].strip()
    return name or None


def ctime_seconds(text):
    """A time as PBS writes it (Sun Dec  6 04:10:11 2026, local), or epoch seconds, or None."""
    text = (text or "").strip()
    if text.isdigit():
        return float(text)
    try:
        return time.mktime(time.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y"))
    except ValueError:
        return None


def same_job(a, b):
    """One job, whether or not an id carries the server's name (123 and 123.server)."""
    return a == b or a.split(".")[0] == b.split(".")[0]


def pbs_job(attrs, now=None):
    """One job's attributes as the agent reads them: {state, reason, node, time_left}; the
    reason is PBS's state letter, and its comment where there is one."""
    now = time.time() if now is None else now
    letter = attrs.get("job_state", "").strip()
    state = STATES.get(letter, "PENDING")
    comment = attrs.get("comment", "").strip()
    if state == "COMPLETED":
        status = (attrs.get("Exit_status") or attrs.get("exit_status") or "").strip()  # PBS Pro's, Torque's
        if status not in ("", "0"):
            state, comment = "FAILED", "; ".join(w for w in ["exit status " + status, comment] if w)
    reason = "" if state == "RUNNING" else (comment if state == "FAILED" else ": ".join(w for w in [letter, comment] if w))
    node = first_node(attrs.get("exec_host") or attrs.get("exec_vnode")) if state != "PENDING" else None
    left = None
    limit = seconds_of(attrs.get("Resource_List.walltime"))
    if state == "RUNNING" and limit is not None and limit < NO_LIMIT:
        used = seconds_of(attrs.get("resources_used.walltime"))
        if used is None:
            started = next((t for t in (ctime_seconds(attrs.get(k)) for k in ("stime", "start_time", "mtime")) if t), None)
            used = now - started if started else None
        left = clock(limit - used) if used is not None else None
    return {"state": state, "reason": reason, "node": node, "time_left": left}


def qstat_verdict(job, form, now=None):
    """The verdict on `qstat -f [-F json] JOB`'s answer: the job's entry, None when PBS no
    longer lists it, "text" when this qstat has no JSON form, unknown when qstat failed
    otherwise ("cannot connect to server", "Problem loading jobs." while the controller
    restarts, a timeout)."""
    def verdict(out, err, code):
        words = err + "\n" + out
        if code != 0 and any(g in words for g in GONE):
            return None
        if form == "json":
            try:
                jobs = qstat_json(out)
            except ValueError:
                if code != 0 and NO_JSON.search(words):
                    return "text"
                return unknown("qstat: " + said(out, err, code))
        else:
            jobs = qstat_text(out)
        found = next((a for j, a in jobs.items() if same_job(j, job)), None)
        if found is not None:
            return pbs_job(found, now)
        # a SLURM wrapper's qstat exits 153 saying nothing for a job it does not list
        if code == 0 or code == 153 and not words.strip():
            return None
        return unknown("qstat: " + said(out, err, code))
    return verdict


def qsub_words(out, err, code):
    """qsub's refusal as one line: sbatch's own error under a SLURM wrapper (which prints
    its sbatch command line and output on stdout), else what qsub said."""
    text = err + "\n" + out
    errors = [line.strip().strip("'").split("sbatch: error: ", 1)[1] for line in text.splitlines() if "sbatch: error: " in line]
    if errors:
        return "; ".join(errors)
    return "; ".join(line.strip() for line in text.splitlines() if line.strip()) or "exit status %d" % code


class Pbs(Scheduler):
    name = "pbs"
    family = "PBS or Torque"  # in help texts: "a PBS or Torque job on a compute node"
    PREFIX = "#PBS"
    submit_command = "qsub"
    query_command = "qstat"
    cancel_command = "qdel"
    form = None  # "json" or "text": this host's qstat, found at the first query of a run

    def quote(self, word):
        # a SLURM wrapper's sbatch reads #PBS lines too, and older ones end a word at # even
        # inside quotes
        return plain_or_quoted(word, self.PREFIX, refused="\"'\\#")

    def script_header(self, job_name, log, options):
        """The #PBS lines: ours (name; sh, whatever the login shell; one output, which the
        script itself sends to LOG), then the user's."""
        lines = ["#PBS -N %s" % job_name, "#PBS -S /bin/sh", "#PBS -j oe", "#PBS -o /dev/null"]
        return lines + self.option_lines(options)

    def script_body(self, log):
        # PBS copies -o from the node when the job ends (over the log, if it were LOG): the job
        # appends its own output to the log as it goes
        return ["exec >> %s 2>&1" % sh_quote(log)]

    def submit(self, script, job_name=None):
        # -o and -j on qsub's command line too: a SLURM wrapper passes sbatch its own -o and
        # -e (which beat the script's) unless they are given there
        argv = ["qsub"] + (["-N", job_name] if job_name else []) + ["-j", "oe", "-o", "/dev/null", script]
        out, err, code = run_command(argv, timeout=60)
        if code != 0:
            raise Fail("submit_failed", "qsub", log=[qsub_words(out, err, code)])
        job = (out.strip().splitlines() or [""])[-1].strip()
        if not re.match(r"^\d+(\[\d*\])?(\.[\w.-]+)?$", job):
            raise Fail("submit_failed", "qsub", log=["qsub answered %r, not a job id" % out.strip()])
        return job

    def qstat(self, job, history=False):
        """The verdict on qstat -f for JOB, in the form this host's qstat has (JSON where it
        can, decided once per run)."""
        if Pbs.form != "text":
            argv = ["qstat"] + (["-x"] if history else []) + ["-f", "-F", "json", job]
            answer = self.ask(argv, qstat_verdict(job, "json"))
            if answer != "text":
                if answer is None or isinstance(answer, dict) and answer["state"] != "UNKNOWN":
                    Pbs.form = "json"
                return answer
            Pbs.form = "text"
        return self.ask(["qstat", "-f", job], qstat_verdict(job, "text"))

    def query(self, job):
        return self.qstat(job)

    def ended(self, job):
        """How a job PBS no longer lists as active ended: from its history (PBS Pro's qstat
        -x) or its completed entry (Torque's C, kept a while), else None."""
        answer = self.qstat(job, history=Pbs.form == "json")
        if answer and answer["state"] in ("COMPLETED", "FAILED", "MOVED"):
            return answer["state"], answer["reason"]
        return None

    def find(self, job_name):
        """This user's queued or running jobs of that name: qselect where there is one (and it
        is PBS's: Grid Engine has one too), else every job's qstat -f (a SLURM wrapper has no
        qselect, and its short listing cuts names)."""
        user = user_name()
        if shutil.which("qselect"):
            out, _, code = run_command(["qselect", "-u", user, "-N", job_name], timeout=30)
            if code == 0:
                return [j for j in out.split() if self.listed(self.query(j))]

        def verdict(out, err, code):
            jobs = qstat_text(out)
            if code != 0 and not jobs:  # 153, saying nothing: a SLURM wrapper's "no jobs"
                return [] if code == 153 and not (out + err).strip() else unknown(said(out, err, code))
            return [j for j, a in jobs.items() if a.get("Job_Name") == job_name and a.get("Job_Owner", "").split("@")[0] == user
                    and STATES.get(a.get("job_state", "")) in self.ACTIVE]
        ids = self.ask(["qstat", "-f"], verdict)
        return ids if isinstance(ids, list) else []
