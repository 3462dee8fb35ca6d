"""Running Jupyter detached on the host: start, stop, restart, status, logs."""

from invoke import task

from . import fleet
from .errors import UserError, user_task
from .fleet import DRY_RUN_HELP, GROUP_HELP, WORKERS_HELP, Outcome
from .remote import run_agent, target

LAUNCHER_HELP = "how Jupyter is detached from the SSH session: nohup (default) or tmux"
PORT_HELP = "remote port (default 8888; the next free one if taken, and reported)"


# Where Jupyter was seen running during this `fab` call, so that `setup tunnel` does not ask again.
_seen_running = {}


def remember(t, reply):
    _seen_running[(t.conn.user, t.conn.host, t.conn.port)] = (location(reply), reply["mode"] or "ssh")


def running_port(t):
    """(remote port or socket path, mode) of the running Jupyter: from this call's setup/start if
    any, else asked."""
    return _seen_running.get((t.conn.user, t.conn.host, t.conn.port)) or ask_where(t)


def ask_where(t):
    """(remote port or socket path, mode), asked of the host now; an error if nothing runs."""
    record = fetch_status(t)
    if not record["running"]:
        raise UserError(f"{t.label}: Jupyter is not running there; start it with `fab -H {t.label} setup` (or `start`)")
    return record["socket"] or record["port"], record["mode"]


def is_socket(where):
    """Is this location (a port number or a path) a Unix socket?"""
    return isinstance(where, str) and where.startswith("/")


def url_for(t, port, mode):
    """Where to reach Jupyter: on the host itself (ssh mode, via the tunnel) or from anywhere (public)."""
    if is_socket(port):
        return f"unix:{port}"
    if mode == "public":
        return f"https://{t.conn.host}:{port}/"
    return f"http://127.0.0.1:{port}/"


def where(t, port, mode):
    if is_socket(port):
        return f"the Unix socket {port} on the host"
    return url_for(t, port, mode) + ("" if mode == "public" else " on the host")


def location(reply):
    """The port (a number), or the socket path in socket mode, from an agent reply."""
    return reply["sock"] or int(reply["port"])


def launch_values(t):
    return {"FJ_LAUNCHER": t.settings.launcher, "FJ_PORT": t.settings.port, "FJ_TIMEOUT": t.settings.start_timeout}


def describe_start(t, reply):
    """Lines telling what was started where."""
    remember(t, reply)
    lines = [f"{t.label}: note: {reply['note']}"] if reply["note"] else []
    if reply["root_created"]:
        lines.append(f"{t.label}: created root directory {reply['root_created']} (mode 0700)")
    port = location(reply)
    if not is_socket(port) and port != t.settings.port:
        lines.append(f"{t.label}: port {t.settings.port} is taken on the host; Jupyter uses {port} instead")
    version = reply["version"] or "Jupyter"
    lines.append(
        f"{t.label}: Jupyter started ({version}; pid {reply['pid']}, {reply['launcher']}) at {where(t, port, reply['mode'])}"
    )
    return lines


def describe_running(t, reply):
    remember(t, reply)
    return f"{t.label}: Jupyter is running (pid {reply['pid']}, {reply['launcher']}) at {where(t, location(reply), reply['mode'])}"


def status_record(t, reply):
    running = reply.flag("running")
    port = int(reply["port"]) if running and reply["port"] else None
    sock = reply["sock"] if running and reply["sock"] else None
    mode = (reply["mode"] or "ssh") if running else None
    return {
        "host": t.label,
        "running": running,
        "pid": int(reply["pid"]) if running else None,
        "port": port,
        "socket": sock,
        "url": url_for(t, sock or port, mode) if running else None,
        "mode": mode,
        "launcher": reply["launcher"] or None if running else None,
        "current": reply.flag("current") if running else None,
        "password": reply.flag("has_password"),
        "configured": reply.flag("configured"),
        "stale_pid": int(reply["stale"]) if reply["stale"] else None,
        # servers this tool started whose start was never recorded (their run was killed)
        "unrecorded": [int(p) for p in reply["unrecorded"].split()],
        "busy": reply["busy"] or None,  # a changing run going on there now
    }


def fetch_status(t):
    return status_record(t, run_agent(t, "status"))


def start_host(t):
    reply = run_agent(t, "start", **launch_values(t))
    lines = stopped_unrecorded(t, reply)
    if reply.flag("already_running"):
        lines.append(describe_running(t, reply) + "; nothing to do")
        return Outcome(lines, "already running", url_for(t, location(reply), reply["mode"]))
    return Outcome(lines + describe_start(t, reply), "started", url_for(t, location(reply), reply["mode"]))


def stop_host(t):
    reply = run_agent(t, "stop")
    lines = stopped_unrecorded(t, reply)
    if reply["stopped"]:
        return Outcome(lines + [f"{t.label}: Jupyter stopped (pid {reply['stopped']})"], "stopped")
    return Outcome(lines + [f"{t.label}: Jupyter was not running"], "stopped" if lines else "was not running")


def restart_host(t, keep_launcher):
    values = launch_values(t)
    if keep_launcher:
        values["FJ_LAUNCHER"] = ""  # keep the launcher it runs with (setup applies hosts.yaml's)
    reply = run_agent(t, "restart", **values)
    lines = stopped_unrecorded(t, reply)
    lines += [f"{t.label}: Jupyter stopped (pid {reply['stopped']})"] if reply["stopped"] else []
    return Outcome(lines + describe_start(t, reply), "restarted", url_for(t, location(reply), reply["mode"]))


def unrecorded_lines(t, record):
    if record["busy"]:
        return [f"{t.label}: another fabjupyter run is changing things there now: {record['busy']}"]
    if record["unrecorded"]:
        pids = ", ".join(map(str, record["unrecorded"]))
        return [
            f"{t.label}: also running: Jupyter (pid {pids}) started by a run of this tool that was killed before it "
            f"recorded it; `fab -H {t.label} setup` or `stop` stops it"
        ]
    return []


def stopped_unrecorded(t, reply):
    if not reply["stopped_unrecorded"]:
        return []
    pids = ", ".join(reply["stopped_unrecorded"].split())
    return [f"{t.label}: stopped Jupyter (pid {pids}), started by a run of this tool that was killed before it recorded it"]


def status_host(t):
    record = fetch_status(t)
    extra_lines = unrecorded_lines(t, record)
    if record["running"]:
        line = f"{t.label}: running (pid {record['pid']}, {record['launcher']}) at {where(t, record['socket'] or record['port'], record['mode'])}"
        if not record["current"]:
            line += f"; the configuration changed since it started (`fab -H {t.label} restart` applies it)"
        lines = [line, *extra_lines, f"{t.label}: reach it with `fab -H {t.label} tunnel`"]
        return Outcome(lines, "running", record["url"], record)
    extra = f" (pid {record['stale_pid']} is gone: it was killed or crashed)" if record["stale_pid"] else ""
    lines = [f"{t.label}: not running{extra}", *extra_lines]
    if not record["password"] or not record["configured"]:
        lines.append(f"{t.label}: not set up yet; run `fab -H {t.label} setup`")
    return Outcome(lines, "not running", "", record)


@task(help={"launcher": LAUNCHER_HELP, "port": PORT_HELP, "group": GROUP_HELP, "workers": WORKERS_HELP, "dry-run": DRY_RUN_HELP})
@user_task
def start(c, launcher=None, port=None, group=None, workers=8, dry_run=False):
    """Start Jupyter detached on the host and wait until it answers; does nothing if it runs."""
    from .plan import plan_start

    fleet.run(c, plan_start if dry_run else start_host, group, workers, launcher=launcher, port=port)


@task(help={"group": GROUP_HELP, "workers": WORKERS_HELP, "dry-run": DRY_RUN_HELP})
@user_task
def stop(c, group=None, workers=8, dry_run=False):
    """Stop Jupyter on the host (and its tmux session); no process is left behind."""
    from .plan import plan_stop

    fleet.run(c, plan_stop if dry_run else stop_host, group, workers)


@task(
    help={"launcher": "nohup or tmux (default: the one it runs with)", "port": PORT_HELP, "group": GROUP_HELP, "workers": WORKERS_HELP}
)
@user_task
def restart(c, launcher=None, port=None, group=None, workers=8):
    """Stop Jupyter if it runs, then start it with the current configuration."""
    fleet.run(c, lambda t: restart_host(t, keep_launcher=launcher is None), group, workers, launcher=launcher, port=port)


@task(help={"json": "print one JSON object per host instead of a sentence", "group": GROUP_HELP, "workers": WORKERS_HELP})
@user_task
def status(c, json_=False, group=None, workers=8):
    """Tell whether Jupyter runs on the host, with its pid, port, URL and launcher."""
    fleet.run(c, status_host, group, workers, as_json=json_)


@task(help={"lines": "how many of the last lines to show (default 50)"})
@user_task
def logs(c, lines=50):
    """Show the last lines of Jupyter's log on the host."""
    t = target(c)
    if lines < 1:
        raise UserError("--lines: must be at least 1")
    reply = run_agent(t, "logs", FJ_LINES=lines)
    if reply.flag("no_log"):
        print(f"{t.label}: no log yet (Jupyter has not been started by this tool)")
    elif reply.text:
        print(reply.text)
