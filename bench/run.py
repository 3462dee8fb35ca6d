"""Benchmarks: each figure against a baseline measured in the same run, on throwaway hosts.

    sudo .venv/bin/python -m bench.run [--rtt-ms 100] [--runs 5]   (or --plot PNG)

Starts its own SSH host (tests/sshhost.py) and a delaying TCP proxy in front of its sshd
(bench/delayproxy.py) for the latency figures; prints the machine and a table of medians and
ratios. Not part of the pass/fail tests.
"""

import argparse
import collections
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tasks.config import BOOT
from tests.jupyter_http import Session
from tests.sshhost import JUPYTER_VENV, SSHHost, free_port, wait_port

ROOT = Path(__file__).resolve().parent.parent
FAB = [sys.executable, "-m", "fabric"]
PASSWORD = "bench horse"
USER = "fjbench"


def wait_api(port, deadline=120):
    """Until a Jupyter on this machine's port answers GET /api with 200 (an error after deadline s)."""
    s = Session(f"http://127.0.0.1:{port}/")
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            if s.get("api")[0] == 200:
                return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"no Jupyter answered on port {port} within {deadline} s")


def turns(runs, *fns):
    """Median seconds of each fn, measured in turns (A B, then B A, ...), so that whatever else the
    machine does at a moment weighs on all alike. A fn that returns a number reports its own time
    (for work around the timed part, such as resetting an account)."""
    times = [[] for _ in fns]
    for i in range(runs):
        order = list(enumerate(fns))
        for k, fn in order if i % 2 == 0 else order[::-1]:
            start = time.monotonic()
            own = fn()
            times[k].append(own if isinstance(own, (int, float)) else time.monotonic() - start)
    return [statistics.median(t) for t in times]


def delay_proxy(rtt_ms, routes):
    """A delaying proxy (bench/delayproxy.py) for (listen port, target host, target port) routes."""
    proxy = subprocess.Popen(
        [sys.executable, "-m", "bench.delayproxy", str(rtt_ms / 2), *(f"{l}:{h}:{p}" for l, h, p in routes)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    proxy.stdout.readline()
    return proxy


def sshd_requests(log):
    """What clients asked of sshd, from an excerpt of its LogLevel DEBUG1 log: connections, auth
    requests, channel opens and channel requests (those sent with want-reply wait a round trip)."""
    seen = collections.Counter()
    for line in log.splitlines():
        if line.startswith("Connection from "):
            seen["connections"] += 1
        elif "userauth-request for user" in line:
            seen["auth"] += 1
        elif m := re.search(r"server_input_channel_open: ctype (\S+)", line):
            seen[f"open {m[1]}"] += 1
            seen["opens"] += 1
        elif m := re.search(r"server_input_channel_req: channel \d+ request (\S+) reply (\d)", line):
            seen[f"req {m[1]}"] += 1
            seen["awaited"] += m[2] == "1"
        elif m := re.search(r"server_input_global_request: rtype (\S+) want_reply (\d)", line):
            seen["awaited"] += m[2] == "1"
    return seen


class Bench:
    def __init__(self, rtt_ms, runs):
        self.rtt = rtt_ms / 1000.0
        self.runs = runs
        self.host = SSHHost(users=[(USER, "/bin/bash", True, False)], prefix="fabjupyter-bench-", log_level="DEBUG1")
        self.proxy_port = free_port()
        self.proxy = delay_proxy(rtt_ms, [(self.proxy_port, "127.0.0.1", self.host.port)])
        h = self.host
        h.write_ssh_config(
            extra=(
                f"\nHost far\n  HostName 127.0.0.1\n  Port {self.proxy_port}\n  User {h.users[USER].name}\n  IdentityFile {h.client_key}\n"
                f"  IdentitiesOnly yes\n  UserKnownHostsFile {h.known_hosts}\n  HostKeyAlias [127.0.0.1]:{h.port}\n"
                "  StrictHostKeyChecking yes\n"
            )
        )
        self.hosts_file = Path(tempfile.mkdtemp()) / "hosts.yaml"
        self.hosts_file.write_text("")
        self.env = dict(os.environ, FABRIC_JUPYTER_HOSTS_FILE=str(self.hosts_file))
        self.rows = []

    def close(self):
        self.proxy.terminate()
        self.proxy.wait()
        self.host.close()

    # --- helpers --------------------------------------------------------------------------
    def fab(self, host, *args, input=None):
        r = subprocess.run(
            [*FAB, "-S", str(self.host.ssh_config), "-H", host, *args],
            cwd=ROOT,
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            raise RuntimeError(f"fab {args} failed: {r.stderr}")
        return r

    def fab_popen(self, host, *args):
        p = subprocess.Popen(
            [*FAB, "-S", str(self.host.ssh_config), "-H", host, *args],
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        return p

    def ssh(self, host, *args, **kw):
        return ["ssh", "-F", str(self.host.ssh_config), *args, host]

    def reset(self):
        self.host.reset_user(USER)

    def port(self):
        import json

        return json.loads(self.fab(USER, "status", "--json").stdout)["port"]

    @staticmethod
    def until_authenticated(base, deadline=60):
        """Seconds until a password login through `base` gets GET /api/contents = 200."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            try:
                s = Session(base)
                if s.login(PASSWORD) == 200 and s.get("api/contents")[0] == 200:
                    return
            except (OSError, AssertionError):
                pass
            time.sleep(0.02)
        raise RuntimeError(f"no authenticated answer from {base}")

    def row(self, name, ours, baseline, base_name, goal, ok, unit="s"):
        self.rows.append((name, ours, baseline, base_name, goal, ok, unit))
        ratio = ours / baseline if baseline else float("nan")
        fmt = (lambda v: f"{v:.3f} {unit}") if unit == "s" else (lambda v: f"{v:.2f} {unit}")
        print(f"  {name}: {fmt(ours)} vs {base_name} {fmt(baseline)} = {ratio:.2f}x  goal {goal}: {'met' if ok else 'MISSED'}", flush=True)

    # --- figures --------------------------------------------------------------------------
    def jupyter_start(self, launcher=False):
        """One Jupyter start to ready on the host, no SSH: `jupyter-lab --port N` as the user would
        run it, or (launcher=True) our run.sh, which starts it through boot.py. Returns seconds."""
        port = free_port()
        run = self.host.users[USER].home / ".fabjupyter" / "run.sh"
        if launcher:
            command = ["sh", str(run), "serve", str(port), "server2"]
        else:
            command = [str(JUPYTER_VENV / "bin" / "jupyter-lab"), "--no-browser", f"--port={port}", "--ServerApp.port_retries=0"]

        def once():
            start = time.monotonic()
            p = subprocess.Popen(
                ["setpriv", f"--reuid={self.host.users[USER].uid}", f"--regid={self.host.users[USER].uid}", "--init-groups",
                 *command],
                env={"HOME": str(self.host.users[USER].home), "PATH": f"{JUPYTER_VENV}/bin:/usr/bin:/bin"},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                wait_api(port)
                return time.monotonic() - start
            finally:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait()

        return once()

    def ssh_true_once(self):
        subprocess.run(self.ssh("far") + ["true"], check=True, capture_output=True)

    def setup_once(self):
        """Seconds of `fab setup` on a fresh account until an authenticated 200 (the reset before
        it is not counted)."""
        self.reset()
        start = time.monotonic()
        self.fab("far", "setup", "--password-stdin", input=PASSWORD + "\n")
        took = time.monotonic() - start
        # the authenticated 200, directly on the host (this machine): not part of the SSH path
        port = self.port()
        t0 = time.monotonic()
        self.until_authenticated(f"http://127.0.0.1:{port}/")
        return took + time.monotonic() - t0

    def latency_figures(self):
        rtt = self.rtt
        print(f"At {rtt * 1000:.0f} ms RTT (delaying proxy in front of sshd):", flush=True)
        self.setup_once()  # run.sh, for the starts as it does them
        ssh_true, setup_time, ready, ours_ready = turns(
            self.runs, self.ssh_true_once, self.setup_once, self.jupyter_start, lambda: self.jupyter_start(launcher=True)
        )
        # the floor does the same work as setup: an SSH login, and Jupyter started the way we start it
        floor = ssh_true + ours_ready
        self.row("setup from nothing to authenticated 200", setup_time, floor,
                 "floor (ssh true + Jupyter start as run.sh does it)", "<= floor + 8 RTT", setup_time <= floor + 8 * rtt)
        self.row("Jupyter start through run.sh and boot.py, no SSH (the start-up gain)", ours_ready, ready,
                 "`jupyter-lab` start", "(context)", True)

        ssh_true, again, status = turns(self.runs, self.ssh_true_once, lambda: self.fab("far", "setup"),
                                        lambda: self.fab("far", "status"))
        self.row("setup again (nothing to do)", again, ssh_true, "ssh host true", "<= + 3 RTT", again <= ssh_true + 3 * rtt)
        self.row("status", status, ssh_true, "ssh host true", "<= + 2 RTT", status <= ssh_true + 2 * rtt)

        def raw_forward():
            """raw ssh -L to the running Jupyter: seconds to its first authenticated 200"""
            jport, lp = self.port(), free_port()
            start = time.monotonic()
            p = subprocess.Popen(self.ssh("far", "-N", "-o", "ExitOnForwardFailure=yes", "-L", f"127.0.0.1:{lp}:127.0.0.1:{jport}"),
                                 stderr=subprocess.DEVNULL)
            try:
                self.until_authenticated(f"http://127.0.0.1:{lp}/")
                return time.monotonic() - start
            finally:
                p.terminate()
                p.wait()

        def setup_tunnel():
            self.reset()
            lp = free_port()
            start = time.monotonic()
            p = self.fab_popen("far", "setup", "--password-stdin", "tunnel", "--local-port", str(lp))
            p.stdin.write(PASSWORD + "\n")
            p.stdin.close()
            try:
                self.until_authenticated(f"http://127.0.0.1:{lp}/")
                return time.monotonic() - start
            finally:
                p.send_signal(signal.SIGTERM)
                p.wait()

        raw, both = turns(self.runs, raw_forward, setup_tunnel)
        base = floor + raw
        self.row("setup tunnel to first authenticated 200", both, base, "floor + raw ssh -L to first 200", "<= 1.2x",
                 both <= 1.2 * base)
        return ssh_true, ready

    def round_trip_figures(self):
        """What each command asks of sshd, counted in its DEBUG1 log, against `ssh host true`.
        Round trips are estimated as 4 per connection (TCP, version and key exchange, the
        ssh-userauth service) plus one per auth request, session opened and reply awaited."""
        print("Remote round trips, counted in sshd's log (LogLevel DEBUG1):", flush=True)
        log = self.host.sshd_log

        def counted(fn):
            start = log.stat().st_size
            fn()
            time.sleep(0.5)  # sshd logs a session's end as the client goes
            return sshd_requests(log.read_bytes()[start:].decode(errors="replace"))

        def tunnel():
            lp = free_port()
            p = self.fab_popen("far", "tunnel", "--local-port", str(lp))
            try:
                self.until_authenticated(f"http://127.0.0.1:{lp}/")
            finally:
                p.send_signal(signal.SIGTERM)
                p.wait()

        self.reset()
        rows = [("ssh host true", counted(lambda: subprocess.run(self.ssh("far") + ["true"], check=True, capture_output=True))),
                ("fab setup (from nothing)", counted(lambda: self.fab("far", "setup", "--password-stdin", input=PASSWORD + "\n"))),
                ("fab setup (again)", counted(lambda: self.fab("far", "setup"))),
                ("fab status", counted(lambda: self.fab("far", "status"))),
                ("fab tunnel (to a login)", counted(tunnel)),
                ("fab restart", counted(lambda: self.fab("far", "restart"))),
                ("fab stop", counted(lambda: self.fab("far", "stop")))]
        print("| command | connections | auth requests | sessions | replies awaited | forwarded connections | round trips (est.) |")
        print("|---|---|---|---|---|---|---|")
        for name, c in rows:
            trips = 4 * c["connections"] + c["auth"] + c["open session"] + c["awaited"]
            print(f"| {name} | {c['connections']} | {c['auth']} | {c['open session']} | {c['awaited']} | {c['open direct-tcpip']} | {trips} |")
        self.round_trips = rows

    def forward_figures(self, size_mib=200, requests=200):
        """Both forwards open at once and measured in turns (ABBA), so that whatever else this
        machine does at a moment weighs on both alike."""
        print("Through the forward, no added delay:", flush=True)
        self.fab(USER, "setup", "--password-stdin", input=PASSWORD + "\n")
        jport = self.port()
        self.host.as_user(USER, f"head -c {size_mib * 1024 * 1024} /dev/zero > big.bin")
        names = ("raw ssh -N -L", "fab tunnel")
        procs, sessions = [], {}
        try:
            for name in names:
                lp = free_port()
                if name == "fab tunnel":
                    procs.append(self.fab_popen(USER, "tunnel", "--local-port", str(lp)))
                else:
                    procs.append(subprocess.Popen(self.ssh(USER, "-N", "-L", f"127.0.0.1:{lp}:127.0.0.1:{jport}"),
                                                  stderr=subprocess.DEVNULL))
                wait_port(lp, 30)
                self.until_authenticated(f"http://127.0.0.1:{lp}/")
                sessions[name] = Session(f"http://127.0.0.1:{lp}/")
                sessions[name].login(PASSWORD)

            def download(s):
                # /files/ wants a same-origin Referer, as a browser sends
                req = urllib.request.Request(s.base + "files/big.bin", headers={"Referer": s.base + "lab"})
                start = time.monotonic()
                with s.opener.open(req, timeout=120) as r:
                    while r.read(1 << 20):
                        pass
                return time.monotonic() - start

            def new_connection(s):
                start = time.monotonic()
                Session(s.base).get("api")  # a new connection each time
                return time.monotonic() - start

            secs, lat = {n: [] for n in names}, {n: [] for n in names}
            for i in range(4):
                for name in names if i % 2 == 0 else names[::-1]:
                    secs[name].append(download(sessions[name]))
            for i in range(requests):
                for name in names if i % 2 == 0 else names[::-1]:
                    lat[name].append(new_connection(sessions[name]))
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
                p.wait()
        raw, ours = [(size_mib / statistics.median(secs[n]), statistics.median(lat[n]) * 1000) for n in names]
        self.row(f"tunnel throughput ({size_mib} MiB download, median of 4)", ours[0], raw[0], "raw ssh -N -L", ">= 0.9x",
                 ours[0] >= 0.9 * raw[0], unit="MiB/s")
        self.row(f"request latency, new connection (median of {requests})", ours[1], raw[1], "raw ssh -N -L", "<= 1.2x",
                 ours[1] <= 1.2 * raw[1], unit="ms")


def fleet_figure(runs, count=8, rtt_ms=0):
    """setup on `count` isolated hosts at once (--group) against setup on one of them; with
    rtt_ms, each host is reached through the delaying proxy."""
    print(f"Fleet: {count} hosts, each in its own network namespace with its own sshd, {rtt_ms:.0f} ms RTT:", flush=True)
    hosts, proxy = [], None
    tmp = Path(tempfile.mkdtemp())
    try:
        for i in range(count):
            hosts.append(SSHHost(users=[(f"fjb{i}", "/bin/bash", True, False)], prefix=f"fabjupyter-bench{i}-", netns=(f"fjbns{i}", 100 + i)))
        known = tmp / "known_hosts"
        known.write_text("".join(h.known_hosts.read_text() for h in hosts))
        ssh_config = tmp / "ssh_config"
        config = f"Host *\n  UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n"
        names = [h.address for h in hosts]
        if rtt_ms:
            routes = [(free_port(), h.address, 22) for h in hosts]
            proxy = delay_proxy(rtt_ms, routes)
            names = [f"fjb{i}-far" for i in range(count)]
            config = "".join(f"Host {n}\n  HostName 127.0.0.1\n  Port {r[0]}\n  HostKeyAlias {r[1]}\n" for n, r in zip(names, routes)) + config
        ssh_config.write_text(config)
        lines = ["hosts:"]
        for i, h in enumerate(hosts):
            lines += [f"  fjb{i}:", f"    host: {names[i]}", f"    user: {h.users[f'fjb{i}'].name}", f"    identity: {h.client_key}"]
        lines += ["groups:", "  one: [fjb0]", f"  all: [{', '.join(f'fjb{i}' for i in range(count))}]"]
        hosts_file = tmp / "hosts.yaml"
        hosts_file.write_text("\n".join(lines) + "\n")
        env = dict(os.environ, FABRIC_JUPYTER_HOSTS_FILE=str(hosts_file))

        def setup(group):
            for i, h in enumerate(hosts):
                h.reset_user(f"fjb{i}")
            start = time.monotonic()
            r = subprocess.run([*FAB, "-S", str(ssh_config), "setup", "--group", group, "--password-stdin"],
                               cwd=ROOT, env=env, input=PASSWORD + "\n", capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(r.stdout + r.stderr)
            return time.monotonic() - start

        one, many = turns(runs, lambda: setup("one"), lambda: setup("all"))

        def again(group):
            start = time.monotonic()
            subprocess.run([*FAB, "-S", str(ssh_config), "setup", "--group", group], cwd=ROOT, env=env, capture_output=True, check=True)
            return time.monotonic() - start

        setup("all")
        one_again, many_again = turns(runs, lambda: again("one"), lambda: again("all"))
        return one, many, one_again, many_again
    finally:
        if proxy:
            proxy.terminate()
            proxy.wait()
        for h in hosts:
            h.close()


def parallel_jupyter_floor(count, runs, boot=False):
    """Seconds for the same machine to start `count` JupyterLabs at once, without SSH or this
    tool: what 8 "hosts" sharing this machine's 2 cores cost at best. boot=True: started as
    run.sh does."""
    def once():
        tmp = Path(tempfile.mkdtemp())
        head = []
        if boot:
            (tmp / "boot.py").write_text(BOOT)
            head = [str(JUPYTER_VENV / "bin" / "python3"), str(tmp / "boot.py")]
        procs, ports = [], [free_port() for _ in range(count)]
        start = time.monotonic()
        for i, port in enumerate(ports):
            env = dict(os.environ, HOME=str(tmp), JUPYTER_CONFIG_DIR=str(tmp / f"c{i}"), JUPYTER_RUNTIME_DIR=str(tmp / f"r{i}"))
            procs.append(subprocess.Popen(
                [*head, str(JUPYTER_VENV / "bin" / "jupyter-lab"), "--allow-root", "--no-browser", f"--port={port}", "--ServerApp.port_retries=0",
                 f"--ServerApp.root_dir={tmp}"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        try:
            for port in ports:
                wait_api(port)
            return time.monotonic() - start
        finally:
            for p in procs:
                os.killpg(p.pid, signal.SIGTERM)
            for p in procs:
                p.wait()

    return once()


def rtt_curve(rtts_ms, runs, path):
    """setup from nothing against its floor at several RTTs, drawn to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ours, floors = [], []
    for rtt in rtts_ms:
        b = Bench(rtt, runs)
        try:
            b.setup_once()  # leaves run.sh for the floor measurement
            ssh_true, setup_time, ready = turns(runs, b.ssh_true_once, b.setup_once, lambda: b.jupyter_start(launcher=True))
        finally:
            b.close()
        ours.append(setup_time)
        floors.append(ssh_true + ready)
        print(f"  {rtt:.0f} ms RTT: setup {setup_time:.2f} s, floor {ssh_true + ready:.2f} s", flush=True)
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot(rtts_ms, ours, "o-", label="fab setup (from nothing to an authenticated 200)")
    ax.plot(rtts_ms, floors, "s--", label="floor: ssh host true + Jupyter started as run.sh does")
    ax.plot(rtts_ms, [f + 8 * r / 1000 for f, r in zip(floors, rtts_ms)], ":", color="grey", label="goal: floor + 8 RTT")
    ax.set_xlabel("round-trip time to the host (ms)")
    ax.set_ylabel("seconds (median)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"setup time vs network latency ({time.strftime('%Y-%m-%d')}, 2-core VM)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


def machine():
    cpus = os.cpu_count()
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            mem = f"{int(f.readline().split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    return f"{platform.platform()}, {cpus} cores ({model}), {mem}, Python {platform.python_version()}, {ssh}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rtt-ms", type=float, default=100.0)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--plot", metavar="PNG", help="instead: setup time vs RTT (0-200 ms) against its floor, drawn to PNG (needs matplotlib)")
    args = ap.parse_args(argv)
    if args.plot:
        print(f"Machine: {machine()}")
        rtt_curve([0, 50, 100, 200], min(args.runs, 3), args.plot)
        return 0
    print(f"Machine: {machine()}")
    print(f"Date: {time.strftime('%Y-%m-%d')}; medians of {args.runs} runs unless noted", flush=True)
    b = Bench(args.rtt_ms, args.runs)
    try:
        b.forward_figures()
        b.latency_figures()
        b.round_trip_figures()
    finally:
        b.close()
    runs = min(args.runs, 3)
    fleet = {}
    for rtt in (0, args.rtt_ms):
        one, many, one_again, many_again = fleet[rtt] = fleet_figure(runs, rtt_ms=rtt)
        b.row(f"setup on 8 hosts in parallel (--group), {rtt:.0f} ms RTT", many, one, "setup on 1 host", "<= 1.5x", many <= 1.5 * one)
        b.row(f"setup again on 8 hosts in parallel, {rtt:.0f} ms RTT", many_again, one_again, "setup again on 1 host", "<= 1.5x",
              many_again <= 1.5 * one_again)
    floor8, floor1, plain8, plain1 = turns(
        runs, *(lambda n=n, boot=boot: parallel_jupyter_floor(n, runs, boot) for boot in (True, False) for n in (8, 1))
    )
    b.row("  (context) this machine: 8 Jupyter starts at once as run.sh does them, no SSH", floor8, floor1, "1 start", "(context)", True)
    b.row("  (context) setup on 8 hosts at 0 ms vs those 8 starts", fleet[0][1], floor8, "8 starts at once", "(context)", True)
    b.row("  (context) the same with plain `jupyter-lab`", plain8, plain1, "1 start", "(context)", True)
    print()
    print("| figure | ours | baseline | ratio | goal |")
    print("|---|---|---|---|---|")
    for name, ours, base, base_name, goal, ok, unit in b.rows:
        fmt = (lambda v: f"{v:.3f} s") if unit == "s" else (lambda v: f"{v:.2f} {unit}")
        print(f"| {name} | {fmt(ours)} | {base_name}: {fmt(base)} | {ours / base:.2f}x | {goal}: {'met' if ok else '**missed**'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
