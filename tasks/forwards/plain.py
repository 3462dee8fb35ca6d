"""The plain forward: an `ssh -N -L` child of our own, which reaches the host exactly as Fabric
did, and ends with us."""

import subprocess
import sys
import threading

from .. import system
from ..ssh import openssh

# what ssh's LocalCommand prints on its stdout: ssh runs it only once its forward listens
BOUND = "fabjupyter: forward bound"


def ssh_command(conn, forward, batch=False):
    """An `ssh -N -L` command line that reaches the host exactly as Fabric did (openssh.base_args).
    BATCH: never ask anything (a forward started on a guess, beside a login that may ask)."""
    args = openssh.base_args(conn)
    if batch or not sys.stdin.isatty():
        args += ["-o", "BatchMode=yes"]  # nobody could answer a prompt
    args += [
        "-o", "ExitOnForwardFailure=yes",
        "-o", "ServerAliveInterval=15",
        "-o", "ServerAliveCountMax=3",
        "-o", "ControlMaster=no",
        "-o", "ControlPath=none",  # a shared master would keep the forward after we end
        # run by ssh once it listens on the local port (a port it cannot bind ends it before,
        # ExitOnForwardFailure): where the system cannot show which process listens there (no
        # /proc: macOS, Windows), this word tells ssh's listener from another program's
        "-o", "PermitLocalCommand=yes", "-o", f"LocalCommand=echo {BOUND}",
        "-N", "-L", forward,
        conn.original_host,
    ]
    return args


class PlainForward:
    """One `ssh -N -L SPEC` child, with its stderr collected (shown if it fails) and each line
    handed to HEARD (which passes it on once the forward answers)."""

    def __init__(self, conn, spec, batch, heard):
        self.command = ssh_command(conn, spec, batch)
        self.errors = []
        self._heard = heard
        self._bound = threading.Event()
        self.proc = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL if not sys.stdin.isatty() else None,
            stdout=subprocess.PIPE,  # nothing but LocalCommand's word (-N: no session)
            stderr=subprocess.PIPE,
            **system.new_session(),  # Ctrl-C reaches us, and we end ssh ourselves
            **system.dies_with_parent(),
        )
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        threading.Thread(target=self._read_stdout, daemon=True).start()

    def _read_stdout(self):
        assert self.proc.stdout is not None  # stdout=PIPE
        for raw in self.proc.stdout:
            if raw.decode("utf-8", "replace").strip() == BOUND:
                self._bound.set()

    def bound(self):
        """Whether ssh said it listens on the local port (LocalCommand ran)."""
        return self._bound.is_set()

    def _read_stderr(self):
        assert self.proc.stderr is not None  # stderr=PIPE
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            self.errors.append(line)
            self._heard(line)

    @property
    def owner_pid(self):
        """The process that listens on the local port for this forward."""
        return self.proc.pid

    def running(self):
        if self.proc.poll() is None:
            return True
        self._reader.join(2)
        return False

    def refused(self):
        """Whether ssh ended because the host refused the login."""
        return self.proc.poll() is not None and any("Permission denied" in line for line in self.errors)

    def close(self):
        """End the ssh child; the local port is free again when this returns."""
        openssh.end_process(self.proc)

    def port_was_busy(self):
        return self.proc.poll() is not None and any(
            "Address already in use" in line or "cannot listen to port" in line for line in self.errors
        )

    def failure(self):
        if self.proc.poll() is None:
            return "the forward did not answer in time"
        lines = [line for line in self.errors if line.strip()]
        return f"ssh exited ({lines[-1] if lines else f'status {self.proc.returncode}'})"
