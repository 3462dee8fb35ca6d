"""Choosing hosts: -H HOST or a hosts.yaml group, each with its settings (hosts.yaml, then the
task's options)."""

import os
from dataclasses import dataclass

from fabric import Connection

from . import inventory
from ..ssh.connection import one_timeout
from ..localfiles import config_path
from ..errors import UserError
from ..remote.instance import relative_dir


@dataclass
class Target:
    """A host as the user named it, how to reach it, and what it should run (one instance)."""

    host: str  # the name the user gave (-H or hosts.yaml)
    conn: Connection
    settings: inventory.Settings
    inventory: inventory.Inventory

    @property
    def name(self):
        return self.settings.name

    @property
    def label(self):
        """Added to every line printed about it: the host, and the instance unless the default."""
        return self.host if self.name == "default" else f"{self.host}[{self.name}]"

    @property
    def named(self):
        """The option that names the instance in a command to run next ('' for the default)."""
        return "" if self.name == "default" else f" --name {self.name}"

    @property
    def remote_dir(self):
        """This instance's directory on the host, for messages (remote/instance.py says where)."""
        return "~/" + relative_dir(self.name)

    def fab(self, task):
        return f"fab -H {self.host} {task}{self.named}"

    def instance(self, name):
        """This host's Target for another instance (its settings from hosts.yaml)."""
        return Target(self.host, self.conn, self.inventory.settings_for(self.host, {"name": name}), self.inventory)

    def pinned_local_port(self):
        """The local port hosts.yaml gives this host or instance itself (not defaults:), if any."""
        entry = self.inventory.entry(self.host)
        if not entry:
            return None
        return entry.instances.get(self.name, {}).get("local_port") or (
            entry.settings.get("local_port") if self.name == (entry.settings.get("name") or "default") else None)


INVENTORY_ORDER = (
    "the inventory: FABRIC_JUPYTER_HOSTS_FILE (or jupyter.hosts_file in a Fabric config file such as "
    "~/.fabric.yaml), else hosts.yaml in the current directory, else $XDG_CONFIG_HOME/fabjupyter/hosts.yaml "
    "(~/.config/fabjupyter/hosts.yaml); none is fine (-H user@host)"
)


def hosts_file(c):
    """(path, required): the inventory named in the config or environment (it must exist), else
    the first of ./hosts.yaml and $XDG_CONFIG_HOME/fabjupyter/hosts.yaml that exists."""
    configured = c.config.get("jupyter", {}).get("hosts_file")
    if configured:
        return os.path.expanduser(configured), True
    here = os.path.abspath("hosts.yaml")
    user = str(config_path("hosts.yaml"))
    return (here if os.path.exists(here) or not os.path.exists(user) else user), False


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
    one_timeout(conn)
    return Target(host=label, conn=conn, settings=inv.settings_for(label, checked), inventory=inv)


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
