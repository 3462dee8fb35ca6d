"""The bench's own SSH host and how the figures drive this tool on it (fab, ssh, status)."""

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from tests.sshhost import SSHHost, free_port

from .harness import FAB, PASSWORD, ROOT, USER, Table, delay_proxy, until_authenticated
from .jupyter import Started, jupyter_start

# The session floor: what fab's one session does on the network (a script sent on stdin to
# `sh -s`, one JSON line read back), without fab or its agent.
SESSION_FLOOR_SCRIPT = b"""exec python3 -c 'import json, os; print(json.dumps({"reply": "ok", "pid": os.getpid()}))'\n"""
SESSION_FLOOR = "ssh host sh -s (a script on stdin, a JSON line back)"
SESSION_FLOOR_ROW = "floor: ssh host sh -s (a script on stdin, a JSON line back)"  # in round_trip_figures' table
SESSION_ALLOWANCE = 0.15  # s: fab's own start-up and its agent on the host, above the same exchange


class Bench(Table):
    """A throwaway SSH host (tests/sshhost.py) with the account USER, reached directly (ssh_config
    alias USER) and through a delaying proxy of RTT_MS (alias "far"); an empty hosts.yaml of its
    own; the rows of the run (Table)."""

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
        self.user = USER
        self.started = {}  # what the floors start, by fast_start: capture_starts
        super().__init__()

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

    until_authenticated = staticmethod(until_authenticated)

    def capture_starts(self):
        """What the floors start (b.started: {fast_start: Started}): the command line,
        environment and files of the Jupyter that setup started, with fast_start and without.
        Ends with the default setup's server running."""
        for fast_start in (True, False):
            self.setup_once(fast_start=fast_start)
            if fast_start in self.started:
                self.started[fast_start].close()
            self.started[fast_start] = Started(self.status()["pid"], self.host.users[USER].home)

    def close_starts(self):
        for started in self.started.values():
            started.close()
        self.started = {}

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
        started as the tool started it (jupyter_start), one after the other: seconds."""
        start = time.monotonic()
        self.ssh_true_once()
        login = time.monotonic() - start
        return login + jupyter_start(self, boot=boot)

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

