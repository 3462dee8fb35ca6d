"""What travels to a host: the bootstrap (bootstrap.sh) for `sh -s`, every value in it quoted by
shell.sh_quote, and the agent (the remote folder, joined by remote/pack.py) with its JSON request."""

from importlib import resources

from ..remote.spec import ACTION_LIST
from .shell import sh_assign

PACKAGE = __package__.rpartition(".")[0]  # the remote files are in the package above this one
BOOTSTRAP = resources.files(PACKAGE).joinpath("remote").joinpath("bootstrap.sh").read_text()
PROTOCOL = 1
# from the action table (remote/spec.py)
NEEDS_JUPYTER = tuple(a.name for a in ACTION_LIST if a.jupyter)  # run in Jupyter's environment and Python
LAUNCHING = tuple(a.name for a in ACTION_LIST if a.launches)  # may start Jupyter


def run_script():
    """~/.fabjupyter/run.sh: the bootstrap, ending in its call (tmux runs `sh run.sh serve ...`)."""
    from ..remote import own

    return own.run_sh()


def agent_script(action, request, settings_sh=None):
    """The text for `sh -s`: variables, the bootstrap (definitions only), then the one call: the
    agent is the remote folder joined into one script (remote/pack.py), its request on the last line."""
    from ..remote import pack  # here, not at the top: a tunnel asks in a thread while its ssh logs in

    request = dict(request, v=PROTOCOL, action=action)
    request.setdefault("instance", "default")
    if settings_sh is not None:
        request["settings_sh"] = settings_sh
    files = pack.sources()
    payload = pack.agent_payload(request, files)
    lines = [sh_assign("FJ_AGENT_PY", payload), sh_assign("FJ_INSTANCE", request["instance"])]
    if settings_sh is not None:
        lines.append(sh_assign("FJ_SETTINGS", settings_sh))
    if action in NEEDS_JUPYTER:
        lines.append("FJ_NEEDS_JUPYTER=1")
    return "\n".join(lines) + "\n" + files["bootstrap.sh"] + "\nfj_boot agent\n"
