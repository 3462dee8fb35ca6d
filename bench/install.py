"""setup --install on an offline host from a warm local cache, against the same wheels installed
by one `ssh host sh -c` (--install)."""

import os
import re
import shlex
import subprocess
import tempfile
import time
from pathlib import Path

from tests.sshhost import SSHHost

from .harness import FAB, PASSWORD, ROOT, turns


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
        q = shlex.quote
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
