"""What travels to a host: the bootstrap (bootstrap.sh) for `sh -s`, every value in it quoted by
shell.sh_quote, and the agent (agent.py) with its JSON request inside it."""

import json
from importlib import resources

from ..remote.spec import ACTION_LIST
from .shell import sh_assign

PACKAGE = __package__.rpartition(".")[0]  # the remote files are in the package above this one
BOOTSTRAP = resources.files(PACKAGE).joinpath("remote").joinpath("bootstrap.sh").read_text()
AGENT = resources.files(PACKAGE).joinpath("remote").joinpath("agent.py").read_text()
READY = resources.files(PACKAGE).joinpath("remote").joinpath("ready.py").read_text()
BOOT = resources.files(PACKAGE).joinpath("remote").joinpath("boot.py").read_text()
PROTOCOL = 1
# from the action table (remote/spec.py)
NEEDS_JUPYTER = tuple(a.name for a in ACTION_LIST if a.jupyter)  # run in Jupyter's environment and Python
LAUNCHING = tuple(a.name for a in ACTION_LIST if a.launches)  # may start Jupyter
TAKES_READY = tuple(a.name for a in ACTION_LIST if a.ready)  # take ready.py along (its checks of who listens where)


def run_script():
    """~/.fabjupyter/run.sh: the bootstrap, ending in its call (tmux runs `sh run.sh serve ...`)."""
    return "#!/bin/sh\n# Written by fabjupyter; its settings are in settings.sh beside it.\n" + BOOTSTRAP + '\nfj_boot "$@"\n'


def agent_script(action, request, settings_sh=None):
    """The text for `sh -s`: variables, the bootstrap (definitions only), then the one call."""
    request = dict(request, v=PROTOCOL, action=action)
    request.setdefault("instance", "default")
    if settings_sh is not None:
        request["settings_sh"] = settings_sh
    if action in TAKES_READY:
        request["ready_py"] = READY
    if action in NEEDS_JUPYTER:
        request["run_sh"] = run_script()
        if request.get("fast_start"):
            request["boot_py"] = BOOT
    payload = AGENT + f"\nsys.exit(main(json.loads({json.dumps(request)!r})))\n"
    lines = [sh_assign("FJ_AGENT_PY", payload), sh_assign("FJ_INSTANCE", request["instance"])]
    if settings_sh is not None:
        lines.append(sh_assign("FJ_SETTINGS", settings_sh))
    if action in NEEDS_JUPYTER:
        lines.append("FJ_NEEDS_JUPYTER=1")
    return "\n".join(lines) + "\n" + BOOTSTRAP + "\nfj_boot agent\n"
