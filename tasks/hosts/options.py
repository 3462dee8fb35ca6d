"""Task options: the help texts that several tasks share, and number options typed as such."""

from invoke import Task
from invoke import task as invoke_task
from invoke.exceptions import ParseError
from invoke.parser import Argument

from ..errors import UserError
from .settings import documented, launcher_words


def about(key, cli=""):
    """An option's help for the setting KEY: the setting's own words (settings.py), then what only
    the command line adds (CLI, in parentheses)."""
    what = documented(key)["what"]
    return f"{what}; {cli}" if cli else what


# options that are not settings
GROUP_HELP = "run on every host of this hosts.yaml group, in parallel (instead of -H)"
WORKERS_HELP = "how many hosts at once with --group (default: all of them, up to 64)"
DRY_RUN_HELP = "show what would change (a diff for the configuration) and change nothing, not even an upload"
RESTART_LAUNCHER_HELP = f"{launcher_words()} (default: the one it runs with)"
# options that set a setting: its words, and the command line's default
LAUNCHER_HELP = about("launcher")
JOB_OPTION_HELP = about("job_options", "one option each time, e.g. --job-option=--partition=gpu; repeatable")
SBATCH_HELP = "the same as --job-option, under SLURM's name (repeatable)"


def job_options(job_option, sbatch):
    """--job-option and --sbatch (its SLURM name) as the setting job_options: (None: not given)."""
    given = tuple(job_option or ()) + tuple(sbatch or ())
    return given or None
QUEUE_TIMEOUT_HELP = about("queue_timeout")
PORT_HELP = about("port", "default 8888")
ROOT_DIR_HELP = about("root_dir", "default ~")
MODE_HELP = about("mode", "default ssh")
NAME_HELP = about("name", "default: `name:` in hosts.yaml, else default")
IDLE_HELP = about("idle_timeout")
SOCKET_HELP = about("socket", "the default in ssh mode, unless hosts.yaml says socket: false")
TCP_HELP = "listen on a TCP port on 127.0.0.1 instead of the Unix socket (socket: false in hosts.yaml)"
FAST_START_HELP = about("fast_start", "off by default: Jupyter then runs exactly as its own script would")
INSTALL_HELP = about("install")
CONTAINER_HELP = about("container", "~/path for a file in your home on the host")
CONTAINER_RUNTIME_HELP = about("container_runtime", "default auto")
GPUS_HELP = about("gpus", "with a container")
LOCAL_PORT_HELP = about("local_port", "default: the one it had last time, else hosts.yaml's or 8888; if given here and busy, an error")

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
            what = "a port number 1-65535" if (self.name or "").endswith("port") else "a whole number"
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
