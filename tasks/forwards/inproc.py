"""The forward carried by this process, over the host's one login on this console (a
ConsoleRoute, ssh/console.py), where no OpenSSH master can carry it: a listening socket on
127.0.0.1 here, and for each connection to it a channel of that login to Jupyter (a TCP port:
`direct-tcpip`; a Unix socket: OpenSSH's `direct-streamlocal@openssh.com`), the bytes moved by a
thread per connection. Slower than OpenSSH for large transfers (docs: Benchmarks); Jupyter's
traffic is small."""

import os
import select
import socket
import threading
import time

import paramiko
from paramiko.channel import Channel
from paramiko.common import cMSG_CHANNEL_OPEN
from paramiko.message import Message

CHUNK = 65536


def open_streamlocal(transport, path, timeout=30):
    """A channel to the Unix socket PATH on the host: OpenSSH's direct-streamlocal@openssh.com
    (PROTOCOL, 2.4), which paramiko's open_channel does not write. Its steps, with the socket's
    path (and the two reserved fields) where direct-tcpip has its addresses."""
    if not transport.is_active():
        raise paramiko.SSHException("SSH session not active")
    with transport.lock:
        window = transport._sanitize_window_size(None)
        packet = transport._sanitize_packet_size(None)
        chanid = transport._next_channel()
        m = Message()
        m.add_byte(cMSG_CHANNEL_OPEN)
        m.add_string("direct-streamlocal@openssh.com")
        m.add_int(chanid)
        m.add_int(window)
        m.add_int(packet)
        m.add_string(path)
        m.add_string("")
        m.add_int(0)
        chan = Channel(chanid)
        transport._channels.put(chanid, chan)
        transport.channel_events[chanid] = event = threading.Event()
        transport.channels_seen[chanid] = True
        chan._set_transport(transport)
        chan._set_window(window, packet)
    transport._send_user_message(m)
    deadline = time.monotonic() + timeout
    while not event.wait(0.1):
        if not transport.is_active():
            raise transport.get_exception() or paramiko.SSHException("Unable to open channel.")
        if time.monotonic() > deadline:
            raise paramiko.SSHException("Timeout opening channel.")
    chan = transport._channels.get(chanid)
    if chan is None:
        raise transport.get_exception() or paramiko.SSHException("Unable to open channel.")
    return chan


class InprocForward:
    """LOCAL_PORT on 127.0.0.1 forwarded to WHERE (a Where) over ROUTE's login, made first if
    need be (asking on this console, once per run)."""

    def __init__(self, route, t, local_port, where, heard):
        self.route = route
        self.where = where
        self.errors = []
        self._heard = heard
        self._closed = threading.Event()
        self._pairs = set()
        self._lock = threading.Lock()
        self.owner_pid = os.getpid()  # this process listens
        self.busy = False
        self.transport = route.ensure(t)
        self.generation = route.generation
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as ssh binds
        try:
            self.listener.bind(("127.0.0.1", local_port))
            self.listener.listen(64)
        except OSError as e:
            self.listener.close()
            self.busy = True
            self.errors.append(f"cannot listen on 127.0.0.1:{local_port}: {e.strerror}")
            self._closed.set()
            return
        threading.Thread(target=self._accept, daemon=True).start()

    def _channel(self):
        w = self.where
        if w.socket:
            return open_streamlocal(self.transport, w.at)
        return self.transport.open_channel("direct-tcpip", (w.address or "127.0.0.1", int(w.at)), ("127.0.0.1", 0),
                                           timeout=30)

    def _accept(self):
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        try:
            chan = self._channel()
        except (paramiko.SSHException, OSError, EOFError) as e:
            line = f"channel open failed: {e}"
            self.errors.append(line)
            self._heard(line)
            client.close()
            return
        with self._lock:
            self._pairs.add((client, chan))
        try:
            _pump(client, chan, self._closed)
        finally:
            with self._lock:
                self._pairs.discard((client, chan))
            chan.close()
            client.close()

    def running(self):
        alive = not self._closed.is_set() and self.transport.is_active() and self.route.generation == self.generation
        if not alive and not self._closed.is_set():
            self.close()  # the login is gone: free the port for the forward that replaces this one
        return alive

    def bound(self):
        return not self.busy  # this process bound the port before it returned

    def refused(self):
        return False  # the login was made, or refused (said) before the forward existed

    def port_was_busy(self):
        return self.busy

    def close(self):
        """Stop listening and end every connection; the local port is free again on return."""
        self._closed.set()
        try:
            # shutdown first: a close() alone leaves the socket listening while the accept thread
            # is blocked in accept() on it (Linux), and the next forward could not bind the port
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        with self._lock:
            pairs = list(self._pairs)
        for client, chan in pairs:
            chan.close()
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            client.close()

    def failure(self):
        if not self.busy and not self.transport.is_active():
            return "the SSH connection ended"
        return self.errors[-1] if self.errors else "the forward did not answer in time"


def _pump(client, chan, closed):
    """Bytes both ways between CLIENT (a socket) and CHAN until either side ends."""
    client_open = chan_open = True
    while (client_open or chan_open) and not closed.is_set():
        watched = [s for s, live in ((client, client_open), (chan, chan_open)) if live]
        ready, _, _ = select.select(watched, [], [], 1.0)
        for source in ready:
            sink = chan if source is client else client
            try:
                data = source.recv(CHUNK)
            except OSError:
                data = b""
            if data:
                try:
                    sink.sendall(data)
                except OSError:
                    return
                continue
            # this side is done sending: pass the end on, and keep reading the other way
            if source is client:
                client_open = False
                chan.shutdown_write()
            else:
                chan_open = False
                try:
                    client.shutdown(socket.SHUT_WR)
                except OSError:
                    return
