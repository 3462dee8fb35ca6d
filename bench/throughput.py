"""Through the forward: a download's throughput and a new connection's latency, the tunnel
against a raw `ssh -N -L` (and Fabric's own forward_local against the same, --extras)."""

import signal
import statistics
import time
import urllib.request

from tests.jupyter_http import Session
from tests.sshhost import free_port, wait_port

from .harness import PASSWORD, USER, ssh_forward, turns


def forward_figures(b, size_mib=200, requests=200, ours_host=USER, raw_host=USER, at="", goals=True, setup=True):
    """Both forwards open at once and measured in turns (ABBA), so that whatever else this
    machine does at a moment weighs on both alike. OURS_HOST: the name `fab tunnel` is given
    (a hosts.yaml entry with multiplex: true puts its forward on that host's master), RAW_HOST
    the ssh_config alias of the raw `ssh -N -L` (a login of its own: ControlMaster=no); AT: how
    far, in the labels; goals=False: the rows are context. Returns the fab tunnel's local port."""
    print(f"Through the forward, {at or 'no added delay'}:", flush=True)
    if setup:
        b.fab(USER, "setup", "--password-stdin", input=PASSWORD + "\n")
    target = b.target()
    b.host.as_user(USER, f"head -c {size_mib * 1024 * 1024} /dev/zero > big.bin")
    names = ("raw ssh -N -L", "fab tunnel")
    procs, sessions = [], {}
    try:
        for name in names:
            lp = free_port()
            if name == "fab tunnel":
                procs.append(b.fab_popen(ours_host, "tunnel", "--local-port", str(lp)))
                ours_port = lp
            else:
                procs.append(ssh_forward(b.host.ssh_config, raw_host, lp, target, ("-o", "ControlMaster=no", "-o", "ControlPath=none")))
            wait_port(lp, 30)
            b.until_authenticated(f"http://127.0.0.1:{lp}/")
            sessions[name] = Session(f"http://127.0.0.1:{lp}/")
            sessions[name].login(PASSWORD)

        measured = measure_in_turns(sessions, names, size_mib, requests)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.wait()
    raw, ours = (measured[n] for n in names)
    where = f", {at}" if at else ""
    b.row(f"tunnel throughput ({size_mib} MiB download, median of 4){where}", ours[0], raw[0], "raw ssh -N -L",
          ">= 0.9x" if goals else "(context, >= 0.9x)", ours[0] >= 0.9 * raw[0], unit="MiB/s")
    b.row(f"request latency, new connection (median of {requests}){where}", ours[1], raw[1], "raw ssh -N -L",
          "<= 1.2x" if goals else "(context, <= 1.2x)", ours[1] <= 1.2 * raw[1], unit="ms")
    return ours_port



def measure_in_turns(sessions, names, size_mib, requests, downloads=4):
    """Through each of SESSIONS (logged-in Sessions by name, all open at once), in turns (ABBA):
    DOWNLOADS downloads of big.bin and REQUESTS new connections. {name: (MiB/s, ms)}, medians."""

    def download(s):
        # /files/ wants a same-origin Referer, as a browser sends
        req = urllib.request.Request(s.base + "files/big.bin", headers={"Referer": s.base + "lab"})
        start = time.monotonic()
        with s.opener.open(req, timeout=600) as r:
            while r.read(1 << 20):
                pass
        return time.monotonic() - start

    def new_connection(s):
        start = time.monotonic()
        Session(s.base).get("api")  # a new connection each time
        return time.monotonic() - start

    secs, lat = {n: [] for n in names}, {n: [] for n in names}
    for i in range(downloads):
        for name in names if i % 2 == 0 else names[::-1]:
            secs[name].append(download(sessions[name]))
    for i in range(requests):
        for name in names if i % 2 == 0 else names[::-1]:
            lat[name].append(new_connection(sessions[name]))
    return {n: (size_mib / statistics.median(secs[n]), statistics.median(lat[n]) * 1000) for n in names}


def forward_local_figure(b, runs, size_mib=50, requests=20):
    """Fabric's Connection.forward_local (pure Python) against a raw `ssh -N -L` to the same
    Jupyter port, both open at once, in turns: download throughput and a new connection's
    latency (why the tunnel is an ssh process). Returns ((ours MiB/s, raw MiB/s), (ours ms, raw ms))."""
    import threading

    from fabric import Config, Connection

    b.hosts_file.write_text(f"hosts:\n  {USER}:\n    socket: false\n")  # forward_local reaches a TCP port only
    try:
        b.fab(USER, "setup", "--password-stdin", input=PASSWORD + "\n")
        jport = b.port()
    finally:
        b.hosts_file.write_text("")
    b.host.as_user(USER, f"head -c {size_mib * 1024 * 1024} /dev/zero > big.bin")
    conn = Connection(USER, config=Config(runtime_ssh_path=str(b.host.ssh_config)))
    fl_port, raw_port = free_port(), free_port()
    raw = ssh_forward(b.host.ssh_config, USER, raw_port, f"127.0.0.1:{jport}")
    opened, done = threading.Event(), threading.Event()

    def hold():
        with conn.forward_local(local_port=fl_port, remote_port=jport):
            opened.set()
            done.wait()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    try:
        if not opened.wait(30):
            raise RuntimeError("forward_local did not open")
        sessions = {}
        for name, lp in (("forward_local", fl_port), ("raw", raw_port)):
            wait_port(lp, 30)
            sessions[name] = Session(f"http://127.0.0.1:{lp}/")
            sessions[name].login(PASSWORD)

        def download(s):
            req = urllib.request.Request(s.base + "files/big.bin", headers={"Referer": s.base + "lab"})
            start = time.monotonic()
            with s.opener.open(req, timeout=300) as r:
                while r.read(1 << 20):
                    pass
            return size_mib / (time.monotonic() - start)

        def new_connection(s):
            start = time.monotonic()
            Session(s.base).get("api")
            return (time.monotonic() - start) * 1000

        speed = turns(runs, *(lambda s=sessions[n]: download(s) for n in ("forward_local", "raw")))
        latency = turns(requests, *(lambda s=sessions[n]: new_connection(s) for n in ("forward_local", "raw")))
    finally:
        done.set()
        holder.join(30)
        conn.close()
        raw.terminate()
        raw.wait()
    b.row(f"Fabric's forward_local: throughput ({size_mib} MiB download, median of {runs})", speed[0], speed[1], "raw ssh -N -L",
          "(context)", True, unit="MiB/s")
    b.row(f"Fabric's forward_local: request latency, new connection (median of {requests})", latency[0], latency[1],
          "raw ssh -N -L", "(context)", True, unit="ms")
    return speed, latency
