"""Benchmarks: each figure against a baseline measured in the same run, on throwaway hosts.

    sudo .venv/bin/python -m bench.run [--rtt-ms 100] [--runs 5]   (or --plot PNG)

Starts its own SSH host (tests/sshhost.py) and a delaying TCP proxy in front of its sshd
(bench/delayproxy.py) for the latency figures; prints the machine and a table of medians and
ratios. Not part of the pass/fail tests. Every figure and its floor are measured in turns in one
run; a floor does the same work as ours, timed the same way; a "(context)" row has no goal.
Other modes: --slurm, --install, --mux, --fleet32, --extras (see --help).
"""

import argparse
import collections
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tasks.remote import files, kinds, shell
from tasks.password import fresh_hash
from tasks.protocol import BOOT, agent_script
from tests.jupyter_http import Session
from tests.sshhost import JUPYTER_VENV, SSHHost, free_port, interpreter_of, wait_port

ROOT = Path(__file__).resolve().parent.parent
FAB = [sys.executable, "-m", "fabric"]
PASSWORD = "bench horse"
USER = "fjbench"
JUPYTER_LAB = JUPYTER_VENV / "bin" / "jupyter-lab"


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (Jupyter's default here: --sock)."""

    def __init__(self, path, host="localhost", **kw):
        super().__init__(host, **kw)
        self.socket_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(self.timeout)
        s.connect(self.socket_path)
        self.sock = s


class UnixHandler(urllib.request.HTTPHandler):
    def __init__(self, path):
        super().__init__()
        self.socket_path = path

    def http_open(self, req):
        return self.do_open(lambda host, **kw: UnixHTTPConnection(self.socket_path, host, **kw), req)


def unix_session(path):
    """A browser-like Session (tests/jupyter_http.py) with a Jupyter on the Unix socket PATH."""
    s = Session("http://localhost/")
    s.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPCookieProcessor(s.jar), UnixHandler(path))
    return s


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


def agent_start(port, home, boot_py=None, root=False):
    """(argv, env) of a Jupyter start as the agent makes it (Run.start_process in tasks/agent.py),
    for JupyterLab in ssh mode with the configuration setup writes in HOME/.fabjupyter: the
    script the bootstrap finds, run as its first line says, or (boot_py: a copy of boot.py)
    through boot.py in the interpreter that line names, as fast_start does. Run it in HOME."""
    argv = [str(JUPYTER_LAB), f"--ServerApp.port={port}", f"--ServerApp.root_dir={home}"]
    if root:
        argv.append("--allow-root")  # the agent adds it for uid 0
    if boot_py:
        argv = [interpreter_of(JUPYTER_LAB), str(boot_py)] + argv
    d = Path(home) / ".fabjupyter"
    env = {"HOME": str(home), "PATH": f"{JUPYTER_VENV}/bin:/usr/bin:/bin", "JUPYTER_CONFIG_PATH": f"{d / 'password'}:{d / 'config'}"}
    return argv, env


def boot_copy():
    """This tool's boot.py in a new temporary directory, readable by the bench's users too."""
    d = Path(tempfile.mkdtemp())
    d.chmod(0o755)
    (d / "boot.py").write_text(BOOT)
    (d / "boot.py").chmod(0o644)
    return d / "boot.py"


def delay_proxy(rtt_ms, routes):
    """A delaying proxy (bench/delayproxy.py) for (listen port, target host, target port) routes."""
    proxy = subprocess.Popen(
        [sys.executable, "-m", "bench.delayproxy", str(rtt_ms / 2), *(f"{l}:{h}:{p}" for l, h, p in routes)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    if not proxy.stdout.readline():  # it could not start (a port taken): poll() says so
        proxy.wait()
    return proxy


# The session floor: what fab's one session does on the network (a script sent on stdin to
# `sh -s`, one JSON line read back), without fab or its agent.
SESSION_FLOOR_SCRIPT = b"""exec python3 -c 'import json, os; print(json.dumps({"reply": "ok", "pid": os.getpid()}))'\n"""
SESSION_FLOOR = "ssh host sh -s (a script on stdin, a JSON line back)"
SESSION_FLOOR_ROW = "floor: ssh host sh -s (a script on stdin, a JSON line back)"  # in round_trip_figures' table
SESSION_ALLOWANCE = 0.15  # s: fab's own start-up and its agent on the host, above the same exchange


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
        self.boot_py = boot_copy()  # for the fast_start floor: not the host's copy, which setup rewrites
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

    def status(self, host=USER):
        return json.loads(self.fab(host, "status", "--json").stdout)

    def port(self):
        return self.status()["port"]

    def target(self):
        """Where a raw `ssh -L` reaches the running Jupyter: its Unix socket (the default) or
        127.0.0.1:PORT."""
        state = self.status()
        return state.get("socket") or f"127.0.0.1:{state['port']}"

    @staticmethod
    def until_authenticated(base, deadline=60, sock=None):
        """Until a password login through `base` (or, with SOCK, through that Unix socket on
        this machine) gets GET /api/contents = 200."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            try:
                s = unix_session(sock) if sock else Session(base)
                if s.login(PASSWORD) == 200 and s.get("api/contents")[0] == 200:
                    return
            except (OSError, AssertionError):
                pass
            time.sleep(0.02)
        raise RuntimeError(f"no authenticated answer from {base}")

    def row(self, name, ours, baseline, base_name, goal, ok, unit="s"):
        """One figure against its baseline. A goal that starts with "(context" is none: such a row
        says neither met nor missed and is not counted in the tally (print_table)."""
        self.rows.append((name, ours, baseline, base_name, goal, ok, unit))
        ratio = ours / baseline if baseline else float("nan")
        fmt = (lambda v: f"{v:.3f} {unit}") if unit == "s" else (lambda v: f"{v:.2f} {unit}")
        print(f"  {name}: {fmt(ours)} vs {base_name} {fmt(baseline)} = {ratio:.2f}x  goal {verdict(goal, ok, 'MISSED')}", flush=True)

    # --- figures --------------------------------------------------------------------------
    def jupyter_start(self, boot=False):
        """One Jupyter start to ready on the host, no SSH, as the agent starts it: plain (Jupyter's
        own script), or (boot=True) through boot.py, as fast_start does. It reads the configuration
        that setup wrote, so a setup must have run. Returns seconds."""
        user = self.host.users[USER]
        port = free_port()
        argv, env = agent_start(port, user.home, self.boot_py if boot else None)

        def once():
            start = time.monotonic()
            p = subprocess.Popen(
                ["setpriv", f"--reuid={user.uid}", f"--regid={user.uid}", "--init-groups", *argv],
                env=env,
                cwd=user.home,
                stdin=subprocess.DEVNULL,
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

    def session_floor_once(self, host="far"):
        """The floor of one fab session: one `ssh host sh -s` that sends a small script on stdin
        and reads its one JSON line back (the exchange fab's session makes, minus fab and its
        agent). An error if no reply came."""
        r = subprocess.run(self.ssh(host) + ["sh -s"], input=SESSION_FLOOR_SCRIPT, check=True, capture_output=True)
        if not r.stdout.startswith(b'{"reply": '):
            raise RuntimeError(f"ssh {host} sh -s: {r.stdout[-300:]!r} {r.stderr[-300:]!r}")

    def login_and_start_once(self, boot=False):
        """The floor of setup from nothing, one sample: an SSH login (ssh host true) then Jupyter
        started as the agent starts it (jupyter_start), one after the other: seconds."""
        start = time.monotonic()
        self.ssh_true_once()
        login = time.monotonic() - start
        return login + self.jupyter_start(boot=boot)

    def setup_once(self, fast_start=False):
        """Seconds of `fab setup` on a fresh account until an authenticated 200 (the reset before
        it is not counted); fast_start: with `fast_start: true` in hosts.yaml."""
        self.reset()
        self.hosts_file.write_text("defaults:\n  fast_start: true\n" if fast_start else "")
        try:
            start = time.monotonic()
            self.fab("far", "setup", "--password-stdin", input=PASSWORD + "\n")
            took = time.monotonic() - start
        finally:
            self.hosts_file.write_text("")  # every other figure is of the default setup
        status = self.status()
        if status["fast_start"] is not fast_start:  # else the figure would be of the other start
            raise RuntimeError(f"setup with fast_start {fast_start} started Jupyter with fast_start {status['fast_start']}")
        # the authenticated 200, directly on the host (this machine): not part of the SSH path
        t0 = time.monotonic()
        self.until_authenticated(f"http://127.0.0.1:{status['port']}/", sock=status.get("socket"))
        return took + time.monotonic() - t0

    def latency_figures(self):
        rtt = self.rtt
        at = f"{rtt * 1000:.0f} ms RTT"  # in the labels: the goals are set at 100 ms (the default)
        print(f"At {at} (delaying proxy in front of sshd):", flush=True)
        self.setup_once()  # the configuration that the floors' starts read
        # each floor does the same work as its setup: an SSH login, and Jupyter started as the agent
        # starts it; login and start are one sample, summed per run (not medians added afterwards)
        floor, setup_time, fast_floor, fast_time, plain, booted = turns(
            self.runs, self.login_and_start_once, self.setup_once, lambda: self.login_and_start_once(boot=True),
            lambda: self.setup_once(fast_start=True), self.jupyter_start, lambda: self.jupyter_start(boot=True),
        )
        self.row(f"setup from nothing to authenticated 200, {at}", setup_time, floor,
                 "floor (ssh true + plain Jupyter start)", "<= floor + 8 RTT", setup_time <= floor + 8 * rtt)
        self.row(f"setup with fast_start from nothing to authenticated 200, {at}", fast_time, fast_floor,
                 "floor (ssh true + Jupyter start through boot.py)", "<= floor + 8 RTT", fast_time <= fast_floor + 8 * rtt)
        self.row("  (context) Jupyter start through boot.py, no SSH (the fast_start gain)", booted, plain,
                 "plain Jupyter start", "(context)", True)

        self.setup_once()  # the rest is of the default setup (the turns may have ended on fast_start's)
        # the floor makes the same exchange as fab's one session (a script on stdin, a JSON line
        # back); what fab spends above it is its own work here and the agent's on the host, not
        # the network, so the allowance is in seconds
        session, again, status = turns(self.runs, self.session_floor_once, lambda: self.fab("far", "setup"),
                                       lambda: self.fab("far", "status"))
        # OpenSSH's client asks sshd three times to log in where paramiko asks once: the round trips
        # fab saves on the floor (counted in sshd's log by round_trip_figures, run before) are
        # taken off its allowance, so the goal allows fab SESSION_ALLOWANCE of its own, no more
        trips = getattr(self, "trips", {})
        for name, took, counted_as in ((f"setup again (nothing to do), {at}", again, "fab setup (again)"), (f"status, {at}", status, "fab status")):
            saved = trips.get(SESSION_FLOOR_ROW, 0) - trips.get(counted_as, 0)
            allowed = SESSION_ALLOWANCE - saved * rtt
            self.row(name, took, session, SESSION_FLOOR, f"<= floor - {saved} RTT (fewer round trips, sshd's log) + {SESSION_ALLOWANCE} s",
                     took <= session + allowed)

        def raw_forward():
            """raw ssh -L to the running Jupyter: seconds to its first authenticated 200"""
            target, lp = self.target(), free_port()
            start = time.monotonic()
            p = subprocess.Popen(self.ssh("far", "-N", "-o", "ExitOnForwardFailure=yes", "-L", f"127.0.0.1:{lp}:{target}"),
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

        def tunnel_floor():
            """one sample: the login and plain start, then a raw ssh -L to the first 200 of the Jupyter
            that the last setup (setup_tunnel's, or the one above) left running"""
            return self.login_and_start_once() + raw_forward()

        base, both = turns(self.runs, tunnel_floor, setup_tunnel)
        self.row(f"setup tunnel to first authenticated 200, {at}", both, base, "floor (ssh true + plain start + raw ssh -L to first 200)",
                 "<= 1.2x", both <= 1.2 * base)
        return floor, plain

    def round_trip_figures(self):
        """What each command asks of sshd, counted in its DEBUG1 log, against the session floor
        (session_floor_once: one `ssh host sh -s` that sends a script and reads a JSON line).
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
        floor_name = SESSION_FLOOR_ROW
        rows = [(floor_name, counted(self.session_floor_once)),
                ("(context) ssh host true", counted(self.ssh_true_once)),
                ("fab setup (from nothing)", counted(lambda: self.fab("far", "setup", "--password-stdin", input=PASSWORD + "\n"))),
                ("fab setup (again)", counted(lambda: self.fab("far", "setup"))),
                ("fab status", counted(lambda: self.fab("far", "status"))),
                ("fab tunnel (to a login)", counted(tunnel)),
                ("fab restart", counted(lambda: self.fab("far", "restart"))),
                ("fab stop", counted(lambda: self.fab("far", "stop")))]
        self.trips = trips = {name: 4 * c["connections"] + c["auth"] + c["open session"] + c["awaited"] for name, c in rows}
        # the goal: no round trip more than the floor's apart from the login (OpenSSH's client
        # sends three auth requests where paramiko sends one: fewer for fab, not a goal met)
        besides = {name: trips[name] - c["auth"] for name, c in rows}
        floor = besides[floor_name]
        print("| command | connections | auth requests | sessions | replies awaited | forwarded connections (TCP or socket) | round trips (est.) | goal |")
        print("|---|---|---|---|---|---|---|---|")
        for name, c in rows:
            if name == floor_name or name.startswith("(context)"):
                goal = ""
            elif c["connections"] == 1:  # one session, the floor's exchange: no more round trips than it
                goal = f"{besides[name]} besides the auth requests, <= floor's {floor}: {'met' if besides[name] <= floor else '**missed**'}"
            else:  # the tunnel: a forward's login and the agent's session (How it works)
                goal = "(context: two connections, at once)"
            print(f"| {name} | {c['connections']} | {c['auth']} | {c['open session']} | {c['awaited']} | {c['open direct-tcpip'] + c['open direct-streamlocal@openssh.com']} "
                  f"| {trips[name]} | {goal} |")
        self.round_trips = rows

    def forward_figures(self, size_mib=200, requests=200, ours_host=USER, raw_host=USER, at="", goals=True, setup=True):
        """Both forwards open at once and measured in turns (ABBA), so that whatever else this
        machine does at a moment weighs on both alike. OURS_HOST: the name `fab tunnel` is given
        (a hosts.yaml entry with multiplex: true puts its forward on that host's master), RAW_HOST
        the ssh_config alias of the raw `ssh -N -L` (a login of its own: ControlMaster=no); AT: how
        far, in the labels; goals=False: the rows are context. Returns the fab tunnel's local port."""
        print(f"Through the forward, {at or 'no added delay'}:", flush=True)
        if setup:
            self.fab(USER, "setup", "--password-stdin", input=PASSWORD + "\n")
        target = self.target()
        self.host.as_user(USER, f"head -c {size_mib * 1024 * 1024} /dev/zero > big.bin")
        names = ("raw ssh -N -L", "fab tunnel")
        procs, sessions = [], {}
        try:
            for name in names:
                lp = free_port()
                if name == "fab tunnel":
                    procs.append(self.fab_popen(ours_host, "tunnel", "--local-port", str(lp)))
                    ours_port = lp
                else:
                    procs.append(subprocess.Popen(self.ssh(raw_host, "-N", "-o", "ControlMaster=no", "-o", "ControlPath=none",
                                                           "-L", f"127.0.0.1:{lp}:{target}"),
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
        where = f", {at}" if at else ""
        self.row(f"tunnel throughput ({size_mib} MiB download, median of 4){where}", ours[0], raw[0], "raw ssh -N -L",
                 ">= 0.9x" if goals else "(context, >= 0.9x)", ours[0] >= 0.9 * raw[0], unit="MiB/s")
        self.row(f"request latency, new connection (median of {requests}){where}", ours[1], raw[1], "raw ssh -N -L",
                 "<= 1.2x" if goals else "(context, <= 1.2x)", ours[1] <= 1.2 * raw[1], unit="ms")
        return ours_port

    # --- the OpenSSH path: this tool's own master (multiplex: true) ---------------------------
    def counted(self, fn):
        """What fn asked of sshd, from its DEBUG1 log (sshd_requests)."""
        log = self.host.sshd_log
        start = log.stat().st_size
        fn()
        time.sleep(0.5)  # sshd logs a session's end as the client goes
        return sshd_requests(log.read_bytes()[start:].decode(errors="replace"))

    def ssh_child_times(self, argv, input=None):
        """(before, life, after) seconds of the last `ssh` that ARGV runs (ARGV itself, or fab's
        mux client): from ARGV's start until that ssh's exec, its life, from its exit until
        ARGV's. Traced with strace (exec and exit only, through seccomp: next to no overhead)."""
        with tempfile.NamedTemporaryFile("r") as out:
            subprocess.run(["strace", "-f", "--seccomp-bpf", "-ttt", "-e", "trace=execve,exit_group", "-o", out.name, *argv],
                           cwd=ROOT, env=self.env, input=input, capture_output=True, check=True)
            lines = out.read().splitlines()
        when = lambda line: float(line.split()[1])
        execs = [l for l in lines if re.search(r'execve\("[^"]*/ssh", .* = 0$', l)]
        pid = execs[-1].split()[0]
        gone = [l for l in lines if l.startswith(pid + " ") and "exit_group" in l]
        return when(execs[-1]) - when(lines[0]), when(gone[-1]) - when(execs[-1]), when(lines[-1]) - when(gone[-1])

    def ssh_lives(self, runs, masters, script):
        """For fab status (multiplex: true) and for its agent script through a bare ssh -S MASTER
        sh -s: the median of (ssh's life at RTT - at 0 ms) over RUNS pairs, and the medians of
        (before, life, after) at RTT and at 0 ms."""
        cmds = {"fab": {alias: ([*FAB, "-S", str(self.host.ssh_config), "-H", name, "status"], None)
                        for alias, name in (("far", "mux-far"), (USER, "mux-near"))},
                "bare": {alias: (self.ssh(alias, "-S", str(masters[alias]), "-o", "ControlMaster=no", "-o", "BatchMode=yes")
                                 + ["sh -s"], script) for alias in ("far", USER)}}
        found = {}
        for who, by_alias in cmds.items():
            pairs = []
            for i in range(runs):
                order = ("far", USER) if i % 2 == 0 else (USER, "far")
                got = {alias: self.ssh_child_times(*by_alias[alias]) for alias in order}
                pairs.append((got["far"], got[USER]))
            med = lambda k: tuple(statistics.median(p[k][j] for p in pairs) for j in range(3))
            found[who] = (statistics.median(f[1] - n[1] for f, n in pairs), med(0), med(1))
        return found

    def mux_figures(self):
        """Issue 15: a host with `multiplex: true`, its master already running (started by an
        earlier run, kept by ControlPersist), at the proxy's RTT and at 0 ms (sshd directly).
        `status` against `ssh -S MASTER host true` on the same master, and its round trips on the
        network: (at RTT - at 0 ms) / RTT, the same local work on both sides of the subtraction
        (where strace is installed, of the life of fab's ssh mux client alone, fab's start-up left out);
        the tunnel's forward on the master against a raw `ssh -N -L` with a login of its own; as
        context, `status` without multiplex (paramiko, a login each run) and fab's own start-up.
        Every master is ended (ssh -O exit) at the end. Returns the private runtime directory
        (the masters' control sockets are under it)."""
        rtt = self.rtt
        at = f"{rtt * 1000:.0f} ms RTT"
        print(f"Through this tool's OpenSSH master (multiplex: true), {at} (delaying proxy) and 0 ms:", flush=True)
        tmp = Path(tempfile.mkdtemp())
        runtime = tmp / "run"
        runtime.mkdir(mode=0o700)
        # the masters' sockets in a directory of this run's, and its remembered ports too
        self.env = dict(self.env, XDG_RUNTIME_DIR=str(runtime), XDG_CONFIG_HOME=str(tmp / "config"))
        self.mux_runtime = runtime
        control = runtime / "fabjupyter" / "ssh"
        self.hosts_file.write_text(f"hosts:\n  mux-far:\n    host: far\n    multiplex: true\n"
                                   f"  mux-near:\n    host: {USER}\n    multiplex: true\n")
        masters = {}  # ssh_config alias: its master's control socket
        try:
            self.fab(USER, "setup", "--password-stdin", input=PASSWORD + "\n")  # (USER is not in hosts.yaml: paramiko)
            for name, alias in (("mux-near", USER), ("mux-far", "far")):
                sockets = lambda: {p for p in control.iterdir() if p.is_socket()} if control.exists() else set()  # noqa: E731
                before = sockets()
                state = json.loads(self.fab(name, "status", "--json").stdout)  # the earlier run that starts the master
                if not state.get("running"):
                    raise RuntimeError(f"fab -H {name} status: {state}")
                new = sockets() - before
                if len(new) != 1:
                    raise RuntimeError(f"fab -H {name} status left {len(new)} new control sockets in {control}, not one")
                masters[alias] = new.pop()
                check = subprocess.run(self.ssh(alias, "-S", str(masters[alias]), "-O", "check"), capture_output=True, text=True)
                print(f"  master for {name}: {masters[alias].name} ({check.stderr.strip()})", flush=True)

            def through_master(alias):
                subprocess.run(self.ssh(alias, "-S", str(masters[alias]), "-o", "ControlMaster=no", "-o", "BatchMode=yes") + ["true"],
                               check=True, capture_output=True)

            # status's own agent script, as run_agent sends it: the same remote work and bytes without fab
            script = agent_script("status", {"instance": "default"}).encode()

            def agent_through_master(alias):
                r = subprocess.run(self.ssh(alias, "-S", str(masters[alias]), "-o", "ControlMaster=no", "-o", "BatchMode=yes")
                                   + ["sh -s"], input=script, check=True, capture_output=True)
                if b'"reply"' not in r.stdout:
                    raise RuntimeError(f"the status agent through ssh -S: {r.stdout[-300:]!r} {r.stderr[-300:]!r}")

            def local(*argv):
                subprocess.run(argv, cwd=ROOT, env=self.env, check=True, capture_output=True)

            def paired(far, near, times):
                """far then near at once: the pair's difference is what the network added, the same
                local work (and about the same load on this machine) on both sides of it"""
                def fn():
                    t0 = time.monotonic()
                    far()
                    t1 = time.monotonic()
                    near()
                    t2 = time.monotonic()
                    times.append((t1 - t0, t2 - t1))
                    return (t1 - t0) - (t2 - t1)
                return fn

            runs = 3 * self.runs  # cheap, and the 0 ms side is at the mercy of this machine's load
            print(f"  status and its baselines: medians of {runs} runs", flush=True)
            status_t, true_t, agent_t = [], [], []
            (network, s_network, a_network, plain_far, login_far, fab_version, fab_list, import_tasks) = turns(
                runs, paired(lambda: self.fab("mux-far", "status"), lambda: self.fab("mux-near", "status"), status_t),
                paired(lambda: through_master("far"), lambda: through_master(USER), true_t),
                paired(lambda: agent_through_master("far"), lambda: agent_through_master(USER), agent_t),
                lambda: self.fab("far", "status"), self.ssh_true_once,
                lambda: local(*FAB, "--version"), lambda: local(*FAB, "--list"), lambda: local(sys.executable, "-c", "import tasks"),
            )
            (mux_far, mux_near), (s_far, s_near), (a_far, a_near) = (
                [statistics.median(t[k] for t in times) for k in (0, 1)] for times in (status_t, true_t, agent_t))
            lives = self.ssh_lives(runs, masters, script) if shutil.which("strace") else None
            if lives:  # the mux client's own life, without fab's start-up and its noise around it
                on_network = lives["fab"][0]
                how = "the life of fab's ssh mux client at RTT - at 0 ms (strace)"
            else:
                on_network, how = network, "status at RTT - at 0 ms"
            # the measured round trips to one decimal, compared as printed: 3.04 is 3.0 (the proxy's
            # jitter), 3.4 is not 3
            trips = round(on_network / rtt, 1)
            self.row(f"status through a live master (multiplex: true), {at} (median of {runs})", mux_far, s_far,
                     "ssh -S MASTER host true (the same master)",
                     f"<= 3.0 round trips on the network ({how}): {trips:.1f} RTT", trips <= 3.0)
            print(f"    on the network, median of (at {at} - at 0 ms, run one after the other) / RTT: status {network / rtt:.2f} RTT, "
                  f"ssh -S MASTER true {s_network / rtt:.2f} RTT, status's agent script through ssh -S MASTER sh -s "
                  f"{a_network / rtt:.2f} RTT; (status - fab --list) / RTT: {(mux_far - fab_list) / rtt:.2f}", flush=True)
            if lives:
                (fab_net, fab_far, fab_near), (bare_net, bare_far, bare_near) = lives["fab"], lives["bare"]
                print(f"    traced (strace, median of {runs} pairs): fab status's ssh mux client lives {fab_far[1] * 1000:.0f} ms at {at}, "
                      f"{fab_near[1] * 1000:.0f} ms at 0 ms: {fab_net / rtt:.2f} RTT on the network; the same agent script through a bare "
                      f"ssh -S MASTER sh -s {bare_far[1] * 1000:.0f} / {bare_near[1] * 1000:.0f} ms: {bare_net / rtt:.2f} RTT. "
                      f"fab before its ssh starts: {fab_far[0] * 1000:.0f} ms ({fab_near[0] * 1000:.0f} at 0 ms); "
                      f"after it exits: {fab_far[2] * 1000:.0f} ms ({fab_near[2] * 1000:.0f})", flush=True)
            self.row(f"  (context) status's agent script ({len(script) / 1000:.0f} kB) through ssh -S MASTER host sh -s, no fab, {at}",
                     a_far, s_far, "ssh -S MASTER host true", "(context)", True)
            self.row(f"  (context) status through a live master, {at}", mux_far, a_far,
                     "its agent script through ssh -S MASTER sh -s (fab's own cost)", "(context)", True)
            self.row("  (context) status through a live master, 0 ms RTT", mux_near, s_near, "ssh -S MASTER host true, 0 ms",
                     "(context)", True)
            self.row("  (context) fab's own start-up: fab --list (fabric and the fabfile)", fab_list, fab_version, "fab --version",
                     "(context)", True)
            print(f"    (context) python -c 'import tasks': {import_tasks:.3f} s", flush=True)
            self.row(f"  (context) status without multiplex (paramiko, a login each run), {at}", plain_far, mux_far,
                     "status through the master", "(context)", True)
            self.row(f"  (context) ssh host true (a login of its own), {at}", login_far, s_far, "ssh -S MASTER host true",
                     "(context)", True)

            print(f"  What each asks of sshd, {at} (DEBUG1 log; a mux client adds no connection and no auth):", flush=True)
            print("  | command | connections | auth requests | sessions | replies awaited |", flush=True)
            print("  |---|---|---|---|---|", flush=True)
            for name, fn in (("ssh -S MASTER host true", lambda: through_master("far")),
                             ("fab status, multiplex: true", lambda: self.fab("mux-far", "status")),
                             ("fab status, paramiko", lambda: self.fab("far", "status"))):
                c = self.counted(fn)
                print(f"  | {name} | {c['connections']} | {c['auth']} | {c['open session']} | {c['awaited']} |", flush=True)

            for host, raw_host, where, size, requests, goals in (("mux-far", "far", at, 100, 50, True),
                                                                 ("mux-near", USER, "0 ms RTT", 200, 200, False)):
                lp = self.forward_figures(size_mib=size, requests=requests, ours_host=host, raw_host=raw_host, at=where,
                                          goals=goals, setup=False)
                try:
                    socket.create_connection(("127.0.0.1", lp), timeout=2).close()
                    removed = "NO: the master still listens on it"
                except OSError:
                    removed = "yes"
                check = subprocess.run(self.ssh(raw_host, "-S", str(masters[raw_host]), "-O", "check"), capture_output=True, text=True)
                print(f"    after fab tunnel ended: its forward (port {lp}) removed from the master: {removed}; "
                      f"the master: {check.stderr.strip() or check.returncode}", flush=True)
        finally:
            for sock in sorted(control.iterdir()) if control.exists() else ():
                subprocess.run(self.ssh("far", "-S", str(sock), "-O", "exit"), capture_output=True)
            self.hosts_file.write_text("")
            shutil.rmtree(tmp, ignore_errors=True)
        return runtime


def leftovers(*needles):
    """Processes whose command line names one of NEEDLES (paths of this run's): pid and command."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if cmd and any(n in cmd for n in needles):
            found.append(f"{entry.name} {cmd[:160]}")
    return found


def fleet_figure(runs, count=8, rtt_ms=0, floor=None):
    """setup on `count` isolated hosts at once (--group) against setup on one of them; with
    rtt_ms, each host is reached through the delaying proxy. FLOOR: a function measured in the
    same turns as the setups (this machine's floor); its median comes last, else None."""
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

        one, many, *floor_time = turns(runs, lambda: setup("one"), lambda: setup("all"), *([floor] if floor else []))

        def again(group):
            start = time.monotonic()
            subprocess.run([*FAB, "-S", str(ssh_config), "setup", "--group", group], cwd=ROOT, env=env, capture_output=True, check=True)
            return time.monotonic() - start

        setup("all")
        one_again, many_again = turns(runs, lambda: again("one"), lambda: again("all"))
        return one, many, one_again, many_again, (floor_time or [None])[0]
    finally:
        if proxy:
            proxy.terminate()
            proxy.wait()
        for h in hosts:
            h.close()


def task_on(where, task):
    """fab's words for TASK on WHERE, ("-H", HOST) or ("--group", NAME)."""
    return [*where, task] if where[0] == "-H" else [task, *where]


class Fleet:
    """COUNT isolated hosts, each in its own network namespace with its own sshd and account,
    behind one delaying proxy (RTT_MS), named fjb0..fjbN-1 in a hosts.yaml with the groups
    `one` (fjb0) and `all`; this machine's ~/.config for fabjupyter is a temporary one."""

    def __init__(self, count, rtt_ms):
        self.count, self.hosts, self.proxy = count, [], None
        self.tmp = Path(tempfile.mkdtemp())
        try:
            for i in range(count):
                self.hosts.append(SSHHost(users=[(f"fjb{i}", "/bin/bash", True, False)], prefix=f"fabjupyter-bench{i}-",
                                          netns=(f"fjbns{i}", 100 + i)))
            known = self.tmp / "known_hosts"
            known.write_text("".join(h.known_hosts.read_text() for h in self.hosts))
            for _ in range(5):  # a port free_port() found may be taken before the proxy binds it
                routes = [(free_port(), h.address, 22) for h in self.hosts]
                self.proxy = delay_proxy(rtt_ms, routes)
                if self.proxy.poll() is None:
                    break
                self.proxy.wait()
            else:
                raise RuntimeError("the delaying proxy could not bind its ports")
            self.names = [f"fjb{i}-far" for i in range(count)]
            self.ssh_config = self.tmp / "ssh_config"
            self.ssh_config.write_text(
                "".join(f"Host {n}\n  HostName 127.0.0.1\n  Port {r[0]}\n  HostKeyAlias {r[1]}\n  User {h.users[f'fjb{i}'].name}\n"
                        f"  IdentityFile {h.client_key}\n  IdentitiesOnly yes\n"
                        for i, (n, r, h) in enumerate(zip(self.names, routes, self.hosts)))
                + f"Host *\n  UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n")
            lines = ["hosts:"]
            for i, h in enumerate(self.hosts):
                lines += [f"  fjb{i}:", f"    host: {self.names[i]}", f"    user: {h.users[f'fjb{i}'].name}", f"    identity: {h.client_key}"]
            lines += ["groups:", "  one: [fjb0]", f"  all: [{', '.join(f'fjb{i}' for i in range(count))}]"]
            (self.tmp / "hosts.yaml").write_text("\n".join(lines) + "\n")
            self.env = dict(os.environ, FABRIC_JUPYTER_HOSTS_FILE=str(self.tmp / "hosts.yaml"), XDG_CONFIG_HOME=str(self.tmp / "xdg"))
        except BaseException:
            self.close()
            raise

    def close(self):
        if self.proxy:
            self.proxy.terminate()
            self.proxy.wait()
        for h in self.hosts:
            h.close()

    def reset(self):
        for i, h in enumerate(self.hosts):
            h.reset_user(f"fjb{i}")

    def fab(self, *args, input=None):
        """Seconds of one `fab` run (an error if it fails)."""
        start = time.monotonic()
        r = subprocess.run([*FAB, "-S", str(self.ssh_config), *args], cwd=ROOT, env=self.env, input=input, capture_output=True, text=True)
        took = time.monotonic() - start
        if r.returncode != 0:
            raise RuntimeError(f"fab {' '.join(args)}: {r.stdout}{r.stderr}")
        return took

    def cold_setup(self, *where):
        """Seconds of `fab setup` on fresh accounts (the reset before it is not counted)."""
        self.reset()
        return self.fab(*task_on(where, "setup"), "--password-stdin", input=PASSWORD + "\n")

    def tunnel(self, *where):
        """Seconds from starting `fab tunnel` until it printed its URL(s): it prints a URL only
        once an answer came through that forward and the host confirmed where its Jupyter runs."""
        start = time.monotonic()
        p = subprocess.Popen([*FAB, "-S", str(self.ssh_config), *task_on(where, "tunnel")], cwd=ROOT, env=self.env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            urls = []
            for line in p.stdout:
                if "Jupyter is at " in line:  # one host
                    urls.append(line.split("Jupyter is at ", 1)[1].split()[0])
                    break
                words = line.split()
                if len(words) == 2 and words[0].startswith("fjb") and words[1].startswith("http://localhost:"):
                    urls.append(words[1])  # a row of the group's table
                if line.startswith("Ctrl-C"):
                    break
            took = time.monotonic() - start
            if len(urls) != (1 if where[0] == "-H" else self.count):
                raise RuntimeError(f"fab tunnel: {urls} {p.stderr.read() if p.poll() is not None else ''}")
            return took
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(30)

    def ssh_true(self, count):
        """Seconds for COUNT `ssh host true` at once, one per host: the machine's floor for that
        many logins, sshd's side included (the hosts share this machine's cores)."""
        start = time.monotonic()
        procs = [subprocess.Popen(["ssh", "-F", str(self.ssh_config), name, "true"], stdin=subprocess.DEVNULL)
                 for name in self.names[:count]]
        if any(p.wait() for p in procs):
            raise RuntimeError("ssh host true failed")
        return time.monotonic() - start

    def target(self, i):
        """Where a raw `ssh -L` reaches host I's Jupyter: its Unix socket (the default instance's,
        ~/.fabjupyter/run/jupyter.sock) when there is one, else 127.0.0.1:8888."""
        sock = self.hosts[i].users[f"fjb{i}"].home / ".fabjupyter" / "run" / "jupyter.sock"
        return str(sock) if sock.is_socket() else "127.0.0.1:8888"

    def raw_forwards(self, count):
        """Seconds for COUNT raw `ssh -N -L` at once, one per host, until each answers: the
        machine's floor for that many forwards."""
        ports = [free_port() for _ in range(count)]
        start = time.monotonic()
        errors = tempfile.TemporaryFile()
        procs = [subprocess.Popen(["ssh", "-F", str(self.ssh_config), "-N", "-o", "ExitOnForwardFailure=yes", "-L",
                                   f"127.0.0.1:{lp}:{self.target(i)}", name], stdin=subprocess.DEVNULL, stderr=errors)
                 for i, (lp, name) in enumerate(zip(ports, self.names))]
        def answered(lp, p):
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{lp}/api", timeout=5).close()
                    return
                except urllib.error.HTTPError:
                    return
                except OSError:
                    if p.poll() is not None:
                        errors.seek(0)
                        raise RuntimeError(f"a raw ssh -L exited: {errors.read().decode(errors='replace')}")
                    time.sleep(0.01)

        try:
            with ThreadPoolExecutor(max_workers=count) as pool:  # each waited for at once, as fab does
                for future in [pool.submit(answered, lp, p) for lp, p in zip(ports, procs)]:
                    future.result()
            return time.monotonic() - start
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait()

    def raw_forward(self):
        """Seconds from starting a raw `ssh -N -L` to fjb0's Jupyter until an answer through it."""
        lp = free_port()
        start = time.monotonic()
        p = subprocess.Popen(["ssh", "-F", str(self.ssh_config), "-N", "-o", "ExitOnForwardFailure=yes", "-L",
                              f"127.0.0.1:{lp}:{self.target(0)}", self.names[0]], stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{lp}/api", timeout=5).close()
                    return time.monotonic() - start
                except urllib.error.HTTPError:
                    return time.monotonic() - start
                except OSError:
                    if p.poll() is not None:
                        raise RuntimeError("raw ssh -L exited")
                    time.sleep(0.01)
        finally:
            p.terminate()
            p.wait()


def fleet32_figures(b, runs, count=32, rtt_ms=100.0):
    """Issue 20's figures: a group of COUNT hosts at RTT_MS against one host of it, each pair in
    turns in one run; and a cold setup of all against this machine's floor (COUNT plain Jupyter
    starts at once, no SSH), since the COUNT "hosts" share its cores."""
    rtt = rtt_ms / 1000.0
    print(f"Fleet: {count} hosts, each in its own network namespace with its own sshd, {rtt_ms:.0f} ms RTT:", flush=True)
    f = Fleet(count, rtt_ms)
    try:
        f.cold_setup("--group", "all")  # the configuration the floor's starts read is made the same way
        f.tunnel("-H", "fjb0")  # every tunnel figure is of hosts seen before (their ports remembered)
        f.tunnel("--group", "all")
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        f.fab("status", "--group", "all")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        per_host = (after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime) / count
        status_one, status_all, again_one, again_all = turns(
            runs, lambda: f.fab("-H", "fjb0", "status"), lambda: f.fab("status", "--group", "all"),
            lambda: f.fab("-H", "fjb0", "setup"), lambda: f.fab("setup", "--group", "all"))
        tunnel_one, tunnel_all, raw, raw_all = turns(runs, lambda: f.tunnel("-H", "fjb0"), lambda: f.tunnel("--group", "all"),
                                                     f.raw_forward, lambda: f.raw_forwards(count))
        true_one, true_all = turns(runs, lambda: f.ssh_true(1), lambda: f.ssh_true(count))
        at = f"{count} hosts, {rtt_ms:.0f} ms RTT"
        b.row(f"status --group, {at}", status_all, status_one, "status on 1 host", "<= 1.3x", status_all <= 1.3 * status_one)
        b.row(f"setup --group, nothing to change, {at}", again_all, again_one, "setup again on 1 host", "<= 1.3x",
              again_all <= 1.3 * again_one)
        b.row(f"tunnel --group until every forward answers, {at}", tunnel_all, tunnel_one, "tunnel on 1 host", "<= 2x",
              tunnel_all <= 2 * tunnel_one)
        b.row(f"tunnel (1 host) until its URL, after an answer through it, {rtt_ms:.0f} ms RTT", tunnel_one, raw,
              "raw ssh -N -L until an answer", "<= + 3 RTT", tunnel_one <= raw + 3 * rtt)
        b.row(f"  (context) this machine: {count} `ssh host true` at once, one per host", true_all, true_one, "1 ssh host true",
              "(context)", True)
        b.row(f"tunnel --group until every forward answers, {at}, vs this machine's floor", tunnel_all, raw_all,
              f"floor ({count} raw ssh -N -L at once until each answers)", "(context)", True)
        print(f"  (context) this side's CPU per host, status --group on {count} hosts: {per_host * 1000:.1f} ms", flush=True)
        cold_one, cold_all, floor = turns(runs, lambda: f.cold_setup("-H", "fjb0"), lambda: f.cold_setup("--group", "all"),
                                          lambda: parallel_jupyter_floor(count, runs))
        b.row(f"setup --group from nothing, {at}, vs this machine's floor", cold_all, floor,
              f"floor ({count} plain Jupyter starts at once, no SSH)", "<= 1.2x", cold_all <= 1.2 * floor)
        b.row(f"  (context) setup --group from nothing, {at}", cold_all, cold_one, "setup on 1 host", "(context)", True)
    finally:
        f.close()
    return per_host


def parallel_jupyter_floor(count, runs, boot=False):
    """Seconds for the same machine to start `count` JupyterLabs at once, without SSH or this
    tool: what 8 "hosts" sharing this machine's 2 cores cost at best. Each is started as the
    agent starts it, in a home of its own with the files setup writes there (from the agent's
    own tables); boot=True: through boot.py, as fast_start does."""
    kind = kinds.KINDS["server2"]
    config, password = files.json_text(kind.settings("ssh")), files.json_text(kind.password(fresh_hash(PASSWORD)))

    def once():
        tmp = Path(tempfile.mkdtemp())
        boot_py = boot_copy() if boot else None
        homes = [tmp / f"h{i}" for i in range(count)]
        for home in homes:
            for folder, text in (("config", config), ("password", password)):
                (home / ".fabjupyter" / folder).mkdir(parents=True)
                (home / ".fabjupyter" / folder / kind.config_name).write_text(text)
        procs, ports = [], [free_port() for _ in range(count)]
        start = time.monotonic()
        for home, port in zip(homes, ports):
            argv, env = agent_start(port, home, boot_py, root=os.getuid() == 0)
            procs.append(subprocess.Popen(argv, env=env, cwd=home, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, start_new_session=True))
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
            b.setup_once()  # the configuration that the floor's start reads
            floor, setup_time = turns(runs, b.login_and_start_once, b.setup_once)
        finally:
            b.close()
        ours.append(setup_time)
        floors.append(floor)
        print(f"  {rtt:.0f} ms RTT: setup {setup_time:.2f} s, floor {floor:.2f} s", flush=True)
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.plot(rtts_ms, ours, "o-", label="fab setup (from nothing to an authenticated 200)")
    ax.plot(rtts_ms, floors, "s--", label="floor: ssh host true + plain Jupyter start")
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


def slurm_figure(runs):
    """launcher slurm, on the test cluster (tests/slurmcluster.py): from `fab setup tunnel` to the
    first password login through the tunnel, against its floor: sbatch of a plain `jupyter lab`
    on the node's address until it answers there (the scheduler's submit-to-RUNNING plus a
    Jupyter start on the node), measured from the login node. The floor's sbatch goes through
    an ssh login too (SlurmCluster.sbatch): the SSH logins of each side are counted in the login
    node's sshd log (its "Accepted ..." lines), not assumed. Returns (ours, floor, ours' logins,
    the floor's logins), the logins as the median count per run."""
    from tests.slurmcluster import SlurmCluster

    print("SLURM: a login node and a compute node (slurmctld, slurmd), each in its own network namespace:", flush=True)
    cluster = SlurmCluster()
    tmp = Path(tempfile.mkdtemp())
    try:
        hosts_file = tmp / "hosts.yaml"
        hosts_file.write_text('hosts:\n  fjslurm:\n    launcher: slurm\n    sbatch: ["--time=00:10:00"]\n')
        env = dict(os.environ, FABRIC_JUPYTER_HOSTS_FILE=str(hosts_file), XDG_CONFIG_HOME=str(tmp / "xdg"))
        base = [*FAB, "-S", str(cluster.login.ssh_config), "-H", "fjslurm"]
        subprocess.run([*base, "setup", "--password-stdin"], cwd=ROOT, env=env, input=PASSWORD + "\n", capture_output=True, text=True,
                       check=True)
        subprocess.run([*base, "stop"], cwd=ROOT, env=env, capture_output=True, check=True)
        log = cluster.login.sshd_log
        logins = {"ours": [], "floor": []}

        def count_logins(name, offset):
            """the logins sshd accepted since OFFSET of its log (after the timed part: not timed)"""
            time.sleep(0.3)  # sshd writes its lines as it goes; the last may lag the client
            logins[name].append(len(re.findall(r"Accepted \S+ for ", log.read_bytes()[offset:].decode(errors="replace"))))

        def ours():
            port = free_port()
            offset = log.stat().st_size
            start = time.monotonic()
            out = tmp / "tunnel.out"
            with open(out, "w") as f:  # a file, not a pipe: what it prints after Ctrl-C must never block it
                proc = subprocess.Popen([*base, "setup", "tunnel", "--local-port", str(port)], cwd=ROOT, env=env,
                                        stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
            try:
                while "Jupyter is at " not in out.read_text():
                    if proc.poll() is not None:
                        raise RuntimeError("fab setup tunnel: " + out.read_text())
                    time.sleep(0.01)
                session = Session(f"http://127.0.0.1:{port}/")
                if session.login(PASSWORD) != 200:
                    raise RuntimeError("the password login failed")
                took = time.monotonic() - start
                count_logins("ours", offset)
            finally:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(90)  # it cancels the job first
                except subprocess.TimeoutExpired:
                    proc.kill()  # no fab left behind; the error says it hung
                    proc.wait()
                    raise RuntimeError(f"fab setup tunnel did not end within 90 s of Ctrl-C: {out.read_text()[-1000:]}") from None
            subprocess.run([*base, "stop"], cwd=ROOT, env=env, capture_output=True, check=True)
            return took

        probe = ("import sys, time, urllib.request as u\n"
                 "while True:\n"
                 "    try:\n"
                 "        u.urlopen(sys.argv[1], timeout=2).close(); break\n"
                 "    except OSError:\n"
                 "        time.sleep(0.05)\n")

        def floor():
            port = free_port()
            offset = log.stat().st_size
            start = time.monotonic()
            job = cluster.sbatch("fjslurm", f"--time=00:10:00 --wrap 'exec {JUPYTER_VENV}/bin/jupyter-lab --no-browser "
                                            f"--ip={cluster.node_addr} --port={port} --ServerApp.token=bench'")
            cluster.in_login("python3", "-c", probe, f"http://{cluster.node_addr}:{port}/api", timeout=120)
            took = time.monotonic() - start
            count_logins("floor", offset)
            cluster.slurm("scancel", str(job))
            cluster.cancel_all()
            return took

        ours_time, floor_time = turns(runs, ours, floor)
        return ours_time, floor_time, statistics.median(logins["ours"]), statistics.median(logins["floor"])
    finally:
        cluster.close()


def install_figure(runs):
    """setup --install on an offline host (a network namespace with no route to an index), from a
    warm local cache, timed from outside: the wall clock of the whole `fab setup` (the wheels sent
    as one tar, venv, pip, configuration, password, Jupyter started and answering), against its
    floor, timed the same way: one `ssh host sh -c ...` that receives the same wheels as a tar on
    stdin, unpacks them, makes a venv (python3 -m venv), installs into it (pip install --no-index
    --find-links) and starts that JupyterLab until /api answers there. Returns (ours, floor,
    number of wheels, the agent's own timers of the install step as fab printed them)."""
    import tarfile

    tmp = Path(tempfile.mkdtemp())
    tmp.chmod(0o755)
    host = SSHHost(users=[("fjbinst", "/bin/bash", False, False)], prefix="fabjupyter-bench-install-", netns=("fjbinstns", 90))
    try:
        spec = next(l.strip() for l in (ROOT / "tests" / "requirements" / "lab.txt").read_text().splitlines() if l.startswith("jupyterlab=="))
        hosts_file = tmp / "hosts.yaml"
        hosts_file.write_text(f"hosts:\n  fjbinst:\n    install: true\n    install_spec: {spec}\n")
        env = dict(os.environ, FABRIC_JUPYTER_HOSTS_FILE=str(hosts_file), XDG_CACHE_HOME=str(tmp / "cache"))
        base = [*FAB, "-S", str(host.ssh_config), "-H", "fjbinst"]
        subprocess.run([*base, "setup", "--dry-run"], cwd=ROOT, env=env, capture_output=True, check=True)  # warms the cache
        wheels = sorted((tmp / "cache").rglob("*.whl"))
        said = []

        def ours():
            host.reset_user("fjbinst")
            start = time.monotonic()
            r = subprocess.run([*base, "setup", "--password-stdin"], cwd=ROOT, env=env, input=PASSWORD + "\n", capture_output=True, text=True)
            took = time.monotonic() - start
            if r.returncode != 0:
                raise RuntimeError(r.stdout + r.stderr)
            said.append(re.search(r"into \S+ in (\S+ s)", r.stdout).group(1))  # as printed: one decimal
            subprocess.run([*base, "stop"], cwd=ROOT, env=env, capture_output=True, check=True)
            return took

        port = 18891  # in the host's own network namespace, on an account reset before each run
        q = shell.sh_quote
        script = (f"set -e; mkdir w; tar xf - -C w; /usr/bin/python3 -m venv v; "
                  f"v/bin/python -m pip install -q --disable-pip-version-check --no-index --find-links w {q(spec)}; "
                  f"v/bin/jupyter-lab --no-browser --port={port} --port-retries=0 --ServerApp.token=bench "
                  f"</dev/null >/dev/null 2>&1 & pid=$!; "
                  f"v/bin/python -c {q(WAIT_API)} http://127.0.0.1:{port}/api; kill $pid; wait $pid || true")

        def floor():
            host.reset_user("fjbinst")
            start = time.monotonic()
            p = subprocess.Popen(["ssh", "-F", str(host.ssh_config), "fjbinst", "sh -c " + q(script)], stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            with tarfile.open(fileobj=p.stdin, mode="w|") as tar:  # streamed as fab streams it
                for f in wheels:
                    tar.add(str(f), arcname=f.name, recursive=False)
            p.stdin.close()
            err = p.stderr.read()
            if p.wait() != 0:
                raise RuntimeError(f"the install floor failed: {err.decode(errors='replace')[-500:]}")
            return time.monotonic() - start

        total, floor_time = turns(runs, ours, floor)
        return total, floor_time, len(wheels), said
    finally:
        host.close()
        subprocess.run(["rm", "-rf", str(tmp)])


# polls a URL until it answers (any HTTP status), as a floor's stand-in for the agent's readiness check
WAIT_API = ("import sys, time, urllib.error, urllib.request as u\n"
            "end = time.monotonic() + 120\n"
            "while True:\n"
            "    try:\n"
            "        u.urlopen(sys.argv[1], timeout=2).close(); break\n"
            "    except urllib.error.HTTPError:\n"
            "        break\n"
            "    except OSError:\n"
            "        time.sleep(0.02)\n"
            "        if time.monotonic() > end: sys.exit('no answer from ' + sys.argv[1])\n")


def print_install(total, floor, count, said):
    print("| figure | ours | baseline | ratio |")
    print("|---|---|---|---|")
    print(f"| setup --install on an offline host, warm local cache ({count} wheels), wall clock of the whole fab command: the tar "
          f"sent, venv, pip, configuration, password, Jupyter started and answering | {total:.3f} s | floor (one ssh sh -c: the same "
          f"wheels as a tar on stdin, venv, pip install --no-index, that JupyterLab started until /api answers): {floor:.3f} s | "
          f"{total / floor:.2f}x |")
    print(f"(context) the agent's own timer of its venv and pip step, as fab printed it (it starts after the tar arrived): "
          f"{', '.join(said)}")


# --- figures the README quotes that no other mode makes (issue 27) ---------------------------
READY_DRIVER = """import json, sys, time
from jupyter_core.paths import jupyter_runtime_dir
ns = {"__name__": "fabjupyter_ready"}
exec(compile(sys.stdin.read(), "ready.py", "exec"), ns)
ns.update(port=int(sys.argv[1]), pid=int(sys.argv[2]), timeout=60.0, tls=False, sock=sys.argv[3], ip="127.0.0.1",
          runtime_dir=jupyter_runtime_dir())

def check():
    r = ns["main"]()
    if not r.startswith("ready "):
        sys.exit("ready.py: " + r)

def wait_only():
    ns["request"]("/api")

fns, times = (check, wait_only), ([], [])
for i in range(int(sys.argv[4])):
    for k in ((0, 1) if i % 2 == 0 else (1, 0)):
        t = time.perf_counter()
        fns[k]()
        times[k].append(time.perf_counter() - t)
print(json.dumps(times))
"""


def ready_figure(b, runs):
    """The check after each start (tasks/ready.py: the server that answers is the process
    started, its runtime file, three unauthenticated requests) against a check that only waits
    for /api to answer (one request), both run as the agent runs ready.py (in one Python, its
    functions exec'd, as the user who runs Jupyter) against the same running JupyterLab, in
    turns. Returns (check, wait-only) medians in seconds."""
    b.fab(USER, "setup", "--password-stdin", input=PASSWORD + "\n")
    state = b.status()
    user = b.host.users[USER]
    r = subprocess.run(["setpriv", f"--reuid={user.uid}", f"--regid={user.uid}", "--init-groups", interpreter_of(JUPYTER_LAB), "-c",
                        READY_DRIVER, str(state.get("port") or 0), str(state["pid"]), state.get("socket") or "", str(runs)],
                       input=(ROOT / "tasks" / "remote" / "ready.py").read_text(), cwd=user.home, capture_output=True, text=True,
                       env={"HOME": str(user.home), "PATH": "/usr/bin:/bin"})
    if r.returncode != 0:
        raise RuntimeError(f"the ready.py driver: {r.stdout[-300:]}{r.stderr[-500:]}")
    check, wait_only = (statistics.median(t) for t in json.loads(r.stdout))
    where = f"socket {state['socket']}" if state.get("socket") else f"port {state['port']}"
    b.row(f"the check after a start (tasks/ready.py), on a running JupyterLab ({where}), in the agent's process, median of {runs}",
          check * 1000, wait_only * 1000, "waiting for /api alone (one request)", "(context)", True, unit="ms")
    return check, wait_only


def proc_status(pid):
    """{field: value} of /proc/PID/status, sizes in kB as integers where they are."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        v = v.split()
        fields[k] = int(v[0]) if v and v[0].isdigit() else " ".join(v)
    return fields


def memory_kb(pid):
    """(RSS, PSS, private) kB of a process, from /proc/PID/smaps_rollup."""
    got = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        k, _, v = line.partition(":")
        got[k] = int(v.split()[0])
    return got["Rss"], got["Pss"], got["Private_Clean"] + got["Private_Dirty"]


def children(pid, name):
    """pids of PID's direct children whose command is NAME."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                st = proc_status(entry.name)
            except OSError:
                continue
            if st.get("PPid") == pid and st.get("Name") == name:
                found.append(int(entry.name))
    return found


def child_cpu(fn):
    """Seconds of CPU (user + system) that the children fn ran and waited for used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    fn()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def footprint_figures(b, runs, count):
    """What a group costs on this side, per host and per forward, on COUNT aliases of one test
    sshd on loopback (the remote side shares this machine): this side's CPU per host for status
    and setup --group (the group of COUNT minus the group of one, / COUNT - 1: fab's start-up
    taken out), fab's peak threads and open files while it asks COUNT hosts, and for a tunnel
    --group of COUNT forwards: each forward's ssh (RSS, PSS, private memory), and fab's own
    memory, threads and open files per forward (COUNT forwards minus one, / COUNT - 1); the CPU
    of one `ssh host true` login (this side's client only). Medians of RUNS, in turns."""
    names = [f"fp{i}" for i in range(count)]
    tmp = Path(tempfile.mkdtemp())
    b.env = dict(b.env, XDG_CONFIG_HOME=str(tmp / "config"))  # its remembered ports: this run's
    b.hosts_file.write_text("hosts:\n" + "".join(f"  {n}:\n    host: {USER}\n" for n in names)
                            + f"groups:\n  one: [fp0]\n  all: [{', '.join(names)}]\n")
    print(f"This side's footprint: {count} aliases of one sshd on loopback (the remote side shares this machine):", flush=True)
    try:
        b.fab("fp0", "setup", "--password-stdin", input=PASSWORD + "\n")

        def group(*args):
            return [*FAB, "-S", str(b.host.ssh_config), *args]

        def run(argv):
            subprocess.run(argv, cwd=ROOT, env=b.env, check=True, capture_output=True)

        def peak(argv):
            """(peak threads, peak open files) of the fab process while it runs ARGV"""
            p = subprocess.Popen(argv, cwd=ROOT, env=b.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            threads = fds = 0
            while p.poll() is None:
                try:
                    threads = max(threads, proc_status(p.pid)["Threads"])
                    fds = max(fds, len(os.listdir(f"/proc/{p.pid}/fd")))
                except (OSError, KeyError):
                    pass
                time.sleep(0.005)
            if p.returncode != 0:
                raise RuntimeError(f"{argv}: exit status {p.returncode}")
            return threads, fds

        cpu = {}
        for task in ("status", "setup"):
            one, many = turns(runs, lambda: child_cpu(lambda: run(group(task, "--group", "one"))),
                              lambda: child_cpu(lambda: run(group(task, "--group", "all"))))
            cpu[task] = (many - one) / (count - 1)
            print(f"  this side's CPU per host, {task} --group ({count} hosts minus 1, / {count - 1}): {cpu[task] * 1000:.1f} ms "
                  f"({task} --group all: {many:.3f} s of CPU, one host: {one:.3f} s)", flush=True)
        threads, fds = peak(group("status", "--group", "all"))
        print(f"  fab status --group on {count} hosts at once (up to 64 workers): at most {threads} threads, {fds} open files", flush=True)

        def forwards(grp):
            """{measure: value} with GRP's tunnel open (every forward answered)"""
            p = subprocess.Popen(group("tunnel", "--group", grp), cwd=ROOT, env=b.env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                for line in p.stdout:
                    if line.startswith("Ctrl-C"):
                        break
                else:
                    raise RuntimeError(f"fab tunnel --group {grp}: {p.stderr.read()}")
                time.sleep(0.5)  # the forwards' ssh settle (their first answers are in)
                ssh = children(p.pid, "ssh")
                mem = [memory_kb(pid) for pid in ssh]
                st = proc_status(p.pid)
                return {"ssh": len(ssh), "rss": statistics.median(m[0] for m in mem), "pss": statistics.median(m[1] for m in mem),
                        "private": statistics.median(m[2] for m in mem), "fab_rss": st["VmRSS"], "threads": st["Threads"],
                        "fds": len(os.listdir(f"/proc/{p.pid}/fd"))}
            finally:
                p.send_signal(signal.SIGTERM)
                p.wait(30)

        seen = {"one": [], "all": []}
        forwards("all")  # every host's local port remembered, as in use
        for i in range(runs):
            for grp in ("one", "all") if i % 2 == 0 else ("all", "one"):
                seen[grp].append(forwards(grp))
        med = {grp: {k: statistics.median(d[k] for d in got) for k in got[0]} for grp, got in seen.items()}
        one, many = med["one"], med["all"]
        per = lambda k: (many[k] - one[k]) / (count - 1)  # noqa: E731
        print(f"  tunnel --group, {many['ssh']:g} forwards open: each forward's ssh {many['rss'] / 1024:.1f} MB resident, "
              f"{many['pss'] / 1024:.1f} MB PSS, {many['private'] / 1024:.1f} MB its own (private); per forward in fab: "
              f"{per('fab_rss') / 1024:.2f} MB of memory, {per('threads'):.2f} threads, {per('fds'):.2f} open files "
              f"({count} forwards against 1)", flush=True)
        login = statistics.median(child_cpu(lambda: run(["ssh", "-F", str(b.host.ssh_config), USER, "true"])) for _ in range(max(runs, 5)))
        print(f"  CPU of one ssh login here (ssh host true, the client's side: exec, key exchange, signing): {login * 1000:.0f} ms",
              flush=True)
        return cpu, (threads, fds), (one, many), login
    finally:
        b.hosts_file.write_text("")
        shutil.rmtree(tmp, ignore_errors=True)


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
    raw = subprocess.Popen(b.ssh(USER, "-N", "-o", "ExitOnForwardFailure=yes", "-L", f"127.0.0.1:{raw_port}:127.0.0.1:{jport}"),
                           stderr=subprocess.DEVNULL)
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


# --- the client's own start-up (--startup) ---------------------------------------------------------
# The `fabjupyter` command of this checkout (the console script runs this same main), and an
# environment in which Python keeps its bytecode (tasks/__pycache__, ignored by git), as an
# installed package has it: a checkout run with PYTHONDONTWRITEBYTECODE would compile every
# module of its own on every start.
FABJUPYTER = [sys.executable, "-c", "import sys; sys.argv[0] = 'fabjupyter'; from tasks.cli import main; main()"]
STARTUP_GOAL = 0.12  # s from the process's start to its first byte towards the host
MASTER_GOAL = 0.15  # s over the master's own `ssh -S MASTER host sh -s` with the same script


def startup_env(env):
    env = {k: v for k, v in env.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    subprocess.run([sys.executable, "-c", "import tasks.cli"], cwd=ROOT, env=env, check=True)  # the bytecode written once
    return env


def first_connect(argv, env, targets, input=None):
    """Seconds from ARGV's start (its execve) to its first connect() to one of TARGETS (a
    master's control socket path, or "127.0.0.1:PORT"): when the first byte leaves for the host
    (a TCP connect sends the SYN; an `ssh` mux client's hello follows its connect at once; the
    client's own connection to a control socket, which only holds the master, does not count).
    Traced by strace, execve and connect only (through seccomp: next to no overhead), every child
    followed."""
    with tempfile.NamedTemporaryFile("r") as out:
        r = subprocess.run(["strace", "-f", "--seccomp-bpf", "-ttt", "-s", "512", "-e", "trace=execve,connect", "-o", out.name, *argv],
                           cwd=ROOT, env=env, input=input, capture_output=True)
        lines = out.read().splitlines()
    if r.returncode != 0:
        raise RuntimeError(f"{argv[-3:]} under strace: {r.stdout[-300:]!r} {r.stderr[-300:]!r}")
    start = float(lines[0].split()[1])
    ssh_pids = set()
    for line in lines:
        pid = line.split()[0]
        if re.search(r'execve\("[^"]*/ssh", ', line):
            ssh_pids.add(pid)
        if "connect(" not in line:
            continue
        for target in targets:
            host, _, port = target.rpartition(":")
            if (f'sun_path="{target}"' in line and pid in ssh_pids if target.startswith("/")
                    else f"sin_port=htons({port})" in line and f'inet_addr("{host}")' in line):
                return float(line.split()[1]) - start
    raise RuntimeError(f"{argv[-3:]}: no connect() to {targets} in its trace")


def import_times(env, module="tasks.cli", tries=3):
    """`python -X importtime -c 'import MODULE'`: the cumulative microseconds of each module,
    the smallest of TRIES runs (the least disturbed by the machine's other work)."""
    best = {}
    for _ in range(tries):
        r = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"], cwd=ROOT, env=env,
                           capture_output=True, text=True, check=True)
        for line in r.stderr.splitlines():
            m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
            if m:
                best[m[3]] = min(best.get(m[3], 1 << 62), int(m[1]))
    return best


def startup_figures(rtt_ms, runs):
    """Issue 27: what the client's own Python start-up costs, each figure with its baseline in
    turns in this one run: `fabjupyter --version` against `python -c pass`; the time from the
    process's start to its first byte towards the host (traced), through a live OpenSSH master
    (multiplex: true) and on the paramiko path; `status` through the master against the same
    agent script through a bare `ssh -S MASTER host sh -s`; `tunnel` alone (seen before) against
    a raw `ssh -N -L` + 3 RTT. Returns the rows (name, ours, baseline, baseline's name, goal, met)."""
    rtt = rtt_ms / 1000.0
    at = f"{rtt_ms:.0f} ms RTT"
    rows = []

    def row(name, ours, base, base_name, goal, ok):
        rows.append((name, ours, base, base_name, goal, ok))
        verdict = "" if ok is None else f": {'met' if ok else 'MISSED'}"
        print(f"  {name}: {ours:.3f} s vs {base_name} {base:.3f} s (+{(ours - base) * 1000:.0f} ms, {ours / base:.2f}x)  "
              f"goal {goal}{verdict}", flush=True)

    b = Bench(rtt_ms, runs)
    tmp = Path(tempfile.mkdtemp())
    runtime = tmp / "run"
    runtime.mkdir(mode=0o700)
    env = b.env = startup_env(dict(b.env, XDG_RUNTIME_DIR=str(runtime), XDG_CONFIG_HOME=str(tmp / "config")))
    control = runtime / "fabjupyter" / "ssh"
    ssh_config = str(b.host.ssh_config)

    def fj(host, *args):
        return [*FABJUPYTER, "-S", ssh_config, "-H", host, *args]

    def run(argv, input=None):
        r = subprocess.run(argv, cwd=ROOT, env=env, input=input, capture_output=True)
        if r.returncode != 0:
            raise RuntimeError(f"{argv[-3:]}: {r.stdout[-300:]!r} {r.stderr[-300:]!r}")
        return r

    master = None
    try:
        print(f"The client's own start-up, {at} (delaying proxy) where a host is reached:", flush=True)
        b.hosts_file.write_text("hosts:\n  mux-far:\n    host: far\n    multiplex: true\n")
        run(fj("far", "setup", "--password-stdin"), input=(PASSWORD + "\n").encode())
        run(fj("mux-far", "status"))  # the earlier run that starts the master (ControlPersist keeps it)
        sockets = [p for p in control.iterdir() if p.is_socket()] if control.exists() else []
        if len(sockets) != 1:
            raise RuntimeError(f"fabjupyter -H mux-far status left {len(sockets)} control sockets in {control}, not one")
        master = sockets[0]
        state = json.loads(run(fj("far", "status", "--json")).stdout)
        remote = state["socket"] or f"127.0.0.1:{state['port']}"  # where the raw ssh -L forwards to, as the tunnel does
        script = agent_script("status", {"instance": "default"}).encode()
        bare = b.ssh("far", "-S", str(master), "-o", "ControlMaster=no", "-o", "BatchMode=yes") + ["sh -s"]
        proxy = f"127.0.0.1:{b.proxy_port}"

        def bare_status():
            r = subprocess.run(bare, input=script, capture_output=True)
            if r.returncode != 0 or b'"reply"' not in r.stdout:
                raise RuntimeError(f"the status agent through ssh -S: {r.stdout[-300:]!r} {r.stderr[-300:]!r}")

        version, floor = turns(runs, lambda: run([*FABJUPYTER, "--version"]), lambda: run([sys.executable, "-c", "pass"]))
        row("fabjupyter --version", version, floor, "python -c pass (the interpreter alone)", "(context)", None)

        mux_first, paramiko_first, bare_first = turns(
            runs, lambda: first_connect(fj("mux-far", "status"), env, [str(master)]),
            lambda: first_connect(fj("far", "status"), env, [proxy]),
            lambda: first_connect(bare, env, [str(master)], input=script))
        row("status through a live master: start to first byte (its mux client's connect)", mux_first, bare_first,
            "ssh -S MASTER host sh -s: start to its connect", f"<= {STARTUP_GOAL:.2f} s", mux_first <= STARTUP_GOAL)
        row("status, paramiko (a login): start to first byte (its TCP connect)", paramiko_first, bare_first,
            "ssh -S MASTER host sh -s: start to its connect", f"<= {STARTUP_GOAL:.2f} s", paramiko_first <= STARTUP_GOAL)

        status, bare_t = turns(runs, lambda: run(fj("mux-far", "status")), bare_status)
        row(f"status through a live master, {at}", status, bare_t, "the same agent script through ssh -S MASTER host sh -s",
            f"<= + {MASTER_GOAL:.2f} s", status <= bare_t + MASTER_GOAL)

        def tunnel_alone():
            """Seconds from starting `fabjupyter tunnel` until it printed its URL (it does once an
            answer came through the forward and the host confirmed where Jupyter runs)."""
            start = time.monotonic()
            p = subprocess.Popen(fj("far", "tunnel"), cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
            try:
                for line in p.stdout:
                    if "Jupyter is at " in line:
                        return time.monotonic() - start
                raise RuntimeError(f"fabjupyter tunnel printed no URL: {p.stderr.read()}")
            finally:
                p.send_signal(signal.SIGTERM)
                p.wait(30)

        def raw_forward():
            """Seconds from starting a raw `ssh -N -L` to Jupyter until an answer through it."""
            lp = free_port()
            start = time.monotonic()
            errors = tempfile.TemporaryFile()
            p = subprocess.Popen(b.ssh("far", "-N", "-o", "ExitOnForwardFailure=yes", "-o", "ControlPath=none", "-L",
                                       f"127.0.0.1:{lp}:{remote}"), stdin=subprocess.DEVNULL, stderr=errors)
            try:
                while True:
                    try:
                        urllib.request.urlopen(f"http://127.0.0.1:{lp}/api", timeout=5).close()
                        return time.monotonic() - start
                    except urllib.error.HTTPError:
                        return time.monotonic() - start
                    except OSError:
                        if p.poll() is not None:
                            errors.seek(0)
                            raise RuntimeError(f"raw ssh -L exited: {errors.read().decode(errors='replace')}")
                        time.sleep(0.01)
            finally:
                p.terminate()
                p.wait()
                errors.close()

        tunnel_alone()  # a host seen before: its port remembered, as the figure is of
        tunnel_t, raw_t = turns(runs, tunnel_alone, raw_forward)
        row(f"tunnel alone until its URL, {at}", tunnel_t, raw_t, "raw ssh -N -L until an answer", "<= + 3 RTT",
            tunnel_t <= raw_t + 3 * rtt)

        print("  Imports (python -X importtime -c 'import tasks.cli', cumulative ms, the smallest of 3 runs):", flush=True)
        imports = import_times(env)
        for name in ("tasks.cli", "tasks", "fabric", "invoke", "paramiko", "unittest.mock", "invoke.vendor.yaml", "yaml",
                     "cryptography.x509", "importlib.metadata", "tasks.protocol", "tasks.hosts.inventory", "tasks.remote.agent", "tasks.forwards.tunnel"):
            print(f"    {name}: {imports[name] / 1000:.1f} ms" if name in imports else f"    {name}: not imported", flush=True)
    finally:
        if master is not None:
            subprocess.run(b.ssh("far", "-S", str(master), "-O", "exit"), capture_output=True)
        b.hosts_file.write_text("")
        b.close()
        shutil.rmtree(tmp, ignore_errors=True)
        left = leftovers(str(b.host.base), str(runtime))
        print(f"  Left running after the end: {'; '.join(left) or 'none'}", flush=True)
    return rows


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
    # started in the background (`... &`), this process ignores SIGINT and every child would
    # inherit that: fab's Ctrl-C path (the SLURM figure ends its tunnel so) would never run
    signal.signal(signal.SIGINT, signal.default_int_handler)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rtt-ms", type=float, default=100.0, help="the delaying proxy's RTT for the latency figures (default 100, where their goals are set)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--plot", metavar="PNG", help="instead: setup time vs RTT (0-200 ms) against its floor, drawn to PNG (needs matplotlib)")
    ap.add_argument("--slurm", action="store_true", help="instead: the batch-job figure, on a test SLURM cluster")
    ap.add_argument("--install", action="store_true", help="instead: setup --install on an offline host, from a warm cache")
    ap.add_argument("--mux", action="store_true", help="instead: multiplex: true (this tool's own OpenSSH master) at --rtt-ms: status "
                    "against ssh -S MASTER true, the tunnel's forward on the master against raw ssh -N -L")
    ap.add_argument("--fleet32", action="store_true", help="instead: the group figures on 32 hosts at --rtt-ms (about 10 minutes)")
    ap.add_argument("--extras", action="store_true", help="instead: the figures the README quotes from no other mode: the "
                    "check after a start (ready.py), Fabric's forward_local against ssh -N -L, and this side's CPU, memory, "
                    "threads and open files per host and per forward (on --hosts aliases of one sshd)")
    ap.add_argument("--hosts", type=int, default=50, help="with --extras: how many host aliases (default 50)")
    ap.add_argument("--startup", action="store_true", help="instead: the client's own start-up: fabjupyter --version, start to first "
                    "byte, status through a master against ssh -S MASTER sh -s, tunnel alone against raw ssh -L")
    args = ap.parse_args(argv)
    if args.extras:
        return extras(args)
    if args.startup:
        print(f"Machine: {machine()}")
        print(f"Date: {time.strftime('%Y-%m-%d')}; medians of {args.runs} runs, each figure and its baseline in turns", flush=True)
        rows = startup_figures(args.rtt_ms, args.runs)
        print()
        print("| figure | ours | baseline | difference | goal |")
        print("|---|---|---|---|---|")
        for name, ours, base, base_name, goal, ok in rows:
            verdict = "" if ok is None else f": {'met' if ok else '**missed**'}"
            print(f"| {name} | {ours:.3f} s | {base_name}: {base:.3f} s | +{(ours - base) * 1000:.0f} ms | {goal}{verdict} |")
        return 0
    if args.mux:
        print(f"Machine: {machine()}")
        print(f"Date: {time.strftime('%Y-%m-%d')}; medians of {args.runs} runs unless noted, each figure and its baseline in turns",
              flush=True)
        b = Bench(args.rtt_ms, args.runs)
        try:
            b.mux_figures()
        finally:
            b.close()
            runtime = getattr(b, "mux_runtime", None)
            needles = [str(b.host.base)] + ([str(runtime)] if runtime else [])
            left = leftovers(*needles)
            print(f"Left running after the end (processes naming {', '.join(needles)}): {'; '.join(left) or 'none'}", flush=True)
        print()
        print_table(b.rows)
        return 0
    if args.fleet32:
        print(f"Machine: {machine()}")
        print(f"Date: {time.strftime('%Y-%m-%d')}; medians of {args.runs} runs, each figure and its baseline in turns", flush=True)
        b = Bench.__new__(Bench)  # only its table: no throwaway host of its own
        b.rows = []
        fleet32_figures(b, args.runs, rtt_ms=args.rtt_ms)
        print()
        print_table(b.rows)
        return 0
    if args.install:
        print(f"Machine: {machine()}")
        print_install(*install_figure(args.runs))
        return 0
    if args.slurm:
        print(f"Machine: {machine()}")
        ours, floor, ours_logins, floor_logins = slurm_figure(args.runs)
        print("| figure | ours | baseline | ratio |")
        print("|---|---|---|---|")
        logins = lambda n: f"{n:g} SSH login{'' if n == 1 else 's'}"  # noqa: E731
        print(f"| launcher slurm: `setup tunnel` to the first password login through the tunnel ({logins(ours_logins)}) | "
              f"{ours:.3f} s | floor (sbatch through an ssh login, then plain jupyter lab until it answers on the node; "
              f"{logins(floor_logins)}): {floor:.3f} s | {ours / floor:.2f}x |")
        print(f"SSH logins on the login node (its sshd log, median per run): ours {ours_logins:g}, the floor {floor_logins:g}: "
              f"{ours_logins - floor_logins:g} more than the floor", flush=True)
        return 0
    if args.plot:
        print(f"Machine: {machine()}")
        rtt_curve([0, 50, 100, 200], min(args.runs, 3), args.plot)
        return 0
    print(f"Machine: {machine()}")
    print(f"Date: {time.strftime('%Y-%m-%d')}; medians of {args.runs} runs unless noted", flush=True)
    b = Bench(args.rtt_ms, args.runs)
    try:
        b.forward_figures()
        b.round_trip_figures()  # first: the latency goals take the round trips fab saves on its floor
        b.latency_figures()
    finally:
        b.close()
    runs = min(args.runs, 3)
    fleet = {}
    for rtt in (0, args.rtt_ms):
        # at 0 ms, the machine's floor (8 plain starts at once) in the same turns as the setups
        floor = (lambda: parallel_jupyter_floor(8, runs)) if rtt == 0 else None
        one, many, one_again, many_again, _ = fleet[rtt] = fleet_figure(runs, rtt_ms=rtt, floor=floor)
        b.row(f"setup on 8 hosts in parallel (--group), {rtt:.0f} ms RTT", many, one, "setup on 1 host", "<= 1.5x", many <= 1.5 * one)
        b.row(f"setup again on 8 hosts in parallel, {rtt:.0f} ms RTT", many_again, one_again, "setup again on 1 host", "<= 1.5x",
              many_again <= 1.5 * one_again)
    plain8, plain1, boot8, boot1 = turns(
        runs, *(lambda n=n, boot=boot: parallel_jupyter_floor(n, runs, boot) for boot in (False, True) for n in (8, 1))
    )
    # the fleet's setup is the default one: its floor is 8 plain starts, on the cores the 8 "hosts" share
    b.row("setup on 8 hosts in parallel (--group), 0 ms RTT, vs this machine's floor", fleet[0][1], fleet[0][4],
          "floor (8 plain Jupyter starts at once, no SSH, in the same turns)", "<= 1.2x", fleet[0][1] <= 1.2 * fleet[0][4])
    b.row("  (context) this machine: 8 plain Jupyter starts at once, no SSH", plain8, plain1, "1 start", "(context)", True)
    b.row("  (context) the same through boot.py (fast_start)", boot8, boot1, "1 start", "(context)", True)
    print()
    print_table(b.rows)
    return 0


def is_context(goal):
    return goal.startswith("(context")


def verdict(goal, ok, missed="**missed**"):
    """A goal and whether it was met; a context row's "goal" alone (it has none to meet)."""
    return goal if is_context(goal) else f"{goal}: {'met' if ok else missed}"


def extras(args):
    """--extras: the figures of ready_figure, forward_local_figure and footprint_figures, each
    against its baseline in turns, in one run."""
    print(f"Machine: {machine()}")
    print(f"Date: {time.strftime('%Y-%m-%d')}; medians of {args.runs} runs unless noted, each figure and its baseline in turns",
          flush=True)
    b = Bench(args.rtt_ms, args.runs)
    try:
        ready_figure(b, max(args.runs, 15))
        forward_local_figure(b, args.runs)
        footprint_figures(b, args.runs, args.hosts)
    finally:
        b.close()
        left = leftovers(str(b.host.base))
        print(f"Left running after the end (processes naming {b.host.base}): {'; '.join(left) or 'none'}", flush=True)
    print()
    print_table(b.rows)
    return 0


def print_table(rows):
    print("| figure | ours | baseline | ratio | goal |")
    print("|---|---|---|---|---|")
    for name, ours, base, base_name, goal, ok, unit in rows:
        fmt = (lambda v: f"{v:.3f} s") if unit == "s" else (lambda v: f"{v:.2f} {unit}")
        print(f"| {name} | {fmt(ours)} | {base_name}: {fmt(base)} | {ours / base:.2f}x | {verdict(goal, ok)} |")
    goals = [ok for *_, goal, ok, _unit in rows if not is_context(goal)]
    print(f"\nGoals met: {sum(map(bool, goals))} of {len(goals)} (context rows have no goal and are not counted)")


if __name__ == "__main__":
    sys.exit(main())
