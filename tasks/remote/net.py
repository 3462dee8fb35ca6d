"""Ports, listeners and processes, one helper each, for both sides: the agent and the job script
on the host, and the tunnel on the client (standard library only, Python 3.6+)."""

import os
import socket

PORT_SPAN = 100  # ports looked at after the one asked for, before giving up


def port_is_free(port, ip="127.0.0.1"):
    """Whether PORT can be bound on IP now, as a server binds it (SO_REUSEADDR, like Tornado and
    ssh's listener: a port in TIME_WAIT is free)."""
    s = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((ip, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def first_free_port(first, ip="127.0.0.1", taken=()):
    """FIRST, or the first free port after it (not in TAKEN) within PORT_SPAN; None if none."""
    for port in range(first, min(first + PORT_SPAN, 65536)):
        if port not in taken and port_is_free(port, ip):
            return port
    return None


def unverified_tls():
    """A TLS client context that does a real handshake (a key that does not fit its certificate
    fails) but checks neither name nor issuer: for our own server's self-signed certificate,
    reached on localhost or a node's address, whose identity is checked otherwise (the pid that
    holds the socket, the forward we started)."""
    import ssl  # here: most runs speak plain HTTP

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def listening_inodes(port=None, sock=None, loopback_only=False):
    """Inodes of the sockets that listen on TCP PORT (any address, or 127.0.0.1 only) or on the
    Unix socket path SOCK, from /proc; None where /proc cannot tell (not Linux)."""
    inodes = set()
    try:
        if sock:
            with open("/proc/net/unix") as f:
                for line in f.read().splitlines()[1:]:
                    parts = line.split()
                    if len(parts) >= 8 and parts[7] == sock:
                        inodes.add(parts[6])
            return inodes
        read = 0
        for name in ("/proc/net/tcp",) if loopback_only else ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(name) as f:
                    rows = f.read().splitlines()[1:]
            except FileNotFoundError:
                continue  # tcp6: a kernel without IPv6
            read += 1
            for line in rows:
                parts = line.split()
                address, _, hex_port = parts[1].rpartition(":")
                if parts[3] != "0A" or (loopback_only and address != "0100007F"):  # 0A: LISTEN
                    continue
                if port is None or int(hex_port, 16) == port:
                    inodes.add(parts[9] if port is not None else (int(hex_port, 16), parts[9]))
        if not read:
            # no /proc/net/tcp at all (macOS, Windows, an empty /proc): cannot tell, which is not
            # "nothing listens" (a forward would then never count as ours, and never be used)
            return None
    except OSError:
        return None
    return inodes


def holds_socket(pid, inodes):
    """Whether process PID has one of the socket INODES open (/proc/PID/fd)."""
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return True
    return False


def process_state(pid):
    """The state letter of PID in /proc (R, S, D, Z, ...), None if it cannot be read."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        pass
    import subprocess  # not Linux: ps knows

    try:
        out = subprocess.check_output(["ps", "-p", str(pid), "-o", "args="], stderr=subprocess.DEVNULL)
        return out.decode("utf-8", "replace")
    except (OSError, subprocess.CalledProcessError):
        return ""


def alive(pid, command=None):
    """Is PID a live process of ours (not a zombie, not another user's), and, given COMMAND, one
    whose command line names it (not a recycled pid of something else)?"""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    if process_state(pid) == "Z":  # exited, not yet reaped by its parent: serves nothing
        return False
    return command is None or command in cmdline(pid)


def family(root):
    """root and its descendants (Linux /proc), root first."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        p = todo.pop(0)
        found.append(p)
        todo += children.get(p, [])
    return found


def own_pids():
    """The processes of this user (Linux /proc), by their real uid."""
    me, found = os.getuid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat("/proc/" + entry).st_uid == me:
                    found.append(int(entry))
            except OSError:
                continue
    return found


def environ_has(p, item):
    """Whether process P's environment holds ITEM (NAME=VALUE): only a process of ours can be read."""
    try:
        with open("/proc/%d/environ" % p, "rb") as f:
            return item.encode() in f.read().split(b"\0")
    except OSError:
        return False


def socket_inodes(p):
    """The inodes of the sockets process P holds (none where /proc cannot tell)."""
    found = []
    try:
        fds = os.listdir("/proc/%d/fd" % p)
    except OSError:
        return found
    for fd in fds:
        try:
            target = os.readlink("/proc/%d/fd/%s" % (p, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            found.append(target[8:-1])
    return found
