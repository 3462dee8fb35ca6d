"""One renderer for the changes a host reports: a dry run and a real run walk the same reply the
same way, and each change is said in the future tense (what would be done) or the past (what was
done) from one entry of PHRASES, so that what a dry run promises cannot drift from what a real
run then says. Also the words for where a server listens."""

from ..protocol.where import names_socket
from ..report import Plain

_SOCKET = ("Jupyter from a TCP port to a Unix socket in {dir}/run, the default now: no other user on the host can reach it or "
           "take its place, so the tunnel cannot hand your requests to another server (socket: false in hosts.yaml, or --tcp, "
           "keeps a port)")

# what: (dry run, real run); the {fields} are filled in by said()
PHRASES = {
    "config": ("would write the configuration in {dir}:", "configuration written to {dir}"),
    "socket": ("would move " + _SOCKET, "moved " + _SOCKET),  # an upgrade to the socket default, on a host that ran on a port
    "tool": ("would refresh this tool's own {names} (not a reason to restart Jupyter)",
             "refreshed this tool's own {names} (not a reason to restart Jupyter)"),
    "stop_unrecorded": ("would stop Jupyter ({servers}), started by a run of this tool that was killed before it recorded it",
                        "stopped Jupyter ({servers}), started by a run of this tool that was killed before it recorded it"),
    "password": ("would {verb} the password", "password set (only its hash is stored, mode 0600)"),
    "password_from": ("would set the password ({detail})",  # the default instance's; in a dry run also "asked for then"
                      "password: the same as the default instance's (`{fab_password}` sets one of its own)"),
    "password_task": ("would {verb} the password (hash only, mode 0600)", "password set (Argon2id hash in {dir}/password, mode 0600)"),
    "image": ("the container image {image} is not the one Jupyter runs from (built, pulled or imported again): "
              "would restart Jupyter from it",
              "the container image {image} changed since Jupyter started (built, pulled or imported again): "
              "Jupyter restarts from it"),
    "restart": ("would restart Jupyter ({process}) with the new settings", "stopped the running Jupyter ({process}) to apply the changes"),
    "stop": ("would stop Jupyter ({process})", "Jupyter stopped ({process})"),
    "not_running": ("Jupyter is not running; stop would do nothing", "Jupyter was not running"),
    "none_running": ("no instance of Jupyter is running there; stop would do nothing",  # stop --all
                     "no instance of Jupyter is running there; nothing to stop"),
    "stopped_instances": ("would stop {n} instance{s}", "stopped {n} instance{s}"),
    "root_dir": ("would create the root directory {dir} (mode 0700)", "created root directory {dir} (mode 0700)"),
    "start": ("would start Jupyter ({how}) and wait until it answers", "Jupyter started ({how}) at {at}"),
    "cert_made": ("would make a new certificate ({reason}) in {path}", "certificate {reason}; local copy {path} (key beside it, 0600)"),
    "cert_installed": ("would install the certificate and key in {dir}/tls", "certificate and key installed in {dir}/tls (key 0600)"),
    "cert_unchanged": ("certificate unchanged (valid, covers the names); nothing would change",
                       "certificate unchanged (valid, covers the names)"),
}


def said(what, dry_run, **fields):
    """The line for one change: what would be done (DRY_RUN), else what was done."""
    future, past = PHRASES[what]
    return (future if dry_run else past).format(**fields)


def process(detail):
    """A stopped server as the agent named it: a pid, or a batch job ("job 123")."""
    return detail if detail.startswith("job") else f"pid {detail}"


def url_for(t, port, mode, address=None):
    """Where to reach Jupyter: on the host itself (ssh mode, via the tunnel), on the compute node
    a batch job runs on (ADDRESS), or from anywhere (public)."""
    if names_socket(port):
        return f"unix:{port}"
    if mode == "public":
        return f"https://{t.conn.host}:{port}/"
    return f"http://{address or '127.0.0.1'}:{port}/"


def where(t, port, mode, address=None):
    if names_socket(port):
        return f"the Unix socket {port} on the host"
    return url_for(t, port, mode, address) + ("" if mode == "public" else " on the node" if address else " on the host")


def job_words(status):
    """A batch job's part of a description: job 12 on node1, 3:59:12 left; or, while the
    scheduler cannot be asked: job 12 on node1, state UNKNOWN (...)."""
    left = f", {status.time_left} left" if status.time_left else ""
    if status.job_state == "UNKNOWN":
        left = ", state UNKNOWN (the scheduler does not answer now; the job is kept)"
    return f"job {status.job_id} on {status.node}{left}"


def running_line(t, status):
    how = job_words(status) if status.job_id else f"pid {status.pid}, {status.launcher}"
    return f"Jupyter is running ({how}) at {where(t, status.where, status.mode, status.address)}"


def config_lines(t, reply, dry_run):
    """The configuration changes of a reply (with the diffs in a dry run)."""
    lines = []
    written = [c for c in reply.changes if c.what in ("settings", "config")]
    if written:
        lines.append(said("config", dry_run, dir=t.remote_dir))
        if dry_run:
            lines += [Plain("    " + line) for c in written for line in c.diff]
    settings = reply.change("settings")
    if settings and "+FJ_SOCK=1" in settings.diff:
        lines.append(said("socket", dry_run, dir=t.remote_dir))
    tools = [c.detail for c in reply.changes if c.what == "tool"]
    if tools:
        lines.append(said("tool", dry_run, names=", ".join(tools)))
    return lines


def stopped_unrecorded(reply, dry_run=False):
    change = reply.change("stop_unrecorded")
    if change is None:
        return []
    servers = change.detail if change.detail.startswith("job") else "pid " + ", ".join(change.detail.split())
    return [said("stop_unrecorded", dry_run, servers=servers)]


def setup_lines(t, reply, dry_run):
    """What setup changed (or would) in the configuration, the password and the running server,
    from the same reply either way; the start is start_lines'."""
    lines = config_lines(t, reply, dry_run)
    if dry_run and not reply.changed("settings", "config"):
        lines.insert(0, "configuration unchanged")
    if reply.unchanged:
        return lines
    password = reply.change("password")
    if password and password.detail:
        lines.append(said("password_from", dry_run, detail=password.detail, fab_password=t.fab("password")))
    elif password:
        lines.append(said("password", dry_run, verb="replace" if reply.status.has_password else "set"))
    image = reply.change("image")
    if image:
        lines.append(said("image", dry_run, image=image.detail))
    stop = reply.change("stop")
    if stop:
        lines.append(said("restart", dry_run, process=process(stop.detail)))
    return lines


def start_lines(t, reply, dry_run=False):
    """What was started where (or, in a dry run, would be), and the root directory made for it."""
    start = reply.change("start")
    lines = [f"note: {reply.note}"] if reply.note and not dry_run else []
    root = reply.change("root_dir")
    if root:
        lines.append(said("root_dir", dry_run, dir=root.detail))
    if start is None:
        return lines
    status = reply.status
    if dry_run:
        lines.append(said("start", True, how=start.detail))
        if start.diff:
            lines += ["the batch script it would submit:"] + [Plain("    " + line) for line in start.diff]
        return lines
    if not names_socket(status.where) and status.port != t.settings.port:
        lines.append(f"port {t.settings.port} is taken on the host; Jupyter uses {status.port} instead")
    fast = "; fast_start" if status.fast_start else ""
    how = job_words(status) if status.job_id else f"pid {status.pid}, {status.launcher}{fast}"
    lines.append(said("start", False, how=f"{status.version or 'Jupyter'}; {how}", at=where(t, status.where, status.mode, status.address)))
    return lines


def cert_lines(t, outcome):
    """What happened to the certificate (or, for a dry run's outcome, would), and its fingerprint."""
    lines = list(outcome.warnings)
    if outcome.generated:
        lines.append(said("cert_made", outcome.dry, reason=outcome.generated, path=outcome.local_path))
    if outcome.pushed:
        lines.append(said("cert_installed", outcome.dry, dir=t.remote_dir))
    if not outcome.generated and not outcome.pushed:
        lines.append(said("cert_unchanged", outcome.dry))
    if not outcome.dry:
        lines.append(f"certificate fingerprint {outcome.fingerprint}")
    return lines
