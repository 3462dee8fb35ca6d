"""Task options: the help texts that several tasks share, and number options typed as such."""

from invoke import Task
from invoke import task as invoke_task
from invoke.exceptions import ParseError
from invoke.parser import Argument

from ..errors import UserError
from .inventory import launcher_words

GROUP_HELP = "run on every host of this hosts.yaml group, in parallel (instead of -H)"
WORKERS_HELP = "how many hosts at once with --group (default: all of them, up to 64)"
DRY_RUN_HELP = "show what would change (a diff for the configuration) and change nothing, not even an upload"
LAUNCHER_HELP = f"how Jupyter is detached from the SSH session: {launcher_words(described=True)}"
RESTART_LAUNCHER_HELP = f"{launcher_words()} (default: the one it runs with)"
SBATCH_HELP = "an sbatch option for the job (launcher slurm), e.g. --sbatch=--partition=gpu; repeatable"
QUEUE_TIMEOUT_HELP = "seconds the batch job may wait in the queue before it is cancelled (default: until Ctrl-C)"
PORT_HELP = "remote port (default 8888; the next free one if taken, and reported)"
ROOT_DIR_HELP = "Jupyter's root directory on the remote (default ~; created 0700 if missing)"
MODE_HELP = "ssh (127.0.0.1, reached through the tunnel; default) or public (all interfaces, TLS and password)"
NAME_HELP = "the instance (several Jupyter servers on one host, each by name; default: `name:` in hosts.yaml, else default)"
IDLE_HELP = ("shut Jupyter down after this many seconds without activity, culling kernels idle that long "
             "(0: never, the default; a batch job then ends)")
SOCKET_HELP = ("listen on a Unix socket (0600, in a 0700 directory) instead of a port; the tunnel forwards to it "
               "(the default in ssh mode, unless hosts.yaml says socket: false)")
TCP_HELP = "listen on a TCP port on 127.0.0.1 instead of the Unix socket (socket: false in hosts.yaml)"
FAST_START_HELP = ("start Jupyter through this tool's boot.py, which skips two start-up costs inside it "
                   "(about a second; off by default: Jupyter then runs exactly as its own script would)")


def listen_on(socket, tcp):
    """--socket / --tcp as the setting socket: (None when neither is given: hosts.yaml decides)."""
    if socket and tcp:
        raise UserError("give either --socket or --tcp, not both")
    return True if socket else False if tcp else None


# Options that take a whole number, whatever their default (None: from hosts.yaml).
INT_OPTIONS = ("port", "local_port", "lines", "days", "workers", "idle_timeout", "queue_timeout")


class _WholeNumber(Argument):
    def set_value(self, value, cast=True):
        try:
            return super().set_value(value, cast)
        except ValueError:
            what = "a port number 1-65535" if self.name.endswith("port") else "a whole number"
            raise ParseError(f"--{self.name}: must be {what} (got {value!r})") from None


class TypedTask(Task):
    """A task whose number options are INT in help and parsing, and a wrong value one line."""

    def arg_opts(self, name, default, taken_names):
        opts = super().arg_opts(name, default, taken_names)
        if name in INT_OPTIONS:
            opts["kind"] = int
        return opts

    def get_arguments(self, ignore_unknown_help=None):
        arguments = super().get_arguments(ignore_unknown_help)
        for argument in arguments:
            if argument.kind is int:
                argument.__class__ = _WholeNumber
        return arguments


def task(*args, **kwargs):
    """invoke.task with TypedTask."""
    return invoke_task(*args, klass=TypedTask, **kwargs)
