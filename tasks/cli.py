"""The `fabjupyter` command: Fabric's own `fab` program with this collection built in, so it runs
from any directory and every core option (-H, -S, -i, -t, --list, --help TASK, --complete,
--print-completion-script) behaves exactly as with `fab`."""

import fabric
import invoke
import paramiko
from fabric import Config, Executor
from fabric.main import Fab

from . import ns
from .errors import quiet_broken_pipe
from .hosts.targets import INVENTORY_ORDER


class FabJupyter(Fab):
    @property
    def version(self):
        """Looked up only when printed (tasks/__init__.py's __version__)."""
        from . import __version__

        return __version__

    @version.setter
    def version(self, value):
        pass  # Program.__init__ stores its argument; ours is looked up

    def print_version(self):
        print(f"fabjupyter {self.version}")
        print(f"Fabric {fabric.__version__}")
        print(f"Paramiko {paramiko.__version__}")
        print(f"Invoke {invoke.__version__}")

    def print_help(self):
        super().print_help()
        print(f"Hosts: -H user@host, an ssh_config alias, or a name from {INVENTORY_ORDER}.\n")


program = FabJupyter(
    name="fabjupyter",
    binary="fabjupyter",
    namespace=ns,
    executor_class=Executor,
    config_class=Config,
)


def main():
    quiet_broken_pipe()
    program.run()
