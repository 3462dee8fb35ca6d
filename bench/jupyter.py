"""Jupyter started as this tool starts it, without SSH or the tool: the floors' starts.

The command line and environment are those of a server the tool itself started (read from
/proc/PID/cmdline and /proc/PID/environ of the pid `status --json` reports), with the
configuration it reads copied beside them: a floor cannot drift from what the agent runs."""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.sshhost import free_port

from .harness import wait_api

# the options that say where a server listens: a floor's start gets a port of its own instead
LISTEN = re.compile(r"--(\w+)\.(sock|sock_mode|port)=")


def relocated(argv, env, home, new_home, port, root=False):
    """(argv, env) of a start of ARGV with ENV moved from HOME to NEW_HOME (in every argument
    and value that names it) and listening on 127.0.0.1:PORT instead of where ARGV said (a Unix
    socket or a port); root: with --allow-root, which Jupyter wants as uid 0."""
    moved = re.compile(re.escape(home) + r"(?=/|:|$)")
    out, app = [], "ServerApp"
    for arg in argv:
        m = LISTEN.match(arg)
        if m:
            app = m[1]
            continue
        out.append(moved.sub(new_home, arg))
    out.append(f"--{app}.port={port}")
    if root and "--allow-root" not in out:
        out.append("--allow-root")
    return out, {k: moved.sub(new_home, v) for k, v in env.items()}


class Started:
    """The command line and environment of the Jupyter with PID, which the tool started in HOME,
    and copies of the files under HOME it reads (its JUPYTER_CONFIG_PATH folders and, with
    fast_start, boot.py), which a reset of the account does not take away."""

    def __init__(self, pid, home):
        self.home = str(home)
        self.argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")
        self.env = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if "=" in item)
        self.dir = Path(tempfile.mkdtemp())
        self.dir.chmod(0o755)  # readable by the bench's users too
        self.copied = []  # the folders under HOME copied, relative to it
        for folder in self.env.get("JUPYTER_CONFIG_PATH", "").split(os.pathsep):
            rel = self._under_home(folder)
            if rel is not None and Path(folder).is_dir():
                shutil.copytree(folder, self.dir / "home" / rel)
                self.copied.append(rel)
        # fast_start: Python runs boot.py, which runs Jupyter's script
        self.boot = len(self.argv) > 1 and self.argv[1].endswith("boot.py")
        if self.boot:
            shutil.copy(self.argv[1], self.dir / "boot.py")
            (self.dir / "boot.py").chmod(0o644)
            self.argv[1] = str(self.dir / "boot.py")

    def _under_home(self, path):
        if path == self.home or path.startswith(self.home + "/"):
            return os.path.relpath(path, self.home)
        return None

    def command(self, port, home=None, root=False):
        """(argv, env) of the same start listening on 127.0.0.1:PORT, in HOME (default: the
        tool's own); root: with --allow-root, which Jupyter wants as uid 0."""
        return relocated(self.argv, self.env, self.home, str(home or self.home), port, root)

    def furnish(self, home):
        """HOME given the files the tool's server reads (setup writes them)."""
        for rel in self.copied:
            shutil.copytree(self.dir / "home" / rel, Path(home) / rel, dirs_exist_ok=True)

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def jupyter_start(b, boot=False):
    """One Jupyter start to ready on the host, no SSH, as the tool started it (b.started, captured
    by capture_starts): plain, or (boot=True) through boot.py, as fast_start does. It reads the
    configuration that setup wrote, so a setup must have run. Returns seconds."""
    user = b.host.users[b.user]
    port = free_port()
    argv, env = b.started[boot].command(port)

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


def parallel_jupyter_floor(count, runs, started):
    """Seconds for the same machine to start `count` JupyterLabs at once, without SSH or this
    tool: what 8 "hosts" sharing this machine's 2 cores cost at best. Each is started as the
    tool started STARTED (a Started: plain, or through boot.py as fast_start does), in a home
    of its own with the files setup wrote there."""

    def once():
        tmp = Path(tempfile.mkdtemp())
        homes = [tmp / f"h{i}" for i in range(count)]
        for home in homes:
            home.mkdir()
            started.furnish(home)
        procs, ports = [], [free_port() for _ in range(count)]
        start = time.monotonic()
        for home, port in zip(homes, ports):
            argv, env = started.command(port, home, root=os.getuid() == 0)
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
            shutil.rmtree(tmp, ignore_errors=True)

    return once()
