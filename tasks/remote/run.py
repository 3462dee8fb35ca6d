"""One invocation of the agent: the request, what it sends back (events, then one reply), the
changes made or, in check mode, that would be made (change(): the one choke point), the lock it
holds, and what it learnt that stays true for the run (the scheduler's word on a job)."""

import fcntl
import json
import os
import time

from .facts import Instance
from .fail import Fail
from .files import make_dir, write_atomic
from .instance import good_name
from .schedulers import SCHEDULERS


class Run:
    def __init__(self, request, out, bootstrap):
        self.req = request
        self.out = out
        self.dry = bool(request.get("dry_run"))
        self.timeout = request.get("timeout", 60)  # the table's default where the action has one
        self.changes = []
        self.note = bootstrap.get("note") or None
        self.command = bootstrap.get("command") or []
        self.boot_code, self.boot_detail = bootstrap.get("code") or "", bootstrap.get("detail") or ""
        self.plain = bool(bootstrap.get("plain"))
        name = request.get("instance") or "default"
        if not good_name(name):
            name = "default"  # main() refuses the request before any path is used
        self.inst = Instance(os.path.expanduser("~"), name)
        self.lock_fd = None
        self.child = None  # a Jupyter started here with nohup (ours to reap)
        self.fast_start_used = False
        self.container = None  # the container Jupyter runs in (containers.probe), if any
        self.extra_env = {}  # what a start adds to Jupyter's environment (a container's)
        self.password_from = ""  # where a new instance's password came from
        self.jobs = {}  # job id -> the scheduler's answer, asked once per run
        self.gone = False  # the client went away (a reply could not be written)

    # output
    def event(self, name, **fields):
        fields["event"] = name
        self.send(fields)

    def send(self, obj):
        try:
            self.out.write(json.dumps(obj) + "\n")
            self.out.flush()
        except (OSError, ValueError):
            self.gone = True  # the client went away: finish the job all the same (a queued batch job excepted)

    def change(self, what, detail="", diff=(), act=None):
        """Record a change; make it unless this is a dry run."""
        self.changes.append({"what": what, "detail": detail, "diff": list(diff)})
        if act is not None and not self.dry:
            try:
                act()
            finally:
                self.inst.forget()

    def quietly(self, act):
        """Make a change that is no news to the user (a file in the form another kind of Jupyter
        reads); not in a dry run."""
        if not self.dry:
            try:
                act()
            finally:
                self.inst.forget()

    # the lock: one changing run at a time per user and host. Another run's setup, a retry at
    # once after a cut-off run (whose agent goes on), a group run overlapping a single one: each
    # waits here (bounded, and says for whom) instead of starting a second Jupyter. flock's lock
    # goes with the process, so a killed run leaves none behind.
    def lock(self):
        inst = self.inst
        wait = self.timeout + 60
        said = False
        while True:
            make_dir(inst.d)
            try:
                fd = os.open(inst.path("lock"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            except FileNotFoundError:
                continue  # a failed run for another instance removed the directories it had made
            except OSError as e:
                raise Fail("cannot_write", "%s: %s" % (inst.path("lock"), e.strerror))
            deadline = time.time() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    if not said:
                        self.event("waiting", owner=inst.lock_owner(), seconds=wait)
                        said = True
                    if time.time() > deadline:
                        os.close(fd)
                        raise Fail("locked", inst.lock_owner())
                    time.sleep(0.1)
            try:  # still the lock file, not one that a run failing on a fresh host removed meanwhile?
                if os.fstat(fd).st_ino == os.stat(inst.path("lock")).st_ino:
                    break
            except OSError:
                pass
            os.close(fd)
        self.lock_fd = fd
        write_atomic(inst.path("lock.owner"), "%s (pid %d, since %s)\n" % (
            self.req["action"], os.getpid(), time.strftime("%H:%M:%S")))

    def tidy_fresh(self):
        """A run that made ~/.fabjupyter (or an instance's directory) only to hold its lock, and
        then changed nothing (it failed, or it asks for a password first), leaves no trace of it."""
        inst = self.inst
        if inst.d not in inst.fresh or not os.path.isdir(inst.d):
            return
        names = set(os.listdir(inst.d))
        if names <= {"lock", "lock.owner"}:
            for name in names:
                inst.remove(name)
            for folder in reversed(inst.fresh):  # the instance's, then instances/, then ~/.fabjupyter
                try:
                    os.rmdir(folder)
                except OSError:
                    break  # not empty: another instance's

    # facts that stay true for the run
    def job(self, state):
        """The scheduler's word on the recorded job: {state, reason, node, time_left}, or None
        once it left the queue (asked once per run)."""
        launcher, job_id = state.get("launcher"), state.get("job_id")
        if launcher not in SCHEDULERS or not job_id:
            return None
        if job_id not in self.jobs:
            self.jobs[job_id] = SCHEDULERS[launcher]().query(job_id)
        return self.jobs[job_id]

    def ended(self, job_id, scheduler):
        """How a job that left the queue ended (asked once per run)."""
        key = ("ended", job_id)
        if key not in self.jobs:
            self.jobs[key] = scheduler().ended(job_id)
        return self.jobs[key]

    def log_tail(self):
        """The end of Jupyter's log, for an error that needs it (a start that failed)."""
        return self.inst.log_tail(20)
