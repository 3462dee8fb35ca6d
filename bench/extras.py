"""Figures the README quotes that no other mode makes (--extras): the check after a start
(ready.py) and this side's footprint per host and per forward."""

import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from .harness import FAB, PASSWORD, ROOT, USER, turns

# The check after a start, run in the user's Python as the agent runs it: ready.py and net.py,
# copied (never imported here) into a package folder as a batch job has them (lib/fabjupyter_remote/),
# are imported there; ready.Target, ready.check and ready.request are the driver's only tie to them.
READY_MODULES = ("ready.py", "net.py")
READY_DRIVER = """import json, sys, time
sys.path.insert(0, sys.argv[5])
from jupyter_core.paths import jupyter_runtime_dir
from fabjupyter_remote import ready
t = ready.Target(int(sys.argv[2]), port=int(sys.argv[1]), sock=sys.argv[3], timeout=60.0, runtime_dir=jupyter_runtime_dir())

def check():
    r = ready.check(t)
    if not r.startswith("ready "):
        sys.exit("ready.py: " + r)

def wait_only():
    ready.request(t, "/api")

fns, times = (check, wait_only), ([], [])
for i in range(int(sys.argv[4])):
    for k in ((0, 1) if i % 2 == 0 else (1, 0)):
        t0 = time.perf_counter()
        fns[k]()
        times[k].append(time.perf_counter() - t0)
print(json.dumps(times))
"""


def ready_figure(b, runs):
    """The check after each start (tasks/remote/ready.py: the server that answers is the process
    started, its runtime file, three unauthenticated requests) against a check that only waits
    for /api to answer (one request), both run as the agent runs ready.py (imported in one
    Python, as the user who runs Jupyter) against the same running JupyterLab, in
    turns. Returns (check, wait-only) medians in seconds."""
    b.fab(USER, "setup", "--password-stdin", input=PASSWORD + "\n")
    state = b.status()
    user = b.host.users[USER]
    python = Path(f"/proc/{state['pid']}/cmdline").read_bytes().split(b"\0")[0].decode()  # Jupyter's own, as the agent's check runs in
    with tempfile.TemporaryDirectory() as lib:
        package = Path(lib) / "fabjupyter_remote"
        package.mkdir()
        (package / "__init__.py").write_text("")
        for name in READY_MODULES:
            shutil.copy(ROOT / "tasks" / "remote" / name, package / name)
        os.chmod(lib, 0o755)  # the user who runs Jupyter reads them
        r = subprocess.run(["setpriv", f"--reuid={user.uid}", f"--regid={user.uid}", "--init-groups", python, "-c",
                            READY_DRIVER, str(state.get("port") or 0), str(state["pid"]), state.get("socket") or "", str(runs),
                            lib], cwd=user.home, capture_output=True, text=True, env={"HOME": str(user.home), "PATH": "/usr/bin:/bin"})
    if r.returncode != 0:
        raise RuntimeError(f"the ready.py driver: {r.stdout[-300:]}{r.stderr[-500:]}")
    check, wait_only = (statistics.median(t) for t in json.loads(r.stdout))
    where = f"socket {state['socket']}" if state.get("socket") else f"port {state['port']}"
    b.row(f"the check after a start (tasks/remote/ready.py), on a running JupyterLab ({where}), in the agent's process, median of {runs}",
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
