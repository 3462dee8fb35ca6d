"""The agent protocol: the one way to run something on a host. The bootstrap (bootstrap.sh) goes
to `sh -s` with every value quoted here; the agent (agent.py) and its JSON request go inside it;
the agent answers with JSON lines, turned here into one typed object per action. Its error
codes become sentences here, in one place."""

import json
import sys
import typing
from dataclasses import dataclass, fields
from importlib import resources

from .ssh.connection import close_sessions, session
from .errors import HostError, UserError
from .hosts.inventory import launcher_words

BOOTSTRAP = resources.files(__package__).joinpath("remote").joinpath("bootstrap.sh").read_text()
BOOT = resources.files(__package__).joinpath("remote").joinpath("boot.py").read_text()
PROTOCOL = 1
NEEDS_JUPYTER = ("config", "setup", "start", "restart", "install")  # run in Jupyter's environment and Python
LAUNCHING = ("setup", "start", "restart")  # may start Jupyter
TAKES_READY = LAUNCHING + ("watch",)  # take ready.py along (its checks of who listens where)


def sh_quote(value):
    """Quote one value for a POSIX shell. Every value that reaches a remote shell goes through
    the agent's sh_quote (the agent uses it too, for Jupyter's command line under tmux)."""
    from .remote import shell  # here, not at the top: a tunnel asks in a thread while its ssh logs in

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


def run_script(code=""):
    """~/.fabjupyter/run.sh: the bootstrap, ending in its call (tmux runs `sh run.sh serve ...`)."""
    from .remote import own

    return own.run_sh()


def agent_script(action, request, settings_sh=None):
    """The text for `sh -s`: variables, the bootstrap (definitions only), then the one call."""
    from .remote import pack  # the remote folder, joined into the one script that travels

    request = dict(request, v=PROTOCOL, action=action)
    request.setdefault("instance", "default")
    if settings_sh is not None:
        request["settings_sh"] = settings_sh
    files = pack.sources()
    payload = pack.agent_payload(request, files)
    lines = [sh_assign("FJ_AGENT_PY", payload), sh_assign("FJ_INSTANCE", request["instance"])]
    if settings_sh is not None:
        lines.append(sh_assign("FJ_SETTINGS", settings_sh))
    if action in NEEDS_JUPYTER:
        lines.append("FJ_NEEDS_JUPYTER=1")
    return "\n".join(lines) + "\n" + files["bootstrap.sh"] + "\nfj_boot agent\n"


# --- typed replies ------------------------------------------------------------------------------


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

    @property
    def where(self):
        """The port (a number), or the socket path in socket mode."""
        return self.socket or self.port


class Changes:
    """Replies that carry the changes made (or, in a dry run, that would be made)."""

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


REPLIES = {
    "setup": SetupReply, "config": WriteReply, "password": WriteReply, "start": StartReply, "restart": StartReply,
    "stop": StopReply, "status": StatusReply, "logs": LogsReply, "cert": CertReply, "list": ListReply,
    "install": InstallReply, "watch": WatchReply,
}


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


# --- running it ---------------------------------------------------------------------------------


def read_line(raw, on_event):
    """One line of the agent's output: an event (passed on) or its reply or error (returned)."""
    try:
        message = json.loads(raw)
    except ValueError:
        raise ProtocolError(f"not a JSON line: {raw[:200]!r}") from None
    if not isinstance(message, dict) or len(message) != 1 and "event" not in message:
        raise ProtocolError(f"not a message: {raw[:200]!r}")
    if "event" in message:
        on_event(message)
        return None
    if "error" in message:
        return parse(ErrorReply, message["error"], "error")
    if "reply" in message:
        return message["reply"]
    raise ProtocolError(f"unknown message: {raw[:200]!r}")


def run_agent(t, action, settings_sh=None, **request):
    """Run one agent action on the host: one SSH session, the script on stdin, one typed reply."""
    script = agent_script(action, dict(request, instance=request.get("instance", t.name)), settings_sh).encode()
    reply = error = None
    jobs = []  # batch jobs it submitted (cancelled if we are interrupted meanwhile)

    def on_event(message):
        if message["event"] == "job" and message["state"] == "SUBMITTED":
            jobs.append(message["job_id"])
        show_event(t, message)

    try:
        # closed on the way out, an interruption included: the interrupted agent notices at once
        with session(t, "sh -s", f"the SSH connection failed during {action}: {{e}}") as s:
            s.stdin.write(script)
            s.close_stdin()
            for raw in s.stdout:
                answer = read_line(raw, on_event)
                if isinstance(answer, ErrorReply):
                    error = answer
                elif answer is not None:
                    reply = answer
            stderr = s.stderr_text()
            status = s.exit_status()
            lost = s.lost(status)
    except ProtocolError as e:
        raise HostError(t.label, f"{action}: the agent's reply was not understood ({e}); is this tool installed twice, in two versions?") from None
    except KeyboardInterrupt:
        if jobs:
            cancel_jobs(t, jobs)
        raise
    if error is not None:
        raise RemoteError(t, error, stderr)
    if reply is None:
        lines = [line for line in stderr.splitlines() if line.strip()]
        if lost:
            raise HostError(t.label, f"the SSH connection failed during {action}: {lines[-1] if lines else 'ssh exited 255'}")
        raise HostError(t.label, f"{action} failed on the remote: {lines[-1] if lines else f'exit status {status}'}")
    try:
        return parse(REPLIES[action], reply)
    except ProtocolError as e:
        raise HostError(t.label, f"{action}: the agent's reply was not understood ({e})") from None


def cancel_jobs(t, jobs):
    """Ctrl-C while a job we submitted waits: it is nobody's now. The agent cancels it when it
    sees us gone; `stop` waits for that (it takes the same lock) and makes sure."""
    print(f"{t.label}: interrupted; cancelling job {', '.join(jobs)}", file=sys.stderr, flush=True)
    try:
        close_sessions(t)  # the interrupted session's agent notices at once
        run_agent(t, "stop", timeout=60)
        print(f"{t.label}: job {', '.join(jobs)} cancelled", file=sys.stderr, flush=True)
    except (UserError, KeyboardInterrupt):
        print(f"{t.label}: could not make sure job {', '.join(jobs)} was cancelled; check with `{t.fab('status')}`",
              file=sys.stderr, flush=True)


def show_event(t, message):
    if message["event"] == "waiting":
        # as it happens, not at the end: another run holds the host's lock
        print(f"{t.label}: waiting for another fabjupyter run there to finish: {message['owner']} (up to {message['seconds']} s)",
              file=sys.stderr, flush=True)
    elif message["event"] == "install":
        words = {"venv": "creating this tool's environment", "pip": "installing with pip"}
        print(f"{t.label}: {words.get(message['step'], message['step'])} ({message['detail']})", flush=True)
    elif message["event"] == "job":
        # a batch job's progress, one line per change: submitted, PENDING (reason), RUNNING on NODE
        state, reason, node = message["state"], message.get("reason"), message.get("node")
        detail = f" on {node}" if state == "RUNNING" and node else f" ({reason})" if reason else ""
        print(f"{t.label}: job {message['job_id']} {state.lower() if state == 'SUBMITTED' else state}{detail}", flush=True)


ERRORS = {
    "no_password": "no Jupyter password is set there; run `{fab} password{named}` (or `setup{named}`)",
    "not_configured": "not configured yet; run `{fab} setup{named}` (or `config{named}`)",
    "no_cert": "public mode needs a certificate and there is none; run `{fab} cert{named}` (setup --mode public makes one)",
    "unknown_instance": "no instance {detail!r} there (instances there: {known}); `{fab} setup --name {detail}` makes it",
    "bad_name": "{detail} is not an instance name (letters, digits, - and _; up to 40, not starting with - or _)",
    "no_tmux": "tmux is not installed there; install it, or use --launcher nohup",
    "no_scheduler": "{detail} is not on the PATH there (is this the cluster's login node? `activate: module load slurm` may bring it)",
    "submit_failed": "{detail} refused the job: {log_line}",
    "scheduler": "the scheduler could not be asked ({detail}):{logs}",
    "job_ended": "the batch job ended before Jupyter answered: job {detail}; its log ends with:{logs}",
    "queue_timeout": "{queue_words}; cancelled it (queue_timeout: in hosts.yaml, or --queue-timeout, waits longer)",
    "cancelled": "job {detail} cancelled: this run was interrupted while it waited",
    "port_taken": "{detail} was taken by another process before Jupyter could listen on it, so the job was cancelled "
    "before any login; run setup again (it chooses a free port again)",
    "bad_launcher": "unknown launcher {detail!r}; use " + launcher_words(),
    "no_jupyter": "no Jupyter found there{detail_in}; set `jupyter:` (the command, e.g. ~/venv/bin/jupyter lab) or `activate:` (e.g. source ~/venv/bin/activate) in hosts.yaml, or let setup install JupyterLab into an environment of its own there (--install, or install: true)",
    "no_venv": "{detail} there cannot make an environment (no venv/ensurepip module); install it there, e.g. `sudo apt install {detail}-venv` (Debian/Ubuntu), then run setup again",
    "install_failed": "installing failed ({detail}); nothing was changed. It said:{logs}",
    "no_python": "cannot find the Python that runs {detail}, and there is no python3 there; set `jupyter:` to the "
    "jupyter command inside its environment, e.g. ~/venv/bin/jupyter lab",
    "no_python_agent": "there is no python3 on the host's PATH to run this tool's agent (and no Jupyter environment "
    "recorded there); install python3, or set `activate:` so that Jupyter's is found",
    "unsupported": "{detail} is not supported (this tool runs Jupyter Server 1 or 2 — JupyterLab 3/4, Notebook 7 — or classic Notebook 6.1+); upgrade it there, e.g. pip install -U jupyterlab",
    "activate_failed": "the activate line failed; fix `activate:` in hosts.yaml. It said:{output}",
    "root_not_dir": "root_dir {detail} exists but is not a directory; choose another with --root-dir",
    "cannot_write": "cannot write there ({detail}); is the disk full or the home directory read-only?",
    "no_free_port": "no free port from {detail} on; choose another with --port",
    "died": "Jupyter exited while starting; its log ends with:{logs}",
    "timeout": "Jupyter did not answer within {detail} s, so it was stopped; its log ends with:{logs} (start_timeout: in hosts.yaml waits longer)",
    "launch_failed": "could not launch Jupyter: {detail}",
    "unsafe": "Jupyter started, but not with this tool's settings: {detail}. It was stopped. A setting in your own "
    "Jupyter config (~/.jupyter, or the environment's etc/jupyter) overrides ours there; remove it",
    "not_stopped": "Jupyter (pid {detail}) is still there 10 s after SIGKILL: the system holds it (state D: I/O that "
    "does not return, such as a hung network file system). It ends when the system lets it go; run `{fab} stop{named}` "
    "again then, or ask the host's administrators",
    "locked": "another fabjupyter run there still holds its lock: {detail}; try again when it has finished",
    "protocol": "this tool's agent and client disagree ({detail})",
}


def queue_words(error):
    """queue_timeout's detail, "SECONDS JOB STATE", as a sentence."""
    words = error.detail.split()
    if error.code != "queue_timeout" or len(words) != 3:
        return ""
    reason = f" ({error.log[0]})" if error.log else ""
    return f"job {words[1]} was still {words[2]}{reason} after {words[0]} s in the queue"


def indented(lines):
    return "".join("\n    " + line for line in lines) or " (empty)"


class RemoteError(HostError):
    """A failure the agent reported with an error code; the message is written here, in one place."""

    def __init__(self, t, error, stderr=""):
        self.error = error
        template = ERRORS.get(error.code, "failed: {code} {detail}")
        output = [line for line in stderr.splitlines() if line.strip()][-10:]
        message = template.format(
            fab=f"fab -H {t.host}", named=t.named, known=", ".join(error.log), code=error.code, detail=error.detail, logs=indented(error.log), output=indented(output),
            detail_in=f" ({error.detail!r} not found)" if error.detail else "",
            queue_words=queue_words(error), log_line="; ".join(error.log),
        )
        super().__init__(t.label, message)
