"""One failure path: problems a user can fix end as one line on stderr, without a traceback."""

import atexit
import functools
import os
import sys

from invoke import Exit

from . import system


class UserError(Exception):
    """Something the user can fix. The message is one line: what is wrong, and what to do."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.code = code
        self.message = message


class HostError(UserError):
    """A UserError about one host: the label is kept apart and added where the line is printed."""

    def __init__(self, label, message, code=1):
        super().__init__(f"{label}: {message}" if label else message, code)
        self.label, self.message = label, message


class AuthError(HostError):
    """The host refused the login (a key, or an answer to its prompt): asking again would only
    ask again, so whoever meets it stops. REASON: the refusal alone, for a caller's own sentence."""

    def __init__(self, label, message, reason=None):
        super().__init__(label, message)
        self.reason = reason or message


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def user_task(body):
    """Wrap a task body so that a UserError or Ctrl-C ends the run with a message, not a traceback."""

    @functools.wraps(body)
    def wrapper(c, *args, **kwargs):
        try:
            return body(c, *args, **kwargs)
        except UserError as e:
            raise Exit(str(e), code=e.code)
        except KeyboardInterrupt:
            sys.stdout.flush()
            raise Exit("interrupted", code=130)

    return wrapper


def sigterm_as_interrupt():
    """Let SIGTERM unwind like Ctrl-C, so that `finally:` blocks clean up (tunnel children);
    system.on_termination says what stands for it on Windows."""
    system.on_termination(_raise_interrupt)


def _stdout_to_devnull():
    """What is left to write goes nowhere (Python's documented way after a BrokenPipeError: the
    flush at exit would otherwise fail again, and say so on stderr)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _flush_or_drop():
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_to_devnull()
    except (OSError, ValueError, AttributeError):
        pass


def quiet_broken_pipe():
    """The reader of our output went away (`fab --help setup | head -1`, a pager quit): end
    quietly, as `cat` does, not with a traceback. An exception hook, since with `fab` the write
    that fails is in Fabric's own program (its help, its list), and a last flush at exit, for what
    was still buffered then. Exit status 1 if a write failed, as Python's documentation does."""
    if getattr(sys.excepthook, "quiet_broken_pipe", False):
        return
    sys.excepthook = _QuietBrokenPipe(sys.excepthook)
    atexit.register(_flush_or_drop)


class _QuietBrokenPipe:
    """The exception hook of quiet_broken_pipe, which it knows by its mark."""

    quiet_broken_pipe = True

    def __init__(self, previous):
        self.previous = previous

    def __call__(self, kind, value, tb):
        if issubclass(kind, BrokenPipeError):
            _stdout_to_devnull()
            return
        self.previous(kind, value, tb)
