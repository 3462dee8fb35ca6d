"""A forward from a local port to where Jupyter listens on a host: what every forward shares (its
URL, the wait until it answers, whether it still leads where the host says), held open by one of
two carriers beside each other: its own `ssh -N -L` (plain.PlainForward) or the host's master
(master.MasterForward)."""

import sys
import threading
import time

from .. import system
from ..context import run
from ..remote.net import unverified_tls
from .master import MasterForward
from .plain import PlainForward

class _Listening:
    at = 0.0
    inodes: dict[int, set[str]] | None = {}
    lock = threading.Lock()


def _listeners():
    """{port: socket inodes} listening on 127.0.0.1 (None where that cannot be read: not Linux,
    no /proc), read at most every 10 ms whatever the number of forwards waiting (a thousand
    would otherwise each read it 100 times a second)."""
    with _Listening.lock:
        if time.monotonic() - _Listening.at > 0.01:
            _Listening.inodes = system.loopback_listeners()
            _Listening.at = time.monotonic()
        return _Listening.inodes


def listener_owner_is(pid, port):
    """Whether process PID listens on 127.0.0.1:PORT: True/False on Linux (from /proc), None
    where that cannot be read (system.py). Any answer on the port could be another program's that
    bound it between our check and ssh's bind; this tells the forward we started from one that
    is not."""
    listeners = _listeners()
    if listeners is None:
        return None
    inodes = listeners.get(port)
    if not inodes:
        return False
    return system.holds_socket(pid, inodes)


class Tunnel:
    """LOCAL_PORT forwarded to WHERE (a Where) by the carrier START(spec, heard) makes."""

    def __init__(self, local_port, where, start):
        self.local_port = local_port
        self.where = where
        self.url = where.url(local_port)
        self.ready = False  # it answered once
        self.target_gone = False  # since then, ssh said Jupyter is not there (any more)
        self.guard = None
        self.carrier = start(where.forward_spec(local_port), self._heard)
        with run().live_lock:
            run().live.add(self)

    def _heard(self, line):
        """A line of ssh's: passed on once the forward answered (before, it tells why it failed)."""
        if self.ready and "open failed" in line:
            self.target_gone = True  # Jupyter is not on that port (any more)
        elif self.ready and line:
            print(f"ssh: {line}", file=sys.stderr, flush=True)

    def running(self):
        return self.carrier.running()

    def refused(self):
        """Whether the host refused the login."""
        return self.carrier.refused()

    def port_was_busy(self):
        return self.carrier.port_was_busy()

    def points_to(self, where):
        """Does this forward go to WHERE, as the host said?"""
        return (self.where.at, self.where.tls, self.where.address) == (where.at, where.tls, where.address)

    def wait_ready(self, timeout, stop=None):
        """Until an HTTP request through the forward gets an answer (True); False if ssh gives
        up, TIMEOUT passes, or STOP (an Event) is set first."""
        import urllib.error  # here, not at the top: a run that forwards nothing does not load them
        import urllib.request

        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if self.where.tls:  # any answer will do: the name is localhost here
            handlers.append(urllib.request.HTTPSHandler(context=unverified_tls()))
        opener = urllib.request.build_opener(*handlers)
        deadline = time.monotonic() + timeout
        while not (stop and stop.is_set()):
            if not self.running():
                return False
            owner = listener_owner_is(self.carrier.owner_pid, self.local_port)
            # where /proc cannot tell who listens (macOS, Windows), the carrier's word that it
            # does: before it, an answer there could be another program's that took the port
            if owner is False or (owner is None and not self.carrier.bound()):
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.01)  # ssh is still logging in; whatever answers there now is not ours
                continue
            try:
                opener.open(f"{self.where.scheme}://127.0.0.1:{self.local_port}/api", timeout=5).close()
                self.ready = True
                return True
            except urllib.error.HTTPError:
                self.ready = True
                return True
            except OSError:
                pass
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return False

    def close(self):
        """End the forward; the local port is free again when this returns."""
        with run().live_lock:
            run().live.discard(self)
        self.carrier.close()

    def failure(self):
        if self.port_was_busy():
            return f"local port {self.local_port} is busy; choose another with --local-port"
        return self.carrier.failure()


def plain_tunnel(conn, local_port, where, batch=False):
    """A forward by its own `ssh -N -L`; BATCH: one that asks nothing (started on a guess)."""
    return Tunnel(local_port, where, lambda spec, heard: PlainForward(conn, spec, batch, heard))


def master_tunnel(route, label, local_port, where):
    """A forward added to the host's master (ROUTE), started first if need be."""
    return Tunnel(local_port, where, lambda spec, heard: MasterForward(route, label, spec))


def inproc_tunnel(route, t, local_port, where):
    """A forward carried by this process over the host's login on this console (ROUTE, a
    ConsoleRoute), made first if need be."""
    from .inproc import InprocForward  # here: paramiko's channel internals only where needed

    return Tunnel(local_port, where, lambda spec, heard: InprocForward(route, t, local_port, where, heard))


def close_all():
    """End every forward still open (a group's, when it ends or is interrupted)."""
    with run().live_lock:
        live = list(run().live)
    for tun in live:
        tun.close()
