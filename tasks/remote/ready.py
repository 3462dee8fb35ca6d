"""Run on the host, in Jupyter's own Python, by the agent after it launched Jupyter: wait until the
server answers over HTTP, then make sure that the server answering is the process we started and
that its effective settings are ours, whatever the user's own config files say.

    python - PORT PID TIMEOUT TLS SOCK IP RUNTIME_DIR < ready.py

Prints one line: `ready PID` (the pid of the process that serves), `died`, `timeout`, or
`unsafe REASON` (the server runs, but not as we said: the agent stops it). Only the standard
library, and nothing here needs the password: the checks are the ones anyone could make.

In a batch job, on its node (bootstrap.sh's fj_job, while the job script waits for Jupyter):

    python ready.py job JOB_ID NODE ADDR PORT PID TIMEOUT RUNTIME_DIR WHERE

the same checks, at ADDR (where the job's Jupyter listens, not the loopback); then WHERE
(job.where, which the agent on the login node reads) gets the job's verdict as one JSON object:
{"job_id", "ours": true, "node", "address", "port", "pid"} once the process listening on PORT is
the Jupyter the job started (the proof the agent asks for before anyone logs in), else
{"job_id", "failed": "port_taken" | "unsafe" | "died" | "timeout", "detail"}. Exit status 0 for
the first, 1 for the second: the job then stops Jupyter and ends."""

import glob
import json
import os
import socket
import sys
import time

port = pid = timeout = 0
tls, sock, ip, runtime_dir, wrap = False, "", "", "", None
host = "127.0.0.1"  # where to ask it over TCP: a batch job's Jupyter listens on its node's address only


def request(path, headers=()):
    """(status, {header: value}) of a GET, raw HTTP/1.0 over the port or socket."""
    s = socket.socket(socket.AF_UNIX) if sock else socket.create_connection((host, port), timeout=2)
    try:
        s.settimeout(2)
        if sock:
            s.connect(sock)
        if wrap:
            s = wrap(s)
        lines = ["GET %s HTTP/1.0" % path, "Host: %s" % dict(headers).get("Host", "localhost")]
        lines += ["%s: %s" % (k, v) for k, v in headers if k != "Host"]
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    if not head[0].startswith("HTTP/"):
        raise OSError("no HTTP answer")
    fields = dict(line.split(":", 1) for line in head[1:] if ":" in line)
    return int(head[0].split()[1]), {k.strip().lower(): v.strip() for k, v in fields.items()}


def alive(p):
    try:
        os.kill(p, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:  # a zombie (exited, not yet reaped by its parent) serves nothing
        with open("/proc/%d/stat" % p) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


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


def listening_inodes():
    """Socket inodes that listen where we said (None where /proc cannot tell: not Linux)."""
    inodes = set()
    try:
        if sock:
            with open("/proc/net/unix") as f:
                for line in f.read().splitlines()[1:]:
                    parts = line.split()
                    if len(parts) >= 8 and parts[7] == sock:
                        inodes.add(parts[6])
        else:
            for name in ("/proc/net/tcp", "/proc/net/tcp6"):
                try:
                    with open(name) as f:
                        rows = f.read().splitlines()[1:]
                except FileNotFoundError:
                    continue
                for line in rows:
                    parts = line.split()
                    if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(parts[9])
    except OSError:
        return None
    return inodes


def serving_pid():
    """The pid (ours or a child of ours) that holds the listening socket; None if another
    process does; pid itself where the system cannot tell."""
    inodes = listening_inodes()
    if inodes is None:
        return pid
    if not os.path.isdir("/proc/%d/fd" % pid):
        # gone (it lost the port to another server and exited), or /proc hides it
        return None if not alive(pid) else pid
    for p in family(pid):
        if inodes.intersection(socket_inodes(p)):
            return p
    return None


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


def runtime_info(p, tries=40, dirs=None):
    """Jupyter's own record of the running server (jpserver-PID.json, nbserver-PID.json)."""
    for _ in range(tries):  # written just before the port binds; allow for a slow disk
        for d in dirs or [runtime_dir]:
            for path in glob.glob(os.path.join(d, "*server-%d.json" % p)):
                try:
                    with open(path) as f:
                        return json.load(f)
                except (OSError, ValueError):
                    pass
        time.sleep(0.05)
    if dirs is None:
        try:  # where jupyter_core itself says, should run.sh's reading of its rule differ
            from jupyter_core.paths import jupyter_runtime_dir

            return runtime_info(p, 1, [jupyter_runtime_dir()])
        except Exception:
            pass
    return None


def misplaced(info):
    """Where the runtime file says it listens, if that is not where we said."""
    if sock:
        return [] if info.get("sock") == sock else ["it does not listen on the socket %s" % sock]
    found = []
    if info.get("hostname") != ip:
        found.append("it listens on %s, not %s (ip)" % (info.get("hostname"), ip))
    if info.get("port") != port:
        found.append("it listens on port %s, not %d (port)" % (info.get("port"), port))
    return found


def problems(p):
    """What differs from the settings we gave (an empty list: nothing)."""
    info = runtime_info(p)
    if info is None:
        return ["its runtime file (jpserver-%d.json) is not in %s, so its settings cannot be checked "
                "(is runtime_dir set in a config file?)" % (p, runtime_dir)]
    found = misplaced(info)
    if info.get("token"):
        found.append("it accepts a token (set as token in a config file)")
    if info.get("base_url", "/") != "/":
        found.append("its base_url is %s, not / (base_url)" % info.get("base_url"))
        return found  # the checks below ask for /api
    if bool(info.get("secure")) != tls:
        found.append("TLS is %s (certfile, keyfile)" % ("on" if info.get("secure") else "off"))
    status, _ = request("/api/status")
    if status != 403:
        found.append("its API answers without a password (HTTP %d; password_required, identity provider or login handler)" % status)
    _, headers = request("/api", [("Origin", "https://fabjupyter-origin-check.invalid")])
    if headers.get("access-control-allow-origin"):
        found.append("it allows requests from other web sites (allow_origin)")
    if ip == "127.0.0.1":
        status, _ = request("/api", [("Host", "fabjupyter-host-check.invalid")])
        if status != 403:
            found.append("it answers requests for other host names (allow_remote_access, local_hostnames)")
    return found


def main():
    deadline = time.monotonic() + timeout
    while True:
        try:
            request("/api")
            break
        except OSError:  # ssl.SSLError is an OSError too
            pass
        if not alive(pid):
            return "died"
        info = runtime_info(pid, 1, [runtime_dir])  # it says where it listens before it listens
        if info and misplaced(info):
            return "unsafe " + "; ".join(misplaced(info))
        if time.monotonic() > deadline:
            return "timeout"
        time.sleep(0.05)
    # Something answers; is it ours? (One that lost the port to another server dies at once.)
    settle = time.monotonic() + 3
    while True:
        p = serving_pid()
        if p is not None:
            break
        if not alive(pid):
            return "died"
        if time.monotonic() > settle:
            return "unsafe another process answers at %s, not the Jupyter started (pid %d)" % (sock or "port %d" % port, pid)
        time.sleep(0.05)
    found = problems(p)
    if found:
        return "unsafe " + "; ".join(found)
    return "ready %d" % p


def job_verdict(result, job_id, node):
    """job.where's record for a batch job: where its Jupyter listens, checked to be the process
    the job started; or why not (another process on the port: whoever it is must never see the
    user's login)."""
    if result.startswith("ready "):
        return {"job_id": job_id, "ours": True, "node": node, "address": ip, "port": port, "pid": int(result.split()[1])}
    record = {"job_id": job_id, "failed": result.split()[0], "detail": result.partition(" ")[2]}
    # died: its bind failed, and whoever listens on the port now is not the Jupyter started
    if result.startswith("unsafe another process") or (result == "died" and listening_inodes()):
        record.update(failed="port_taken", detail="port %d on %s" % (port, node))
    return record


def job_main(argv):
    global port, pid, timeout, ip, host, runtime_dir
    job_id, node, ip = argv[0], argv[1], argv[2]
    port, pid, timeout, runtime_dir, where = int(argv[3]), int(argv[4]), float(argv[5]), argv[6], argv[7]
    host = ip
    try:
        record = job_verdict(main(), job_id, node)
    except Exception as e:  # a bug here: the job must not serve unchecked
        record = {"job_id": job_id, "failed": "unsafe", "detail": "the check in the job failed (%s: %s)" % (type(e).__name__, e)}
    if record.get("ours"):
        print("fabjupyter: checked: pid %d, started by job %s, listens on %s:%d" % (record["pid"], job_id, ip, port))
    else:
        print("fabjupyter: not serving: %s %s" % (record["failed"], record["detail"]))
    old = os.umask(0o077)
    try:
        with open(where + ".tmp", "w") as f:
            json.dump(record, f)
        os.replace(where + ".tmp", where)
    finally:
        os.umask(old)
    sys.stdout.flush()
    return 0 if record.get("ours") else 1


if __name__ == "__main__" and sys.argv[1:2] == ["job"]:
    sys.exit(job_main(sys.argv[2:]))
elif __name__ == "__main__":
    port, pid, timeout = int(sys.argv[1] or 0), int(sys.argv[2]), float(sys.argv[3])
    tls, sock, ip, runtime_dir = sys.argv[4] == "1", sys.argv[5], sys.argv[6], sys.argv[7]
    if tls:
        # a real TLS handshake: a key that does not match the certificate fails here
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        wrap = context.wrap_socket
    print(main())
