"""One failure path: problems a user can fix end as one line on stderr, without a traceback."""

import functools
import signal
import sys

from invoke import Exit


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
    """Let SIGTERM unwind like Ctrl-C, so that `finally:` blocks clean up (tunnel children)."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
