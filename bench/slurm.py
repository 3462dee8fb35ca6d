"""launcher slurm on the test cluster (tests/slurmcluster.py): setup tunnel against sbatch of a
plain JupyterLab (--slurm)."""

import os
import re
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from tests.jupyter_http import Session
from tests.slurmcluster import SlurmCluster
from tests.sshhost import JUPYTER_VENV, free_port

from .harness import FAB, PASSWORD, ROOT, turns


def slurm_figure(runs):
    """launcher slurm, on the test cluster (tests/slurmcluster.py): from `fab setup tunnel` to the
    first password login through the tunnel, against its floor: sbatch of a plain `jupyter lab`
    on the node's address until it answers there (the scheduler's submit-to-RUNNING plus a
    Jupyter start on the node), measured from the login node. The floor's sbatch goes through
    an ssh login too (SlurmCluster.sbatch): the SSH logins of each side are counted in the login
    node's sshd log (its "Accepted ..." lines), not assumed. Returns (ours, floor, ours' logins,
    the floor's logins), the logins as the median count per run."""
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


def print_slurm(ours, floor, ours_logins, floor_logins):
    print("| figure | ours | baseline | ratio |")
    print("|---|---|---|---|")
    logins = lambda n: f"{n:g} SSH login{'' if n == 1 else 's'}"  # noqa: E731
    print(f"| launcher slurm: `setup tunnel` to the first password login through the tunnel ({logins(ours_logins)}) | "
          f"{ours:.3f} s | floor (sbatch through an ssh login, then plain jupyter lab until it answers on the node; "
          f"{logins(floor_logins)}): {floor:.3f} s | {ours / floor:.2f}x |")
    print(f"SSH logins on the login node (its sshd log, median per run): ours {ours_logins:g}, the floor {floor_logins:g}: "
          f"{ours_logins - floor_logins:g} more than the floor", flush=True)
