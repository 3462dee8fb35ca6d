"""Try the whole thing without a server: a throwaway SSH host on this machine (its own sshd and
account), then the two commands a user runs: `fab -H HOST setup` and `fab -H HOST tunnel`.

    python -m tests.demo            keep the tunnel open until Ctrl-C, then clean up
    python -m tests.demo --check    log in through the tunnel once, then clean up (no browser needed)
    python -m tests.demo --check --port N    the same with Jupyter on port N (the tests: not 8888)
"""

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from .jupyter_http import login_and_list
from .sshhost import SSHHost

ROOT = Path(__file__).resolve().parent.parent
FAB = [sys.executable, "-m", "fabric"]


def main(argv):
    check = "--check" in argv
    port = argv[argv.index("--port") + 1] if "--port" in argv else None  # the tests' own, not 8888
    host = SSHHost(users=[("fjdemo", "/bin/bash", True, False)], prefix="fabjupyter-demo-")
    password = secrets.token_urlsafe(9)
    ssh = ["-S", str(host.ssh_config), "-H", "fjdemo"]
    tunnel = None
    try:
        print(f"A throwaway SSH host is up: account fjdemo, sshd on 127.0.0.1:{host.port}, ssh_config {host.ssh_config}")
        print(f"$ fab -S {host.ssh_config} -H fjdemo setup     (password given on stdin for the demo)", flush=True)
        r = subprocess.run([*FAB, *ssh, "setup", "--password-stdin", *(["--port", port] if port else [])], cwd=ROOT,
                           input=password + "\n", text=True)
        if r.returncode != 0:
            return r.returncode
        print(f"$ fab -S {host.ssh_config} -H fjdemo tunnel", flush=True)
        print("  (the demo host shares this machine's loopback, so its Jupyter may hold 8888 here and the tunnel moves on)")
        tunnel = subprocess.Popen([*FAB, *ssh, "tunnel"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        url = None
        for line in tunnel.stdout:
            print(line, end="", flush=True)
            if "Jupyter is at " in line:
                url = line.split("Jupyter is at ", 1)[1].split()[0]
                break
        if not url:
            return tunnel.wait() or 1
        print(f"\nOpen {url} in a browser on this machine and log in with the password:  {password}", flush=True)
        if check:
            login, api, _ = login_and_list(url, password)
            print(f"checked: login {login}, GET /api/contents with the session: {api}")
            return 0 if api == 200 else 1
        print("Ctrl-C ends the tunnel, stops Jupyter and removes the throwaway host.", flush=True)
        try:
            for line in tunnel.stdout:
                print(line, end="", flush=True)
            tunnel.wait()
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        if tunnel and tunnel.poll() is None:
            tunnel.send_signal(signal.SIGTERM)
            tunnel.wait(15)
        subprocess.run([*FAB, *ssh, "stop"], cwd=ROOT, capture_output=True)
        host.close()
        print("demo host removed")


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("the demo creates a throwaway account and sshd: run it as root (sudo bash .ci/try)")
    sys.exit(main(sys.argv[1:]))
