"""The local end of the forwards: which port on this machine (asked for, remembered from last
time, or the next free one) and where each host's Jupyter was seen last (to start a forward to
its socket before the host has said)."""

import threading

from ..errors import HostError
from ..localfiles import config_path, read_record, update_record
from ..protocol.where import Where
from ..remote.net import first_free_port, port_is_free

taken_lock = threading.Lock()  # a group's threads choose local ports from one set


def next_free_port(port, taken=()):
    """The first free local port after PORT (and not in TAKEN), or None within 100."""
    moved = first_free_port(port + 1, taken=taken)
    return moved if moved is not None and moved < port + 100 else None


def choose_local_port(label, port, pinned):
    """(port, note): the port itself if free; if it was only a default, the next free one, and
    the line that says so (printed once the forward is confirmed)."""
    if port_is_free(port):
        return port, None
    if pinned:
        raise HostError(label, f"local port {port} is busy; choose another with --local-port")
    moved = next_free_port(port)
    if moved is None:
        raise HostError(label, f"local ports {port}-{port + 99} are all busy; choose one with --local-port")
    return moved, f"{label}: local port {port} is busy; using {moved}"


def _seen_file():
    return config_path("last-seen.json")


def _seen_key(t):
    return f"{t.conn.user}@{t.conn.host}:{t.conn.port}/{t.name}"


def last_seen(t):
    """The Where this host's Jupyter was last confirmed at, or None."""
    try:
        return Where.from_record(read_record(_seen_file()).get(_seen_key(t)))
    except AttributeError:
        return None


def remember_seen(found):
    """Record where Jupyter was confirmed: (Target, Where) pairs, one write for a whole group."""
    if found:
        update_record(_seen_file(), {_seen_key(t): where.record() for t, where in found})


def _ports_file():
    return config_path("local-ports.json")


def remember_ports(ports):
    update_record(_ports_file(), ports)


def group_local_ports(targets):
    """A local port per host: its own local_port from hosts.yaml (pinned), else the one it had
    last time (remembered in ~/.config/fabjupyter/local-ports.json), else the next free one from
    8888. Returns (ports by label, the labels whose port is pinned)."""
    saved = read_record(_ports_file())
    ports, taken, pinned = {}, set(), set()
    for t in targets:
        own = t.pinned_local_port()
        if own:
            ports[t.label] = own
            taken.add(own)
            pinned.add(t.label)
    for t in targets:
        if t.label in ports:
            continue
        candidate = saved.get(t.label)
        if not candidate or candidate in taken or not port_is_free(candidate):
            others = {port for label, port in saved.items() if label != t.label}
            candidate = 8888
            while candidate in taken or candidate in others or not port_is_free(candidate):
                candidate += 1
        ports[t.label] = candidate
        taken.add(candidate)
    return ports, pinned


def saved_ports():
    """{label: the local port it had last time} (a group's tunnels, background tunnels)."""
    return read_record(_ports_file())


def usual_local_port(t, saved=None):
    """(port, pinned): the local port a tunnel to T takes when it is free, without looking whether
    it is: hosts.yaml's own local_port for the host or instance (pinned), else the one a group's
    tunnel had last time (SAVED: saved_ports(), read once for many hosts), else the local_port
    setting (8888 by default)."""
    own = t.pinned_local_port()
    if own:
        return own, True
    saved = (saved_ports() if saved is None else saved).get(t.label)
    if isinstance(saved, int) and not isinstance(saved, bool) and 1 <= saved <= 65535:
        return saved, False
    return t.settings.local_port, False
