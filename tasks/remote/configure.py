"""The files Jupyter reads, written by this tool (settings.sh, the kind's settings file, the
password file), and this tool's own scripts on the host (run.sh, boot.py)."""

import os

from . import containers, own
from .fail import Fail
from .files import json_text, make_dir, read_json, read_text, write_atomic
from .kinds import KINDS, config_for, describe_versions, kind_for
from .legacy import legacy_block, settings_from_sh
from .plan import config_steps, tool_steps
from .versions import installed_versions


def probe(run, settings):
    """The kind and version of the Jupyter the bootstrap found (this is its Python), or of the
    one in the container image SETTINGS name (containers.py asks the image)."""
    c = containers.settings_of(settings)
    if c is not None:
        return containers.probe(run, c)
    if not run.command:
        raise Fail("no_jupyter")
    versions = installed_versions()
    return kind_for(versions, run.command[0]), describe_versions(versions)


def root_dir(inst, settings):
    root = settings.get("root", "")
    if not root:
        return inst.home
    return root if root.startswith("/") else os.path.join(inst.home, root)


def check_root(inst, settings):
    root = root_dir(inst, settings)
    if os.path.exists(root) and not os.path.isdir(root):
        raise Fail("root_not_dir", root)


def config_facts(inst, kind):
    """What the configuration files say now (plan.config_steps' NOW)."""
    cfg_path = inst.config_path(kind)
    return {
        "settings_text": read_text(inst.path("settings.sh")), "legacy_text": legacy_block(read_text(inst.path("run.sh"))),
        "settings": inst.disk_settings(), "config_text": read_text(cfg_path), "config": read_json(cfg_path),
        "others": [p for p in inst.json_files("config") if p != cfg_path],
    }


def write_config(run, kind, settings_sh):
    """settings.sh, run.sh and the kind's settings file (and no other kind's, whose keys
    would warn). Only the first and the last are what Jupyter reads."""
    inst = run.inst
    wanted = settings_from_sh(settings_sh)
    want_cfg = config_for(kind, wanted)
    steps = config_steps(config_facts(inst, kind), {"settings_text": settings_sh, "settings": wanted, "config": want_cfg,
                                                    "config_name": "config/" + KINDS[kind].config_name})
    if not run.dry:
        make_dir(inst.d)
        make_dir(inst.path("config"))
        make_dir(inst.path("password"))
    for step in steps:
        run.change(step["what"], step["detail"], step["diff"], act=lambda step=step: apply_files(inst, step))
    refresh_tool_files(run)
    return want_cfg


def apply_files(inst, step):
    for name, text in step["write"]:
        write_atomic(inst.path(name), text)
    for path in step["remove"]:
        os.unlink(path)


def tool_files(run):
    """This tool's own scripts on the host, as (name, text, mode): run.sh, and boot.py for fast_start."""
    wanted = [("run.sh", own.run_sh(), 0o700)]
    if run.req.get("fast_start"):
        wanted.append(("boot.py", own.text("boot.py"), 0o600))
    return wanted


def refresh_tool_files(run):
    """This tool's own scripts (run.sh, boot.py): rewritten when they differ, never a reason
    to restart Jupyter. A "tool" change is one that replaced a file of an earlier version
    (the client says so); "tool_added" one that was not there (nothing to say)."""
    wanted = tool_files(run)
    now = {name: read_text(run.inst.path(name)) for name, _, _ in wanted}
    for step in tool_steps(now, wanted):
        run.change(step["what"], step["detail"], act=lambda step=step: write_tool(run.inst, step["name"], step["text"], step["mode"]))


def write_tool(inst, name, text, mode):
    try:
        make_dir(inst.d)
        write_atomic(inst.path(name), text, mode)
    except Fail:
        if name != "boot.py":
            raise  # boot.py is a speed-up, never a reason not to start: without it, Jupyter starts as its script says


def write_password(run, kind, h, new):
    """The kind's password file with hash H (a new password when NEW; else the stored one in
    this kind's format), and no other kind's."""
    inst = run.inst
    path = inst.password_path(kind)
    want = KINDS[kind].password(h)
    others = [p for p in inst.json_files("password") if p != path]
    if read_json(path) == want and not others:
        return
    act = lambda: (make_dir(inst.d), make_dir(inst.path("password")), write_atomic(path, json_text(want)),  # noqa: E731
                   [os.unlink(p) for p in others])
    if new:
        run.change("password", run.password_from, act=act)
    else:
        run.quietly(act)
