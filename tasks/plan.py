"""--dry-run: what a task would change, shown and not done (not even an upload: the agent's
`plan` action only reads)."""

import difflib

from .config import CONFIG_FILES, config_values
from .fleet import Outcome
from .remote import RemoteError, run_agent


def diff(old_lines, new_text, name):
    return [
        line.rstrip("\n")
        for line in difflib.unified_diff(old_lines, new_text.splitlines(), f"{name} (now)", f"{name} (would be)", lineterm="")
    ]


def plan(t, starting=True, password_given=False):
    """Lines describing what config (and, with starting, setup) would do on this host."""
    values = config_values(t.settings)
    reply = run_agent(t, "plan", **values)
    lines = []
    say = lambda text: lines.append(f"{t.label}: would {text}")  # noqa: E731
    if reply["would_error"]:
        problem = RemoteError(t, type(reply)(values={"error": reply["would_error"], "detail": reply["would_detail"]}))
        lines.append(f"{str(problem)} (so setup would stop before changing anything)")
        return Outcome(lines, "would fail")
    if reply.flag("config_same"):
        lines.append(f"{t.label}: configuration unchanged")
    else:
        say("write the configuration in ~/.fabjupyter:")
        variable, name = CONFIG_FILES.get(reply["flavour"], CONFIG_FILES["server2"])  # the kind it last ran
        lines += ["    " + line for line in diff(reply.files.get("run", []), values["FJ_RUN_SH"], "run.sh")]
        lines += ["    " + line for line in diff(reply.files.get("cfg", []), values[variable], name)]
    if reply["root_missing"]:
        say(f"create the root directory {reply['root_missing']} (mode 0700)")
    if starting:
        if not reply.flag("has_password"):
            say("set the password (asked for then)" if not password_given else "set the password")
        elif password_given:
            say("replace the password if the one given differs from the stored one")
        if reply.flag("running") and reply.flag("launch_same") and not password_given:
            lines.append(f"{t.label}: Jupyter would keep running (pid {reply['pid']})")
        elif reply.flag("running"):
            say(f"restart Jupyter (pid {reply['pid']}) with the new settings")
        else:
            say(f"start Jupyter ({t.settings.launcher}, port {t.settings.port} or the next free one) and wait until it answers")
    changed = any(" would " in line for line in lines)
    return Outcome(lines, "would change" if changed else "nothing to change")


def plan_start(t):
    reply = run_agent(t, "status")
    if reply.flag("running"):
        return Outcome([f"{t.label}: Jupyter is running (pid {reply['pid']}); start would do nothing"], "nothing to change")
    return Outcome([f"{t.label}: would start Jupyter ({t.settings.launcher}) and wait until it answers"], "would start")


def plan_stop(t):
    reply = run_agent(t, "status")
    if reply.flag("running"):
        return Outcome([f"{t.label}: would stop Jupyter (pid {reply['pid']})"], "would stop")
    return Outcome([f"{t.label}: Jupyter is not running; stop would do nothing"], "nothing to change")


def plan_password(t):
    reply = run_agent(t, "status")
    state = "replace the password" if reply.flag("has_password") else "set the password"
    return Outcome([f"{t.label}: would {state} (hash only, mode 0600)"], f"would {state}")
