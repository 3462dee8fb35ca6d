"""The agent's replies as typed objects, one class per reply type the action table names:
strict (a missing, unknown or mistyped key is an error)."""

import typing
from dataclasses import dataclass, fields

from ..remote.spec import ACTIONS


class ProtocolError(Exception):
    """The agent's reply does not match what this client expects (a bug, or another version)."""


@dataclass(frozen=True)
class Change:
    what: str  # settings, config, tool (replaced), tool_added, password, root_dir, stop_unrecorded, stop, start, cert
    detail: str
    diff: typing.Tuple[str, ...]


@dataclass(frozen=True)
class Status:
    running: bool
    pid: typing.Optional[int]
    port: typing.Optional[int]
    socket: typing.Optional[str]
    launcher: typing.Optional[str]
    mode: typing.Optional[str]
    started: typing.Optional[int]
    current: typing.Optional[bool]
    kind: typing.Optional[str]
    version: typing.Optional[str]
    fast_start: typing.Optional[bool]
    stale_pid: typing.Optional[int]
    idle_shutdown: typing.Optional[int]  # the stale pid shut itself down after that many seconds idle (idle_timeout)
    has_password: bool
    configured: bool
    unrecorded: typing.Tuple[int, ...]
    busy: typing.Optional[str]
    # a batch job (launcher slurm), else all None
    job_id: typing.Optional[str]
    job_state: typing.Optional[str]  # PENDING, RUNNING...; once it ended, how (TIMEOUT, CANCELLED (reason)...)
    node: typing.Optional[str]
    time_left: typing.Optional[str]
    address: typing.Optional[str]  # where Jupyter listens, as the host (the login node) reaches it
    ended: typing.Optional[str]
    own_env: bool  # it runs from this tool's environment (setup --install)
    container: typing.Optional[str]  # the image it runs from (container:), and its runtime
    container_runtime: typing.Optional[str]

    @property
    def where(self):
        """The port (a number), or the socket path in socket mode."""
        return self.socket or self.port


class Changes:
    """Replies that carry the changes made (or, in a dry run, that would be made)."""

    changes: typing.Tuple["Change", ...]  # each reply's own field

    def change(self, what):
        return next((c for c in self.changes if c.what == what), None)

    def changed(self, *whats):
        return any(c.what in whats for c in self.changes)


@dataclass(frozen=True)
class InstallFacts:
    """What the client needs to install Jupyter there: the host's Python and platform, and
    whether it reaches the package index itself."""

    python: str  # "3.11"
    implementation: str  # "cpython"
    platforms: typing.Tuple[str, ...]  # pip's platform tags, most specific first
    index: str
    online: bool
    has_venv: bool
    venv: str
    exists: bool
    versions: dict


@dataclass(frozen=True)
class SetupReply(Changes):
    ask: typing.Optional[str]  # "password", "salt" or "install": asked back before anything changed
    salt: typing.Optional[str]
    unchanged: bool
    changes: typing.Tuple[Change, ...]
    status: Status
    note: typing.Optional[str]
    install: typing.Optional[InstallFacts]


@dataclass(frozen=True)
class InstallReply(Changes):
    facts: InstallFacts
    changes: typing.Tuple[Change, ...]
    before: dict
    after: dict
    seconds: float


@dataclass(frozen=True)
class WriteReply(Changes):
    changes: typing.Tuple[Change, ...]
    restart_needed: bool


@dataclass(frozen=True)
class StartReply(Changes):
    changes: typing.Tuple[Change, ...]
    status: Status
    note: typing.Optional[str]


@dataclass(frozen=True)
class StopReply(Changes):
    changes: typing.Tuple[Change, ...]


@dataclass(frozen=True)
class StatusReply:
    status: Status


@dataclass(frozen=True)
class LogsReply:
    exists: bool
    lines: typing.Tuple[str, ...]


@dataclass(frozen=True)
class CertReply(Changes):
    fqdn: str
    ips: typing.Tuple[str, ...]
    has_password: bool
    same: bool
    changes: typing.Tuple[Change, ...]


@dataclass(frozen=True)
class Instance:
    name: str
    status: Status


@dataclass(frozen=True)
class OtherServer:
    """A Jupyter server of the user's there that this tool did not start (its runtime file)."""

    pid: int
    port: typing.Optional[int]
    socket: typing.Optional[str]
    url: typing.Optional[str]
    version: typing.Optional[str]
    root_dir: typing.Optional[str]
    kind: str


@dataclass(frozen=True)
class ListReply:
    instances: typing.Tuple[Instance, ...]
    others: typing.Tuple[OtherServer, ...]
    now: int


@dataclass(frozen=True)
class WatchReply:
    gone: str  # why the server a forward was confirmed for is no longer there: stopped, restarted, moved, taken


@dataclass(frozen=True)
class ErrorReply:
    code: str
    detail: str
    log: typing.Tuple[str, ...]


# the reply type of each action, as the action table (remote/spec.py) names it
TYPES = {c.__name__: c for c in (SetupReply, WriteReply, StartReply, StopReply, StatusReply, LogsReply, CertReply,
                                 ListReply, InstallReply, WatchReply)}
REPLIES = {name: TYPES[action.reply] for name, action in ACTIONS.items()}


def parse(kind, data, where="reply"):
    """DATA as an instance of KIND (a dataclass, Optional[...], Tuple[X, ...] or a plain type),
    checked all the way down: a missing, unknown or mistyped key is a ProtocolError."""
    origin = typing.get_origin(kind)
    if origin is typing.Union:  # Optional[X]
        if data is None:
            return None
        return parse(typing.get_args(kind)[0], data, where)
    if origin is tuple:
        if not isinstance(data, list):
            raise ProtocolError(f"{where}: expected a list, got {data!r}")
        return tuple(parse(typing.get_args(kind)[0], item, f"{where}[{i}]") for i, item in enumerate(data))
    if hasattr(kind, "__dataclass_fields__"):
        if not isinstance(data, dict):
            raise ProtocolError(f"{where}: expected an object, got {data!r}")
        names = {f.name for f in fields(kind)}
        if set(data) != names:
            missing, unknown = sorted(names - set(data)), sorted(set(data) - names)
            raise ProtocolError(f"{where}: missing keys {missing}, unknown keys {unknown}")
        hints = typing.get_type_hints(kind)
        return kind(**{name: parse(hints[name], data[name], f"{where}.{name}") for name in names})
    if kind is int and (isinstance(data, bool) or not isinstance(data, int)):
        raise ProtocolError(f"{where}: expected a number, got {data!r}")
    if kind is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if not isinstance(data, kind):
        raise ProtocolError(f"{where}: expected {kind.__name__}, got {data!r}")
    return data
