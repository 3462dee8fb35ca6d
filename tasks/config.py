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


# The classes each kind of Jupyter reads the settings that decide who gets in from. Traitlets
# applies a subclass's section over its parent's, whatever the file, so a setting pinned only on
# a parent class loses to the same key on a subclass in the user's own config: every key is
# pinned on every class of the hierarchy that has it, and the classes that could swap the
# hierarchy for another (identity provider, login handler) are pinned too.
IDENTITY_CLASSES = ("IdentityProvider", "PasswordIdentityProvider", "LegacyIdentityProvider")
PASSWORD_CLASSES = IDENTITY_CLASSES[1:]
SHIMMED_CLASSES = ("NotebookApp", "LabApp", "JupyterNotebookApp")
SERVER2_SHIMMED = (
    "ip", "base_url", "allow_origin", "allow_origin_pat", "allow_credentials", "disable_check_xsrf", "allow_remote_access",
    "local_hostnames", "allow_unauthenticated_access", "identity_provider_class", "login_handler_class",
)
# Jupyter Server 1 reads these on ServerApp itself (Server 2 only as deprecated aliases of the
# pinned identity-provider keys, which cannot override those)
SHIMMED_KEYS = SERVER2_SHIMMED + ("token", "password_required", "allow_password_change", "logout_handler_class")
# every key of ours that notebook_shim's "has moved" warnings can name (Server 1's password file
# pins ServerApp.password on those sections too: agent.sh, fj_pw_json)
MOVED_KEYS = SHIMMED_KEYS + ("password",)


def access_settings(settings):
    """Who may connect and from where (ServerApp or NotebookApp keys)."""
    public = settings.mode == "public"
    return {
        "ip": listen_ip(settings),
        "port_retries": 0,  # a busy port is an error we handle, never a silent move
        "open_browser": False,
        "base_url": "/",
        "allow_origin": "",
        "allow_origin_pat": "",
        "allow_credentials": False,
        "disable_check_xsrf": False,
        # the Host-header check against DNS rebinding; public mode is reached by its host name
        "allow_remote_access": public,
        "local_hostnames": ["localhost"],
        "trust_xheaders": False,
        "authenticate_prometheus": True,
    }


def server_config(settings, flavour="server2"):
    """The settings file for one kind of Jupyter. It comes first in JUPYTER_CONFIG_PATH, so each
    key here outranks the same key in a venv's etc/jupyter or ~/.jupyter; keys set to their empty
    value make sure a user's TLS or socket setting cannot sneak into the SSH-tunnel setup.
    server2: Jupyter Server 2 (JupyterLab 4, Notebook 7); server1: Jupyter Server 1.x;
    nb6: classic Notebook 6 (NotebookApp.*, in jupyter_notebook_config.json)."""
    app_name = "NotebookApp" if flavour == "nb6" else "ServerApp"
    app = access_settings(settings)
    if settings.mode == "ssh":
        app.update(certfile="", keyfile="")  # public mode passes ~/.fabjupyter/tls/* on the command line
    if flavour == "server2":
        app.update(
            sock="",
            allow_unauthenticated_access=False,
            identity_provider_class="jupyter_server.auth.identity.PasswordIdentityProvider",
            login_handler_class="jupyter_server.auth.login.LoginHandler",
            logout_handler_class="jupyter_server.auth.logout.LogoutHandler",
        )
        config = {"ServerApp": app}
        for name in IDENTITY_CLASSES:
            # the password is the only way in: no token, no other login or logout handler
            config[name] = {
                "token": "",
                "login_handler_class": "jupyter_server.auth.login.LoginFormHandler",
                "logout_handler_class": "jupyter_server.auth.logout.LogoutHandler",
            }
        for name in PASSWORD_CLASSES:
            config[name].update(password_required=True, allow_password_change=False)
        # LegacyIdentityProvider's own login handler is what it defers to; it is never used here
        config["LegacyIdentityProvider"]["login_handler_class"] = "jupyter_server.auth.login.LegacyLoginHandler"
    else:
        package = "notebook" if flavour == "nb6" else "jupyter_server"
        app.update(
            token="",
            password_required=True,
            allow_password_change=False,
            login_handler_class=f"{package}.auth.login.LoginHandler",
            logout_handler_class=f"{package}.auth.logout.LogoutHandler",
        )
        config = {app_name: app}
    if flavour != "nb6":
        # JupyterLab and Notebook 7 move NotebookApp.*, LabApp.* and JupyterNotebookApp.* keys of
        # any config file onto ServerApp, over ServerApp's own (notebook_shim): an old
        # `c.NotebookApp.ip = '*'` would win. The keys that decide who gets in are pinned there too;
        # the rest (port, base_url, socket, TLS files) is checked after the start.
        moved = {key: app[key] for key in SHIMMED_KEYS if key in app and (flavour == "server1" or key in SERVER2_SHIMMED)}
        config.update({name: dict(moved) for name in SHIMMED_CLASSES})
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
