"""fabjupyter's agent: the remote side, in Python (standard library only; Python 3.6 or newer).

It runs on the host in the Python that runs Jupyter (setup, config, start, restart: bootstrap.sh
activated the environment and found that Python), or in the one that ran Jupyter last, else
python3 (status, stop, logs, password, cert: these work when the environment is gone). The client
joins this folder into one script (pack.py) and sends it, with its request, inside the bootstrap
on the SSH session's standard input. It answers on file descriptor 3 with JSON lines: events as
they happen ({"event": ...}), then exactly one {"reply": {...}} or {"error": {"code", "detail",
"log"}}.

Each action first reads the instance's facts (facts.Instance), then decides, then makes its
changes through Run.change(), the one choke point: check mode (a dry run) takes the same path
with the writes skipped. What the kinds of Jupyter differ in is one table (kinds.KIND_LIST); so
are the launchers (launchers.LAUNCHERS) and the schedulers (schedulers.SCHEDULERS).
"""

import os
import signal
import sys

from . import spec
from .actions import ACTIONS
from .fail import PROTOCOL, Fail
from .install import may_install
from .instance import good_name
from .legacy import migrate
from .run import Run


def main(request, argv=None, out=None):
    """Run one request; argv is what the bootstrap found: (fabjupyter-agent, error code, detail,
    plain, note, Jupyter's command...)."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # finish even if the client hangs up
    argv = sys.argv[1:] if argv is None else argv
    if out is None:
        try:
            out = os.fdopen(3, "w")
        except OSError:
            out = sys.stdout
    boot = {"code": argv[1], "detail": argv[2], "plain": argv[3] == "1", "note": argv[4], "command": argv[5:]} if len(argv) >= 5 \
        else {"code": "", "detail": "", "plain": False, "note": "", "command": []}
    os.umask(0o077)
    refused = None
    if request.get("v") != PROTOCOL:
        refused = Fail("protocol", "the client speaks version %r, this agent %d" % (request.get("v"), PROTOCOL))
    else:
        try:  # the action table's check (spec.py): every field known, typed, defaults filled in
            request = spec.check_request(request.get("action"), request)
        except spec.BadRequest as e:
            refused = Fail(e.code, e.detail)
    run = Run(request, out, boot)
    try:
        if refused is not None:
            raise refused
        if not good_name(request["instance"]):
            raise Fail("bad_name", repr(request["instance"]))
        if boot["code"] and request["action"] in ("start", "restart"):
            run.inst.known()  # a mistyped name is said as such, not as "not configured"
        if boot["code"] and not (request["action"] in ("setup", "install") and may_install(run)):
            raise Fail(boot["code"], boot["detail"])
        if spec.ACTIONS[request["action"]].locked and not run.dry:
            run.lock()
            migrate(run.inst)
        reply = ACTIONS[request["action"]](run)
        run.tidy_fresh()
        run.send({"reply": reply})
    except Fail as e:
        run.tidy_fresh()
        run.send({"error": {"code": e.code, "detail": e.detail, "log": e.log}})
    return 0
