"""tunnel: the client-side forward to Jupyter, made by the OpenSSH client (`ssh -N -L`), which
moves data an order of magnitude faster than Fabric's pure-Python forward_local.

No request of the user's reaches a server that is not confirmed to be theirs:
- a forward to a Unix socket (the default in ssh mode) goes to a path in the user's own 0700
  directory, where no other user can bind or connect: it may start at once towards where Jupyter
  was seen last (remembered here, in ~/.config/fabjupyter/last-seen.json) while the host is asked
  where it runs now, and is kept only if the host's answer names that very socket;
- a forward to a TCP port (public mode, a batch job's node, socket: false) starts only after the
  host confirmed that our server holds the port, and a watch on the host (Guard) closes it the
  moment that server is gone, before another user's program could take the port.
A group's forwards all open at once, each in that way."""

import ctypes
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from invoke import Exit

from ..hosts import fleet
from ..ssh import openssh
from ..errors import AuthError, HostError, UserError, sigterm_as_interrupt, user_task
from ..hosts.targets import group_targets, target
from ..localfiles import config_path, read_record, update_record
from ..hosts.options import NAME_HELP, WORKERS_HELP, task
from ..protocol import run_agent
from ..ops.render import is_socket
from ..ops.server import NotRunning, ask_where, remember, seen_running

READY_TIMEOUT = 30  # seconds for the forward to answer, on top of the SSH connect timeout


def port_is_free(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ssh binds its listener
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def next_free_port(port, taken=()):
    """The first free local port after PORT (and not in TAKEN), or None within 100."""
    for candidate in range(port + 1, min(port + 100, 65536)):
        if candidate not in taken and port_is_free(candidate):
            return candidate
    return None


_listening = {"at": 0.0, "inodes": {}}
_listening_lock = threading.Lock()


def _listeners():
    """{port: socket inodes} listening on 127.0.0.1, read from /proc at most every 10 ms whatever
    the number of forwards waiting (a thousand would otherwise each read it 100 times a second)."""
    with _listening_lock:
        if time.monotonic() - _listening["at"] > 0.01:
            found = {}
            for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[1].startswith("0100007F:") and fields[3] == "0A":  # 127.0.0.1, LISTEN
                    found.setdefault(int(fields[1][9:], 16), set()).add(fields[9])
            _listening.update(at=time.monotonic(), inodes=found)
        return _listening["inodes"]


def listener_owner_is(pid, port):
    """Whether process PID listens on 127.0.0.1:PORT: True/False on Linux (from /proc), None
    where that cannot be read. Any answer on the port could be another program's that bound it
    between our check and ssh's bind; this tells the forward we started from one that is not."""
    try:
        inodes = _listeners().get(port)
        if not inodes:
            return False
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                return True
        return False
    except (OSError, IndexError):
        return None


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


def ssh_command(conn, forward, batch=False):
    """An `ssh -N -L` command line that reaches the host exactly as Fabric did (openssh.base_args).
    BATCH: never ask anything (a forward started on a guess, beside a login that may ask)."""
    args = openssh.base_args(conn)
    if batch or not sys.stdin.isatty():
        args += ["-o", "BatchMode=yes"]  # nobody could answer a prompt
    args += [
        "-o", "ExitOnForwardFailure=yes",
        "-o", "ServerAliveInterval=15",
        "-o", "ServerAliveCountMax=3",
        "-o", "ControlMaster=no",
        "-o", "ControlPath=none",  # a shared master would keep the forward after we end
        "-N", "-L", forward,
        conn.original_host,
    ]
    return args


try:
    # looked up here, not in the child: a dlopen between fork and exec can deadlock when other
    # threads (a group's) held the loader's lock at the fork
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None


def _die_with_parent():
    """In the ssh child: get SIGTERM if this process dies, even by SIGKILL (Linux)."""
    if _prctl is not None:
        _prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


_live = set()  # every Tunnel whose ssh may run: closed on the way out, whichever thread made it
_live_lock = threading.Lock()


class Tunnel:
    """One `ssh -N -L` child, with its stderr collected (shown if it fails, passed on after)."""

    def __init__(self, conn, local_port, remote_port, tls=False, address=None, batch=False):
        forward = self._describe(local_port, remote_port, tls, address)
        self.command = ssh_command(conn, forward, batch)
        self.errors = []
        self.ready = False
        self.target_gone = False
        self.guard = None
        self.proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL if not sys.stdin.isatty() else None,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches us, and we end ssh ourselves
            preexec_fn=_die_with_parent,
        )
        with _live_lock:
            _live.add(self)
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _describe(self, local_port, remote_port, tls, address):
        """Set what the forward is; returns its -L spec."""
        self.local_port = local_port
        self.remote_port = remote_port
        self.address = address
        self.tls = tls
        self.scheme = "https" if tls else "http"
        self.url = f"{self.scheme}://localhost:{local_port}/"
        if is_socket(remote_port):
            return f"127.0.0.1:{local_port}:{remote_port}"  # OpenSSH forwards to a Unix socket too
        # to Jupyter on the host itself, or through it to the compute node a batch job runs on
        return f"127.0.0.1:{local_port}:{address or '127.0.0.1'}:{remote_port}"

    @property
    def owner_pid(self):
        """The process that listens on the local port for this forward."""
        return self.proc.pid

    def running(self):
        if self.proc.poll() is None:
            return True
        self._reader.join(2)
        return False

    def refused(self):
        """Whether ssh ended because the host refused the login."""
        return self.proc.poll() is not None and any("Permission denied" in line for line in self.errors)

    def _read_stderr(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            self.errors.append(line)
            if self.ready and "open failed" in line:
                self.target_gone = True  # Jupyter is not on that port (any more)
            elif self.ready and line:
                print(f"ssh: {line}", file=sys.stderr, flush=True)

    def points_to(self, where):
        """Does this forward go to WHERE, (port or socket, mode, address) as the host said?"""
        port, mode, address = where
        return (self.remote_port, self.tls, self.address) == (port, mode == "public", address)

    def wait_ready(self, timeout, stop=None):
        """Until an HTTP request through the forward gets an answer (True); False if ssh gives
        up, TIMEOUT passes, or STOP (an Event) is set first."""
        import urllib.error  # here, not at the top: a run that forwards nothing does not load them
        import urllib.request

        handlers = [urllib.request.ProxyHandler({})]
        if self.scheme == "https":
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # any answer will do: the name is localhost here
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            handlers.append(urllib.request.HTTPSHandler(context=context))
        opener = urllib.request.build_opener(*handlers)
        deadline = time.monotonic() + timeout
        while not (stop and stop.is_set()):
            if not self.running():
                return False
            if listener_owner_is(self.owner_pid, self.local_port) is False:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.01)  # ssh is still logging in; whatever answers there now is not ours
                continue
            try:
                opener.open(f"{self.scheme}://127.0.0.1:{self.local_port}/api", timeout=5).close()
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

    def adopt(self, other):
        """Take over another Tunnel's ssh child or forward (after a reconnection)."""
        self.__class__ = other.__class__
        self.__dict__.update(other.__dict__)
        with _live_lock:
            _live.discard(other)
            _live.add(self)

    def close(self):
        """End the ssh child; the local port is free again when this returns."""
        with _live_lock:
            _live.discard(self)
        openssh.end_process(self.proc)

    def port_was_busy(self):
        return self.proc.poll() is not None and any(
            "Address already in use" in line or "cannot listen to port" in line for line in self.errors
        )

    def failure(self):
        lines = [line for line in self.errors if line.strip()]
        if self.port_was_busy():
            return f"local port {self.local_port} is busy; choose another with --local-port"
        if self.proc.poll() is None:
            return "the forward did not answer in time"
        return f"ssh exited ({lines[-1] if lines else f'status {self.proc.returncode}'})"


class MuxTunnel(Tunnel):
    """A forward added to the host's OpenSSH master (`ssh -O forward`), which listens for it;
    closing removes it (`ssh -O cancel`) and leaves the master and its other sessions alone."""

    def __init__(self, route, label, local_port, remote_port, tls=False, address=None):
        self.spec = self._describe(local_port, remote_port, tls, address)
        self.route = route
        self.errors = []
        self.ready = False
        self.target_gone = False
        self.guard = None
        route.ensure(label)
        self.generation = route.generation
        code, said = route.control("forward", "-L", self.spec)
        self.added = code == 0
        if not self.added:
            self.errors.append(said or f"ssh -O forward exited {code}")
        self.master = route.master_pid() if self.added else None
        with _live_lock:
            _live.add(self)

    @property
    def owner_pid(self):
        return self.master

    def running(self):
        """While the forward is there: added, on the master that is still alive."""
        if not self.added:
            return False
        with self.route.lock:
            return self.route.alive() and self.route.generation == self.generation

    def refused(self):
        return False

    def close(self):
        with _live_lock:
            _live.discard(self)
        if self.running():
            self.route.control("cancel", "-L", self.spec)
        self.added = False

    def port_was_busy(self):
        return not self.added and any("forwarding failed" in line.lower() for line in self.errors)

    def failure(self):
        if self.port_was_busy():
            return f"local port {self.local_port} is busy; choose another with --local-port"
        if self.added and not self.running():
            return "the SSH master connection ended"
        return self.errors[-1] if self.errors else "the forward did not answer in time"


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
        threading.Thread(target=self._watch, args=(t, tun.remote_port, tun.address), daemon=True).start()

    def _watch(self, t, port, address):
        try:
            gone = run_agent(t, "watch", port=port, address=address).gone
            self.reason = self.WORDS.get(gone, gone)
        except BaseException as e:  # noqa: B036 (whatever ended the watch, the forward goes)
            self.lost = f"the watch on the host ended: {e.message if isinstance(e, HostError) else e}"
        if self.tun.guard is self:
            self.tun.close()


def make_tunnel(t, local_port, where, speculative=False):
    """A forward from LOCAL_PORT to WHERE (port or socket, mode, address) on host T: through its
    master on the OpenSSH path, else its own `ssh -N -L` (which, on a guess, asks nothing). Only
    a socket may be guessed; a port is forwarded once confirmed, and watched (Guard)."""
    port, mode, address = where
    if speculative and not is_socket(port):
        raise ValueError("a TCP port is forwarded only once the host confirmed it")
    route = openssh.route_for(t.conn, t.settings)
    if route is not None:
        tun = MuxTunnel(route, t.label, local_port, port, tls=mode == "public", address=address)
    else:
        tun = Tunnel(t.conn, local_port, port, tls=mode == "public", address=address, batch=speculative)
    if not is_socket(port) and tun.running():
        tun.guard = Guard(t, tun)
    return tun


def close_all():
    """End every forward still open (a group's, when it ends or is interrupted)."""
    with _live_lock:
        live = list(_live)
    for tun in live:
        tun.close()


_taken_lock = threading.Lock()  # a group's threads choose local ports from one set


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
        with _taken_lock:
            moved = next_free_port(tun.local_port, taken)
            if moved is not None and isinstance(taken, set):
                taken.add(moved)
        if moved is None:
            return None, f"local ports {tun.local_port}-{tun.local_port + 99} are all busy"
        print(f"{t.label}: local port {tun.local_port} was taken meanwhile; using {moved}", flush=True)
        tun = make_tunnel(t, moved, (tun.remote_port, "public" if tun.tls else "ssh", tun.address))


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
    if seen and is_socket(seen[0]):
        return seen
    return None


def open_confirmed(t, local_port, pinned, taken=()):
    """A forward from LOCAL_PORT to T's Jupyter, never to another server: a forward to the socket
    seen last starts while the host is asked where its Jupyter runs (by the agent, which knows its
    pid), and is kept only if that is where it points; else (and for a port, always) the forward
    is made once the host has said. Returns (Tunnel or None, error or None, where); the host's own error is raised."""
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


def _seen_file():
    return config_path("last-seen.json")


def _seen_key(t):
    return f"{t.conn.user}@{t.conn.host}:{t.conn.port}/{t.name}"


def last_seen(t):
    """(port or socket, mode, address) where this host's Jupyter was last confirmed, or None."""
    try:
        entry = read_record(_seen_file()).get(_seen_key(t))
        where, mode, address = entry["where"], entry["mode"], entry["address"]
    except (AttributeError, KeyError, TypeError):
        return None
    if isinstance(where, bool) or not isinstance(where, (int, str)) or mode not in ("ssh", "public"):
        return None
    if not (address is None or isinstance(address, str)):
        return None
    return where, mode, address


def remember_seen(found):
    """Record where Jupyter was confirmed: (Target, where) pairs, one write for a whole group."""
    if found:
        update_record(_seen_file(), {_seen_key(t): {"where": where, "mode": mode, "address": address}
                                     for t, (where, mode, address) in found})


def _ports_file():
    return config_path("local-ports.json")


def _saved_ports():
    return read_record(_ports_file())


def remember_ports(ports):
    update_record(_ports_file(), ports)


def group_local_ports(targets):
    """A local port per host: its own local_port from hosts.yaml (pinned), else the one it had
    last time (remembered in ~/.config/fabjupyter/local-ports.json), else the next free one from
    8888. Returns (ports by label, the labels whose port is pinned)."""
    saved = _saved_ports()
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


def all_instances(c, group, workers, name):
    """--all: a Target per running instance of this tool on the host (or on each host of the
    group), each already known to run where `list` said; and the hosts that could not be asked."""
    hosts = group_targets(c, group, name=name) if group is not None else [target(c, name=name)]
    found, failed = [], {}

    def ask(t):
        listed = run_agent(t, "list")
        subs = []
        for one in listed.instances:
            if one.status.running:
                sub = t.instance(one.name)
                remember(sub, one.status)
                subs.append(sub)
        return subs

    with ThreadPoolExecutor(max_workers=fleet.pool_size(len(hosts), workers)) as pool:
        futures = [(t, pool.submit(ask, t)) for t in hosts]
    for t, future in futures:
        try:
            found += future.result()
        except UserError as e:
            failed[t.label] = e.message if isinstance(e, HostError) else str(e)
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
    # each forward holds its ssh's stderr here, and each host being asked its SSH socket
    fleet.room_for_files(fleet.FILES_SPARE + len(targets) + fleet.FILES_PER_HOST * size)

    def one(t):
        try:
            with _taken_lock:
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
        futures = {pool.submit(one, t): t for t in targets}
        for future in as_completed(futures):
            t = futures[future]
            try:
                tun, error, where = future.result()
            except UserError as e:
                results[t.label] = (False, e.message if isinstance(e, HostError) else str(e))
                continue
            if tun is None:
                results[t.label] = (False, error)
                continue
            tunnels[t.label] = tun
            found.append((t, where))
            ports[t.label] = tun.local_port
            results[t.label] = (True, tun.url)
        remember_ports({label: port for label, port in ports.items() if label not in pinned})
        remember_seen(found)
        rows = [("host", "URL (log in with its password) or error")] + [
            (label, ("" if results[label][0] else "FAILED  ") + results[label][1]) for label in labels
        ]
        width = max(len(r[0]) for r in rows)
        print("\n".join(f"{a:<{width}}  {b}" for a, b in rows), flush=True)
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


@task(
    help={
        "local-port": "port on this machine (default from hosts.yaml or 8888; if given here and busy, an error)",
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


BACKOFF = (0.5, 1, 2, 4, 5)  # seconds between reconnection attempts; the last one repeats
CHECK_EVERY = 10  # seconds between checks that Jupyter still listens on the forwarded port


def keep_alive(t, tun):
    """Watch the forward until Ctrl-C: when the SSH connection drops (sshd restarted, network
    gone, laptop slept) reconnect with backoff on the same local port; when Jupyter answers on
    another port (restarted elsewhere), follow it. One line per event."""
    checked = time.monotonic()
    while True:
        time.sleep(0.05 if tun.guard else 0.2)
        if tun.running():
            since = time.monotonic() - checked
            # ask where Jupyter is: soon after a refused forward, and every CHECK_EVERY seconds
            if not (tun.target_gone and since > 2) and since < CHECK_EVERY:
                continue
            checked, tun.target_gone = time.monotonic(), False
            try:
                port, mode, address = ask_where(t)
            except AuthError:
                raise
            except NotRunning as e:
                # not running (any more): no forward until it runs again and the host says where
                tun.close()
                print(f"{t.label}: {e.message if isinstance(e, HostError) else e}; the tunnel waits for it, forwarding nothing",
                      flush=True)
                _reconnect(t, tun)
                continue
            except UserError as e:
                print(f"{t.label}: {e.message if isinstance(e, HostError) else e}", flush=True)
                continue
            if tun.points_to((port, mode, address)):
                continue
            there = f"{address}:{port} (a new job)" if address else where_words(port, mode)
            print(f"{t.label}: Jupyter moved to {there}; following it", flush=True)
            tun.close()
        elif tun.guard and tun.guard.reason:
            print(f"{t.label}: Jupyter {tun.guard.reason}; the forward to it is closed until the host confirms where it runs",
                  flush=True)
        else:
            why = tun.guard.lost if tun.guard and tun.guard.lost else tun.failure()
            print(f"{t.label}: connection lost ({why}); reconnecting", flush=True)
        _reconnect(t, tun)


def where_words(port, mode):
    if is_socket(port):
        return f"the Unix socket {port} on the host"
    return f"port {port} on the host" + (" (public mode, HTTPS)" if mode == "public" else "")


def _reconnect(t, tun):
    """Until the forward answers again, with backoff. Each attempt logs in at most once (asking
    on the terminal, where the host asks); a refused login ends the tunnel, said, not retried.
    The forward is made only to where the host says its Jupyter runs now."""
    attempt = 0
    while True:
        time.sleep(BACKOFF[min(attempt, len(BACKOFF) - 1)])
        attempt += 1
        try:
            port, mode, address = ask_where(t)
        except AuthError:
            raise
        except UserError:
            continue
        try:
            fresh = make_tunnel(t, tun.local_port, (port, mode, address))
        except AuthError:
            raise
        except UserError:
            continue
        if not fresh.wait_ready(READY_TIMEOUT) and fresh.refused():
            fresh.close()
            raise AuthError(t.label, "refused", reason=f"ssh said: {fresh.failure()}")
        if fresh.ready:
            tun.adopt(fresh)
            remember_seen([(t, (port, mode, address))])
            print(f"{t.label}: reconnected; Jupyter is at {tun.url} again", flush=True)
            return
        fresh.close()
