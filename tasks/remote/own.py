"""This tool's own remote files (a module's source, bootstrap.sh, boot.py), for what the agent
writes on the host (run.sh, boot.py, the batch job's check) and runs in another Python: from the
joined script on a host (its loader holds them), from this folder on the client."""

import os

PACKAGE = "fabjupyter_remote"  # the name the remote modules have on a host (the joined script's loader)
JOB_FILES = ("net.py", "ready.py")  # what a batch job's check needs on its node


def text(name):
    sources = getattr(globals().get("__loader__"), "sources", None)
    if isinstance(sources, dict):
        return sources[name]
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), name), encoding="utf-8") as f:
        return f.read()


def run_sh():
    """~/.fabjupyter/run.sh: the bootstrap, ending in its call (tmux runs `sh run.sh serve ...`)."""
    return "#!/bin/sh\n# Written by fabjupyter; its settings are in settings.sh beside it.\n" + text("bootstrap.sh") + '\nfj_boot "$@"\n'
