"""Host keys checked the way OpenSSH checks them. Fabric alone accepts any key, even a changed
one; here the known_hosts files of ssh_config (UserKnownHostsFile, GlobalKnownHostsFile, with
HostKeyAlias) decide, and StrictHostKeyChecking says what to do with a host never seen before."""

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import paramiko
from paramiko.hostkeys import HostKeyEntry, HostKeys

from ..errors import HostError

DEFAULT_USER_FILES = "~/.ssh/known_hosts ~/.ssh/known_hosts2"
DEFAULT_GLOBAL_FILES = "/etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2"


@dataclass
class Known:
    path: str
    line: int
    key: paramiko.PKey


def _files(value, default):
    words = value.split() if isinstance(value, str) else (value or default.split())
    if isinstance(words, str):
        words = words.split()
    return [os.path.expanduser(w) for w in words if w.lower() != "none"]


def _matches(pattern, name):
    """OpenSSH known_hosts patterns: hashed names, or names where only * and ? are wild."""
    if pattern.startswith("|1|"):
        return HostKeys.hash_host(name, pattern) == pattern
    if "*" not in pattern and "?" not in pattern:
        return pattern == name
    regex = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.fullmatch(regex, name) is not None


def lookup(files, name):
    """Every known_hosts line for `name`, with its file and line number."""
    found = []
    for path in files:
        try:
            lines = Path(path).read_text(errors="replace").splitlines()
        except OSError:
            continue
        for number, line in enumerate(lines, 1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#") or stripped.startswith("@"):
                continue
            try:
                entry = HostKeyEntry.from_line(stripped, number)
            except Exception:  # a line paramiko cannot read (unknown key type): OpenSSH skips it too
                continue
            if entry is None or entry.key is None:
                continue
            patterns = entry.hostnames
            if any(p.startswith("!") and _matches(p[1:], name) for p in patterns):
                continue
            if any(_matches(p, name) for p in patterns if not p.startswith("!")):
                found.append(Known(path, number, entry.key))
    return found


def changed_key_message(name, fingerprint, path, line):
    """A changed host key: what to check, and the one command that removes the old line (a
    flag to accept new keys cannot: a known key is never replaced by this tool)."""
    where = f"{path}:{line}" if line else path
    return (f"the host key of {name} has CHANGED ({fingerprint}; known_hosts says otherwise at {where}); this may be an "
            "impostor. Check the new key with the host's administrator; if the change is expected, remove the old line: "
            f"ssh-keygen -f {shlex.quote(path)} -R {shlex.quote(name)}")


class Policy(paramiko.MissingHostKeyPolicy):
    """Installed on the connection's SSHClient, which has no keys loaded: every check comes here."""

    def __init__(self, conn, label, accept_new):
        cfg = conn.ssh_config
        self.label = label
        self.name = cfg.get("hostkeyalias") or (conn.host if conn.port == 22 else f"[{conn.host}]:{conn.port}")
        self.user_files = _files(cfg.get("userknownhostsfile"), DEFAULT_USER_FILES)
        self.files = self.user_files + _files(cfg.get("globalknownhostsfile"), DEFAULT_GLOBAL_FILES)
        strict = str(cfg.get("stricthostkeychecking", "ask")).lower()
        self.mode = "accept-new" if accept_new and strict in ("yes", "ask", "true") else strict

    def missing_host_key(self, client, hostname, key):
        known = lookup(self.files, self.name)
        same = [k for k in known if k.key.get_name() == key.get_name()]
        if any(k.key == key for k in same):
            return
        fp = f"{key.get_name()} {key.fingerprint}"
        if same:
            raise HostKeyError(self.label, changed_key_message(self.name, fp, same[0].path, same[0].line))
        if self.mode in ("no", "off", "false"):
            return
        if self.mode == "accept-new":
            self._record(key)
            return
        raise HostKeyError(
            self.label,
            f"unknown host key for {self.name} ({fp}); if it is right, run again with "
            "--accept-new-host-key (or FABRIC_JUPYTER_ACCEPT_NEW_HOST_KEY=1, or StrictHostKeyChecking accept-new in ssh_config)"
        )

    def _record(self, key):
        path = Path(self.user_files[0] if self.user_files else os.path.expanduser("~/.ssh/known_hosts"))
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(f"{self.name} {key.get_name()} {key.get_base64()}\n")


class HostKeyError(HostError):
    pass


def install(conn, label, accept_new):
    """Check host keys for this connection and every gateway before it."""
    while conn is not None and hasattr(conn, "client"):
        conn.client.set_missing_host_key_policy(Policy(conn, label, accept_new))
        conn = conn.gateway if not isinstance(conn.gateway, str) else None
