"""The kinds of Jupyter (classic Notebook 6, Jupyter Server 1 and 2): everything that differs
between them is one entry of KIND_LIST; adding a kind is one entry."""

import os
import re
import sys

from .fail import Fail


# The settings that decide who gets in, pinned on every class that reads them. Traitlets applies
# a subclass's section over its parent's, whatever the file, so a key pinned only on a parent
# loses to the same key on a subclass in the user's own config; and JupyterLab's notebook_shim
# moves NotebookApp.*, LabApp.* and JupyterNotebookApp.* keys of any config file onto ServerApp,
# over ServerApp's own (an old `c.NotebookApp.ip = '*'` would win).
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
# every key of ours that notebook_shim's "has moved" warnings can name
MOVED_KEYS = SHIMMED_KEYS + ("password",)


def access_settings(mode):
    """Who may connect and from where (ServerApp or NotebookApp keys)."""
    public = mode == "public"
    return {
        "ip": "0.0.0.0" if public else "127.0.0.1",
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


def server2_settings(mode):
    """Jupyter Server 2 (JupyterLab 4, Notebook 7)."""
    app = access_settings(mode)
    if mode != "public":
        app.update(certfile="", keyfile="")  # public mode passes ~/.fabjupyter/tls/* on the command line
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
    config.update({name: {k: app[k] for k in SERVER2_SHIMMED} for name in SHIMMED_CLASSES})
    return config


def token_era_settings(mode, app_name, package, shimmed):
    """Jupyter Server 1 and classic Notebook 6: token and password on the app class itself."""
    app = access_settings(mode)
    if mode != "public":
        app.update(certfile="", keyfile="")
    app.update(
        token="",
        password_required=True,
        allow_password_change=False,
        login_handler_class="%s.auth.login.LoginHandler" % package,
        logout_handler_class="%s.auth.logout.LogoutHandler" % package,
    )
    config = {app_name: app}
    if shimmed:
        config.update({name: {k: app[k] for k in SHIMMED_KEYS if k in app} for name in SHIMMED_CLASSES})
    return config


def number(version):
    try:
        return tuple(int(x) for x in version.split(".")[:2])
    except ValueError:
        return (0, 0)


def classic_notebook(versions, command):
    """The command runs classic Notebook (6.x), which reads NotebookApp.* from its own file."""
    notebook = versions.get("notebook", "")
    if "notebook" not in os.path.basename(command) or not notebook or number(notebook) >= (7, 0):
        return False
    if number(notebook) < (6, 1):  # argon2 hashes from 6.1 on
        raise Fail("unsupported", "classic Notebook %s (6.1 or newer is needed)" % notebook)
    return True


def server1_password(h):
    # notebook_shim moves NotebookApp/LabApp/JupyterNotebookApp.password onto ServerApp.password,
    # over ours: the same hash there too
    return {app: {"password": h} for app in SHIMMED_CLASSES + ("ServerApp",)}


class Kind:
    def __init__(self, name, detect, app, root_key, config_name, settings, password):
        self.name = name
        self.detect = detect  # (versions, command) -> does the command run this kind?
        self.app = app  # the class whose options the command line sets
        self.root_key = root_key  # its root directory option
        self.config_name = config_name  # the settings (and password) file it reads
        self.settings = settings  # mode -> the settings file's content
        self.password = password  # hash -> the password file's content


# The kinds of Jupyter, tried in this order: everything that differs between them is here.
KIND_LIST = (
    Kind("nb6", classic_notebook, "NotebookApp", "notebook_dir", "jupyter_notebook_config.json",
         lambda mode: token_era_settings(mode, "NotebookApp", "notebook", False),
         lambda h: {"NotebookApp": {"password": h}}),
    Kind("server2", lambda v, c: number(v.get("jupyter_server", "")) >= (2, 0), "ServerApp", "root_dir",
         "jupyter_server_config.json", server2_settings, lambda h: {"PasswordIdentityProvider": {"hashed_password": h}}),
    Kind("server1", lambda v, c: number(v.get("jupyter_server", "")) >= (1, 0), "ServerApp", "root_dir",
         "jupyter_server_config.json", lambda mode: token_era_settings(mode, "ServerApp", "jupyter_server", True),
         server1_password),
)
KINDS = {k.name: k for k in KIND_LIST}


def config_for(kind, settings):
    """The settings file for this kind of Jupyter and these settings (settings.sh's values)."""
    config = KINDS[kind].settings("public" if settings.get("tls") == "1" else "ssh")
    idle = int(settings.get("idle") or 0)
    if idle:
        # shut down after IDLE seconds without activity, and cull kernels idle that long (a kernel,
        # even an idle one with a browser tab on it, keeps the server up otherwise). Jupyter checks
        # the server's activity once a minute.
        config[KINDS[kind].app]["shutdown_no_activity_timeout"] = idle
        config["MappingKernelManager"] = {"cull_idle_timeout": idle, "cull_interval": max(10, min(60, idle)), "cull_connected": True}
    return config


def kind_for(versions, command):
    """Which kind of Jupyter the command runs: that decides which settings it reads."""
    for kind in KIND_LIST:
        if kind.detect(versions, command):
            return kind.name
    server = versions.get("jupyter_server", "")
    raise Fail("unsupported", "jupyter_server " + server if server else "this Jupyter (no jupyter_server, no classic Notebook)")



def describe_versions(found):
    names = (("JupyterLab", "jupyterlab"), ("Notebook", "notebook"), ("jupyter_server", "jupyter_server"))
    return ", ".join("%s %s" % (label, found[key]) for label, key in names if found.get(key))


# notebook_shim's warning for each key our settings pin on the classes it moves (see SHIMMED_CLASSES)
MOVED_LINE = re.compile(r"'(\w+)' has moved from (\w+) to ServerApp\.")
MOVED_NOTE = (
    "fabjupyter: Jupyter's warnings that keys 'moved from NotebookApp/LabApp/JupyterNotebookApp to ServerApp' are "
    "about this tool's own settings, pinned there so that an older config cannot override them\n"
)


def runtime_dir(env):
    """Where Jupyter writes its runtime file (jupyter_core's rule)."""
    if env.get("JUPYTER_RUNTIME_DIR"):
        return env["JUPYTER_RUNTIME_DIR"]
    if env.get("JUPYTER_DATA_DIR"):
        return os.path.join(env["JUPYTER_DATA_DIR"], "runtime")
    home = os.path.expanduser("~")
    if sys.platform == "darwin":
        return os.path.join(home, "Library", "Jupyter", "runtime")
    return os.path.join(env.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share"), "jupyter", "runtime")
