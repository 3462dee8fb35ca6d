"""What the modules of one run share: the servers seen running, the password read and its hashes,
the routes to the hosts' OpenSSH masters, the forwards open. One RunContext per process, made on
import, read and written only through `run()`.

Per process, not per Invoke Context: a `fab` call is one run, and its tasks share it (`fab -H h
setup tunnel`: the tunnel forwards to where setup just saw Jupyter, the password is read once for
every task and host, a master started for this run serves each task and is ended on exit), while
Fabric gives each task of a call a Context (a Connection) of its own."""

import threading
import typing
from dataclasses import dataclass, field

SeenKey = typing.Tuple[str, str, int, str]  # user, host, port, instance name


@dataclass
class RunContext:
    # server.remember/seen_running: where this run's setup, start or list saw Jupyter (a Where)
    seen: typing.Dict[SeenKey, typing.Any] = field(default_factory=dict)
    # password: what was read ({from_stdin: password}), and the hashes made of it: fresh
    # ({password: hash}) and with a stored salt ({(password, salted): hash})
    passwords: typing.Dict[bool, str] = field(default_factory=dict)
    fresh_hashes: typing.Dict[str, str] = field(default_factory=dict)
    salted_hashes: typing.Dict[typing.Tuple[str, str], str] = field(default_factory=dict)
    # ssh.openssh: a host's Route to its master, or None (it takes the paramiko path)
    routes: typing.Dict[tuple, typing.Any] = field(default_factory=dict)
    routes_lock: threading.Lock = field(default_factory=threading.Lock)
    # forwards: every Tunnel whose ssh may run, closed on the way out whichever thread made it
    live: typing.Set[typing.Any] = field(default_factory=set)
    live_lock: threading.Lock = field(default_factory=threading.Lock)
    # ops.ssh_entry: the hosts seen this run whose ssh_config entries are written at the task's end
    entries: typing.List[typing.Any] = field(default_factory=list)
    entries_lock: threading.Lock = field(default_factory=threading.Lock)


_run = RunContext()


def run():
    """This run's context."""
    return _run
