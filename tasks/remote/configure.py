"""The files Jupyter reads, written by this tool (settings.sh, the kind's settings file, the
password file), and this tool's own scripts on the host (run.sh, boot.py)."""

import os

from . import own
from .fail import Fail
from .files import diff, json_text, make_dir, read_json, read_text, write_atomic
from .kinds import KINDS, config_for, describe_versions, kind_for
from .legacy import legacy_block, settings_from_sh
from .versions import installed_versions


def probe(run):
    """The kind and version of the Jupyter the bootstrap found (this is its Python)."""
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


def write_config(run, kind, settings_sh):
    """settings.sh, run.sh and the kind's settings file (and no other kind's, whose keys
    would warn). Only the first and the last are what Jupyter reads."""
    inst = run.inst
    old = read_text(inst.path("settings.sh"))
    wanted = settings_from_sh(settings_sh)
    now = inst.disk_settings()
    want_cfg = config_for(kind, wanted)
    cfg_path = inst.config_path(kind)
    old_cfg = read_json(cfg_path)
    others = [p for p in inst.json_files("config") if p != cfg_path]
    if not run.dry:
        make_dir(inst.d)
        make_dir(inst.path("config"))
        make_dir(inst.path("password"))
    if now != wanted:
        run.change("settings", diff=diff(old if old is not None else legacy_block(read_text(inst.path("run.sh"))),
                                         settings_sh, "settings.sh"),
                   act=lambda: write_atomic(inst.path("settings.sh"), settings_sh))
    elif old != settings_sh:
        run.change("tool", "settings.sh", act=lambda: write_atomic(inst.path("settings.sh"), settings_sh))
    if old_cfg != want_cfg or others:
        old_text = read_text(cfg_path)
        name = "config/" + KINDS[kind].config_name
        run.change("config", name, diff=diff(old_text, json_text(want_cfg), name),
                   act=lambda: [write_atomic(cfg_path, json_text(want_cfg))] + [os.unlink(p) for p in others])
    refresh_tool_files(run)
    return want_cfg


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
    for name, text, mode in tool_files(run):
        old = read_text(run.inst.path(name))
        if old != text:
            run.change("tool" if old is not None else "tool_added", name,
                       act=lambda name=name, text=text, mode=mode: write_tool(run.inst, name, text, mode))


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
