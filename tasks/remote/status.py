"""An instance's status, as the client's protocol.Status reads it: from its facts (record,
files, the scheduler's word on a job), each asked once per run."""

import os

from . import launchers, procs
from .schedulers import is_unknown, job_answers


def status(run, inst=None, state=None):
    inst = inst or run.inst
    state = inst.state() if state is None else state
    pid = state.get("pid")
    kind = state.get("kind") or "server2"
    configured = inst.disk_settings() is not None and os.path.isfile(inst.config_path(kind))
    batch = {"job_id": None, "job_state": None, "node": None, "time_left": None, "address": None, "ended": None}
    entry = launchers.recorded(state)
    if entry.batch and state.get("job_id"):
        state, running = job_status(run, inst, entry.scheduler, state, batch)
    else:
        running = procs.alive(pid)
    status = {
        "running": running,
        "pid": pid if running else None,
        "port": state.get("port") if running else None,
        "socket": state.get("socket") if running else None,
        "launcher": state.get("launcher") if running else None,
        "mode": state.get("mode") if running else None,
        "started": state.get("started") if running else None,
        "current": (state.get("fingerprint") == inst.disk_fingerprint(kind)) if running else None,
        "kind": kind if running else None,
        "version": state.get("version") if running else None,
        "fast_start": bool(state.get("fast_start")) if running else None,
        "stale_pid": pid if pid and not running else None,
        "idle_shutdown": inst.idle_shutdown() if pid and not running and not batch["job_id"] else None,
        "has_password": inst.stored_hash() is not None,
        "configured": configured,
        "unrecorded": inst.unrecorded(pid, state.get("client_pid")),
        "busy": inst.busy(),
    }
    status.update(batch)
    status["container"] = state.get("container") if running else None  # the image Jupyter runs from
    status["container_runtime"] = state.get("container_runtime") if running else None
    status["own_env"] = bool(running and inst.own_env(state.get("command") or []))
    return status


def job_status(run, inst, scheduler, state, batch):
    """(state, running) of a batch job's server, BATCH filled in with the job's fields."""
    job_id = state["job_id"]
    job = run.job(state)
    where = inst.job_where(job_id)
    if where and not state.get("port"):  # its agent was cut off before it recorded them
        state = dict(state, address=where[0], port=where[1], node=where[2])
    running = bool(job and job["state"] == "RUNNING" and state.get("port"))
    batch.update(job_id=job_id, node=state.get("node") or (job or {}).get("node"), address=state.get("address"))
    if is_unknown(job):
        # the scheduler cannot be asked now (job_state UNKNOWN, not ended): Jupyter's own answer
        # on its node says whether it runs
        running = bool(state.get("port") and state.get("address") and job_answers(state["address"], state["port"]) == "login")
        batch.update(job_state=job["state"])
    elif job and job["state"] in scheduler.ACTIVE:
        batch.update(job_state=job["state"], time_left=job["time_left"])
    else:
        ended = run.ended(job_id, scheduler) or (job and (job["state"], job["reason"]))
        # the scheduler forgot it (no accounting, and past MinJobAge): this tool's record
        state_word, reason = ended or ("ENDED", "no longer known to the scheduler")
        batch.update(job_state=state_word, ended=(state_word + (" (%s)" % reason if reason else "")))
    return state, running
