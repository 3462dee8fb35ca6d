"""Quoting for a POSIX shell, and running a command for its output (standard library only)."""

import shlex
import subprocess


def sh_quote(value):
    """Quote one value for a POSIX shell: the one helper, used by the client for everything it
    sends and by the agent for the command line it hands to run.sh."""
    text = str(value)
    if "\0" in text:
        raise ValueError("a value for the shell contains a NUL byte")
    return shlex.quote(text)


def run_command(argv, timeout=30):
    """(stdout, stderr, exit status) of a command; 127 when it is not there."""
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True)
    except OSError as e:
        return "", "%s: %s" % (argv[0], e.strerror), 127
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        return "", "%s did not answer within %d s" % (argv[0], timeout), 124
    return out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), p.returncode


def command_output(argv):
    """A command's output, or None if it failed (or is not there)."""
    out, _, code = run_command(argv, timeout=10)
    return out.strip() if code == 0 else None


def env_lines(run):
    """serve.sh's lines that export what a start adds to Jupyter's environment (run.extra_env)."""
    return ["export %s=%s" % (name, sh_quote(value)) for name, value in sorted(run.extra_env.items())]
