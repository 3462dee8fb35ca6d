"""A command on a pseudo-terminal of its own, as a user at a terminal runs it: the terminal is its
controlling terminal (its own session), so what opens /dev/tty (OpenSSH's prompts, getpass) talks
to it, and Ctrl-C typed there interrupts its foreground processes. Standard input and output can be
a file instead (`fab ... --password-stdin < FILE`, `fab ... > OUT`): /dev/tty is still the terminal.

Everything the terminal shows is kept (`output`), with its line ends as "\n"."""

import os
import re
import signal
import tempfile
import time

import pexpect


class TerminalTimeout(AssertionError):
    pass


def session_pids(sid):
    """Processes of session SID (the terminal's command and whatever it started and did not move
    to a session of its own, as ssh's ControlPersist master does)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                text = f.read().decode(errors="replace")
            if int(text.rsplit(")", 1)[1].split()[4]) == sid:
                found.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return found


class Terminal:
    def __init__(self, argv, env=None, cwd=None, stdin_text=None, stdout_file=None, columns=200):
        """Start ARGV on a new terminal. stdin_text: standard input is a file holding this text (not
        the terminal); stdout_file: standard output goes to this file (not the terminal)."""
        self._stdin_file = None
        if stdin_text is not None:
            fd, self._stdin_file = tempfile.mkstemp(prefix="fabjupyter-tty-stdin-")
            os.write(fd, stdin_text.encode())
            os.close(fd)
        stdin_path, stdout_path = self._stdin_file, stdout_file and str(stdout_file)

        def redirect():  # in the child, after the terminal became fds 0-2
            if stdin_path:
                fd = os.open(stdin_path, os.O_RDONLY)
                os.dup2(fd, 0)
                os.close(fd)
            if stdout_path:
                fd = os.open(stdout_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.dup2(fd, 1)
                os.close(fd)

        self.argv = list(argv)
        self.child = pexpect.spawn(self.argv[0], self.argv[1:], env=env, cwd=cwd, encoding="utf-8",
                                   codec_errors="replace", dimensions=(50, columns), preexec_fn=redirect, timeout=60)
        self.pid = self.child.pid
        self._buf = ""  # everything it showed
        self._seen = 0  # how far expect() has matched
        self.status = None

    # --- what it shows ------------------------------------------------------------------
    @property
    def output(self):
        """Everything shown so far (what expect() consumed and what waits to be)."""
        return self._text()

    def _text(self):
        return self._buf.replace("\r\n", "\n").replace("\r", "")

    def _read_more(self, timeout):
        """Append what the terminal shows within TIMEOUT seconds; False once it is closed."""
        try:
            chunk = self.child.read_nonblocking(65536, timeout=timeout)
        except pexpect.TIMEOUT:
            return True
        except pexpect.EOF:
            return False
        self._buf += chunk
        return True

    def expect(self, pattern, timeout=60):
        """Wait until PATTERN (a regular expression) shows up after what earlier expect() calls
        matched; returns the match. Fails with everything shown if it does not come in time or the
        terminal closes first."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        open_ = True
        while True:
            text = self._text()
            m = regex.search(text, self._seen)
            if m:
                self._seen = m.end()
                return m
            if not open_:
                raise TerminalTimeout(f"{self.argv}: the terminal closed before {pattern!r}; it showed:\n{text}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TerminalTimeout(f"{self.argv}: no {pattern!r} within {timeout} s; it showed:\n{text}")
            open_ = self._read_more(min(left, 0.5))

    def expect_any(self, patterns, timeout=60):
        """Wait for the first of PATTERNS to show up; (index, its own match, groups numbered as in
        that pattern)."""
        combined = "|".join(f"(?P<p{i}>{p})" for i, p in enumerate(patterns))
        m = self.expect(combined, timeout)
        index = next(i for i in range(len(patterns)) if m.group(f"p{i}") is not None)
        return index, re.compile(patterns[index]).match(self._text(), m.start(), m.end())

    def shows_within(self, pattern, seconds):
        """Whether PATTERN shows up (after what expect() matched) within SECONDS; does not consume."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + seconds
        open_ = True
        while True:
            if regex.search(self._text(), self._seen):
                return True
            left = deadline - time.monotonic()
            if left <= 0 or not open_:
                return False
            open_ = self._read_more(min(left, 0.5))

    def count(self, text):
        return self._text().count(text)

    # --- typing -------------------------------------------------------------------------
    def type(self, line):
        """Type LINE and Enter (only after the prompt is shown: typed earlier, the terminal would
        still echo it)."""
        self.child.send(line + "\r")

    def interrupt(self):
        """Ctrl-C: SIGINT to the terminal's foreground process group."""
        self.child.sendintr()

    # --- its end ------------------------------------------------------------------------
    def wait(self, timeout=60, fail_on=None):
        """Wait for the command to end (reading what it shows meanwhile); its exit status, 128+N for
        a signal N. Fails if it still runs after TIMEOUT seconds, or at once when FAIL_ON (a regular
        expression) shows up after what expect() matched (a prompt nobody will answer)."""
        deadline = time.monotonic() + timeout
        open_ = True
        bad = re.compile(fail_on) if fail_on else None
        while True:
            if bad and bad.search(self._text(), self._seen):
                raise AssertionError(f"{self.argv}: {fail_on!r} showed up; it showed:\n{self._text()}")
            if not self.child.isalive():
                # the rest of what it showed (a process it left may hold the terminal open: stop
                # once nothing more comes)
                before = None
                while open_ and before != len(self._buf):
                    before = len(self._buf)
                    open_ = self._read_more(0.3)
                self.status = self.child.exitstatus if self.child.signalstatus is None else 128 + self.child.signalstatus
                return self.status
            if time.monotonic() > deadline:
                raise TerminalTimeout(f"{self.argv} still runs after {timeout} s; it showed:\n{self._text()}")
            if open_:
                open_ = self._read_more(0.2)
            else:
                time.sleep(0.1)

    def alive(self):
        return self.child.isalive()

    def session(self):
        """pids still in the terminal's session."""
        return session_pids(self.pid)

    def close(self):
        """End the command and everything left in its session (SIGTERM, then SIGKILL)."""
        try:
            for sig, pause in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
                pids = self.session()
                if self.child.isalive() and self.pid not in pids:
                    pids.append(self.pid)
                for pid in pids:
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
                deadline = time.monotonic() + pause
                while time.monotonic() < deadline and (self.session() or self.child.isalive()):
                    self._read_more(0.1) if self.child.isalive() else time.sleep(0.1)
                if not self.session() and not self.child.isalive():
                    break
            try:
                self.child.close(force=True)
            except Exception:
                pass
        finally:
            if self._stdin_file:
                try:
                    os.unlink(self._stdin_file)
                except FileNotFoundError:
                    pass
