"""Connecting to a host, every way it can fail turned into one clear sentence."""

import logging
import socket
import time

import paramiko
from paramiko.ssh_exception import NoValidConnectionsError

from . import hostkeys
from .errors import HostError, UserError

# paramiko logs transport failures itself; ours is the one message the user sees
logging.getLogger("paramiko").addHandler(logging.NullHandler())


def one_timeout(conn):
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
    """Open the SSH connection (once per run and host) and return its transport."""
    conn = t.conn
    where = f"{conn.user}@{conn.host}:{conn.port}"
    timeout = conn.connect_timeout
    accept_new = bool(conn.config.get("jupyter", {}).get("accept_new_host_key"))
    hostkeys.install(conn, t.label, accept_new)
    started = time.monotonic()

    def fail(message):
        return HostError(t.label, message)

    try:
        conn.open()
    except UserError:
        raise
    except socket.gaierror:
        raise fail(f"cannot resolve host name {conn.host!r}; check -H, hosts.yaml or ssh_config") from None
    except paramiko.BadHostKeyException:
        raise fail(f"the host key of {conn.host} has changed; if that is expected, update known_hosts") from None
    except paramiko.AuthenticationException:
        raise fail(
            f"authentication failed for {where}; check the user, the key (-i KEY or identity: in hosts.yaml) and ssh-agent"
        ) from None
    except NoValidConnectionsError:
        raise fail(f"connection refused by {where}; is sshd running there, on that port?") from None
    except (TimeoutError, socket.timeout):
        raise fail(f"no answer from {where} within {timeout} s; check the host and the network (-t SECONDS waits longer)") from None
    except paramiko.SSHException as e:
        if "banner" in str(e) or (timeout and time.monotonic() - started >= timeout - 0.5):
            raise fail(f"no SSH answer from {where} within {timeout} s; is that an SSH server? (-t SECONDS waits longer)") from None
        raise fail(f"SSH to {where} failed: {e}") from None
    except OSError as e:
        raise fail(f"cannot connect to {where}: {e.strerror or e}") from None
    return conn.client.get_transport()
