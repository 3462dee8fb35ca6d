"""The launchers, one entry each: how Jupyter is started detached (nohup, tmux) or as a batch
job (one entry per scheduler in SCHEDULERS), whether the server recorded is there, how it is
stopped. Adding a launcher is one entry in LAUNCHERS."""

import os
import shutil
import subprocess
import time

from . import procs
from .fail import Fail
from .files import read_text, write_atomic
from .schedulers import SCHEDULERS, is_unknown
from .shell import env_lines, sh_quote


class Process:
    """A Jupyter process on this host, found by its pid. NOTE: what help texts say of it."""

    batch = False
    note = ""

    def check(self):
        pass

    def alive(self, run, state):
        return procs.alive(state.get("pid"))

    def stop(self, run, state, what):
        pid = state.get("pid")
        if procs.alive(pid):
            run.change(what, str(pid), act=lambda: procs.end(pid))


class Nohup(Process):
    name = "nohup"
    note = "default"

    def start(self, run, argv, log):
        """Jupyter as a child of this process, in a session of its own (it outlives the agent)."""
        inst = run.inst
        env = dict(os.environ)
        env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(
            [inst.path("password"), inst.path("config")] + ([env["JUPYTER_CONFIG_PATH"]] if env.get("JUPYTER_CONFIG_PATH") else []))
        env.update(run.extra_env)
        with open(log, "a") as out, open(os.devnull) as devnull:
            run.child = subprocess.Popen(argv, stdin=devnull, stdout=out, stderr=out, cwd=inst.home, env=env,
                                         start_new_session=True, close_fds=True)
        pid = run.child.pid
        write_atomic(inst.path("pid"), "%d\n" % pid)
        with open(inst.path("launched"), "a") as f:
            f.write("%d\n" % pid)
        return pid


class Tmux(Process):
    name = "tmux"

    @staticmethod
    def usable():
        return bool(shutil.which("tmux"))

    def check(self):
        if not self.usable():
            raise Fail("no_tmux")

    @staticmethod
    def kill_session(inst):
        subprocess.call(["tmux", "-L", "fabjupyter", "kill-session", "-t", "=" + inst.tmux_session],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self, run, argv, log):
        """`sh run.sh serve` in a tmux session of this tool's own tmux server: run.sh activates as
        the agent did and execs Jupyter's command line, from serve.sh."""
        inst = run.inst
        self.kill_session(inst)
        # the command line goes in a file, not on tmux's (whose server keeps its first client's)
        write_atomic(inst.path("serve.sh"), "\n".join(["# Jupyter's command line, for run.sh (written at each start)",
                                                      "set -- %s" % " ".join(sh_quote(a) for a in argv)] + env_lines(run) + [""]))
        p = subprocess.Popen(["tmux", "-L", "fabjupyter", "new-session", "-d", "-s", inst.tmux_session, "sh", inst.path("run.sh"), "serve"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=inst.home, close_fds=True)
        err = p.communicate()[0].decode("utf-8", "replace").strip()
        if p.returncode != 0:
            raise Fail("launch_failed", "tmux: " + err)
        # run.sh writes its own pid just before it execs Jupyter
        deadline = time.time() + 10
        while time.time() < deadline:
            text = read_text(inst.path("pid"))
            if text and text.strip().isdigit():
                return int(text.strip())
            time.sleep(0.05)
        raise Fail("launch_failed", "the launcher did not start (see %s)" % log)


class Batch:
    """A batch job of a scheduler (batch.launch_job starts it): the server is there while the
    scheduler lists its job as active, or cannot be asked."""

    batch = True

    def __init__(self, scheduler):
        self.scheduler, self.name = scheduler, scheduler.name
        self.note = "a %s job on a compute node" % scheduler.family

    def check(self):
        if not shutil.which(self.scheduler.submit_command):
            raise Fail("no_scheduler", self.scheduler.submit_command)

    def alive(self, run, state):
        """Its job queued or running, or not known now (the scheduler cannot be asked: a job
        is never taken for ended, or replaced, on a guess)."""
        return self.scheduler().listed(run.job(state))

    def stop(self, run, state, what):
        """Cancel its job, by id, when the scheduler lists it or cannot be asked."""
        if not state.get("job_id"):
            return Process().stop(run, state, what)
        scheduler, job = self.scheduler(), run.job(state)
        if scheduler.listed(job) or job and job["state"] in scheduler.STUCK:
            run.change(what, "job %s" % state["job_id"], act=lambda: cancelled(run, scheduler, state["job_id"]))

    def unrecorded(self, run, state):
        """The ids of this instance's queued or running jobs that no record names (its run was
        killed right after submitting one)."""
        if not shutil.which(self.scheduler.query_command):
            return []
        return [j for j in self.scheduler().find(run.inst.job_name) if j != state.get("job_id")]


def cancel_job(run, scheduler, job_id, wait=60):
    """Cancel the job and wait until the scheduler no longer runs it; asked again every few
    seconds while the scheduler refused the request or cannot be asked (it may be restarting).
    The scheduler's last word on the job (UNKNOWN if it could not be asked to the end)."""
    asked, asked_at = scheduler.cancel(job_id), time.time()
    deadline = time.time() + wait
    job = None
    while time.time() < deadline:
        job = scheduler.query(job_id)
        if not scheduler.listed(job):
            break
        if (not asked or is_unknown(job)) and time.time() - asked_at > 5:
            asked, asked_at = scheduler.cancel(job_id), time.time()
        time.sleep(0.5)
    run.jobs.pop(job_id, None)
    return job


def cancelled(run, scheduler, job_id):
    """cancel_job for stop: a job not known to be gone keeps its record (stop again, or status,
    once the scheduler answers), and nothing is started beside it."""
    job = cancel_job(run, scheduler, job_id)
    if is_unknown(job):
        raise Fail("job_unknown", job_id, log=[job["reason"]])


LAUNCHERS = {"nohup": Nohup(), "tmux": Tmux()}
LAUNCHERS.update((name, Batch(scheduler)) for name, scheduler in SCHEDULERS.items())


def launcher(name):
    """The entry for a launcher asked for, checked to be usable here."""
    entry = LAUNCHERS.get(name)
    if entry is None:
        raise Fail("bad_launcher", name)
    entry.check()
    return entry


def recorded(state):
    """The entry for the launcher a record names (nohup's rule, by pid, for an unknown one)."""
    return LAUNCHERS.get(state.get("launcher")) or LAUNCHERS["nohup"]


def server_alive(run, state):
    """Is the recorded server there: its process, or its job (queued or running)?"""
    return recorded(state).alive(run, state)
