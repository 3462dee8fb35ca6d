"""Jupyter as a batch job: submitted, followed through the queue, and taken as started only once
the job proved on its node that its Jupyter is the process listening (ready.py's verdict)."""

import json
import os
import sys
import time

from . import containers, own
from .fail import PROTOCOL, Fail
from .files import json_text, make_dir, write_atomic
from .kinds import KINDS, SHIMMED_CLASSES
from .launchers import cancel_job
from .schedulers import is_unknown, job_answers
from .shell import env_lines, sh_quote

UNKNOWN_WAIT = 600  # seconds the scheduler may go unasked while a job is waited for
# seconds between the scheduler's answers (while the job waits in the queue; once it runs, its own
# word says more, and a query's CPU would slow down the Jupyter starting on a small node), and
# between looks at that word
QUERY_EVERY, QUERY_RUNNING, LOOK_EVERY = 0.5, 2.0, 0.05


def job_failure(run, record):
    """The job's own word that its Jupyter is not serving, as the failure to report."""
    code, detail = record["failed"], str(record.get("detail") or "")
    if code == "port_taken":
        return Fail("port_taken", detail)
    if code == "unsafe":
        return Fail("unsafe", detail)
    if code == "timeout":
        return Fail("timeout", str(run.timeout), log=run.log_tail())
    return Fail("died", log=run.log_tail())


def write_job_check(inst):
    """The job's check on its node (ready.py and what it imports) as a package beside the job:
    bootstrap.sh's fj_job runs `python -m fabjupyter_remote.ready` in lib/."""
    folder = inst.path("lib", own.PACKAGE)
    make_dir(inst.path("lib"))
    make_dir(folder)
    write_atomic(os.path.join(folder, "__init__.py"), "")
    for name in own.JOB_FILES:
        write_atomic(os.path.join(folder, name), own.text(name))


def launch_job(run, scheduler, kind, version, root, requested, argv):
    """Submit Jupyter as a batch job; follow it through the queue (one event per change of
    state); wait until the job proved that its Jupyter is the one listening and Jupyter
    answers on the node, asking for the password; record it. The port is chosen on the node
    by the job (bootstrap.sh's `job`), which runs ready.py there and writes the verdict to
    job.where in this (shared) directory: where Jupyter listens, or why it is not serving."""
    inst, k = run.inst, KINDS[kind]
    options = list(run.req["job_options"])
    log = inst.path("jupyter.log")
    script = "\n".join(["#!/bin/sh"] + scheduler.script_header(inst.job_name, log, options) + [
        "# fabjupyter's batch job: Jupyter for the instance %r on the node this job runs on" % inst.name]
        + scheduler.script_body(log) + ["exec sh %s job" % sh_quote(inst.path("run.sh")), ""])
    run.change("start", "%s job, a free port from %s on its node" % (scheduler.name, requested or 8888),
               diff=script.splitlines())
    if run.dry:
        return
    ip_config = {k.app: {"ip": "@ADDR@"}}
    if kind != "nb6":
        ip_config.update({name: {"ip": "@ADDR@"} for name in SHIMMED_CLASSES})
    write_atomic(inst.path("serve.sh"), "\n".join([
        "# Jupyter's command line, for run.sh (written at each start)",
        "set -- %s" % " ".join(sh_quote(a) for a in argv)] + env_lines(run) + [
        "FJ_APP=%s FJ_PORT=%d FJ_PYTHON=%s" % (k.app, requested or 8888, sh_quote(sys.executable)),
        "FJ_CONFIG_NAME=%s FJ_TIMEOUT=%d FJ_SCHEDULER=%s" % (k.config_name, run.timeout, sh_quote(scheduler.name)),
        "FJ_IP_CONFIG=%s" % sh_quote(json.dumps(ip_config)), ""]))
    write_job_check(inst)
    write_atomic(inst.path("job.sh"), script, 0o700)
    inst.remove("job.where")
    if os.path.exists(log):
        os.replace(log, log + ".1")
    job_id = scheduler.submit(inst.path("job.sh"), inst.job_name)
    state = {
        "v": PROTOCOL, "pid": None, "job_id": job_id, "launcher": scheduler.name, "job_options": options, "port": None,
        "address": None, "node": None, "socket": None, "requested_port": requested, "mode": "ssh", "started": None,
        "submitted": int(time.time()), "kind": kind, "version": version, "fast_start": False, "python": sys.executable,
        "command": run.command, "fingerprint": inst.disk_fingerprint(kind),
    }
    state.update(containers.record(run))
    write_atomic(inst.path("state"), json_text(state))
    write_atomic(inst.path("python"), sys.executable + "\n")
    run.event("job", job_id=job_id, state="SUBMITTED", reason="", node=None)
    state.update(follow_job(run, scheduler, job_id), started=int(time.time()))
    write_atomic(inst.path("state"), json_text(state))


def follow_job(run, scheduler, job_id):
    """Until the job's Jupyter asks for the password on its node: {address, port, node}. The
    scheduler is asked every QUERY_EVERY seconds (a line per change of state); the job's own
    word (job.where, in the shared home) is looked for every LOOK_EVERY: it proves that the job
    runs, so the wait for Jupyter does not wait for the scheduler's next answer. A moment when
    the scheduler cannot be asked (state UNKNOWN) is no news of the job: the wait goes on by
    what it last said, and only the user's interrupt cancels the job meanwhile."""
    inst = run.inst
    queue_timeout = run.req["queue_timeout"]
    queue_deadline = time.time() + queue_timeout if queue_timeout else None
    ready_deadline, last, ticked, known, unknown_since, asked = None, None, time.time(), None, None, 0.0
    job = verdict = None

    def give_up(failure, job):
        if is_unknown(job):  # nothing to cancel on a guess: the record stays for status and stop
            raise Fail("job_unknown", job_id, log=[job["reason"]])
        cancel_job(run, scheduler, job_id)
        inst.remove("state")
        raise failure

    while True:
        if time.time() - asked >= (QUERY_RUNNING if scheduler.verdict(known) == "running" else QUERY_EVERY):
            job, asked = scheduler.query(job_id), time.time()
            verdict = scheduler.verdict(job)
            if verdict == "unknown":
                unknown_since = unknown_since or time.time()
            else:
                known, unknown_since = job, None
                if verdict == "ended":
                    if job is not None and job["state"] in scheduler.STUCK:
                        scheduler.cancel(job_id)  # it would stay listed, never to run
                    ended = scheduler.ended(job_id) or ((job["state"], job["reason"]) if job else ("ENDED", ""))
                    inst.remove("state")
                    raise Fail("job_ended", "%s %s" % (job_id, " ".join(w for w in ended if w)), log=run.log_tail())
            seen = (job["state"], job["reason"], job["node"])
            if seen != last:
                run.event("job", job_id=job_id, state=job["state"], reason=job["reason"], node=job["node"])
                last = seen
            elif time.time() - ticked > 2:
                run.event("tick")
                ticked = time.time()
        record = inst.job_record(job_id)
        if record and record.get("failed"):  # its Jupyter is not the one listening, or not as we said
            give_up(job_failure(run, record), None)
        if run.gone:  # Ctrl-C on the client, or its connection dropped: this job is nobody's
            give_up(Fail("cancelled", job_id), None)
        where = inst.job_where(job_id)
        if where or scheduler.verdict(known) == "running":
            # the job's own check waits as long for Jupyter; its verdict may come a little later
            ready_deadline = ready_deadline or time.time() + run.timeout + 15
            answer = job_answers(where[0], where[1]) if where else None
            if answer == "login":
                break
            if answer == "open":
                give_up(Fail("unsafe", "Jupyter in job %s lets anyone in without the password" % job_id), None)
            if time.time() > ready_deadline:
                give_up(Fail("timeout", str(run.timeout), log=run.log_tail()), job)
        elif queue_deadline and time.time() > queue_deadline:
            give_up(Fail("queue_timeout", "%s %s %s" % (queue_timeout, job_id, job["state"]), log=[job["reason"]] if job["reason"] else []), job)
        if unknown_since and time.time() - unknown_since > UNKNOWN_WAIT:
            give_up(None, job)
        time.sleep(LOOK_EVERY)
    address, port, node = where
    return {"address": address, "port": port, "node": node}
