"""The Jupyter configuration this tool owns: a launcher script and a settings file, both in
~/.fabjupyter on the remote. The user's own Jupyter config files are never edited."""

import json
from importlib import resources

from invoke import task

from . import fleet
from .errors import user_task
from .fleet import DRY_RUN_HELP, GROUP_HELP, WORKERS_HELP, Outcome
from .remote import run_agent, sh_assign, sh_words

LAUNCHER = resources.files(__package__).joinpath("launcher.sh").read_text()
BOOT = resources.files(__package__).joinpath("boot.py").read_text()
REMOTE_DIR = "~/.fabjupyter"


def root_for_launcher(root_dir):
    """root_dir as the launcher reads it: '' is home, relative paths are from home."""
    if root_dir in ("~", "~/", ""):
        return ""
    if root_dir.startswith("~/"):
        return root_dir[2:]
    return root_dir


def launcher_script(settings):
    """The remote run.sh: activation, finding Jupyter, and the command line that starts it."""
    block = "\n".join(
        [
            sh_assign("FJ_ACTIVATE", settings.activate),
            sh_assign("FJ_JUPYTER", sh_words(settings.jupyter)),
            sh_assign("FJ_ROOT", root_for_launcher(settings.root_dir)),
            sh_assign("FJ_IP", listen_ip(settings)),
            sh_assign("FJ_TLS", "1" if settings.mode == "public" else ""),
            sh_assign("FJ_SOCK", "1" if settings.socket else ""),
        ]
    )
    return LAUNCHER.replace("# @SETTINGS@", block, 1).replace("# @BOOT@", BOOT.rstrip("\n"), 1)


def listen_ip(settings):
    return "0.0.0.0" if settings.mode == "public" else "127.0.0.1"


def server_config(settings, flavour="server2"):
    """The settings file for one kind of Jupyter. It comes first in JUPYTER_CONFIG_PATH, so each
    key here outranks the same key in a venv's etc/jupyter or ~/.jupyter; keys set to their empty
    value make sure a user's TLS or socket setting cannot sneak into the SSH-tunnel setup.
    server2: Jupyter Server 2 (JupyterLab 4, Notebook 7); server1: Jupyter Server 1.x;
    nb6: classic Notebook 6 (NotebookApp.*, in jupyter_notebook_config.json)."""
    app = {
        "ip": listen_ip(settings),
        "port_retries": 0,  # a busy port is an error we handle, never a silent move
        "open_browser": False,
        "base_url": "/",
    }
    if settings.mode == "ssh":
        app.update(certfile="", keyfile="")  # public mode passes ~/.fabjupyter/tls/* on the command line
    if flavour == "server2":
        app["sock"] = ""
        config = {
            "ServerApp": app,
            "IdentityProvider": {"token": ""},  # the password is the only way in
            "PasswordIdentityProvider": {"password_required": True},
        }
    else:
        app.update(token="", password_required=True)
        config = {"NotebookApp" if flavour == "nb6" else "ServerApp": app}
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


# Which settings file each kind of Jupyter reads (the agent's fj_flavour writes the same names).
CONFIG_FILES = {
    "server2": ("FJ_CONFIG", "config/jupyter_server_config.json"),
    "server1": ("FJ_CONFIG_SERVER1", "config/jupyter_server_config.json"),
    "nb6": ("FJ_CONFIG_NB6", "config/jupyter_notebook_config.json"),
}


def config_values(settings):
    """The agent variables that describe the wanted configuration."""
    return {
        "FJ_RUN_SH": launcher_script(settings),
        "FJ_CONFIG": server_config(settings),
        "FJ_CONFIG_SERVER1": server_config(settings, "server1"),
        "FJ_CONFIG_NB6": server_config(settings, "nb6"),
        "FJ_ROOT": root_for_launcher(settings.root_dir),
        "FJ_LAUNCHER": settings.launcher,
        "FJ_PORT": settings.port,
        "FJ_TIMEOUT": settings.start_timeout,
        "FJ_MODE": settings.mode,
    }


def write_config(t):
    return run_agent(t, "config", **config_values(t.settings))


def config_host(t):
    reply = write_config(t)
    changed = reply.flag("config_changed")
    lines = [f"{t.label}: configuration written to {REMOTE_DIR}" if changed else f"{t.label}: configuration unchanged"]
    summary = "written" if changed else "unchanged"
    if reply.flag("restart_needed"):
        lines.append(f"{t.label}: the running Jupyter uses the old configuration; `fab -H {t.label} restart` applies it")
        summary += "; restart to apply"
    return Outcome(lines, summary)


@task(
    help={
        "root-dir": "Jupyter's root directory on the remote (default ~; created 0700 if missing)",
        "mode": "ssh (127.0.0.1, reached through the tunnel; default) or public (all interfaces, TLS and password)",
        "group": GROUP_HELP,
        "workers": WORKERS_HELP,
        "socket": "listen on a Unix socket (0600, in a 0700 directory) instead of a port",
        "dry-run": DRY_RUN_HELP,
    }
)
@user_task
def config(c, root_dir=None, mode=None, group=None, workers=8, socket=False, dry_run=False):
    """Write the Jupyter configuration on the host (~/.fabjupyter); your own files stay as they are."""
    from .plan import plan

    core = (lambda t: plan(t, starting=False)) if dry_run else config_host
    fleet.run(c, core, group, workers, root_dir=root_dir, mode=mode, socket=socket or None)
