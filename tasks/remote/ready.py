"""The checks after Jupyter starts, in Jupyter's own Python: wait until the server answers over
HTTP, then make sure that the server answering is the process started and that its effective
settings are ours, whatever the user's own config files say. Only the standard library, and
nothing here needs the password: the checks are the ones anyone could make.

`check(target)` answers `ready PID` (the pid of the process that serves), `died`, `timeout`, or
`unsafe REASON` (the server runs, but not as we said: it is stopped). The agent calls it after a
start; a batch job runs it on its node, from the files the agent writes beside its job
(lib/fabjupyter_remote/), as bootstrap.sh's fj_job does:

    python -m fabjupyter_remote.ready port ADDR FIRST CONFIG_PATH CONFIG
    python -m fabjupyter_remote.ready job JOB_ID NODE ADDR PORT PID TIMEOUT RUNTIME_DIR WHERE

The first writes the job's settings file (Jupyter listens on ADDR only) and prints a free port
from FIRST on; the second makes the same checks at ADDR (where the job's Jupyter listens, not the
loopback), then writes WHERE (job.where, which the agent on the login node reads) with the job's
verdict as one JSON object: {"job_id", "ours": true, "node", "address", "port", "pid"} once the
process listening on PORT is the Jupyter the job started (the proof the agent asks for before
anyone logs in), else {"job_id", "failed": "port_taken" | "unsafe" | "died" | "timeout",
"detail"}. Exit status 0 for the first, 1 for the second: the job then stops Jupyter and ends."""

import glob
import json
import os
import socket
import sys
import time

from . import net


START_ENV = "FABJUPYTER_START"  # a container's start: its mark in Jupyter's environment (containers.py)


class Target:
    """The server started and where it was told to listen: PORT on IP, or the Unix socket SOCK;
    asked over TCP at HOST (a batch job's Jupyter listens on its node's address only). ALIVE
    says whether a pid still runs (the agent knows its own child's end at once). MARK: the
    start's mark in the environment of a container's Jupyter, which is no child of the pid
    started (podman's runs under conmon)."""

    def __init__(self, pid, port=0, sock="", ip="127.0.0.1", host="127.0.0.1", tls=False, timeout=60.0, runtime_dir="",
                 alive=net.alive, mark=None):
        self.pid, self.port, self.sock, self.ip, self.host = pid, port or 0, sock, ip, host
        self.tls, self.timeout, self.runtime_dir, self.alive = tls, timeout, runtime_dir, alive
        self.mark = mark
        # a real TLS handshake: a key that does not match the certificate fails here
        self.wrap = net.unverified_tls().wrap_socket if tls else None


def request(t, path, headers=()):
    """(status, {header: value}) of a GET, raw HTTP/1.0 over the port or socket."""
    s = socket.socket(socket.AF_UNIX) if t.sock else socket.create_connection((t.host, t.port), timeout=2)
    try:
        s.settimeout(2)
        if t.sock:
            s.connect(t.sock)
        if t.wrap:
            s = t.wrap(s)
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


def listening(t):
    """Socket inodes that listen where we said (None where /proc cannot tell: not Linux)."""
    return net.listening_inodes(port=t.port, sock=t.sock or None)


def serving_pid(t):
    """The pid (ours or a child of ours; for a container, a process of this user's with the
    start's mark) that holds the listening socket; None if another process does; pid itself
    where the system cannot tell."""
    inodes = listening(t)
    if inodes is None:
        return t.pid
    if t.mark:
        for p in net.own_pids():
            if inodes.intersection(net.socket_inodes(p)) and net.environ_has(p, "%s=%s" % (START_ENV, t.mark)):
                return p
        return None
    if not os.path.isdir("/proc/%d/fd" % t.pid):
        # gone (it lost the port to another server and exited), or /proc hides it
        return None if not t.alive(t.pid) else t.pid
    for p in net.family(t.pid):
        if inodes.intersection(net.socket_inodes(p)):
            return p
    return None


def runtime_info(t, p, tries=40, dirs=None):
    """Jupyter's own record of the running server (jpserver-PID.json, nbserver-PID.json)."""
    for _ in range(tries):  # written just before the port binds; allow for a slow disk
        for d in dirs or [t.runtime_dir]:
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

            return runtime_info(t, p, 1, [jupyter_runtime_dir()])
        except Exception:
            pass
    return None


def misplaced(t, info):
    """Where the runtime file says it listens, if that is not where we said."""
    if t.sock:
        return [] if info.get("sock") == t.sock else ["it does not listen on the socket %s" % t.sock]
    found = []
    if info.get("hostname") != t.ip:
        found.append("it listens on %s, not %s (ip)" % (info.get("hostname"), t.ip))
    if info.get("port") != t.port:
        found.append("it listens on port %s, not %d (port)" % (info.get("port"), t.port))
    return found


def problems(t, p):
    """What differs from the settings we gave (an empty list: nothing)."""
    info = runtime_info(t, p)
    if info is None:
        return ["its runtime file (jpserver-%d.json) is not in %s, so its settings cannot be checked "
                "(is runtime_dir set in a config file?)" % (p, t.runtime_dir)]
    found = misplaced(t, info)
    if info.get("token"):
        found.append("it accepts a token (set as token in a config file)")
    if info.get("base_url", "/") != "/":
        found.append("its base_url is %s, not / (base_url)" % info.get("base_url"))
        return found  # the checks below ask for /api
    if bool(info.get("secure")) != t.tls:
        found.append("TLS is %s (certfile, keyfile)" % ("on" if info.get("secure") else "off"))
    status, _ = request(t, "/api/status")
    if status != 403:
        found.append("its API answers without a password (HTTP %d; password_required, identity provider or login handler)" % status)
    _, headers = request(t, "/api", [("Origin", "https://fabjupyter-origin-check.invalid")])
    if headers.get("access-control-allow-origin"):
        found.append("it allows requests from other web sites (allow_origin)")
    if t.ip == "127.0.0.1":
        status, _ = request(t, "/api", [("Host", "fabjupyter-host-check.invalid")])
        if status != 403:
            found.append("it answers requests for other host names (allow_remote_access, local_hostnames)")
    return found


def check(t):
    """Wait until the server answers (up to t.timeout s), then whether it is ours and as we said."""
    deadline = time.monotonic() + t.timeout
    while True:
        try:
            request(t, "/api")
            break
        except OSError:  # ssl.SSLError is an OSError too
            pass
        if not t.alive(t.pid):
            return "died"
        info = runtime_info(t, t.pid, 1, [t.runtime_dir])  # it says where it listens before it listens
        if info and misplaced(t, info):
            return "unsafe " + "; ".join(misplaced(t, info))
        if time.monotonic() > deadline:
            return "timeout"
        time.sleep(0.05)
    # Something answers; is it ours? (One that lost the port to another server dies at once.)
    settle = time.monotonic() + 3
    while True:
        p = serving_pid(t)
        if p is not None:
            break
        if not t.alive(t.pid):
            return "died"
        if time.monotonic() > settle:
            return "unsafe another process answers at %s, not the Jupyter started (pid %d)" % (t.sock or "port %d" % t.port, t.pid)
        time.sleep(0.05)
    found = problems(t, p)
    if found:
        return "unsafe " + "; ".join(found)
    return "ready %d" % p


# --- in a batch job, on its node ----------------------------------------------------------------

def job_verdict(t, result, job_id, node):
    """job.where's record for a batch job: where its Jupyter listens, checked to be the process
    the job started; or why not (another process on the port: whoever it is must never see the
    user's login)."""
    if result.startswith("ready "):
        return {"job_id": job_id, "ours": True, "node": node, "address": t.ip, "port": t.port, "pid": int(result.split()[1])}
    record = {"job_id": job_id, "failed": result.split()[0], "detail": result.partition(" ")[2]}
    # died: its bind failed, and whoever listens on the port now is not the Jupyter started
    if result.startswith("unsafe another process") or (result == "died" and listening(t)):
        record.update(failed="port_taken", detail="port %d on %s" % (t.port, node))
    return record


def job_check(argv):
    """JOB_ID NODE ADDR PORT PID TIMEOUT RUNTIME_DIR WHERE: the checks, and the verdict to WHERE."""
    job_id, node, ip = argv[0], argv[1], argv[2]
    where = argv[7]
    t = Target(int(argv[4]), port=int(argv[3]), ip=ip, host=ip, timeout=float(argv[5]), runtime_dir=argv[6],
               mark=os.environ.get(START_ENV) or None)
    try:
        record = job_verdict(t, check(t), job_id, node)
    except Exception as e:  # a bug here: the job must not serve unchecked
        record = {"job_id": job_id, "failed": "unsafe", "detail": "the check in the job failed (%s: %s)" % (type(e).__name__, e)}
    if record.get("ours"):
        print("fabjupyter: checked: pid %d, started by job %s, listens on %s:%d" % (record["pid"], job_id, ip, t.port))
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


def job_port(argv):
    """ADDR FIRST CONFIG_PATH CONFIG: the job's settings file (CONFIG with @ADDR@ replaced), and a
    free port on ADDR from FIRST on (else any the system gives), printed."""
    addr, first, path, config = argv[0], int(argv[1]), argv[2], argv[3]
    with open(path, "w") as f:
        f.write(config.replace("@ADDR@", addr))
    port = net.first_free_port(first, addr)
    if port is None:
        s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
        try:
            s.bind((addr, 0))
            port = s.getsockname()[1]
        finally:
            s.close()
    print(port)
    return 0


if __name__ == "__main__":
    sys.exit({"job": job_check, "port": job_port}[sys.argv[1]](sys.argv[2:]))
