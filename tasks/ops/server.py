"""Running Jupyter detached on one host: start, stop, restart, status, list."""

from ..context import run
from ..errors import HostError
from ..forwards.background import stop_background
from ..forwards.records import open_records
from ..protocol.where import Where
from ..hosts.inventory import BATCH_LAUNCHERS
from ..protocol import run_agent
from ..remote.instance import TOP
from ..report import Outcome, Plain, table
from .ssh_entry import note_running
from .render import job_words, process, running_line, said, start_lines, stopped_unrecorded, url_for, where


def remember(t, status):
    """Where Jupyter was seen running during this `fab` call, so that `setup tunnel` does not ask again."""
    run().seen[(t.conn.user, t.conn.host, t.conn.port, t.name)] = Where.of(status)


def seen_running(t):
    """The Where of the running Jupyter, if this call's setup, start or list saw it; else None."""
    return run().seen.get((t.conn.user, t.conn.host, t.conn.port, t.name))


def ask_where(t):
    """The Where of the running Jupyter, asked of the host now; an error if nothing runs."""
    status = run_agent(t, "status").status
    if not status.running:
        raise NotRunning(t.label, f"Jupyter is not running there; start it with `{t.fab('setup')}` (or `start{t.named}`)")
    return Where.of(status)


class NotRunning(HostError):
    """The host answered: this instance's Jupyter is not running."""


def launch_request(t, dry_run=False):
    s = t.settings
    return {"launcher": s.launcher, "port": s.port, "timeout": s.start_timeout, "fast_start": s.fast_start, "dry_run": dry_run,
            "job_options": list(s.job_options), "queue_timeout": s.queue_timeout}


def describe_start(t, reply, dry_run=False):
    """Lines telling what was started where (or, in a dry run, would be)."""
    if not dry_run and reply.change("start"):
        remember(t, reply.status)
    return start_lines(t, reply, dry_run)


def describe_running(t, status):
    remember(t, status)
    return running_line(t, status)


def status_record(t, status):
    running = status.running
    return {
        "host": t.host,
        "name": t.name,
        "running": running,
        "pid": status.pid,
        "port": status.port,
        "socket": status.socket,
        "url": url_for(t, status.where, status.mode, status.address) if running else None,
        "mode": status.mode,
        "launcher": status.launcher,
        "current": status.current,
        "password": status.has_password,
        "configured": status.configured,
        "kind": status.kind,
        "version": status.version,
        "fast_start": status.fast_start,
        "stale_pid": status.stale_pid,
        "idle_shutdown": status.idle_shutdown,  # seconds idle when the stale pid shut itself down (idle_timeout)
        # servers this tool started whose start was never recorded (their run was killed)
        "unrecorded": list(status.unrecorded),
        "busy": status.busy,  # a changing run going on there now
        "own_env": status.own_env,  # Jupyter from this tool's environment (setup --install)
        "container": status.container,  # the image it runs from, and the runtime that runs it
        "container_runtime": status.container_runtime,
        # a batch job (launcher slurm): its id, state (or how it ended), node and time left
        **({"job_id": status.job_id, "job_state": status.job_state, "node": status.node, "time_left": status.time_left,
            "address": status.address, "ended": status.ended} if status.job_id or t.settings.launcher in BATCH_LAUNCHERS else {}),
    }


def start_host(t, dry_run=False):
    reply = run_agent(t, "start", **launch_request(t, dry_run))
    lines = stopped_unrecorded(reply, dry_run)
    if reply.change("start") is None:
        if dry_run:
            return Outcome(lines + [f"Jupyter is running (pid {reply.status.pid}); start would do nothing"], "nothing to change")
        lines.append(describe_running(t, reply.status) + "; nothing to do")
        note_running(t, reply.status)
        return Outcome(lines, "already running", url_for(t, reply.status.where, reply.status.mode, reply.status.address))
    lines += describe_start(t, reply, dry_run)
    if dry_run:
        return Outcome(lines, "would start")
    note_running(t, reply.status)
    return Outcome(lines, "started", url_for(t, reply.status.where, reply.status.mode, reply.status.address))


def stop_host(t, dry_run=False):
    reply = run_agent(t, "stop", dry_run=dry_run)
    lines = stopped_unrecorded(reply, dry_run)
    stop = reply.change("stop")
    stopped = "would stop" if dry_run else "stopped"
    closed = stop_background(t, dry_run)  # it would only wait for a server that is gone
    tunnel = [closed] if closed else []
    if stop:
        return Outcome(lines + [said("stop", dry_run, process=process(stop.detail))] + tunnel, stopped)
    return Outcome(lines + [said("not_running", dry_run)] + tunnel,
                   stopped if lines else "nothing to change" if dry_run else "was not running")


def restart_host(t, keep_launcher):
    request = launch_request(t)
    if keep_launcher:
        request["launcher"] = ""  # keep the launcher it runs with (setup applies hosts.yaml's)
    reply = run_agent(t, "restart", **request)
    lines = stopped_unrecorded(reply)
    stop = reply.change("stop")
    lines += [said("stop", False, process=process(stop.detail))] if stop else []
    note_running(t, reply.status)
    return Outcome(lines + describe_start(t, reply), "restarted", url_for(t, reply.status.where, reply.status.mode, reply.status.address))


def unrecorded_lines(t, status):
    if status.busy:
        return [f"another fabjupyter run is changing things there now: {status.busy}"]
    if status.unrecorded:
        pids = ", ".join(map(str, status.unrecorded))
        return [
            f"also running: Jupyter (pid {pids}) started by a run of this tool that was killed before it "
            f"recorded it; `{t.fab('setup')}` or `stop{t.named}` stops it"
        ]
    return []


def status_host(t):
    status = run_agent(t, "status").status
    record = status_record(t, status)
    extra_lines = unrecorded_lines(t, status)
    if status.running:
        how = job_words(status) if status.job_id else f"pid {status.pid}, {status.launcher}{'; fast_start' if status.fast_start else ''}"
        if status.container:
            how += f"; in the {status.container_runtime} image {status.container}"
        line = f"running ({how}) at {where(t, status.where, status.mode, status.address)}"
        if status.own_env:
            line += f"; Jupyter from this tool's own environment (~/{TOP}/venv)"
        if not status.current:
            line += f"; the configuration changed since it started (`{t.fab('restart')}` applies it)"
        lines = [line, *extra_lines, f"reach it with `{t.fab('tunnel')}`"]
        return Outcome(lines, "running", record["url"], record)
    extra = f" (pid {status.stale_pid} is gone: it was killed or crashed)" if status.stale_pid else ""
    if status.stale_pid and status.idle_shutdown is not None:
        extra = f" (pid {status.stale_pid} shut itself down after {status.idle_shutdown} s without activity: idle_timeout)"
    if status.job_id and status.ended:
        extra = f" (job {status.job_id} ended: {status.ended})"
    elif status.job_id:
        extra = f" (job {status.job_id} is {status.job_state}{' on ' + status.node if status.node else ''}; Jupyter does not answer yet)"
    lines = [f"not running{extra}", *extra_lines]
    if not status.has_password or not status.configured:
        lines.append(f"not set up yet; run `{t.fab('setup')}`")
    return Outcome(lines, "not running", "", record)


def stop_all_host(t, dry_run=False):
    """stop --all: every instance there that runs (one line each, labelled with it)."""
    listed = run_agent(t, "list")
    lines, stopped = [], set()
    for one in listed.instances:
        if not (one.status.running or one.status.unrecorded):
            continue
        sub = t.instance(one.name)
        outcome = stop_host(sub, dry_run)
        stopped.add(one.name)
        lines += [Plain(f"{sub.label}: {line}") for line in outcome.lines]
    for name in sorted(set(open_records(t.conn)) - stopped):  # background tunnels to instances that were not running
        closed = stop_background(t.instance(name), dry_run)
        if closed:
            lines.append(Plain(f"{t.instance(name).label}: {closed}"))
    if not stopped:
        return Outcome([said("none_running", dry_run)] + lines, "nothing to change" if dry_run else "was not running")
    return Outcome(lines, said("stopped_instances", dry_run, n=len(stopped), s="s" if len(stopped) > 1 else ""))


def uptime(seconds):
    if seconds is None:
        return ""
    seconds = max(0, seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


def list_records(t, listed, tunnels=None):
    """One record per server there: this tool's instances, then the user's other Jupyter servers.
    TUNNELS: the open background tunnels' records here, by instance name."""
    records = []
    for one in listed.instances:
        s, sub = one.status, t.instance(one.name)
        tunnel = (tunnels or {}).get(one.name)
        records.append({
            "host": t.host, "name": one.name, "ours": True, "running": s.running, "pid": s.pid, "port": s.port,
            "socket": s.socket, "url": url_for(sub, s.where, s.mode, s.address) if s.running else None, "launcher": s.launcher,
            "version": s.version, "kind": s.kind, "mode": s.mode,
            "uptime": listed.now - s.started if s.running and s.started else None,
            "current": s.current, "configured": s.configured, "job_id": s.job_id, "node": s.node,
            "container": s.container, "container_runtime": s.container_runtime,
            "tunnel": {"url": tunnel["url"], "local_port": tunnel["local_port"], "pid": tunnel["pid"]} if tunnel else None,
        })
    for other in listed.others:
        records.append({
            "host": t.host, "name": None, "ours": False, "running": True, "pid": other.pid, "port": other.port,
            "socket": other.socket, "url": other.url, "launcher": None, "version": other.version, "kind": other.kind,
            "mode": None, "uptime": None, "current": None, "configured": None, "job_id": None, "node": None,
            "container": None, "container_runtime": None,
            "tunnel": None, "root_dir": other.root_dir,
        })
    return records


def list_host(t):
    listed = run_agent(t, "list")
    records = list_records(t, listed, open_records(t.conn))
    if not records:
        return Outcome(["no Jupyter server there (none set up by this tool, none of yours running)"], "none", "", [])
    rows = [("name", "state", "pid", "where", "launcher", "version", "uptime")]
    for r in records:
        where_ = r["socket"] or (str(r["port"]) if r["port"] else "")
        if r["job_id"]:
            where_ = f"job {r['job_id']}" + (f" {r['node']}:{where_}" if r["node"] and where_ else "")
        rows.append((
            r["name"] if r["ours"] else "(not ours)",
            ("running" if r["current"] is not False else "running, config changed") if r["running"] else "stopped",
            str(r["pid"] or ""), where_, r["launcher"] or "", r["version"] or "", uptime(r["uptime"]),
        ))
    lines = [Plain(line) for line in table(rows)]
    lines += [Plain(f"background tunnel to {r['name']}: {r['tunnel']['url']} (pid {r['tunnel']['pid']})")
              for r in records if r["tunnel"]]
    running = sum(1 for r in records if r["running"])
    ours = sum(1 for r in records if r["ours"])
    summary = f"{ours} instance{'s' if ours != 1 else ''}, {running} server{'s' if running != 1 else ''} running"
    return Outcome([f"{summary}:", *lines], summary, "", records)
