"""The batch launchers on the test clusters (tests/batchsites.py: SLURM, Grid Engine, PBS through
SLURM's Torque wrappers): setup tunnel against submitting a plain JupyterLab by hand (--batch,
--slurm for SLURM alone)."""

import os
import re
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tests.batchsites import Sites
from tests.jupyter_http import Session
from tests.sshhost import JUPYTER_VENV, free_port

from .harness import FAB, PASSWORD, ROOT, turns


def batch_figure(kind, runs, sites):
    """launcher KIND on its test cluster (SITES.get(KIND)): from `fab setup tunnel` to the first
    password login through the tunnel, against its floor: submitting a plain `jupyter lab` on
    the node's address (sbatch or qsub of a script) until it answers there (the scheduler's
    submit-to-running plus a Jupyter start on the node), measured from the login node. The
    floor's submission goes through an ssh login too: the SSH logins of each side are counted in
    the login node's sshd log (its "Accepted ..." lines), not assumed. Returns (ours, floor,
    ours' logins, the floor's logins), the logins as the median count per run."""
    site = sites.get(kind)
    cluster, user = site.cluster, site.user
    home = site.login.users[user].home
    tmp = Path(tempfile.mkdtemp())
    try:
        hosts_file = tmp / "hosts.yaml"
        hosts_file.write_text(f'hosts:\n  {user}:\n    launcher: {kind}\n    job_options: ["{site.limit("00:10:00")}"]\n')
        env = dict(os.environ, FABRIC_JUPYTER_HOSTS_FILE=str(hosts_file), XDG_CONFIG_HOME=str(tmp / "xdg"))
        base = [*FAB, "-S", str(cluster.login.ssh_config), "-H", user]
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
            script = home / "bench-floor.sh"  # written before the clock starts, as a user's script would be
            script.write_text(f"#!/bin/sh\nexec {JUPYTER_VENV}/bin/jupyter-lab --no-browser --ip={site.node_addr} --port={port} "
                              "--ServerApp.token=bench\n")
            script.chmod(0o755)
            offset = log.stat().st_size
            start = time.monotonic()
            site.submit(script.name, "bench-floor", options=site.limit("00:10:00"))
            cluster.in_login("python3", "-c", probe, f"http://{site.node_addr}:{port}/api", timeout=120)
            took = time.monotonic() - start
            count_logins("floor", offset)
            site.cancel_all()
            return took

        ours_time, floor_time = turns(runs, ours, floor)
        return ours_time, floor_time, statistics.median(logins["ours"]), statistics.median(logins["floor"])
    finally:
        site.cancel_all()


FLOORS = {"slurm": "sbatch", "sge": "qsub", "pbs": "qsub (Torque's, over SLURM)"}


def print_batch(results):
    """RESULTS: {kind: batch_figure's answer}."""
    print("| figure | ours | baseline | ratio |")
    print("|---|---|---|---|")
    logins = lambda n: f"{n:g} SSH login{'' if n == 1 else 's'}"  # noqa: E731
    for kind, (ours, floor, ours_logins, floor_logins) in results.items():
        print(f"| launcher {kind}: `setup tunnel` to the first password login through the tunnel ({logins(ours_logins)}) | "
              f"{ours:.3f} s | floor ({FLOORS[kind]} through an ssh login, then plain jupyter lab until it answers on the node; "
              f"{logins(floor_logins)}): {floor:.3f} s | {ours / floor:.2f}x |")
    for kind, (_, _, ours_logins, floor_logins) in results.items():
        print(f"{kind}: SSH logins on the login node (its sshd log, median per run): ours {ours_logins:g}, the floor "
              f"{floor_logins:g}: {ours_logins - floor_logins:g} more than the floor", flush=True)


def batch_figures(kinds, runs):
    """batch_figure for each of KINDS, each cluster alone on the machine while its figures run
    (SLURM and PBS share one; Grid Engine's daemons are not started until it is closed)."""
    results = {}
    for group in (("slurm", "pbs"), ("sge",)):
        wanted = [kind for kind in group if kind in kinds]
        if not wanted:
            continue
        sites = Sites()
        try:
            for kind in wanted:
                print(f"{kind}: a login node and a compute node, each in its own network namespace:", flush=True)
                results[kind] = batch_figure(kind, runs, sites)
        finally:
            sites.close()
    return {kind: results[kind] for kind in kinds if kind in results}
