"""The harness every figure family shares: turns, the rows and their table, the delaying proxy,
sshd's log read, the machine, the processes left behind, and a raw `ssh -N -L` timed."""

import collections
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.jupyter_http import Session, unix_session
from tests.sshhost import free_port

ROOT = Path(__file__).resolve().parent.parent
FAB = [sys.executable, "-m", "fabric"]
PASSWORD = "bench horse"
USER = "fjbench"


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
    if not proxy.stdout.readline():  # it could not start (a port taken): poll() says so
        proxy.wait()
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


def is_context(goal):
    return goal.startswith("(context")


def verdict(goal, ok, missed="**missed**"):
    """A goal and whether it was met; a context row's "goal" alone (it has none to meet)."""
    return goal if is_context(goal) else f"{goal}: {'met' if ok else missed}"


def print_table(rows):
    print("| figure | ours | baseline | ratio | goal |")
    print("|---|---|---|---|---|")
    for name, ours, base, base_name, goal, ok, unit in rows:
        fmt = (lambda v: f"{v:.3f} s") if unit == "s" else (lambda v: f"{v:.2f} {unit}")
        print(f"| {name} | {fmt(ours)} | {base_name}: {fmt(base)} | {ours / base:.2f}x | {verdict(goal, ok)} |")
    goals = [ok for *_, goal, ok, _unit in rows if not is_context(goal)]
    print(f"\nGoals met: {sum(map(bool, goals))} of {len(goals)} (context rows have no goal and are not counted)")


class Table:
    """The rows of one run: each figure against its baseline, printed as it is measured and as a
    table at the end (print_table)."""

    def __init__(self):
        self.rows = []

    def row(self, name, ours, baseline, base_name, goal, ok, unit="s"):
        """One figure against its baseline. A goal that starts with "(context" is none: such a row
        says neither met nor missed and is not counted in the tally (print_table)."""
        self.rows.append((name, ours, baseline, base_name, goal, ok, unit))
        ratio = ours / baseline if baseline else float("nan")
        fmt = (lambda v: f"{v:.3f} {unit}") if unit == "s" else (lambda v: f"{v:.2f} {unit}")
        print(f"  {name}: {fmt(ours)} vs {base_name} {fmt(baseline)} = {ratio:.2f}x  goal {verdict(goal, ok, 'MISSED')}", flush=True)

    def print_table(self):
        print_table(self.rows)


def counted(log, fn):
    """What fn asked of sshd, from the excerpt its run added to sshd's DEBUG1 log LOG (sshd_requests)."""
    start = log.stat().st_size
    fn()
    time.sleep(0.5)  # sshd logs a session's end as the client goes
    return sshd_requests(log.read_bytes()[start:].decode(errors="replace"))


def sent_script(argv, env):
    """What ARGV (this tool on its OpenSSH path, multiplex: true) sends on its ssh's standard
    input: the script it runs on the host, taken from the tool itself rather than rebuilt here.
    An `ssh` first on PATH copies each run's input to a file of its own, then runs the real one."""
    real = shutil.which("ssh", path=env.get("PATH"))
    with tempfile.TemporaryDirectory() as d:
        wrapper = Path(d) / "ssh"
        wrapper.write_text(f'#!/bin/sh\ntee {shlex.quote(d)}/input.$$ | exec {shlex.quote(real)} "$@"\n')
        wrapper.chmod(0o755)
        r = subprocess.run(argv, cwd=ROOT, env=dict(env, PATH=f"{d}:{env.get('PATH', os.defpath)}"), capture_output=True)
        if r.returncode != 0:
            raise RuntimeError(f"{argv[-3:]}: {r.stdout[-300:]!r} {r.stderr[-300:]!r}")
        sent = [f.read_bytes() for f in Path(d).glob("input.*")]
    if not any(sent):
        raise RuntimeError(f"{argv[-3:]} sent nothing to an ssh")
    return max(sent, key=len)


def intro(runs, note=", each figure and its baseline in turns"):
    """The lines every mode's output starts with: this machine, the date, how many runs."""
    print(f"Machine: {machine()}")
    print(f"Date: {time.strftime('%Y-%m-%d')}; medians of {runs} runs{note}", flush=True)


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


def authenticated(base, sock=None):
    """Whether a password login through BASE (or, with SOCK, through that Unix socket on this
    machine) gets GET /api/contents = 200."""
    s = unix_session(sock) if sock else Session(base)
    return s.login(PASSWORD) == 200 and s.get("api/contents")[0] == 200


def until_authenticated(base, deadline=60, sock=None):
    """Until `authenticated` (an error after DEADLINE s)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            if authenticated(base, sock):
                return
        except (OSError, AssertionError):
            pass
        time.sleep(0.02)
    raise RuntimeError(f"no authenticated answer from {base}")


def answers_api(base):
    """Whether GET /api through BASE gets an answer, whatever its status."""
    try:
        urllib.request.urlopen(base + "api", timeout=5).close()
    except urllib.error.HTTPError:
        pass
    return True


# --- a raw `ssh -N -L`: the floor of every forward ----------------------------------------
def ssh_forward(config, host, port, target, options=(), stderr=subprocess.DEVNULL):
    """A raw `ssh -N -L 127.0.0.1:PORT:TARGET HOST` with the ssh_config CONFIG (TARGET: a
    Unix socket's path or HOST:PORT on the far side): its process."""
    return subprocess.Popen(["ssh", "-F", str(config), "-N", "-o", "ExitOnForwardFailure=yes", *options, "-L", f"127.0.0.1:{port}:{target}",
                             host], stdin=subprocess.DEVNULL, stderr=stderr)


def until_answered(port, proc, probe=answers_api, interval=0.01, deadline=60, errors=None):
    """Until PROBE(base) is true through the forward on this machine's PORT (an OSError counts
    as not yet), or an error once PROC (its ssh) exited, with what it wrote to ERRORS."""
    base = f"http://127.0.0.1:{port}/"
    end = time.monotonic() + deadline
    while True:
        try:
            if probe(base):
                return
        except (OSError, AssertionError):
            pass
        if proc.poll() is not None:
            said = ""
            if errors is not None:
                errors.seek(0)
                said = errors.read().decode(errors="replace")
            raise RuntimeError(f"a raw ssh -L exited: {said}")
        if time.monotonic() > end:
            raise RuntimeError(f"no answer through a raw ssh -L within {deadline} s")
        time.sleep(interval)


def time_forward(config, host, target, options=(), probe=answers_api, interval=0.01):
    """Seconds from starting a raw `ssh -N -L` to TARGET on HOST until PROBE is answered through it."""
    port = free_port()
    with tempfile.TemporaryFile() as errors:
        start = time.monotonic()
        p = ssh_forward(config, host, port, target, options, stderr=errors)
        try:
            until_answered(port, p, probe, interval, errors=errors)
            return time.monotonic() - start
        finally:
            p.terminate()
            p.wait()
