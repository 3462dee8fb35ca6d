"""Where a server listens on the host, as the host said it: one small typed value that the
forwards, the last-seen record and this run's seen servers all pass around."""

import typing
from dataclasses import dataclass


def names_socket(at):
    """Is this location (a port number or a path) a Unix socket?"""
    return isinstance(at, str) and at.startswith("/")


@dataclass(frozen=True)
class Where:
    """AT: the port (a number) or the Unix socket's path; MODE: "ssh" (reached through the SSH
    connection) or "public" (HTTPS); ADDRESS: where a batch job's Jupyter listens as the host
    reaches it (a compute node), else None (the host itself)."""

    at: typing.Union[int, str]
    mode: str = "ssh"
    address: typing.Optional[str] = None

    @classmethod
    def of(cls, status):
        """Where a running server listens, from the host's status reply."""
        return cls(status.where, status.mode or "ssh", status.address)

    @property
    def socket(self):
        return names_socket(self.at)

    @property
    def tls(self):
        return self.mode == "public"

    @property
    def scheme(self):
        return "https" if self.tls else "http"

    def forward_target(self):
        """The far end of a forward here, as `ssh -L` and LocalForward take it: the socket's path
        (OpenSSH forwards to a Unix socket too), or ADDRESS:PORT as the host reaches it (Jupyter on
        the host itself, or a batch job's on its compute node)."""
        return self.at if self.socket else f"{self.address or '127.0.0.1'}:{self.at}"

    def forward_spec(self, local_port):
        """The `ssh -L` spec that forwards LOCAL_PORT here."""
        return f"127.0.0.1:{local_port}:{self.forward_target()}"

    def url(self, local_port):
        """The URL of a forward from LOCAL_PORT to here."""
        return f"{self.scheme}://localhost:{local_port}/"

    @property
    def words(self):
        """Where, as a line says it: a socket, a port on the host, or a new job's node and port."""
        if self.address:
            return f"{self.address}:{self.at} (a new job)"
        if self.socket:
            return f"the Unix socket {self.at} on the host"
        return f"port {self.at} on the host" + (" (public mode, HTTPS)" if self.tls else "")

    def record(self):
        """As last-seen.json holds it."""
        return {"where": self.at, "mode": self.mode, "address": self.address}

    @classmethod
    def from_record(cls, entry):
        """From last-seen.json's entry, or None when it is not one (a hand edit, an older file)."""
        try:
            at, mode, address = entry["where"], entry["mode"], entry["address"]
        except (KeyError, TypeError):
            return None
        if isinstance(at, bool) or not isinstance(at, (int, str)) or mode not in ("ssh", "public"):
            return None
        if not (address is None or isinstance(address, str)):
            return None
        return cls(at, mode, address)
