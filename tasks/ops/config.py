"""The Jupyter configuration this tool owns, in ~/.fabjupyter on the host: settings.sh (how to
find and run Jupyter: activation, command, root, address, TLS, socket), the settings file Jupyter
reads (made by the agent, which knows the kind of Jupyter), and run.sh, this tool's launcher.
The user's own Jupyter config files are never edited."""


from ..protocol import run_agent, sh_assign, sh_words
from ..report import Outcome
from .render import config_lines


def root_for_launcher(root_dir):
    """root_dir as the host reads it: '' is home, relative paths are from home."""
    if root_dir in ("~", "~/", ""):
        return ""
    if root_dir.startswith("~/"):
        return root_dir[2:]
    return root_dir


def listen_ip(settings):
    return "0.0.0.0" if settings.mode == "public" else "127.0.0.1"


def settings_sh(settings):
    """settings.sh: shell assignments, each value quoted by the one helper (the bootstrap runs
    them; the agent reads them back without running them)."""
    return "\n".join(
        [
            sh_assign("FJ_ACTIVATE", settings.activate),
            sh_assign("FJ_JUPYTER", sh_words(settings.jupyter)),
            sh_assign("FJ_ROOT", root_for_launcher(settings.root_dir)),
            sh_assign("FJ_IP", listen_ip(settings)),
            sh_assign("FJ_TLS", "1" if settings.mode == "public" else ""),
            sh_assign("FJ_SOCK", "1" if settings.socket else ""),
        ]
        # only when set: a host set up before these settings existed reads the same settings
        + ([sh_assign("FJ_IDLE", str(settings.idle_timeout))] if settings.idle_timeout else [])
        + (container_sh(settings) if settings.container else [])
    ) + "\n"


def container_sh(settings):
    """The container's lines of settings.sh (none without one, so that a host set up before
    containers existed reads the same file, and an upgrade restarts nothing)."""
    return [
        sh_assign("FJ_CONTAINER", settings.container),
        sh_assign("FJ_CONTAINER_RUNTIME", settings.container_runtime),
        sh_assign("FJ_CONTAINER_OPTIONS", sh_words(settings.container_options)),
        sh_assign("FJ_GPUS", "1" if settings.gpus else ""),
    ]


def wanted(settings):
    """What the agent needs to bring a host to these settings (setup and config)."""
    return {
        "settings_sh": settings_sh(settings),
        "launcher": settings.launcher,
        "port": settings.port,
        "timeout": settings.start_timeout,
        "fast_start": settings.fast_start,
        "job_options": list(settings.job_options),
        "install": settings.install,
        "queue_timeout": settings.queue_timeout,
    }


def config_host(t, dry_run=False):
    reply = run_agent(t, "config", dry_run=dry_run, **wanted(t.settings))
    lines = config_lines(t, reply, dry_run)
    if not reply.changed("settings", "config"):
        lines.insert(0, "configuration unchanged")
    summary = ("would change" if dry_run else "written") if reply.changed("settings", "config") else (
        "nothing to change" if dry_run else "unchanged")
    if reply.restart_needed:
        lines.append(f"the running Jupyter uses the old configuration; `{t.fab('restart')}` applies it")
        summary += "; restart to apply"
    return Outcome(lines, summary)
