"""The actions the client asks for, one function each: run -> the reply's fields. ACTIONS names
them all (list, watch and install live in modules of their own); what each takes and whether it
takes the lock is the action table's (spec.py), which both sides read."""

import os
import socket

from . import launchers
from .configure import check_root, probe, refresh_tool_files, write_config, write_password
from .facts import Instance
from .fail import Fail
from .files import digest, fingerprint, make_dir, write_atomic
from .install import act_install, install_facts, venv_path
from .kinds import KINDS, config_for
from .launch import launch, stop_server, stop_unrecorded
from .legacy import settings_from_sh
from .listing import act_list
from .plan import image_changed, password_step, server_step
from .shell import command_output
from .status import status
from .watch import act_watch

def requested_port(run, settings):
    return None if settings.get("sock") == "1" else run.req["port"]


def inherited_hash(run):
    """A new instance starts with the default instance's password (one password opens all
    of a user's servers on a host, unless one is set apart with `password --name`)."""
    if run.inst.name == "default":
        return None
    return Instance(run.inst.home, "default").stored_hash()


def act_status(run):
    run.inst.known()
    return {"status": status(run)}


def act_setup(run):
    """Facts (the record, the stored password, the Jupyter found), then the plan (plan.py: ask
    for a password or its salt first, keep the server or replace it), then the changes."""
    req, inst = run.req, run.inst
    if run.boot_code:  # no Jupyter there, and install: true
        return setup_reply(run, ask="install", install=install_facts(run))
    state = inst.state()
    stop_unrecorded(run, state)
    stored = inst.stored_hash()
    given = req["password_hash"]
    password = password_step(stored, given, inherited_hash(run) if not given and not stored else None, req["salted"], run.dry)
    if password["ask"]:
        return setup_reply(run, ask=password["ask"], salt=password["salt"])
    new, run.password_from = password["new"], password["source"]
    if req["install"] and run.command and not run.command[0].startswith(venv_path(run) + os.sep):
        run.note = "install: true, but Jupyter was found there (%s): it is used, and nothing was installed" % run.command[0]
    settings_sh = req["settings_sh"]
    settings = settings_from_sh(settings_sh)
    launcher = req["launcher"]
    entry = launchers.launcher(launcher)
    check_root(inst, settings)
    kind, version = probe(run, settings)
    h = new or stored
    requested = requested_port(run, settings)
    wanted = {
        "fingerprint": fingerprint(settings, kind, config_for(kind, settings), KINDS[kind].password(h) if h else None,
                                   inst.tls_digests(settings)),
        "launcher": launcher, "requested_port": requested, "version": version, "upgraded": req["upgraded"],
        "job_options": list(req["job_options"]) if entry.batch else None,
        "image": (run.container or {}).get("image"), "image_id": (run.container or {}).get("image_id"),
    }
    alive = launchers.server_alive(run, state)
    if server_step(state, alive, wanted) == "keep":
        refresh_tool_files(run)
        return setup_reply(run, unchanged=True)
    if image_changed(state, alive, wanted):
        run.change("image", wanted["image"])
    write_config(run, kind, settings_sh)
    if h:
        write_password(run, kind, h, new=bool(new))
    else:
        run.change("password", "asked for then")  # a dry run on a host without one
    stop_server(run, state)
    launch(run, kind, version, settings, launcher, requested)
    return setup_reply(run)


def setup_reply(run, ask=None, salt=None, unchanged=False, install=None):
    return {"ask": ask, "salt": salt, "unchanged": unchanged, "changes": run.changes, "status": status(run), "note": run.note,
            "install": install}


def restart_needed(run):
    state = run.inst.state()
    return launchers.server_alive(run, state) and state.get("fingerprint") != run.inst.disk_fingerprint(state.get("kind") or "server2")


def act_config(run):
    settings = settings_from_sh(run.req["settings_sh"])
    check_root(run.inst, settings)
    kind, _ = probe(run, settings)  # the kind of Jupyter decides the file (nothing is written if this fails)
    write_config(run, kind, run.req["settings_sh"])
    return {"changes": run.changes, "restart_needed": not run.dry and restart_needed(run)}


def act_password(run):
    inst = run.inst
    kind = inst.state().get("kind")
    if not kind:  # never started: the kind its settings file is for
        kind = "nb6" if os.path.isfile(inst.config_path("nb6")) and not os.path.isfile(inst.config_path("server2")) else "server2"
    if run.req["password_hash"] is None and run.dry:  # asked for nothing: it would be set, or replace one
        run.change("password", "replace" if inst.stored_hash() else "set")
    else:
        write_password(run, kind, run.req["password_hash"], new=True)
    return {"changes": run.changes, "restart_needed": not run.dry and restart_needed(run)}


def act_start(run):
    inst = run.inst
    inst.known()
    state = inst.state()
    stop_unrecorded(run, state)
    if not launchers.server_alive(run, state):
        settings = inst.disk_settings()
        kind, version = probe(run, settings)
        refresh_tool_files(run)
        launch(run, kind, version, settings, run.req["launcher"], requested_port(run, settings or {}))
    return {"changes": run.changes, "status": status(run), "note": run.note}


def act_restart(run):
    inst = run.inst
    inst.known()
    state = inst.state()
    if inst.stored_hash() is None:
        raise Fail("no_password")
    launcher = run.req["launcher"] or state.get("launcher") or "nohup"  # "": the one it ran with
    launchers.launcher(launcher)
    settings = inst.disk_settings()
    kind, version = probe(run, settings)
    stop_unrecorded(run, state)
    stop_server(run, state)
    refresh_tool_files(run)
    launch(run, kind, version, settings, launcher, requested_port(run, settings or {}))
    return {"changes": run.changes, "status": status(run), "note": run.note}


def act_stop(run):
    run.inst.known()
    state = run.inst.state()
    stop_unrecorded(run, state)
    stop_server(run, state)
    return {"changes": run.changes}


def act_logs(run):
    run.inst.known()
    lines = run.inst.jupyter_log()
    if lines is None:
        return {"exists": False, "lines": []}
    return {"exists": True, "lines": lines[-run.req["lines"]:]}


def act_cert(run):
    """Facts for the certificate's names; whether the host has exactly the pair the client has
    (compared by digest: the key never travels for that); with push, install it (0600)."""
    inst, req = run.inst, run.req
    if not req["new_instance"]:
        inst.known()
    fqdn = command_output(["hostname", "-f"]) or socket.gethostname()
    ips = command_output(["hostname", "-I"])
    if ips is None:
        ips = " ".join(line.split()[3].split("/")[0] for line in (command_output(["ip", "-o", "addr", "show"]) or "").splitlines()
                       if len(line.split()) > 3)
    same = bool(req["cert_digest"]) and digest(inst.path("tls", "cert.pem")) == req["cert_digest"] and \
        digest(inst.path("tls", "key.pem")) == req["key_digest"]
    if req["push"] and not same:
        def push():
            make_dir(inst.d)
            make_dir(inst.path("tls"))
            write_atomic(inst.path("tls", "key.pem"), req["key"])
            write_atomic(inst.path("tls", "cert.pem"), req["cert"])

        run.change("cert", act=push)
    has_password = inst.stored_hash() is not None or inherited_hash(run) is not None
    return {"fqdn": fqdn.strip(), "ips": ips.split(), "has_password": has_password, "same": same,
            "changes": run.changes}


ACTIONS = {
    "status": act_status, "setup": act_setup, "config": act_config, "password": act_password, "start": act_start,
    "restart": act_restart, "stop": act_stop, "logs": act_logs, "cert": act_cert, "list": act_list,
    "install": act_install, "watch": act_watch,
}
