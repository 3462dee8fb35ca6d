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
(many at once), heal.py (keep-alive); where a server listens is protocol/where.py's Where. Each
tunnel keeps its host's entry in this tool's ssh_config file current (ops/ssh_entry.py)."""

from ..errors import AuthError, HostError, UserError, sigterm_as_interrupt, user_task
from ..hosts.options import LOCAL_PORT_HELP, NAME_HELP, WORKERS_HELP, task
from ..hosts.targets import group_targets, target
from .confirmed import open_confirmed
from .group import all_instances, tunnel_group
from .heal import keep_alive
from ..ops.ssh_entry import Seen, keep_current
from .ports import choose_local_port, remember_seen


@task(
    help={
        "local-port": LOCAL_PORT_HELP,
        "open": "also open the URL in your browser",
        "group": "one tunnel per host of this hosts.yaml group, each on its own local port",
        "workers": WORKERS_HELP,
        "name": NAME_HELP,
        "all": "one tunnel per running instance on the host (or the group's hosts), each on its own local port",
    }
)
@user_task
def tunnel(c, local_port=None, open_=False, group=None, workers=None, name=None, all_=False):
    """Forward a local port to Jupyter on the host (OpenSSH) and keep it open until Ctrl-C."""
    if all_ and name is not None:
        raise UserError("give either --name NAME or --all, not both")
    if (group is not None or all_) and local_port is not None:
        raise UserError("--local-port names one port: with --group or --all, set local_port per host or instance in hosts.yaml")
    if all_:
        found, failed = all_instances(c, group, workers, name)
        return tunnel_group(found, workers, open_, failed)
    if group is not None:
        return tunnel_group(group_targets(c, group, name=name), workers, open_)
    t = target(c, local_port=local_port, name=name)
    port, note = choose_local_port(t.label, t.settings.local_port, pinned=local_port is not None)
    sigterm_as_interrupt()
    tun, error, where = open_confirmed(t, port, pinned=local_port is not None)
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
