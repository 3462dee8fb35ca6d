"""The settings: what one host (or instance) should run, with each field's documentation.

Each field's metadata is the one source of what it means: the `--help` of the options that set
it (options.py), the example hosts.yaml's comment block and the settings reference
(docs/generate.py writes both). `setting()` is the helper that attaches it; tests/test_docs.py
fails when a field lacks any of it, and checks "restarts" against the agent's plan.
"""

import typing
from dataclasses import dataclass, field, fields

from ..remote import containers, launchers

# The launchers as the remote side's table has them (remote/launchers.py: one entry each, a batch
# scheduler's by itself), with what help texts say of each; every list of launchers in a message,
# a help text or the docs is this one (launcher_words; tests/test_units.py checks hosts.yaml and
# the generated reference against it).
LAUNCHERS = {name: entry.note for name, entry in launchers.LAUNCHERS.items()}
BATCH_LAUNCHERS = tuple(name for name, entry in launchers.LAUNCHERS.items() if entry.batch)
MODES = ("ssh", "public")
CONTAINER_RUNTIMES = ("auto",) + containers.AUTO_ORDER


def launcher_words(described=False):
    """The launchers as a phrase, "nohup, tmux or slurm" (described: with their notes)."""
    words = [f"{name} ({note})" if described and note else name for name, note in LAUNCHERS.items()]
    return ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else words[0]


def setting(default, what, kind, example, restarts, why="", option="", shown_default="", more=""):
    """A Settings field and its documentation.

    what: a short phrase, no final period (it ends help texts and hosts.yaml comments);
    kind: the value's form in words; example: a value as hosts.yaml takes it;
    restarts: whether `setup` with a new value stops the running Jupyter and starts it again;
    why: when or why, in a few words; option: the command-line flag(s) that set it ("" if none);
    shown_default: the default in words where the value alone says little; more: a sentence or
    two for the reference page only."""
    meta = {"what": what, "kind": kind, "example": example, "restarts": restarts, "why": why, "option": option,
            "shown_default": shown_default, "more": more}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    """What one host should run. Every field can come from hosts.yaml or an option."""

    launcher: str = setting(
        "nohup", f"how Jupyter is detached from the SSH session: {launcher_words(described=True)}",
        "one of " + ", ".join(LAUNCHERS), "tmux", True, "setup stops the server and starts it with the new launcher",
        option="--launcher",
        more="tmux needs tmux installed on the host. A batch launcher submits a job that runs Jupyter on a compute "
             "node, reached through the login node (ssh mode with a port).")
    port: int = setting(
        8888, "the remote port Jupyter listens on; if it is taken there, the next free one (reported)",
        "port number", "8888", True,
        "when Jupyter listens on a port (socket: false, public mode, a batch job); a Unix socket has no port",
        option="--port")
    local_port: int = setting(
        8888, "the tunnel's port on your machine; if it is taken, the next free one", "port number", "8890", False,
        "only the tunnel uses it", option="--local-port",
        more="Given as `tunnel --local-port`, a busy port is an error instead.")
    root_dir: str = setting(
        "~", "Jupyter's root directory on the remote (~/path, or absolute; created 0700 if missing)",
        "path", "~/projects", True, "Jupyter reads it at start", option="--root-dir")
    jupyter: tuple = setting(
        (), "the remote command that runs Jupyter", "a command: a string or a list of words",
        "~/venv/bin/jupyter lab", True, "Jupyter reads it at start",
        shown_default="jupyter lab, else jupyter notebook, else jupyter server, found on the PATH",
        more="Set it when Jupyter is not on the PATH of a non-interactive SSH command, or to choose one of "
             "several; a shell wrapper (a module system, a container runner) works too.")
    activate: str = setting(
        "", "a shell line run before Jupyter (venv, conda, module load): SSH commands do not read your ~/.bashrc",
        "shell line", "source ~/venv/bin/activate", True, "Jupyter starts after it", shown_default="none",
        more='For conda in a shell that was never initialised: `eval "$(~/miniconda3/bin/conda shell.posix hook)" '
             '&& conda activate ml`.')
    start_timeout: int = setting(
        60, "seconds to wait for Jupyter to answer before giving up", "seconds", "120", False,
        "it applies at the next start")
    mode: str = setting(
        "ssh", "ssh: 127.0.0.1, reached through the tunnel; public: all interfaces, with TLS and a password",
        "ssh or public", "public", True, "Jupyter reads its address and TLS files at start", option="--mode",
        more="Public mode needs a certificate (setup makes one, or `cert`) and a password.")
    cert_names: tuple = setting(
        (), "extra names (DNS or IP) for the generated certificate's subjectAltName (public mode)",
        "list of names", "[jupyter.example.org, 203.0.113.7]", True,
        "in public mode, when it adds a name the certificate does not cover: setup makes a new certificate, "
        "which Jupyter reads at start", option="", shown_default="none",
        more="The host's own names, its addresses, localhost and 127.0.0.1 are always in the certificate; "
             "`cert --san NAME` adds a name for one run.")
    socket: typing.Optional[bool] = setting(
        None, "listen on a Unix socket (0600, in a 0700 directory) instead of a TCP port on 127.0.0.1",
        "true or false", "false", True, "Jupyter reads it at start", option="--socket, --tcp",
        shown_default="true in ssh mode (not for a batch job), else false",
        more="No other user on the host can bind or reach a socket in your own 0700 directory, so the tunnel "
             "cannot hand a request to someone else's server. Public mode and batch jobs need a port.")
    fast_start: bool = setting(
        False, "start Jupyter through this tool's boot.py, which skips two start-up costs inside it (about a second)",
        "true or false", "true", False, "it applies at the next start", option="--fast-start",
        more="Off by default: Jupyter then runs exactly as its own script would.")
    name: str = setting(
        "default", "the instance: one of several Jupyter servers on one host, each by name",
        "instance name", "lab", False,
        "it names another server; the one under the old name keeps running", option="--name",
        shown_default="the instance named default",
        more="In hosts.yaml, the instance that tasks use without --name. Letters, digits, - and _ (up to 40, not starting with - or _). Each instance has its own settings "
             "under the host's `instances:`.")
    idle_timeout: int = setting(
        0, "seconds without activity after which Jupyter shuts itself down (a batch job then ends), culling "
           "kernels idle that long; 0: never", "seconds", "3600", True, "Jupyter reads it at start",
        option="--idle-timeout")
    job_options: tuple = setting(
        (), "options for the batch job, one per directive line of its script (#SBATCH, #$ or #PBS)",
        "list of options", '["--partition=gpu", "--time=04:00:00"]',
        True, "for a batch job: setup cancels the job and submits a new one with these options",
        option="--job-option, --sbatch", shown_default="none",
        more="Each option is written as the scheduler's own directive in the job script, as you would write it "
             "after #SBATCH, #$ or #PBS. `sbatch:` in hosts.yaml (and `--sbatch`) is the same setting under its SLURM name; "
             "give one of the two names, not both.")
    queue_timeout: int = setting(
        0, "seconds a batch job may wait in the queue before it is cancelled (0: until Ctrl-C)", "seconds", "600",
        False, "it applies to the next job submitted", option="--queue-timeout")
    install: bool = setting(
        False, "no Jupyter there: install JupyterLab (install_spec) into an environment of this tool's own, "
               "~/.fabjupyter/venv", "true or false", "true", False,
        "it installs only where no Jupyter is found, then starts it", option="--install",
        more="Where a Jupyter is found, it is used and nothing is installed.")
    install_spec: tuple = setting(
        ("jupyterlab",), "what pip installs into that environment (requirement specifiers)",
        "a requirement or a list of them", "[jupyterlab==4.*, ipywidgets]", False,
        "it is read when installing; `setup --install --upgrade` restarts Jupyter only if its version changed")
    install_from: str = setting(
        "auto", "where pip's packages come from: auto, the host's own package index if it reaches it, else wheels "
               "sent from here; here, always sent from here",
        "auto or here", "here", False, "it is read when installing")
    control_master: str = setting(
        "auto", "how a host that asks for more than a key (a one-time code, a password) is logged in to: auto: "
                "through an OpenSSH master (ControlMaster) where this machine's ssh can make one (not on Windows), "
                "else no: by this tool's own SSH library, asking on this console, its sessions and the tunnel "
                "carried by that one login", "auto or no", "no", False, "it changes only how this machine connects",
        more="Either way the code is asked once per run. Without a master, the tunnel is forwarded by this process "
             "instead of OpenSSH (slower for large transfers: see the benchmarks), and `multiplex: true` (one login "
             "for many runs) is not available.")
    container: str = setting(
        "", "run Jupyter from this container image: a .sif file or sandbox directory (Apptainer, Singularity), "
            "an image in your podman storage, or a Charliecloud directory image", "image", "~/images/lab.sif", True,
        "setup stops the server and starts it from the new image; also when the image under the same name "
        "changed (another file, or a new image id)", option="--container", shown_default="none: Jupyter runs on the host",
        more="The home directory is shared at the same path (this tool's settings, password and TLS files are there), "
             "Jupyter listens in the host's network as without a container, and writes its runtime files to a "
             "directory of the instance's own. The kind of Jupyter is found inside the image.")
    container_runtime: str = setting(
        "auto", "which runtime runs the image: auto (the first of apptainer, singularity, podman, ch-run on the "
                "host's PATH, after the activate line), apptainer, singularity, podman or charliecloud",
        "one of " + ", ".join(CONTAINER_RUNTIMES), "podman", True, "setup starts the server with that runtime",
        option="--container-runtime")
    container_options: tuple = setting(
        (), "extra options for the runtime, before the image (binds, environment)",
        "a string or a list of words", '["--bind", "/scratch"]', True, "the runtime reads them at start",
        shown_default="none")
    gpus: bool = setting(
        False, "give the container the host's GPUs: --nv for Apptainer and Singularity, the CDI device "
               "nvidia.com/gpu=all for podman", "true or false", "true", True, "the runtime reads it at start",
        option="--gpus",
        more="Only with `container:`. Charliecloud has no option for it: `ch-fromhost --nvidia IMAGE` puts the "
             "host's GPU libraries into the image once.")
    multiplex: bool = setting(
        False, "reach the host through an OpenSSH master of this tool's own, kept 10 minutes, so a login node "
               "that asks for a one-time code asks once for many runs", "true or false", "true", False,
        "it changes only how this machine connects")


@dataclass(frozen=True)
class HostEntry:
    """A host named in hosts.yaml: its settings and, optionally, how to reach it."""

    name: str
    settings: dict = field(default_factory=dict)
    host: str = ""
    user: str = ""
    ssh_port: int = 0
    identity: str = ""
    instances: dict = field(default_factory=dict)  # name: its own settings


CONNECTION_KEYS = ("host", "user", "ssh_port", "identity")
SETTING_KEYS = tuple(f.name for f in fields(Settings))
INSTANCE_KEYS = tuple(k for k in SETTING_KEYS if k != "name")
TOP_KEYS = ("defaults", "hosts", "groups")

# The keys of hosts.yaml that are not settings, for the reference (docs/generate.py): the
# connection fields of a host entry, its instances, and the top-level keys.
CONNECTION_DOCS = {
    "host": ("the address to connect to, a name or an IP address (default: the entry's own name)", "gpu1.example.org"),
    "user": ("the login name there (default: ssh_config's, else your own)", "ana"),
    "ssh_port": ("sshd's port there (default: ssh_config's, else 22)", "22"),
    "identity": ("a private key to log in with, tried before the others", "~/.ssh/id_ed25519"),
    "instances": ("several Jupyter servers on this host: each name with its own settings (any setting but name:)",
                  "{torch: {activate: source ~/venvs/torch/bin/activate, port: 8890, local_port: 8891}}"),
}
TOP_DOCS = {
    "defaults": "settings for every host (and for hosts that are not in the file)",
    "hosts": "one entry per host, by the name you give -H: its settings, connection fields and instances",
    "groups": "named lists of hosts for --group (run on each, in parallel)",
}


def documented(key):
    """The metadata of one setting."""
    return next(f.metadata for f in fields(Settings) if f.name == key)
