"""An instance: its name rule, and where its files are on the host. The one place for both: the
agent, the client (inventory, messages) and bootstrap.sh's fj_home follow it.

    ~/.fabjupyter/                   the default instance (where a single-server host keeps
                                     everything, as before instances existed), and:
        ports.lock                   held while an instance chooses a port
        venv/                        this tool's own Jupyter environment (setup --install)
        install/                     the wheels sent for it, while it installs
        instances/NAME/              each other instance, with the same files as the default:
    settings.sh config/ password/ tls/ state lock lock.owner pid launched python run.sh boot.py
    serve.sh jupyter.log cookie_secret; for a batch job also job.sh job/ job.where lib/
"""

import os

# a file name and a tmux session name as it is
NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
NAME_MAX = 40
TOP = ".fabjupyter"  # from the home directory
INSTALL = "install"  # in TOP: the wheels sent for setup --install, while it installs
WHEELS_TAR = "wheels.tar"  # in INSTALL: as they arrive, one tar
DEFAULT_FILES = ("state", "settings.sh", "run.sh", "password", "config")  # any of them: the default instance exists


def good_name(name):
    return isinstance(name, str) and 0 < len(name) <= NAME_MAX and name[0] not in "_-" and all(c in NAME_CHARS for c in name)


def top_dir(home):
    return os.path.join(home, TOP)


def relative_dir(name):
    """The instance's directory from the home directory (for messages: ~/ + this)."""
    return TOP if name == "default" else TOP + "/instances/" + name


def instance_dir(home, name):
    return os.path.join(home, relative_dir(name))


def venv_dir(home):
    return os.path.join(top_dir(home), "venv")


def tmux_session(name):
    return "jupyter" if name == "default" else "jupyter-" + name


def job_name(name):
    return "fabjupyter-" + name


def instance_names(home):
    """The instances set up on this host: default (if anything of it is there), then the others."""
    top = top_dir(home)
    names = []
    if any(os.path.exists(os.path.join(top, f)) for f in DEFAULT_FILES):
        names.append("default")
    try:
        names += sorted(n for n in os.listdir(os.path.join(top, "instances"))
                        if good_name(n) and n != "default" and os.path.isdir(os.path.join(top, "instances", n)))
    except OSError:
        pass
    return names
