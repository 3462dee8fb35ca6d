"""Forwards only to a server confirmed to be the user's own: a forward to the socket seen last
may start while the host is asked where its Jupyter runs, and is kept only if the answer names
it; a forward to a TCP port starts once confirmed, and a watch on the host (Guard) closes it the
moment that server is gone."""

import threading

from ..errors import HostError
from ..protocol import run_agent
from ..ops.server import ask_where, seen_running
from ..ssh import openssh
from ..ssh.console import ConsoleRoute
from .forward import inproc_tunnel, master_tunnel, plain_tunnel
from .ports import last_seen, next_free_port, taken_lock

READY_TIMEOUT = 30  # seconds for the forward to answer, on top of the SSH connect timeout


class Guard:
    """For a forward to a TCP port: the agent on the host watches the server the forward was
    confirmed for (act_watch) and answers the moment it is gone (stopped, restarted, moved, its
    port no longer held by it); the forward is closed then, before another user's program could
    bind the port and receive a request of ours. If the watch itself ends (its connection lost),
    the forward is closed too: a forward nobody watches is not kept. A Unix socket needs none: it
    lies in the user's own 0700 directory, where nobody else can bind it."""

    WORDS = {"stopped": "stopped", "restarted": "was restarted", "moved": "moved", "taken": "no longer holds the port"}

    def __init__(self, t, tun):
        self.tun = tun
        self.reason = None  # what the host said of the server: stopped, was restarted...
        self.lost = None  # or why the watch ended without its answer (its connection lost)
        threading.Thread(target=self._watch, args=(t, tun.where), daemon=True).start()

    def _watch(self, t, where):
        try:
            gone = run_agent(t, "watch", port=where.at, address=where.address).gone
            self.reason = self.WORDS.get(gone, gone)
        except BaseException as e:  # noqa: B036 (whatever ended the watch, the forward goes)
            self.lost = f"the watch on the host ended: {e.message if isinstance(e, HostError) else e}"
        if self.tun.guard is self:
            self.tun.close()


def make_tunnel(t, local_port, where, speculative=False):
    """A forward from LOCAL_PORT to WHERE on host T: through its master on the OpenSSH path, else
    its own `ssh -N -L` (which, on a guess, asks nothing). Only a socket may be guessed; a port is
    forwarded once confirmed, and watched (Guard)."""
    if speculative and not where.socket:
        raise ValueError("a TCP port is forwarded only once the host confirmed it")
    route = openssh.route_for(t.conn, t.settings)
    if isinstance(route, ConsoleRoute):
        tun = inproc_tunnel(route, t, local_port, where)
    elif route is not None:
        tun = master_tunnel(route, t.label, local_port, where)
    else:
        tun = plain_tunnel(t.conn, local_port, where, batch=speculative)
    if not where.socket and tun.running():
        tun.guard = Guard(t, tun)
    return tun


def open_forward(t, tun, pinned, taken=()):
    """Wait for TUN (a Tunnel to host T) to answer. When another program took its local port
    between our check and ssh's bind, and the port was only a default (PINNED false), move on to
    the next free one, said aloud, and try again. Returns (Tunnel or None, error or None)."""
    timeout = READY_TIMEOUT + (t.conn.connect_timeout or 10)
    while True:
        if tun.ready or tun.wait_ready(timeout):
            return tun, None
        tun.close()
        if pinned or not tun.port_was_busy():
            return None, f"tunnel failed: {tun.failure()}"
        with taken_lock:
            moved = next_free_port(tun.local_port, taken)
            if moved is not None and isinstance(taken, set):
                taken.add(moved)
        if moved is None:
            return None, f"local ports {tun.local_port}-{tun.local_port + 99} are all busy"
        print(f"{t.label}: local port {tun.local_port} was taken meanwhile; using {moved}", flush=True)
        tun = make_tunnel(t, moved, tun.where)


class _Asked:
    """ask_where(t) in a thread of its own, so that the forward's ssh logs in meanwhile."""

    def __init__(self, t):
        self.done = threading.Event()
        self.where = self.error = None
        threading.Thread(target=self._ask, args=(t,), daemon=True).start()

    def _ask(self, t):
        try:
            self.where = ask_where(t)
        except BaseException as e:  # handed to the thread that waits for the answer
            self.error = e
        finally:
            self.done.set()

    def result(self):
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.where


def guess_where(t):
    """Where Jupyter probably runs, to start the forward before the host has said: the Unix socket
    where it was seen last (this machine remembers). Never a TCP port: whatever holds a port now
    may be another user's server, and would get the browser's requests before the host's answer
    showed it."""
    seen = last_seen(t)
    return seen if seen and seen.socket else None


def open_confirmed(t, local_port, pinned, taken=()):
    """A forward from LOCAL_PORT to T's Jupyter, never to another server: a forward to the socket
    seen last starts while the host is asked where its Jupyter runs (by the agent, which knows its
    pid), and is kept only if that is where it points; else (and for a port, always) the forward
    is made once the host has said. Returns (Tunnel or None, error or None, Where); the host's own
    error is raised."""
    where = seen_running(t)  # this run's setup or start just said
    if where is not None:
        return (*open_forward(t, make_tunnel(t, local_port, where), pinned, taken), where)
    guess = guess_where(t)
    tun = make_tunnel(t, local_port, guess, speculative=True) if guess else None
    try:
        asked = _Asked(t)
        if tun is not None:
            # meanwhile see it answer, so that a right guess costs nothing more once confirmed
            tun.wait_ready(READY_TIMEOUT + (t.conn.connect_timeout or 10), stop=asked.done)
        where = asked.result()
        if tun is not None and (not tun.points_to(where) or not (tun.ready or tun.running())):
            # its answer (if any) was never shown: it may be another user's server; or it could
            # not log in without asking, and the host's answer came by a login that could
            tun.close()
            tun = None
        if tun is None:
            tun = make_tunnel(t, local_port, where)
        return (*open_forward(t, tun, pinned, taken), where)
    except BaseException:
        if tun is not None:
            tun.close()
        raise
