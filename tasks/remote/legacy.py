"""What earlier versions of this tool left on a host, read as this version's: the settings inside
an older run.sh, a key=value state file with its fingerprint (POSIX cksum over the scripts), and
settings.sh's own format (assignments quoted by the client, read back with shlex, never run)."""

import json
import os
import shlex

from .fail import PROTOCOL
from .files import cksum, json_text, read_text, write_atomic


def settings_from_sh(text):
    """The settings for Jupyter from settings.sh (or the block of an older run.sh): assignments
    quoted by the client's one helper, read back here with shlex, never run."""
    values = {}
    for word in shlex.split(text or "", comments=True):
        name, sep, value = word.partition("=")
        if sep and name.startswith("FJ_"):
            values[name[3:].lower()] = value
    for key in ("jupyter", "container_options"):  # lists of words
        if key in values:
            values[key] = shlex.split(values[key])
    return values


def legacy_block(run_sh):
    """The settings lines of a run.sh written by an earlier version (FJ_ACTIVATE= to FJ_SOCK=)."""
    lines, inside = [], False
    for line in (run_sh or "").splitlines():
        inside = inside or line.startswith("FJ_ACTIVATE=")
        if inside:
            lines.append(line)
            if line.startswith("FJ_SOCK="):
                return "\n".join(lines) + "\n"
    return None


def parse_state(inst, text):
    """The record of the server this tool started, from the text of INST's state file (JSON; an
    earlier version's key=value too, its fingerprint carried over when the files it covered are
    unchanged)."""
    try:
        state = json.loads(text)
        if isinstance(state, dict):
            return state
    except ValueError:
        pass
    old = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def integer(key):
        return int(old[key]) if old.get(key, "").isdigit() else None

    kind = old.get("flavour") or "server2"
    state = {
        "pid": integer("pid"), "port": integer("port"), "socket": old.get("sock") or None,
        "requested_port": integer("requested_port"), "launcher": old.get("launcher") or "nohup",
        "started": integer("started"), "mode": old.get("mode") or "ssh", "kind": kind,
        "fingerprint": None, "version": None, "fast_start": True, "python": None,
    }
    if state["socket"]:
        state["requested_port"] = None
    data = b""
    for path in (inst.path("run.sh"), inst.config_path(kind), inst.password_path(kind)):
        try:
            with open(path, "rb") as f:
                data += f.read()
        except OSError:
            pass
    if cksum(data) == old.get("fingerprint"):  # it runs with the files there now
        state["fingerprint"] = inst.disk_fingerprint(kind)
    return state


def migrate(inst):
    """What an earlier version left, in this version's files (under the lock, before this run
    rewrites the scripts): its key=value state as JSON, with its fingerprint carried over while
    the scripts its checksum covered are still there; the settings inside its run.sh as
    settings.sh."""
    text = read_text(inst.path("state"))
    if text is not None and not text.lstrip().startswith("{"):
        write_atomic(inst.path("state"), json_text(dict(inst.state(), v=PROTOCOL)))
    if not os.path.exists(inst.path("settings.sh")):
        block = legacy_block(read_text(inst.path("run.sh")))
        if block is not None:
            write_atomic(inst.path("settings.sh"), block)
    inst.forget()
