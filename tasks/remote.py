"""Reaching a host: which one (from -H and hosts.yaml), connecting with clear errors, and the
one way to run something there: the agent script, fed to `sh -s` with every value quoted here."""

import logging
import os
import shlex
import socket
import sys
import time
from dataclasses import dataclass, field
from importlib import resources

import paramiko
from fabric import Connection
from paramiko.ssh_exception import NoValidConnectionsError

from . import hostkeys, inventory
from .errors import UserError

# paramiko logs transport failures itself; ours is the one message the user sees
logging.getLogger("paramiko").addHandler(logging.NullHandler())

AGENT = resources.files(__package__).joinpath("agent.sh").read_text()
READY = resources.files(__package__).joinpath("ready.py").read_text()
LAUNCHING = ("start", "restart", "setup")  # actions that may start Jupyter and check it with ready.py


def sh_quote(value):
    """Quote one value for a POSIX shell. Every value that reaches a remote shell goes through here."""
    text = str(value)
    if "\0" in text:
        raise UserError("a value for the remote shell contains a NUL byte")
    return shlex.quote(text)


def sh_words(words):
    return " ".join(sh_quote(w) for w in words)


def sh_assign(name, value):
    if not name.isidentifier():
        raise ValueError(f"not a shell variable name: {name!r}")
    return f"{name}={sh_quote(value)}"


@dataclass
class Target:
    """A host as the user named it, how to reach it, and what it should run."""

    label: str  # the name the user gave (-H or hosts.yaml), used in every message
    conn: Connection
    settings: inventory.Settings
    inventory: inventory.Inventory


def hosts_file(c):
    configured = c.config.get("jupyter", {}).get("hosts_file")
    if configured:
        return os.path.expanduser(configured), True
    return os.path.join(_project_root(), "hosts.yaml"), False


def _project_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_inventory(c):
    path, required = hosts_file(c)
    return inventory.load(path, required=required)


def _checked(overrides):
    return {
        key: inventory.check_setting(key, value, f"--{key.replace('_', '-')}")
        for key, value in overrides.items()
        if value is not None
    }


def _make_target(conn, label, inv, checked):
    """Target for a host name: hosts.yaml's connection fields (if any) replace what Fabric guessed."""
    entry = inv.entry(label)
    if entry and (entry.host or entry.user or entry.ssh_port or entry.identity):
        kwargs = {}
        if entry.identity:
            keys = conn.connect_kwargs.get("key_filename") or []
            keys = [keys] if isinstance(keys, str) else list(keys)
            kwargs["connect_kwargs"] = {"key_filename": [os.path.expanduser(entry.identity)] + keys}
        conn = Connection(
            host=entry.host or label,
            user=entry.user or None,
            port=entry.ssh_port or None,
            config=conn.config,
            **kwargs,
        )
    _one_timeout(conn)
    return Target(label=label, conn=conn, settings=inv.settings_for(label, checked), inventory=inv)


def target(c, **overrides):
    """The Target for a task's context: -H HOST, looked up in hosts.yaml, with options applied."""
    inv = load_inventory(c)
    checked = _checked(overrides)
    if not isinstance(c, Connection):
        raise UserError(
            "no host given: run `fab -H HOST TASK` (user@host, an ssh_config alias, or a name from hosts.yaml), "
            "or `fab TASK --group NAME`"
        )
    return _make_target(c, c.original_host, inv, checked)


def group_targets(c, group, **overrides):
    """A Target for every host of a hosts.yaml group (each with its own settings)."""
    inv = load_inventory(c)
    checked = _checked(overrides)
    if isinstance(c, Connection):
        raise UserError("give either -H HOST or --group NAME, not both")
    if group not in inv.groups:
        known = ", ".join(sorted(inv.groups)) or "none defined"
        raise UserError(f"{inv.path}: no group {group!r} (groups: {known})")
    return [_make_target(Connection(name, config=c.config), name, inv, checked) for name in inv.groups[group]]


def _one_timeout(conn):
    """`fab -t N` puts the timeout in connect_kwargs, which Fabric refuses next to the
    timeouts.connect default we set: keep one, the explicit -t."""
    kwargs = dict(conn.connect_kwargs)
    if "timeout" in kwargs:
        conn.connect_timeout = int(kwargs.pop("timeout"))
    # a port that accepts but never speaks SSH should not hold us longer than a silent one
    if conn.connect_timeout:
        kwargs.setdefault("banner_timeout", conn.connect_timeout)
    conn.connect_kwargs = kwargs


def connect(t):
    """Open the SSH connection, turning every way it can fail into one clear sentence."""
    conn = t.conn
    where = f"{conn.user}@{conn.host}:{conn.port}"
    timeout = conn.connect_timeout
    accept_new = bool(conn.config.get("jupyter", {}).get("accept_new_host_key"))
    hostkeys.install(conn, t.label, accept_new)
    started = time.monotonic()
    try:
        conn.open()
    except UserError:
        raise
    except socket.gaierror:
        raise UserError(f"{t.label}: cannot resolve host name {conn.host!r}; check -H, hosts.yaml or ssh_config") from None
    except paramiko.BadHostKeyException:
        raise UserError(f"{t.label}: the host key of {conn.host} has changed; if that is expected, update known_hosts") from None
    except paramiko.AuthenticationException:
        raise UserError(
            f"{t.label}: authentication failed for {where}; check the user, the key (-i KEY or identity: in hosts.yaml) and ssh-agent"
        ) from None
    except NoValidConnectionsError:
        raise UserError(f"{t.label}: connection refused by {where}; is sshd running there, on that port?") from None
    except (TimeoutError, socket.timeout):
        raise UserError(f"{t.label}: no answer from {where} within {timeout} s; check the host and the network (-t SECONDS waits longer)") from None
    except paramiko.SSHException as e:
        if "banner" in str(e) or (timeout and time.monotonic() - started >= timeout - 0.5):
            raise UserError(f"{t.label}: no SSH answer from {where} within {timeout} s; is that an SSH server? (-t SECONDS waits longer)") from None
        raise UserError(f"{t.label}: SSH to {where} failed: {e}") from None
    except OSError as e:
        raise UserError(f"{t.label}: cannot connect to {where}: {e.strerror or e}") from None
    return conn.client.get_transport()


@dataclass
class Reply:
    values: dict = field(default_factory=dict)
    logs: list = field(default_factory=list)
    files: dict = field(default_factory=dict)  # name -> lines, for --dry-run diffs
    text: str = ""  # output lines that are not part of the protocol (e.g. `logs`)
    status: int = 0

    def __getitem__(self, key):
        return self.values.get(key, "")

    def flag(self, key):
        return self.values.get(key) == "1"


def agent_script(action, values):
    lines = ["exec 2>&1", sh_assign("FJ_ACTION", action)]
    if action in LAUNCHING:
        lines.append(sh_assign("FJ_READY_PY", READY))
    lines += [sh_assign(name, value) for name, value in values.items() if value is not None]
    return "\n".join(lines) + "\n" + AGENT + "\nfj_main\n"


def run_agent(t, action, **values):
    """Run one agent action on the host: one SSH session, the script on stdin, `fj:` lines back."""
    transport = connect(t)
    script = agent_script(action, values).encode()
    try:
        chan = transport.open_session(timeout=30)
        chan.exec_command("sh -s")
        chan.sendall(script)
        chan.shutdown_write()
        lines = []
        for raw in chan.makefile("rb"):
            if raw.startswith(b"fj:waiting="):
                # as it happens, not at the end: another run holds the host's lock
                owner, _, seconds = raw[11:].decode("utf-8", "replace").strip().rpartition(" ")
                print(f"{t.label}: waiting for another fabjupyter run there to finish: {owner} (up to {seconds} s)",
                      file=sys.stderr, flush=True)
            lines.append(raw)
        data = b"".join(lines)
        status = chan.recv_exit_status()
        chan.close()
    except (paramiko.SSHException, OSError, EOFError) as e:
        # a connection that failed once (a network gone silent keeps it "active") is not reused:
        # the next call, a tunnel's reconnection say, opens a new one
        t.conn.close()
        raise UserError(f"{t.label}: the SSH connection failed during {action}: {e}") from None
    reply = Reply(status=status)
    text = []
    for line in data.decode("utf-8", "replace").splitlines():
        key, sep, value = line[3:].partition("=") if line.startswith("fj:") else ("", "", "")
        if not sep:
            text.append(line)
        elif key == "log":
            reply.logs.append(value)
        elif key.startswith("file_"):
            reply.files.setdefault(key[5:], []).append(value)
        else:
            reply.values[key] = value
    reply.text = "\n".join(text)
    if "error" in reply.values:
        raise RemoteError(t, reply)
    if status != 0:
        detail = reply.text.strip().splitlines()[-1:] or [f"exit status {status}"]
        raise UserError(f"{t.label}: {action} failed on the remote: {detail[0]}")
    return reply


ERRORS = {
    "no_password": "no Jupyter password is set there; run `fab -H {label} password` (or `setup`)",
    "not_configured": "not configured yet; run `fab -H {label} setup` (or `config`)",
    "no_cert": "public mode needs a certificate and there is none; run `fab -H {label} cert` (setup --mode public makes one)",
    "no_tmux": "tmux is not installed there; install it, or use --launcher nohup",
    "bad_launcher": "unknown launcher {detail!r}; use nohup or tmux",
    "no_jupyter": "no Jupyter found there{detail_in}; set `jupyter:` (the command, e.g. ~/venv/bin/jupyter lab) or `activate:` (e.g. source ~/venv/bin/activate) in hosts.yaml",
    "no_python": "cannot find the Python that runs {detail}; set `jupyter:` to the full path of the jupyter command",
    "unsupported": "{detail} is not supported (this tool runs Jupyter Server 1 or 2 — JupyterLab 3/4, Notebook 7 — or classic Notebook 6.1+); upgrade it there, e.g. pip install -U jupyterlab",
    "activate_failed": "the activate line failed: {detail}; fix `activate:` in hosts.yaml",
    "root_not_dir": "root_dir {detail} exists but is not a directory; choose another with --root-dir",
    "cannot_write": "cannot write there ({detail}); is the disk full or the home directory read-only?",
    "no_free_port": "no free port from {detail} on; choose another with --port",
    "died": "Jupyter exited while starting; its log ends with:{logs}",
    "timeout": "Jupyter did not answer within {detail} s, so it was stopped; its log ends with:{logs} (start_timeout: in hosts.yaml waits longer)",
    "launch_failed": "could not launch Jupyter: {detail}",
    "probe_failed": "could not run the Jupyter launcher: {detail}",
    "unsafe": "Jupyter started, but not with this tool's settings: {detail}. It was stopped. A setting in your own "
    "Jupyter config (~/.jupyter, or the environment's etc/jupyter) overrides ours there; remove it",
    "locked": "another fabjupyter run there still holds its lock: {detail}; try again when it has finished",
}


class RemoteError(UserError):
    """A failure the agent reported with an error code; the message is written here, in one place."""

    def __init__(self, t, reply):
        self.reply = reply
        code, detail = reply["error"], reply["detail"]
        template = ERRORS.get(code, "failed: {code} {detail}")
        logs = "".join("\n    " + line for line in reply.logs) or " (empty)"
        message = template.format(
            label=t.label, code=code, detail=detail, detail_in=f" ({detail!r} not found)" if detail else "", logs=logs
        )
        super().__init__(f"{t.label}: {message}")
