"""The watch action: a tunnel's forward, confirmed for one server, closed the moment that
server is no longer there."""

import time

from . import net, procs
from .status import status

WATCH_EVERY = 0.05  # seconds between looks at a forwarded port (a batch job's: JOB_WATCH_EVERY)
JOB_WATCH_EVERY = 2.0


def act_watch(run):
    """Answer (gone: why) the moment the server a tunnel's TCP forward was confirmed for is no
    longer there: stopped, restarted, moved, or its port no longer held by it. The tunnel closes
    the forward on that answer, before another user's program can take the port and receive a
    request. Meanwhile a line every second: a client that went away ends this at once."""
    inst = run.inst
    inst.known()
    want = (run.req["port"], run.req["address"])
    first = status(run)
    if not first["running"]:
        return {"gone": "stopped"}
    if first["socket"] or (first["port"], first["address"]) != want:
        return {"gone": "moved"}
    job = first["job_id"] is not None
    state = inst.state()
    mine = None  # the inodes of the listening sockets that Jupyter holds, where /proc tells
    if not job:
        listening = net.listening_inodes(port=want[0])
        if listening is not None:
            mine = set(i for p in net.family(state["pid"]) for i in net.socket_inodes(p) if i in listening)
            if not mine:
                return {"gone": "taken"}
    beat = time.time()
    while True:
        time.sleep(JOB_WATCH_EVERY if job else WATCH_EVERY)
        if job:
            run.jobs.clear()  # ask the scheduler again
            now = status(run)
            if not now["running"]:
                return {"gone": "stopped"}
            if (now["job_id"], now["port"], now["address"]) != (first["job_id"], first["port"], first["address"]):
                return {"gone": "restarted"}
        else:
            now = inst.state()
            if (now.get("pid"), now.get("port"), now.get("socket")) != (state.get("pid"), want[0], None):
                return {"gone": "restarted"}
            if mine is not None:
                if not mine & (net.listening_inodes(port=want[0]) or set()):
                    return {"gone": "stopped"}
            elif not procs.alive(state["pid"]):
                return {"gone": "stopped"}
        if time.time() - beat >= 1:
            beat = time.time()
            run.event("watching")
            if run.gone:
                return {"gone": "client"}
