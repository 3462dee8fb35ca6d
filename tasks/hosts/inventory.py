"""hosts.yaml: per-host settings, validated once into a typed Settings object.

Precedence: built-in defaults < `defaults:` < the host's entry < the instance's entry (a host's
`instances:`) < command-line options.
"""

import difflib
import os
import shlex
from dataclasses import dataclass, field, replace

import yaml

from ..remote.instance import NAME_MAX, good_name
from ..errors import UserError
from .settings import (  # noqa: F401  (imported from here by the rest of the code)
    BATCH_LAUNCHERS, CONNECTION_KEYS, CONTAINER_RUNTIMES, INSTANCE_KEYS, LAUNCHERS, MODES, SETTING_KEYS, TOP_KEYS, HostEntry, Settings,
    launcher_words,
)


def _port(value, where):
    if isinstance(value, bool):
        raise UserError(f"{where}: must be a port number 1-65535 (got {value!r})")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise UserError(f"{where}: must be a port number 1-65535 (got {value!r})") from None
    if not 1 <= number <= 65535:
        raise UserError(f"{where}: must be a port number 1-65535 (got {number})")
    return number


def _positive(value, where):
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise UserError(f"{where}: must be a whole number of seconds (got {value!r})")
    try:
        number = int(str(value).strip())
    except ValueError:
        raise UserError(f"{where}: must be a whole number of seconds (got {value!r})") from None
    if number < 1:
        raise UserError(f"{where}: must be at least 1 (got {number})")
    return number


def _text(value, where, allow_empty=True):
    if not isinstance(value, str):
        raise UserError(f"{where}: must be a string (got {type(value).__name__} {value!r})")
    if any(ord(ch) < 32 and ch != "\t" for ch in value):
        raise UserError(f"{where}: must not contain control characters or line breaks")
    if not allow_empty and not value.strip():
        raise UserError(f"{where}: must not be empty")
    return value


def _launcher(value, where):
    if value not in LAUNCHERS:
        raise UserError(f"{where}: must be one of {', '.join(LAUNCHERS)} (got {value!r})")
    return value


def _mode(value, where):
    if value not in MODES:
        raise UserError(f"{where}: must be one of {', '.join(MODES)} (got {value!r})")
    return value


def _names(value, where):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v.strip() for v in value):
        raise UserError(f"{where}: must be a list of host names or IP addresses")
    return tuple(_text(v, where).strip() for v in value)


def _options(value, where):
    """Options for a batch scheduler's submit command: a list of strings, each an option."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise UserError(f"{where}: must be a list of options, e.g. [\"--partition=gpu\", \"--time=04:00:00\"]")
    for v in value:
        _text(v, where, allow_empty=False)
        if not v.startswith("-"):
            raise UserError(f"{where}: {v!r} is not an option (options start with -, e.g. --partition=gpu)")
    return tuple(value)


def _specs(value, where):
    """pip requirement specifiers: a string or a list of them (no options: those would change
    where pip looks)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
        raise UserError(f"{where}: must be a requirement or a list of them, e.g. jupyterlab==4.* or [jupyterlab, ipywidgets]")
    for v in value:
        _text(v, where, allow_empty=False)
        if v.strip().startswith("-"):
            raise UserError(f"{where}: {v!r} is an option, not a requirement")
    return tuple(v.strip() for v in value)


def _choice(value, where, choices):
    if value not in choices:
        raise UserError(f"{where}: must be one of {', '.join(choices)} (got {value!r})")
    return value


def _bool(value, where):
    if not isinstance(value, bool):
        raise UserError(f"{where}: must be true or false (got {value!r})")
    return value


def _root_dir(value, where):
    value = _text(value, where, allow_empty=False)
    if value.startswith("~") and not (value == "~" or value.startswith("~/")):
        raise UserError(f"{where}: write ~/path or an absolute path (~user is not supported)")
    return value


def _jupyter(value, where):
    if isinstance(value, str):
        _text(value, where)
        try:
            words = shlex.split(value)
        except ValueError as e:
            raise UserError(f"{where}: cannot split {value!r} into words: {e}") from None
    elif isinstance(value, list) and all(isinstance(w, str) for w in value):
        words = [_text(w, where) for w in value]
    else:
        raise UserError(f"{where}: must be a command string or a list of words (got {value!r})")
    return tuple(words)


def _name(value, where):
    """An instance name: a file name and a tmux session name as it is, on every system."""
    if not good_name(value):
        raise UserError(
            f"{where}: {value!r} is not an instance name: use letters, digits, - and _ "
            f"(up to {NAME_MAX}, not starting with - or _)"
        )
    return value


CHECKS = {
    "launcher": _launcher,
    "port": _port,
    "local_port": _port,
    "root_dir": _root_dir,
    "jupyter": _jupyter,
    "activate": _text,
    "start_timeout": _positive,
    "mode": _mode,
    "cert_names": _names,
    "socket": _bool,
    "fast_start": _bool,
    "name": _name,
    "idle_timeout": lambda value, where: 0 if value in (0, "0") else _positive(value, where),
    "job_options": _options,
    "install": _bool,
    "install_spec": lambda value, where: _specs(value, where),
    "install_from": lambda value, where: _choice(value, where, ("auto", "here")),
    "queue_timeout": lambda value, where: 0 if value in (0, "0") else _positive(value, where),
    "multiplex": _bool,
    "container": lambda value, where: _text(value, where).strip(),
    "container_runtime": lambda value, where: _choice(value, where, CONTAINER_RUNTIMES),
    "container_options": _jupyter,
    "gpus": _bool,
    # YAML reads a bare no as false (and yes as true): the same words
    "control_master": lambda value, where: _choice({False: "no", True: "auto"}.get(value, value) if isinstance(value, bool)
                                                   else value, where, ("auto", "no")),
}


def check_setting(key, value, where):
    """Validate one setting's value; `where` names it in the message (file and key, or option)."""
    return CHECKS[key](value, where)


def _unknown(key, known, where):
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else f"; known keys: {', '.join(known)}"
    return UserError(f"{where}: unknown key {key!r}{hint}")


def _mapping(value, where):
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{where}: must be a mapping of keys to values (got {type(value).__name__})")
    return value


# other names a setting is known by in hosts.yaml: sbatch: is job_options: under SLURM's name
ALIASES = {"sbatch": "job_options"}


def _settings(raw, where, extra=(), keys=SETTING_KEYS):
    known = keys + tuple(extra) + tuple(a for a, key in ALIASES.items() if key in keys)
    out, conn = {}, {}
    for key, value in _mapping(raw, where).items():
        if ALIASES.get(key) in keys:
            if ALIASES[key] in _mapping(raw, where):
                raise UserError(f"{where}: give {key}: or {ALIASES[key]}: (the same setting), not both")
            out[ALIASES[key]] = check_setting(ALIASES[key], value, f"{where}.{key}")
        elif key in keys:
            out[key] = check_setting(key, value, f"{where}.{key}")
        elif key in extra:
            conn[key] = value
        else:
            raise _unknown(key, known, where)
    return out, conn


@dataclass(frozen=True)
class Inventory:
    path: str
    defaults: dict = field(default_factory=dict)
    hosts: dict = field(default_factory=dict)
    groups: dict = field(default_factory=dict)

    def entry(self, name):
        return self.hosts.get(name)

    def settings_for(self, name, overrides=None):
        """Built-in defaults < defaults: < the host's entry < the instance's < command-line overrides."""
        overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
        values = dict(self.defaults)
        entry = self.hosts.get(name)
        if entry:
            values.update(entry.settings)
        instance = overrides.get("name") or values.get("name") or "default"
        if entry and instance in entry.instances:
            values.update(entry.instances[instance])
        values.update(overrides)
        values["name"] = instance
        settings = replace(Settings(), **values)
        if settings.socket is None:  # then the checks below, as for a socket: given
            settings = replace(settings, socket=uses_socket(settings))
        if settings.socket and settings.mode == "public":
            raise UserError(f"{name}: public mode serves HTTPS on a port; it cannot use a Unix socket (socket: true)")
        if settings.launcher in BATCH_LAUNCHERS and (settings.socket or settings.mode == "public"):
            raise UserError(
                f"{name}: launcher {settings.launcher} runs Jupyter on a compute node, reached through the login node's "
                "forward to its port: it works in ssh mode with a port (not socket: true, not mode: public)"
            )
        if (settings.gpus or settings.container_options) and not settings.container:
            given = "gpus: true" if settings.gpus else "container_options:"
            raise UserError(f"{name}: {given} is for a container; give container: IMAGE too (or leave it out)")
        return settings


def uses_socket(settings):
    """Where socket: is not set: a Unix socket wherever one can work. Public mode serves HTTPS on
    a port, and a batch job's Jupyter is reached on its node's address through the login node."""
    return settings.mode == "ssh" and settings.launcher not in BATCH_LAUNCHERS


def _instances(raw, where):
    """A host's `instances:`: name -> its settings. Two of them never ask for one port."""
    out: dict[str, dict] = {}
    seen: dict[tuple, str] = {}
    for name, settings in _mapping(raw, where).items():
        _name(name, f"{where}")
        out[name], _ = _settings(settings, f"{where}.{name}", keys=INSTANCE_KEYS)
        for key in ("port", "local_port"):
            value = out[name].get(key)
            if value is not None and (key, value) in seen:
                raise UserError(f"{where}.{name}.{key}: {value} is also {seen[key, value]}'s; give each instance its own")
            seen[key, value] = name
    return out


def load(path, required=False):
    """Read and validate a hosts.yaml; any problem is one UserError naming the file and key."""
    if not os.path.exists(path):
        if required:
            raise UserError(f"{path}: no such file (set jupyter.hosts_file or FABRIC_JUPYTER_HOSTS_FILE)")
        return Inventory(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"{path}{line}: YAML syntax error: {problem}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read: {e}") from None
    top = _mapping(data, path)
    for key in top:
        if key not in TOP_KEYS:
            raise _unknown(key, TOP_KEYS, path)
    defaults, _ = _settings(top.get("defaults"), f"{path}: defaults")
    hosts = {}
    for name, raw in _mapping(top.get("hosts"), f"{path}: hosts").items():
        where = f"{path}: hosts.{name}"
        if not isinstance(name, str):
            raise UserError(f"{where}: host names must be strings")
        settings, conn = _settings(raw, where, extra=CONNECTION_KEYS + ("instances",))
        if "ssh_port" in conn:
            conn["ssh_port"] = _port(conn["ssh_port"], f"{where}.ssh_port")
        for key in ("host", "user", "identity"):
            if key in conn:
                conn[key] = _text(conn[key], f"{where}.{key}", allow_empty=False)
        if "instances" in conn:
            conn["instances"] = _instances(conn["instances"], f"{where}.instances")
        hosts[name] = HostEntry(name=name, settings=settings, **conn)
    groups = {}
    for name, members in _mapping(top.get("groups"), f"{path}: groups").items():
        where = f"{path}: groups.{name}"
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise UserError(f"{where}: must be a list of host names")
        for member in members:
            if member not in hosts:
                raise UserError(f"{where}: {member!r} is not a host in hosts:")
        groups[name] = tuple(members)
    return Inventory(path, defaults, hosts, groups)
