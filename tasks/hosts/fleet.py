"""Many hosts at once: `fab TASK --group NAME` runs a task on every host of a hosts.yaml group,
in parallel, one line per host as it finishes, then a summary table.

The work per host is waiting on the network (a login, one remote command), so by default every
host of the group is asked at once, up to MAX_WORKERS: past that, this side's own CPU (paramiko's
key exchange and packet handling, under one GIL) is what the group waits for, and more threads
only cost memory and file descriptors (README, "Many hosts"). The little CPU-bound work done here
is done once or bounded on its own: one Argon2 hash for the whole group (password.fresh_hash),
certificates made at most CPU_BOUND at a time (cert.generate)."""

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed

from invoke import Exit

from .. import system
from ..errors import HostError, UserError
from .targets import group_targets, target
from ..report import json_lines, say, show, table


MAX_WORKERS = 64  # hosts asked at once by default (measured: README, "Many hosts")
CPU_BOUND = threading.BoundedSemaphore(os.cpu_count() or 1)  # CPU work here (certificates) at once
FILES_PER_HOST = 2  # file descriptors one host in flight holds here: its SSH socket, a forward's pipe
FILES_SPARE = 64  # this process's own: the interpreter, standard streams, the inventory, ...


def pool_size(count, workers=None):
    """How many hosts at once: --workers N (fewer, if you want), else all of them up to MAX_WORKERS."""
    if workers is not None and workers < 1:
        raise UserError("--workers: must be at least 1")
    return max(1, min(count, workers if workers is not None else MAX_WORKERS))


def room_for_files(needed):
    """Make sure this process may open NEEDED file descriptors: raise its soft limit up to the
    hard one (any user may; system.py says what happens on Windows), else one line saying what
    to raise."""
    hard = system.raise_open_files(needed)
    if hard is None:
        return
    raise UserError(f"this needs about {needed} open files here and the limit is {hard}; raise it (`ulimit -n {needed}`, "
                    "or the hard limit in /etc/security/limits.conf), or use fewer --workers")


def in_parallel(items, work, size, pool=None):
    """The one thread-pool driver: work(item) for every item, SIZE at a time; yields (item,
    result, error) as each finishes, ERROR the UserError it raised (any other exception is
    raised here). Leaving the loop early (Ctrl-C) cancels what has not started. POOL: a
    ThreadPoolExecutor of the caller's, which shuts it down: its threads may have to outlive the
    loop (a forward's ssh child dies with the thread that started it)."""
    own = pool is None
    pool = ThreadPoolExecutor(max_workers=size) if own else pool
    futures = {pool.submit(work, item): item for item in items}
    try:
        for future in as_completed(futures):
            try:
                result, error = future.result(), None
            except UserError as e:
                result, error = None, e
            yield futures[future], result, error
    finally:
        for future in futures:
            future.cancel()
        if own:
            pool.shutdown(wait=True)


def run(c, core, group=None, workers=None, as_json=False, **overrides):
    """Run core(target) -> Outcome on -H's host, or on every host of the group in parallel."""
    if group is None:
        t = target(c, **overrides)
        show(t.label, core(t), as_json)
        return
    if workers is not None and workers < 1:
        raise UserError("--workers: must be at least 1")
    targets = group_targets(c, group, **overrides)
    size = pool_size(len(targets), workers)
    room_for_files(FILES_SPARE + FILES_PER_HOST * size)
    results = {}

    def one(t):
        try:
            return core(t)
        finally:
            t.conn.close()  # a host done holds nothing here: a group of thousands is not thousands of sockets

    for t, outcome, error in in_parallel(targets, one, size):
        if error is None:
            results[t.label] = (True, outcome.summary, outcome.url)
            say(*json_lines(outcome.record)) if as_json else say(f"{t.label}: {outcome.summary}  {outcome.url}".rstrip())
        else:
            reason = error.message if isinstance(error, HostError) and error.label == t.label else str(error)
            results[t.label] = (False, "FAILED", reason)
            say(json.dumps({"host": t.host, "name": t.name, "error": reason}) if as_json else f"{t.label}: FAILED  {reason}")
    failed = [t.label for t in targets if not results[t.label][0]]
    if not as_json:
        say("", *summary_table(targets, results))
    if failed:
        raise Exit(f"{len(failed)} of {len(targets)} hosts failed: {', '.join(failed)}", code=1)


def summary_table(targets, results):
    return table([("host", "outcome", "URL or error")] + [(t.label, *results[t.label][1:]) for t in targets])


def dry(task, core):
    """A dry run's core: a failure it finds is the failure the real run would meet, said so."""

    def checked(t):
        try:
            return core(t)
        except HostError as e:
            raise HostError(e.label, f"{e.message} (so {task} would stop before changing anything)", e.code) from None

    return checked
