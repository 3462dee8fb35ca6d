"""The Jupyter password: read here (prompt or stdin), hashed here with Argon2id in the format
jupyter_server's passwd_check accepts, and only the hash is sent, inside the agent's stdin."""

import base64
import getpass
import os
import re
import sys
import threading

from ..context import run
from ..errors import HostError, UserError
from ..protocol import run_agent
from ..report import Outcome
from .render import said

# jupyter_server.auth.security.passwd uses argon2-cffi's PasswordHasher with these parameters.
MEMORY_KIB, TIME_COST, LANES = 10240, 10, 8
SALTED = re.compile(r"^argon2:\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)$")

# One password, read once (from stdin or the terminal), serves every task and host of the run
# (kept in context.run(), with its hashes).
_lock = threading.Lock()
_hash_lock = threading.Lock()


def _b64(data):
    return base64.b64encode(data).decode("ascii").rstrip("=")



def hash_password(password, salted=None):
    """`argon2:$argon2id$v=19$m=..,t=..,p=..$SALT$DIGEST`; with `salted` (that string up to SALT,
    from a stored hash) the same salt and parameters are used, so equal passwords give equal hashes.
    Made once per salt in a run: hosts set up together share a salt (fresh_hash), so a group's
    `setup --password-stdin` on hosts that have it costs one derivation, not one per host."""
    if salted:
        with _lock:
            made = run().salted_hashes
            if (password, salted) not in made:
                made[(password, salted)] = _derive(password, salted)
            return made[(password, salted)]
    return _derive(password, None)


def _derive(password, salted):
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id  # only a run that hashes loads it

    if salted:
        m = SALTED.match(salted)
        if not m:
            raise UserError("the stored password hash has an unknown format; set a new one with `password`")
        memory, time_cost, lanes = (int(x) for x in m.group(1, 2, 3))
        salt = base64.b64decode(m.group(4) + "=" * (-len(m.group(4)) % 4))
    else:
        memory, time_cost, lanes, salt = MEMORY_KIB, TIME_COST, LANES, os.urandom(16)
    with _hash_lock:  # cryptography's Argon2id hangs when threads derive at the same time
        digest = Argon2id(salt=salt, length=32, iterations=time_cost, lanes=lanes, memory_cost=memory).derive(
            password.encode("utf-8")
        )
    return f"argon2:$argon2id$v=19$m={memory},t={time_cost},p={lanes}${_b64(salt)}${_b64(digest)}"


def fresh_hash(password):
    """A new hash for this password, made once per run: a group's hosts share it, so eight hosts
    cost one Argon2 derivation, not eight (they share the password anyway)."""
    with _lock:
        made = run().fresh_hashes
        if password not in made:
            made[password] = hash_password(password)
        return made[password]


def read_password(label, from_stdin):
    """One line from stdin (for scripts), or two matching prompts on the terminal; asked once
    per run even when several hosts (threads) need it."""
    with _lock:
        read = run().passwords
        if from_stdin not in read:
            read[from_stdin] = _ask(label, from_stdin)
        return read[from_stdin]


def _ask(label, from_stdin):
    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password[:-1] if password.endswith("\r") else password
        if not password:
            raise UserError("--password-stdin: standard input gave no password; pipe one line in, e.g. `printf '%s\\n' \"$PW\" | fab ...`")
        return password
    who = f" for {label}" if label else ""
    if not sys.stdin.isatty():
        raise HostError(label, "a password is needed and there is no terminal to ask on; use --password-stdin")
    password = getpass.getpass(f"New Jupyter password{who}: ")
    if not password:
        raise HostError(label, "an empty password is not allowed; nothing was changed")
    if getpass.getpass("Repeat it: ") != password:
        raise HostError(label, "the two passwords differ; nothing was changed")
    return password


def password_host(t, password, dry_run=False):
    """Store the password's hash (in the file the host's kind of Jupyter reads)."""
    if dry_run:  # no password was asked for: the agent says whether one would be set or replaced
        reply = run_agent(t, "password", password_hash=None, dry_run=True)
        change = reply.change("password")
        verb = change.detail if change else "set"  # set or replace
        return Outcome([said("password_task", True, verb=verb)], f"would {verb} the password")
    reply = run_agent(t, "password", password_hash=fresh_hash(password))
    lines = [said("password_task", False, dir=t.remote_dir)]
    if reply.restart_needed:
        lines.append(f"the running Jupyter still uses the old password; `{t.fab('restart')}` applies it")
        return Outcome(lines, "password set; restart to apply")
    return Outcome(lines, "password set")
