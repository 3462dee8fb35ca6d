"""The ssh_config file of this tool's own, $XDG_CONFIG_HOME/fabjupyter/ssh_config: a `Host
fabjupyter-HOST` entry per host and instance, with what the tool connects with and a
LocalForward to Jupyter, so that `ssh fabjupyter-HOST` (and an IDE's Remote-SSH given that name)
reaches it as `fab` does. ~/.ssh/config takes it with one Include line; this tool never edits
~/.ssh/config.

The file is the record: each entry starts with a comment line `# entry {JSON}` that says whose it
is (host, instance, inventory, local port, node), so that a rewrite keeps the other hosts'
entries as they are, drops those of hosts gone from their hosts.yaml, and keeps local ports
apart. Every value is checked before anything is written (Refused: the file is left as it was):
a line break, a quote or a backslash in a hosts.yaml value must not become a directive of its
own in the user's ssh configuration."""

import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..localfiles import config_path, locked, write_private

PREFIX = "fabjupyter-"
MARK = "# entry "
HEADER = (
    "# Written by fabjupyter (`fab -H HOST ssh-config`, and every setup and tunnel): rewritten, do not edit.",
    "# One Host entry per host and instance: `ssh fabjupyter-HOST` reaches it as fab does and forwards Jupyter.",
    "# Use it from ~/.ssh/config with this line, above every Host and Match block there:",
)


class Refused(UserError):
    """A value that cannot go into ssh_config safely; nothing was written."""


def default_path():
    return config_path("ssh_config")


def include_line(path):
    """The line for ~/.ssh/config: `Include PATH`, with ~ for the home directory (OpenSSH expands
    it in a user's configuration)."""
    text = str(path)
    home = os.path.expanduser("~")
    if text.startswith(home + "/"):
        text = "~" + text[len(home):]
    return f"Include {quote(check('Include', text, 'path'))}"


# --- values -------------------------------------------------------------------------------

# What a word of each kind may hold. A name (an alias, an address, a user, jump hosts) is one
# plain word; a path may have spaces (quoted) but never a quote or backslash, which ssh_config
# would read as quoting of its own; nothing may have a control character (a line break would end
# the directive and start another).
_ALIAS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_NAME = re.compile(r"[A-Za-z0-9_\[:][A-Za-z0-9._@:,\[\]+-]*")
_NUMBER = re.compile(r"[0-9]{1,5}")
_PLAIN = re.compile(r"[A-Za-z0-9._/~@:+,=%-]+")


def check(keyword, value, kind):
    """VALUE, if it is safe as one word of KEYWORD in ssh_config (KIND: alias, name, number, path
    or command); else Refused, naming the keyword and the value (as repr: never its raw line
    break)."""
    if not isinstance(value, str) or not value:
        raise Refused(f"{keyword} {value!r}: empty")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise Refused(f"{keyword} {value!r}: has a line break or another control character")
    if kind == "command":  # ProxyCommand: the rest of the line, as ssh_config gave it to Fabric
        return value
    if any(ch in value for ch in "\"'\\"):
        raise Refused(f"{keyword} {value!r}: has a quote or a backslash")
    pattern = {"alias": _ALIAS, "name": _NAME, "number": _NUMBER}.get(kind)
    if pattern is not None and not pattern.fullmatch(value):
        what = "letters, digits, . _ -" if kind == "alias" else "a port number" if kind == "number" else \
            "one word (letters, digits, . _ - @ : , [ ] +), not starting with -"
        raise Refused(f"{keyword} {value!r}: must be {what}")
    return value


def quote(word):
    """WORD as ssh_config reads it back as one argument: in double quotes unless it is plain."""
    return word if _PLAIN.fullmatch(word) else f'"{word}"'


# the kind of value each keyword this file writes takes
KINDS = {
    "HostName": "name", "User": "name", "Port": "number", "IdentityFile": "path", "ConnectTimeout": "number",
    "ProxyJump": "name", "ProxyCommand": "command", "UserKnownHostsFile": "path", "GlobalKnownHostsFile": "path",
    "StrictHostKeyChecking": "name", "HostKeyAlias": "name", "CertificateFile": "path", "IdentitiesOnly": "name",
    "LocalForward": "forward", "Include": "path",
}


def directive(keyword, words):
    """One line of an entry, every word checked: `    Keyword word...`."""
    kind = KINDS[keyword]
    if kind == "command":
        return f"    {keyword} {check(keyword, words[0], 'command')}"
    if kind == "forward":  # the local end (127.0.0.1:PORT), then ADDRESS:PORT or a socket's path
        listen, target = words
        check(keyword, listen, "name")
        check(keyword, target, "path" if target.startswith("/") else "name")
        return f"    {keyword} {listen} {quote(target)}"
    return f"    {keyword} " + " ".join(quote(check(keyword, w, kind)) for w in words)


def note(text):
    """A comment line (its values were checked as the directives' are)."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise Refused(f"note {text!r}: has a line break or another control character")
    return f"# {text}"


# --- entries ------------------------------------------------------------------------------

@dataclass
class Entry:
    """One block of the file: ALIAS (the Host name, or for a comment-only entry the name it
    will have), META (whose it is: host, name, inventory, include, local_port, node, login_of,
    hops) and LINES (its notes and directives, as written)."""

    alias: str
    meta: dict
    lines: list = field(default_factory=list)

    def text(self):
        return [MARK + json.dumps(dict(self.meta, alias=self.alias), sort_keys=True), *self.lines]


def make(alias, meta, notes, options):
    """An Entry from notes (comment lines) and OPTIONS ((keyword, [words]) pairs; none: an entry
    of notes alone, for a host whose Jupyter has no place to reach yet)."""
    check("Host", alias, "alias")
    lines = [note(n) for n in notes]
    if options:
        lines.append(f"Host {alias}")
        lines += [directive(keyword, words) for keyword, words in options]
    return Entry(alias, meta, lines)


def parse(text):
    """The entries of the file's TEXT (those this tool wrote; anything else is dropped)."""
    entries, current = [], None
    for line in text.splitlines():
        if line.startswith(MARK):
            try:
                meta = json.loads(line[len(MARK):])
                alias = meta.pop("alias")
                check("Host", alias, "alias")
            except (ValueError, KeyError, TypeError, AttributeError, UserError):
                current = None
                continue
            current = Entry(alias, meta)
            entries.append(current)
        elif current is not None and line.strip():
            current.lines.append(line)
        else:
            current = None  # a blank line ends an entry; the Include section is made anew
    return entries


def merge(old, new, vanished=lambda meta: False):
    """The entries after a rewrite: NEW replace OLD of the same alias; those VANISHED(meta) says
    are gone (their host left its hosts.yaml) are dropped, and a login node's entry is kept only
    while an entry of its host jumps through it. Sorted by alias."""
    by_alias = {e.alias: e for e in old if not vanished(e.meta)}
    by_alias.update({e.alias: e for e in new})
    jumped = {e.meta.get("host") for e in by_alias.values() if e.meta.get("node")}
    kept = [e for e in by_alias.values() if not e.meta.get("login_of") or e.meta["login_of"] in jumped]
    return sorted(kept, key=lambda e: e.alias)


def render(path, entries):
    """The whole file: the header, the entries, then each ssh_config file given with -S included
    for the entries (and jump hosts) that were reached with it. That Include comes last and under
    a Match of those names: it fills in what the entries leave unset, and nothing of it reaches
    the user's other hosts."""
    lines = [*HEADER, "#   " + include_line(path), ""]
    for e in entries:
        lines += e.text() + [""]
    includes: dict[str, list[str]] = {}
    for e in entries:
        if e.meta.get("include") and "Host " + e.alias in e.lines:
            includes.setdefault(e.meta["include"], []).extend([e.alias, *e.meta.get("hops", [])])
    for file, aliases in sorted(includes.items()):
        names = ",".join(check("Match", n, "name") for n in dict.fromkeys(aliases))
        lines += [f"Match originalhost {names}", directive("Include", [file]), ""]
    return "\n".join(lines)


def taken_ports(entries, alias):
    """The local ports the other entries forward."""
    return {e.meta.get("local_port") for e in entries if e.alias != alias} - {None}


def choose_port(entries, alias, wanted, pinned):
    """The local port for ALIAS's LocalForward: WANTED when PINNED (hosts.yaml's own, or the port
    a tunnel holds now); else the one the entry had (stable, for a saved IDE URL) unless another
    entry took it; else WANTED, or the next one no other entry forwards."""
    if pinned:
        return wanted
    taken = taken_ports(entries, alias)
    before = next((e.meta.get("local_port") for e in entries if e.alias == alias), None)
    if isinstance(before, int) and before not in taken:
        return before
    port = wanted
    while port in taken and port < 65535:
        port += 1
    return port


def _checked_by_ssh(path, text, alias):
    """Whether OpenSSH reads TEXT as a configuration (`ssh -G -F`: nothing is connected): a
    file it could not read would break every `ssh` of the user's that includes it."""
    probe = path.with_name(f"{path.name}.check.{os.getpid()}")
    try:
        write_private(probe, text)
        r = subprocess.run(["ssh", "-G", "-F", str(probe), alias], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=30)
        return r.returncode == 0, (r.stderr.strip().splitlines() or [""])[-1]
    except FileNotFoundError:  # no OpenSSH client here to ask (nor a tunnel to make): the checks above stand
        return True, ""
    except (OSError, subprocess.SubprocessError) as e:
        return False, str(e)
    finally:
        probe.unlink(missing_ok=True)


def update(build, vanished=lambda meta: False, path=None):
    """Rewrite the file with the entries BUILD(existing entries) returns (a Refused raised there
    leaves the file as it was), under a lock (runs at the same time take turns). Returns (path,
    whether the file changed). Written only when its text changes; mode 0600, directory 0700."""
    path = Path(path or default_path())
    try:
        with locked(path):
            path.parent.chmod(0o700)
            try:
                before = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                before = ""
            old = parse(before)
            new = build(old)
            text = render(path, merge(old, new, vanished))
            if text == before:
                return path, False
            if new:
                readable, said = _checked_by_ssh(path, text, new[0].alias)
                if not readable:
                    raise Refused(f"OpenSSH would not read the new {path} ({said}); it is left as it was")
            write_private(path, text)
            return path, True
    except TimeoutError as e:
        raise UserError(f"{e}; try again") from None
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
