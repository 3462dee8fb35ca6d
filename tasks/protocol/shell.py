"""Quoting for the remote shell: the one helper every value that reaches it goes through."""

from ..errors import UserError


def sh_quote(value):
    """Quote one value for a POSIX shell. Every value that reaches a remote shell goes through
    the remote side's sh_quote (remote/shell.py, used there too: Jupyter's command line under tmux)."""
    from ..remote import shell  # here, not at the top: a tunnel asks in a thread while its ssh logs in

    try:
        return shell.sh_quote(value)
    except ValueError:
        raise UserError("a value for the remote shell contains a NUL byte") from None


def sh_words(words):
    return " ".join(sh_quote(w) for w in words)


def sh_assign(name, value):
    if not name.isidentifier():
        raise ValueError(f"not a shell variable name: {name!r}")
    return f"{name}={sh_quote(value)}"
