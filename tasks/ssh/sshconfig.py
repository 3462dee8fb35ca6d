"""What ssh_config says about a host, and the `ssh` options that reach it exactly as Fabric does."""

import os
import subprocess
from glob import glob
from pathlib import Path


def _config_files(conn):
    """The ssh_config files the `ssh` client reads for this connection, Includes followed."""
    explicit = getattr(conn.config, "_runtime_ssh_path", None) or conn.config.get("ssh_config_path")
    if explicit:
        roots = [(os.path.expanduser(explicit), os.path.expanduser("~/.ssh"))]
    elif not conn.config.get("load_ssh_configs", True):
        return []
    else:
        roots = [(os.path.expanduser("~/.ssh/config"), os.path.expanduser("~/.ssh")), ("/etc/ssh/ssh_config", "/etc/ssh")]
    found: list[str] = []
    todo = list(roots)
    while todo and len(found) < 64:
        path, base = todo.pop(0)
        if path in found:
            continue
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue
        found.append(path)
        for line in text.splitlines():
            words = line.strip().split()
            if len(words) > 1 and words[0].lower() == "include":
                for pattern in words[1:]:
                    pattern = os.path.expanduser(pattern)
                    full = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
                    todo += [(p, base) for p in sorted(glob(full))]
    return found


_mentions: dict[tuple, bool] = {}


def _config_mentions_controlpath(conn):
    """Whether any ssh_config file could give a host a ControlPath (read once per run): only then
    is `ssh -G` asked, so that a group of hosts without multiplexing costs nothing here."""
    which = (getattr(conn.config, "_runtime_ssh_path", None), conn.config.get("ssh_config_path"),
             conn.config.get("load_ssh_configs", True))
    if which in _mentions:
        return _mentions[which]
    files = tuple(_config_files(conn))
    if which not in _mentions:
        text = ""
        for path in files:
            try:
                text += Path(path).read_text(errors="replace").lower()
            except OSError:
                pass
        _mentions[which] = "controlpath" in text
    return _mentions[which]


def config_file(conn):
    """The ssh_config file `ssh` is given (-F): the one given to fab (-S), /dev/null where Fabric
    reads none, else None (ssh's own: ~/.ssh/config, then /etc/ssh/ssh_config)."""
    explicit = getattr(conn.config, "_runtime_ssh_path", None) or conn.config.get("ssh_config_path")
    if explicit:
        return explicit
    return None if conn.config.get("load_ssh_configs", True) else "/dev/null"


def reach(conn):
    """How Fabric reaches the host, as ssh_config options in `ssh`'s order: (keyword, value)
    pairs for the user, port, identities, connect timeout, gateway (ProxyJump, or ProxyCommand),
    and HostName where ssh_config's alias is not the address. The one source of base_args and of
    the entries of this tool's own ssh_config file (ssh/entries.py)."""
    from fabric import Connection

    options = [("User", conn.user), ("Port", str(conn.port))]
    keys = conn.connect_kwargs.get("key_filename") or []
    options += [("IdentityFile", key) for key in dict.fromkeys([keys] if isinstance(keys, str) else keys)]  # Fabric may list one twice
    if conn.connect_timeout:
        options.append(("ConnectTimeout", str(conn.connect_timeout)))
    if isinstance(conn.gateway, Connection):
        hops: list[str] = []
        gateway = conn.gateway
        while isinstance(gateway, Connection):
            hops.insert(0, f"{gateway.user}@{gateway.original_host}:{gateway.port}")
            gateway = gateway.gateway
        options.append(("ProxyJump", ",".join(hops)))
    elif isinstance(conn.gateway, str) and conn.gateway:
        options.append(("ProxyCommand", conn.gateway))
    if conn.host != conn.original_host:
        options.append(("HostName", conn.host))
    return options


# the options `ssh` has a flag of its own for; the others go as -o KEYWORD=VALUE
_FLAGS = {"User": "-l", "Port": "-p", "IdentityFile": "-i", "ProxyJump": "-J"}


def base_args(conn):
    """`ssh` options that reach the host exactly as Fabric does: the same ssh_config file (-S),
    user, port, identities, connect timeout and gateway."""
    args = ["ssh"]
    ssh_config = config_file(conn)
    if ssh_config:
        args += ["-F", ssh_config]
    for keyword, value in reach(conn):
        args += [_FLAGS[keyword], value] if keyword in _FLAGS else ["-o", f"{keyword}={value}"]
    return args


def effective_config(conn):
    """`ssh -G`: the options OpenSSH would use for this host, Match blocks and all."""
    r = subprocess.run(base_args(conn) + ["-G", conn.original_host], stdin=subprocess.DEVNULL, capture_output=True, text=True)
    options: dict[str, str] = {}
    for line in r.stdout.splitlines():
        key, _, value = line.partition(" ")
        options.setdefault(key.lower(), value)
    return options
