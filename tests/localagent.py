"""The agent run on this machine, without sshd: the same script the client sends, fed to `sh -s`
with a HOME of the test's own, its reply parsed by the client's own code. For the fast layer of
tests (the agent's decisions, in seconds)."""

import os
import signal
import subprocess
import time
from pathlib import Path

from tasks import protocol
from tasks.ops import config
from tasks.hosts.inventory import Settings
from tasks.ops.password import hash_password

from .sshhost import JUPYTER_VENV, STANDARD_PATH


class LocalHost:
    """A HOME on this machine that the agent treats as a host's account."""

    def __init__(self, home, path=None):
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.path = path or f"{JUPYTER_VENV}/bin:{STANDARD_PATH}"
        self.events = []

    @property
    def d(self):
        return self.home / ".fabjupyter"

    def env(self):
        # a tmux server of the test's own, not the machine's
        return {"HOME": str(self.home), "PATH": self.path, "LANG": "C.UTF-8", "TMUX_TMPDIR": str(self.home)}

    def run(self, action, settings_sh=None, **request):
        """(typed reply or protocol.ErrorReply, stderr) of one agent run."""
        script = protocol.agent_script(action, request, settings_sh).encode()
        r = subprocess.run(["/bin/sh", "-s"], input=script, capture_output=True, env=self.env(), cwd=self.home, timeout=180)
        answer = None
        for line in r.stdout.splitlines():
            got = protocol.read_line(line, self.events.append)
            if got is not None:
                assert answer is None, r.stdout  # one reply
                answer = got
        assert answer is not None, (r.stdout, r.stderr)
        if isinstance(answer, protocol.ErrorReply):
            return answer
        return protocol.parse(protocol.REPLIES[action], answer)

    def setup(self, settings, password=None, dry_run=False):
        """The client's setup rounds (password asked back, salt asked back), as run_setup does."""
        request = dict(config.wanted(settings), dry_run=dry_run)
        if password:
            request["password_hash"] = hash_password(password)
        reply = self.run("setup", **request)
        if getattr(reply, "ask", None) == "salt":
            request.update(password_hash=hash_password(password, salted=reply.salt), salted=True)
            reply = self.run("setup", **request)
        return reply

    def status(self):
        return self.run("status").status

    def stop(self):
        return self.run("stop")

    def kill_all(self):
        """Every process whose HOME is this one's (Jupyter, kernels, tmux), however it was left."""
        mine = str(self.home).encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                env = open(f"/proc/{entry}/environ", "rb").read().split(b"\0")
            except OSError:
                continue
            if b"HOME=" + mine in env:
                try:
                    os.kill(int(entry), signal.SIGKILL)
                except OSError:
                    pass
        time.sleep(0.1)


def settings(**values):
    return Settings(**values)
