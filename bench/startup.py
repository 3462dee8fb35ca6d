"""The client's own start-up (--startup): fabjupyter --version, start to first byte, status
through a master against ssh -S MASTER sh -s, tunnel alone against a raw ssh -L."""

import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .harness import PASSWORD, ROOT, leftovers, sent_script, time_forward, turns
from .host import Bench

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
        script = sent_script(fj("mux-far", "status"), env)  # status's own agent script, as it sends it
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
            return time_forward(b.host.ssh_config, "far", remote, ("-o", "ControlPath=none"))

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


def print_startup(rows):
    print("| figure | ours | baseline | difference | goal |")
    print("|---|---|---|---|---|")
    for name, ours, base, base_name, goal, ok in rows:
        verdict = "" if ok is None else f": {'met' if ok else '**missed**'}"
        print(f"| {name} | {ours:.3f} s | {base_name}: {base:.3f} s | +{(ours - base) * 1000:.0f} ms | {goal}{verdict} |")
