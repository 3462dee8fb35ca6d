"""tunnel: the client-side forward to Jupyter, made by the OpenSSH client (`ssh -N -L`), which
moves data an order of magnitude faster than Fabric's pure-Python forward_local.

No request of the user's reaches a server that is not confirmed to be theirs:
- a forward to a Unix socket (the default in ssh mode) goes to a path in the user's own 0700
  directory, where no other user can bind or connect: it may start at once towards where Jupyter
  was seen last (remembered in ~/.config/fabjupyter/last-seen.json) while the host is asked
  where it runs now, and is kept only if the host's answer names that very socket;
- a forward to a TCP port (public mode, a batch job's node, socket: false) starts only after the
  host confirmed that our server holds the port, and a watch on the host (Guard) closes it the
  moment that server is gone, before another user's program could take the port.
A group's forwards all open at once, each in that way.

The parts: ports.py (local ports, last seen), forward.py (a forward, carried by plain.py's own
ssh or master.py's ControlMaster), confirmed.py (forwards only to a confirmed server), group.py
(many at once), heal.py (keep-alive), background.py (the tunnel held by a process of its own,
keeper.py, with its record in records.py); where a server listens is protocol/where.py's Where.
Each tunnel keeps its host's entry in this tool's ssh_config file current (ops/ssh_entry.py)."""

import json

from ..errors import AuthError, HostError, UserError, sigterm_as_interrupt, user_task
from ..hosts.options import LOCAL_PORT_HELP, NAME_HELP, WORKERS_HELP, task
from ..hosts.targets import group_targets, target
from . import background
from .confirmed import open_confirmed
from .group import all_instances, tunnel_group
from .heal import keep_alive
from ..ops.ssh_entry import Seen, keep_current
from .ports import choose_local_port, remember_seen, usual_local_port


@task(
    help={
        "local-port": LOCAL_PORT_HELP,
        "open": "also open the URL in your browser",
        "group": "one tunnel per host of this hosts.yaml group, each on its own local port",
        "workers": WORKERS_HELP,
        "name": NAME_HELP,
        "all": "one tunnel per running instance on the host (or the group's hosts), each on its own local port",
        "background": "keep the tunnel open in the background, detached from this terminal, and return once it "
                      "answers; on the same local port as last time; a second call says the open one's URL",
        "stop": "close the host's background tunnel (tunnel --background)",
    }
)
@user_task
def tunnel(c, local_port=None, open_=False, group=None, workers=None, name=None, all_=False, background_=False,
           stop=False):
    """Forward a local port to Jupyter on the host (OpenSSH): open until Ctrl-C, or in the background."""
    if background.holds():  # this process is a background tunnel's keeper
        return background.hold(target(c, local_port=local_port, name=name))
    if all_ and name is not None:
        raise UserError("give either --name NAME or --all, not both")
    if background_ or stop:
        return _background(c, local_port, open_, group, all_, background_, stop, name)
    if (group is not None or all_) and local_port is not None:
        raise UserError("--local-port names one port: with --group or --all, set local_port per host or instance in hosts.yaml")
    if all_:
        found, failed = all_instances(c, group, workers, name)
        return tunnel_group(found, workers, open_, failed)
    if group is not None:
        return tunnel_group(group_targets(c, group, name=name), workers, open_)
    t = target(c, local_port=local_port, name=name)
    # the port it had last time (a background or group tunnel's), for a URL saved in an IDE
    wanted, pinned = (local_port, True) if local_port is not None else usual_local_port(t)
    port, note = choose_local_port(t.label, wanted, pinned=pinned)
    sigterm_as_interrupt()
    tun, error, where = open_confirmed(t, port, pinned=pinned)
    if tun is None:
        raise HostError(t.label, error)
    remember_seen([(t, where)])
    try:
        if note:
            print(note, flush=True)
        # its entry's port stays the usual one when this tunnel only moved off a busy default
        for line in keep_current([(t, Seen.at(where), tun.local_port if local_port is not None else None)]):
            print(line, flush=True)
        print(f"{t.label}: Jupyter is at {tun.url}  (log in with your password; Ctrl-C closes the tunnel)", flush=True)
        if open_:
            import webbrowser

            webbrowser.open(tun.url)
        keep_alive(t, tun)
    except AuthError as e:
        raise AuthError(t.label, f"logging in again failed: {e.reason}; the tunnel is closed") from None
    except KeyboardInterrupt:
        print(f"{t.label}: tunnel closed", flush=True)
    finally:
        tun.close()


def _background(c, local_port, open_, group, all_, start, stop, name):
    """tunnel --background / --stop: one host's instance (-H, --name)."""
    if start and stop:
        raise UserError("give either --background or --stop, not both")
    if group is not None or all_:
        raise UserError(f"--{'background' if start else 'stop'} is for one host and instance: -H HOST (and --name NAME)")
    t = target(c, local_port=local_port, name=name)
    if stop:
        if local_port is not None or open_:
            raise UserError("--stop takes no --local-port or --open")
        said = background.stop_background(t)
        print(f"{t.label}: {said or 'no background tunnel is open'}", flush=True)
        return
    lines = background.open_background(t, local_port)
    for line in lines:
        print(f"{t.label}: {line}", flush=True)
    if open_:
        import webbrowser

        webbrowser.open(background.open_record(t)["url"])


@task(help={"name": NAME_HELP, "json": "print one JSON object: url, local_port, host, name, tunnel_pid"})
@user_task
def url(c, name=None, json_=False):
    """Print the URL of the host's background tunnel, for an IDE (VS Code, PyCharm): http://localhost:PORT/."""
    t = target(c, name=name)
    record = background.open_record(t)
    if record is None:
        raise HostError(t.label, f"no background tunnel is open; open one with `{t.fab('tunnel --background')}`")
    print(json.dumps(background.url_record(t, record)) if json_ else record["url"], flush=True)
