"""The forward over the host's OpenSSH master (ControlMaster), beside the plain one: added to
the master (`ssh -O forward`), which listens for it; closing removes it (`ssh -O cancel`) and
leaves the master and its other sessions alone."""


class MasterForward:
    """The forward SPEC added to ROUTE's master, for as long as that very master lives."""

    def __init__(self, route, label, spec):
        self.route = route
        self.spec = spec
        self.errors = []
        route.ensure(label)
        self.generation = route.generation
        code, said = route.control("forward", "-L", spec)
        self.added = code == 0
        if not self.added:
            self.errors.append(said or f"ssh -O forward exited {code}")
        self.owner_pid = route.master_pid() if self.added else None  # the master listens for it

    def running(self):
        """While the forward is there: added, on the master that is still alive."""
        if not self.added:
            return False
        with self.route.lock:
            return self.route.alive() and self.route.generation == self.generation

    def bound(self):
        return self.added  # `ssh -O forward` answers once the master listens on the port

    def refused(self):
        return False  # the master logged in, or the forward was never added

    def close(self):
        if self.running():
            self.route.control("cancel", "-L", self.spec)
        self.added = False

    def port_was_busy(self):
        return not self.added and any("forwarding failed" in line.lower() for line in self.errors)

    def failure(self):
        if self.added and not self.running():
            return "the SSH master connection ended"
        return self.errors[-1] if self.errors else "the forward did not answer in time"
