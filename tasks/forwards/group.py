"""Many forwards at once: one per host of a group, or per running instance (--all), each on its
own local port, all opened at once, a table once every one answered or failed; Ctrl-C closes
all."""

import time
from concurrent.futures import ThreadPoolExecutor

from invoke import Exit

from ..errors import HostError, UserError, sigterm_as_interrupt
from ..hosts import fleet
from ..hosts.targets import group_targets, target
from ..protocol import run_agent
from ..report import table
from ..ops.server import remember
from ..ops.ssh_entry import Seen, keep_current
from ..remote.net import port_is_free
from .confirmed import open_confirmed
from .forward import close_all
from .ports import group_local_ports, next_free_port, remember_ports, remember_seen, taken_lock


def all_instances(c, group, workers, name):
    """--all: a Target per running instance of this tool on the host (or on each host of the
    group), each already known to run where `list` said; and the hosts that could not be asked."""
    hosts = group_targets(c, group, name=name) if group is not None else [target(c, name=name)]
    subs, failed = {}, {}

    def ask(t):
        listed = run_agent(t, "list")
        found = []
        for one in listed.instances:
            if one.status.running:
                sub = t.instance(one.name)
                remember(sub, one.status)
                found.append(sub)
        return found

    for t, found, error in fleet.in_parallel(hosts, ask, fleet.pool_size(len(hosts), workers)):
        if error is None:
            subs[t.label] = found
        else:
            failed[t.label] = error.message if isinstance(error, HostError) else str(error)
    found = [sub for t in hosts for sub in subs.get(t.label, ())]
    failed = {t.label: failed[t.label] for t in hosts if t.label in failed}  # in the hosts' order
    if not found and not failed:
        raise UserError(f"no instance of Jupyter is running on {', '.join(t.host for t in hosts)}; start one with setup or start")
    return found, failed


def tunnel_group(targets, workers, open_, failed_early=None):
    """One forward per target (hosts of a group, or instances), each on its own local port, all
    opened at once; the table once every one answered or failed; Ctrl-C closes all."""
    ports, pinned = group_local_ports(targets)
    taken = set(ports.values())
    results, tunnels, found = {}, {}, []
    labels = [t.label for t in targets] + list(failed_early or {})
    for label, reason in (failed_early or {}).items():
        results[label] = (False, reason)
    size = fleet.pool_size(len(targets), workers)
    # each forward holds its ssh's stderr and stdout here, and each host being asked its SSH socket
    fleet.room_for_files(fleet.FILES_SPARE + 2 * len(targets) + fleet.FILES_PER_HOST * size)

    def one(t):
        try:
            with taken_lock:
                port = ports[t.label]
                if not port_is_free(port):
                    moved = None if t.label in pinned else next_free_port(port, taken)
                    if moved is None:
                        return None, f"local port {port} is busy", None
                    print(f"{t.label}: local port {port} is busy; using {moved}", flush=True)
                    port = ports[t.label] = moved
                    taken.add(moved)
            result = open_confirmed(t, port, t.label in pinned, taken)
        except BaseException:
            t.conn.close()
            raise
        if result[0] is None or result[0].guard is None:
            t.conn.close()  # nothing more to ask: a group of thousands is not thousands of sockets
        return result

    sigterm_as_interrupt()
    # the pool outlives the forwards: an ssh child gets its parent-death signal when the *thread*
    # that started it ends, and each ssh here is started by one of the pool's threads
    pool = ThreadPoolExecutor(max_workers=size)
    try:
        for t, result, error in fleet.in_parallel(targets, one, size, pool):
            if error is not None:
                results[t.label] = (False, error.message if isinstance(error, HostError) else str(error))
                continue
            tun, reason, where = result
            if tun is None:
                results[t.label] = (False, reason)
                continue
            tunnels[t.label] = tun
            found.append((t, where))
            ports[t.label] = tun.local_port
            results[t.label] = (True, tun.url)
        remember_ports({label: port for label, port in ports.items() if label not in pinned})
        remember_seen(found)
        for line in keep_current([(t, Seen.at(where), None) for t, where in found]):
            print(line, flush=True)
        rows = [("host", "URL (log in with its password) or error")] + [
            (label, ("" if results[label][0] else "FAILED  ") + results[label][1]) for label in labels
        ]
        print("\n".join(table(rows)), flush=True)
        live = [tunnels[t.label] for t in targets if results[t.label][0]]
        if open_:
            import webbrowser

            for tun in live:
                webbrowser.open(tun.url)
        if live:
            print("Ctrl-C closes the tunnels", flush=True)
        ended = set()
        while any(tun.running() for tun in live):
            time.sleep(0.2)
            for label, tun in tunnels.items():
                if label not in ended and tun.guard and tun.guard.reason and not tun.running():
                    ended.add(label)
                    print(f"{label}: Jupyter {tun.guard.reason}; its tunnel is closed", flush=True)
        if live:
            print("all tunnels closed: their ssh exited", flush=True)
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        print("tunnels closed", flush=True)
    finally:
        close_all()
        pool.shutdown(wait=False, cancel_futures=True)
    failed = [label for label in labels if not results.get(label, (False,))[0]]
    if failed:
        raise Exit(f"{len(failed)} of {len(labels)} have no tunnel: {', '.join(failed)}", code=1)
