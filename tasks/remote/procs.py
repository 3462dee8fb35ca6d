"""Jupyter's processes on the host: alive, stopped (TERM, then KILL), reaped."""

import os
import signal
import time

from . import net
from .fail import Fail


def alive(pid):
    """Is PID a live Jupyter of ours (not a zombie, not a recycled pid of something else)?"""
    return net.alive(pid, "jupyter")


def kill(pid, term_wait=10, kill_wait=10):
    """TERM, then KILL after TERM_WAIT s; True once it is gone. False if it is still there
    KILL_WAIT s after the KILL: the kernel holds it (state D: uninterruptible, such as I/O on a
    hung network file system, or a frozen cgroup), and waiting longer would hold the run (and
    its lock) for as long."""
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return not alive(pid)
    if gone_within(pid, term_wait):
        return True
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    return gone_within(pid, kill_wait)


def gone_within(pid, seconds):
    deadline = time.time() + seconds
    while alive(pid):
        if time.time() > deadline:
            return False
        reap()
        time.sleep(0.05)
    return True


def end(pid, term_wait=10, kill_wait=10):
    """kill, or Fail when the process outlives its SIGKILL."""
    if not kill(pid, term_wait, kill_wait):
        raise Fail("not_stopped", "%d, state %s" % (pid, net.process_state(pid) or "?"))


def reap():
    """Collect our own children that ended (a Jupyter started here with nohup)."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
