"""One host's entries in this tool's own ssh_config file (ssh/entries.py writes the file): what
the tool connects with (ssh/sshconfig.py's reach, the same as the tunnel's `ssh`) and a
LocalForward to where its Jupyter listens, as the host's status said. A batch job's entry
leads to the job's compute node, through an entry of its own for the login node."""

import contextlib
import os
import typing
from dataclasses import dataclass

from ..context import run
from ..errors import HostError, UserError
from ..forwards.ports import saved_ports, usual_local_port
from ..hosts import inventory
from ..hosts.inventory import BATCH_LAUNCHERS
from ..protocol import run_agent
from ..protocol.where import Where
from ..report import Outcome, Plain, say
from ..ssh import entries
from ..ssh.sshconfig import config_file, reach

# ssh_config options the connection read for the host (known hosts, key checks), carried into
# its entry as they are; a compute node's entry leaves out the login node's HostKeyAlias
CARRIED = ("UserKnownHostsFile", "GlobalKnownHostsFile", "StrictHostKeyChecking", "HostKeyAlias", "CertificateFile",
           "IdentitiesOnly")
NOT_FOR_NODE = ("HostKeyAlias",)


@dataclass(frozen=True)
class Seen:
    """Where the host's Jupyter listens (None: not running), and its batch job if it has one."""

    where: typing.Optional[Where]
    batch: bool = False
    job_id: typing.Optional[str] = None
    job_state: typing.Optional[str] = None
    ended: typing.Optional[str] = None

    @classmethod
    def of(cls, status):
        """From the host's status reply."""
        where = Where.of(status) if status.running else None
        return cls(where, bool(status.job_id) or status.launcher in BATCH_LAUNCHERS, status.job_id, status.job_state,
                   status.ended)

    @classmethod
    def at(cls, where):
        """From a forward's Where (a job's has the node's address)."""
        return cls(where, bool(where.address))


def _base(t):
    """The host's part of its entries' names: its hosts.yaml name, else -H's host (ana@gpu1:22: gpu1)."""
    return t.host if t.inventory.entry(t.host) else t.conn.original_host


def alias_of(t):
    return entries.PREFIX + _base(t) + ("" if t.name == "default" else f"-{t.name}")


def login_alias(t):
    return entries.PREFIX + _base(t) + "-login"


def _include(conn):
    """The ssh_config file given with -S, absolute, for the file to include (not ~/.ssh/config,
    which includes the file: that would be a loop)."""
    path = config_file(conn)
    if not path or path == "/dev/null":
        return None
    path = os.path.abspath(os.path.expanduser(path))
    return None if os.path.realpath(path) == os.path.realpath(os.path.expanduser("~/.ssh/config")) else path


def connection(t, node=None):
    """The options that reach the host as the tool does (or, NODE, a batch job's compute node
    through the login node's entry), as (keyword, [words]) pairs."""
    conn = t.conn
    options = [("HostName", [node or conn.host])]
    for keyword, value in reach(conn):
        if keyword == "HostName" or (node and keyword in ("Port", "ProxyJump", "ProxyCommand")):
            continue
        options.append((keyword, [value]))
    if node:
        options.append(("ProxyJump", [login_alias(t)]))
    for keyword in CARRIED:
        value = conn.ssh_config.get(keyword.lower())
        if value and not (node and keyword in NOT_FOR_NODE):
            options.append((keyword, list(value) if isinstance(value, list) else str(value).split()))
    return options


def _meta(t, port):
    jump = dict(reach(t.conn)).get("ProxyJump", "")
    return {"host": t.host, "name": t.name, "inventory": t.inventory.path if t.inventory.entry(t.host) else None,
            "include": _include(t.conn), "local_port": port,
            "hops": [hop.rsplit("@", 1)[-1].rsplit(":", 1)[0] for hop in jump.split(",") if hop]}


def _owned(old, alias, name, login):
    """One name, one owner: host "a-b" and host a's instance b, or an instance named login and a
    login node, would both be one alias; the second is refused."""
    for e in old:
        if e.alias == alias and (e.meta.get("name"), bool(e.meta.get("login_of"))) != (name, login):
            owner = "login node" if e.meta.get("login_of") else f"instance {e.meta.get('name')}"
            raise entries.Refused(f"{alias} is already the entry of {e.meta.get('host')}'s {owner}; give the instance "
                                  "another name")


def build(t, seen, old, local_port=None, saved=None):
    """T's entries, given what the file holds now (OLD): the host's (or the job node's) entry,
    and for a batch job the login node's. LOCAL_PORT: the port a tunnel was told to take
    (--local-port); else the entry's own (stable, for a saved IDE URL), or the one a tunnel
    would take, kept apart from the other entries'."""
    alias = alias_of(t)
    _owned(old, alias, t.name, False)
    wanted, pinned = (local_port, True) if local_port else usual_local_port(t, saved)
    meta = _meta(t, entries.choose_port(old, alias, wanted, pinned))
    # a job's server is on a node; a host set up for jobs and not running one has no node either
    if seen.batch or (seen.where is None and t.settings.launcher in BATCH_LAUNCHERS):
        return _job_entries(t, seen, old, alias, meta)
    where, port = seen.where, meta["local_port"]
    if where is None:
        notes = [f"{t.label}: Jupyter is not running there (`fab -H {t.host} setup{t.named}`): no LocalForward"]
        return [entries.make(alias, meta, notes, connection(t))]
    forward = ("LocalForward", [f"127.0.0.1:{port}", where.forward_target()])
    notes = [f"{t.label}: Jupyter at {where.words}; {where.url(port)} while `ssh {alias}` is open"]
    return [entries.make(alias, meta, notes, connection(t) + [forward])]


def _job_entries(t, seen, old, alias, meta):
    """A batch job's: the login node's entry, and the job node's (once its node is known; kept,
    marked and without its forward, once the job has ended)."""
    _owned(old, login_alias(t), None, True)
    login = entries.make(login_alias(t), dict(meta, name=None, login_of=t.host, local_port=None),
                         [f"{t.host}: the login node, the jump to its batch jobs' nodes"], connection(t))
    where, port, fab = seen.where, meta["local_port"], f"fab -H {t.host} setup{t.named}"
    before: dict = next((e.meta for e in old if e.alias == alias), {})
    job_id = seen.job_id or (before.get("job_id") if where is not None and before.get("node") == where.address else None)
    job = f"job {job_id}" if job_id else "the batch job"
    if job_id:
        meta["job_id"] = job_id  # a tunnel, which does not know it, keeps the entry as setup wrote it
    if where is not None:
        meta["node"] = where.address
        forward = ("LocalForward", [f"127.0.0.1:{port}", where.forward_target()])
        notes = [f"{t.label}: Jupyter in {job} on its node {where.address}, port {where.at}; {where.url(port)} while "
                 f"`ssh {alias}` is open"]
        return [login, entries.make(alias, meta, notes, connection(t, node=where.address) + [forward])]
    why = f"{job} ended ({seen.ended})" if seen.ended else f"{job} is {seen.job_state}" if seen.job_state else "no job runs"
    if before.get("node"):  # kept, marked: the next job's node replaces it
        meta["node"] = before["node"]
        notes = [f"{t.label}: {why}: this entry still names the last job's node, without a LocalForward; `{fab}` "
                 "starts a new job and this entry follows it"]
        return [login, entries.make(alias, meta, notes, connection(t, node=meta["node"]))]
    return [entries.make(alias, meta, [f"{t.label}: {why}, no node to reach yet; `{fab}` starts one"], [])]


def vanished_hosts():
    """VANISHED(meta) for entries.update: its host is gone from the hosts.yaml it came from
    (each file read once)."""
    read: dict[str, set | None] = {}

    def vanished(meta):
        path = meta.get("inventory")
        if not path:
            return False  # given as -H user@host: there is nothing to tell it is gone
        if path not in read:
            try:
                read[path] = set(inventory.load(path).hosts)
            except UserError:
                read[path] = None  # a file being edited: keep its hosts' entries
        hosts = read[path]
        return hosts is not None and meta.get("host") not in hosts

    return vanished


def write(items, skip_refused=False):
    """Write the entries of ITEMS, (Target, Seen, local port or None) each, in one rewrite.
    Returns (path, changed, {label: the entry's alias}, [refusals]); a value that is not safe is
    Refused (with SKIP_REFUSED: that host's entries are left as they were, said in the list)."""
    made, refused, saved = {}, [], saved_ports()

    def each(old):
        new: list = []
        for t, seen, local_port in items:
            try:
                mine = build(t, seen, old + new, local_port, saved)
            except entries.Refused as e:
                if not skip_refused:
                    raise entries.Refused(f"{t.label}: {e}") from None
                refused.append(f"{t.label}: {e}; its ssh_config entry is left as it was")
                continue
            made[t.label] = mine[-1]
            new = [e for e in new if e.alias not in {m.alias for m in mine}] + mine
        return new

    path, changed = entries.update(each, vanished_hosts())
    return path, changed, made, refused


def keep_current(items):
    """After setup, start or a tunnel: write their hosts' entries, quietly. A failure is a line
    to print (Jupyter runs all the same), never an error."""
    if not items:
        return []
    try:
        return write(items, skip_refused=True)[3]
    except UserError as e:
        return [f"{e}; the ssh_config entries are left as they were"]


def note_running(t, status):
    """Setup or start saw T's Jupyter: its entry is written once the task ends (flush)."""
    with run().entries_lock:
        run().entries.append((t, Seen.of(status), None))


@contextlib.contextmanager
def flush():
    """Around a task that starts servers: the entries noted meanwhile are written at its end, in
    one rewrite for a whole group (also when some of its hosts failed)."""
    try:
        yield
    finally:
        with run().entries_lock:
            items, run().entries[:] = list(run().entries), []
        for line in keep_current(items):
            say(line)


def ssh_config_host(t):
    """ssh-config on one host: ask where its Jupyter runs, write its entries, say how to use them."""
    status = run_agent(t, "status").status
    seen = Seen.of(status)
    try:
        path, changed, made, _ = write([(t, seen, None)])
    except entries.Refused as e:
        raise HostError(t.label, f"cannot write its ssh_config entry: {str(e).removeprefix(t.label + ': ')}; "
                                 "the file is left as it was") from None
    entry = made[t.label]
    port = entry.meta.get("local_port")
    forwards = any(line.strip().startswith("LocalForward ") for line in entry.lines)
    if forwards:
        where = f"node {entry.meta['node']}" if entry.meta.get("node") else "the host"
        lines = [f"`ssh {entry.alias}` logs in to {where} and forwards {seen.where.url(port)} to Jupyter"]
    elif entry.meta.get("node"):
        lines = [f"`ssh {entry.alias}` logs in to node {entry.meta['node']} of the last job, which has ended "
                 f"(no LocalForward); `fab -H {t.host} setup{t.named}` starts a new one"]
    elif any(line.startswith("Host ") for line in entry.lines):
        lines = [f"`ssh {entry.alias}` logs in to the host; Jupyter is not running there, so no LocalForward "
                 f"(`fab -H {t.host} setup{t.named}`)"]
    else:
        lines = [f"{entry.alias}: no job runs, no node to reach yet (`fab -H {t.host} setup{t.named}`)"]
    lines.append(f"{path} {'written' if changed else 'unchanged'}")
    include = entries.include_line(path)
    if included(path):
        lines.append(Plain(f"~/.ssh/config includes it already ({include})"))
    else:
        lines += [Plain("Add this line to ~/.ssh/config, above every Host and Match line there (this tool never edits it):"),
                  Plain(f"    {include}")]
    record = {"host": t.host, "name": t.name, "alias": entry.alias, "file": str(path), "local_port": port,
              "forwards": forwards, "node": entry.meta.get("node"), "include": include}
    return Outcome(lines, "written" if changed else "unchanged", "", record)


def included(path):
    """Whether ~/.ssh/config has an Include line naming PATH (read, never written)."""
    try:
        text = open(os.path.expanduser("~/.ssh/config"), encoding="utf-8", errors="replace").read()
    except OSError:
        return False
    want = os.path.realpath(path)
    for line in text.splitlines():
        words = line.strip().split()
        if len(words) > 1 and words[0].lower() == "include":
            for word in words[1:]:
                word = os.path.expanduser(word.strip('"'))
                full = word if os.path.isabs(word) else os.path.join(os.path.expanduser("~/.ssh"), word)
                if os.path.realpath(full) == want:
                    return True
    return False
