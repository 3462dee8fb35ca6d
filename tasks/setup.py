"""setup: configuration, password (only if none is set), start, wait until Jupyter answers."""

from invoke import task

from . import fleet
from .cert import describe_cert, ensure_cert
from .config import REMOTE_DIR, config_values
from .errors import user_task
from .fleet import DRY_RUN_HELP, GROUP_HELP, WORKERS_HELP, Outcome
from .plan import plan
from .password import fresh_hash, hash_password, read_password
from .remote import run_agent
from .server import LAUNCHER_HELP, PORT_HELP, describe_running, describe_start, location, stopped_unrecorded, url_for


def run_setup(t, password_stdin=False, password=None):
    """Bring the host to the wanted state in as few SSH sessions as possible (usually one).

    The agent checks everything first and changes nothing when the running server already uses
    the wanted configuration. It asks back only for a password when none is stored, or for the
    stored salt when a password is given again (to tell an unchanged password from a new one)."""
    values = config_values(t.settings)
    if password is None and password_stdin:
        password = read_password(t.label, True)
    if password:
        values["FJ_PASSWORD_HASH"] = fresh_hash(password)
    reply = run_agent(t, "setup", **values)
    if reply.flag("need_password"):
        password = read_password(t.label, password_stdin)
        values["FJ_PASSWORD_HASH"] = fresh_hash(password)
        reply = run_agent(t, "setup", **values)
    if "password_salt" in reply.values:
        stopped = reply["stopped_unrecorded"]  # a round that only asked for the salt may have done that
        values["FJ_PASSWORD_HASH"] = hash_password(password, salted=reply["password_salt"] or None)
        values["FJ_SALTED"] = "1"
        reply = run_agent(t, "setup", **values)
        if stopped:
            reply.values["stopped_unrecorded"] = " ".join(filter(None, [stopped, reply["stopped_unrecorded"]]))
    return reply


def setup_host(t, password_stdin=False, command=None):
    certificate = None
    password = read_password(t.label, True) if password_stdin else None
    lines = []
    if t.settings.mode == "public":

        def password_first(facts):
            # public mode never runs without a password: have one before installing a certificate
            nonlocal password
            if password is None and not facts.flag("has_password"):
                password = read_password(t.label, False)

        certificate = ensure_cert(t, before_change=password_first)
        if certificate.generated or certificate.pushed:
            lines += describe_cert(t, certificate)[:-1]
    reply = run_setup(t, password_stdin, password)
    url = url_for(t, location(reply), reply["mode"])
    lines += stopped_unrecorded(t, reply)
    if reply.flag("unchanged"):
        lines.append(f"{t.label}: nothing changed; " + describe_running(t, reply)[len(t.label) + 2 :])
        summary = "unchanged"
    else:
        if reply.flag("config_changed"):
            lines.append(f"{t.label}: configuration written to {REMOTE_DIR}")
        if reply.flag("password_changed"):
            lines.append(f"{t.label}: password set (only its hash is stored, mode 0600)")
        if reply["restarted"]:
            lines.append(f"{t.label}: stopped the running Jupyter (pid {reply['restarted']}) to apply the changes")
        lines += describe_start(t, reply)
        summary = "restarted" if reply["restarted"] else "started"
    command = command or f"fab -H {t.label}"
    if certificate:
        lines.append(
            f"{t.label}: open {url} and log in with your password; the certificate's SHA-256 fingerprint is {certificate.fingerprint}"
        )
        lines.append(f"Or: {command} tunnel")
    else:
        lines.append(f"Next: {command} tunnel   (then open the URL it prints and log in with your password)")
    return Outcome(lines, summary, url)


def dry_setup(t, password_given):
    outcome = plan(t, starting=True, password_given=password_given)
    if t.settings.mode == "public":
        outcome.lines[:0] = describe_cert(t, ensure_cert(t, dry_run=True))
    return outcome


def fab_prefix(c, label):
    words = ["fab"]
    ssh_config = getattr(c.config, "_runtime_ssh_path", None)
    if ssh_config:
        words += ["-S", ssh_config]
    return " ".join(words + ["-H", label])


@task(
    help={
        "launcher": LAUNCHER_HELP,
        "port": PORT_HELP,
        "root-dir": "Jupyter's root directory on the remote (default ~; created 0700 if missing)",
        "password-stdin": "read the password from the first line of standard input (used only if none is set, or to change it)",
        "mode": "ssh (127.0.0.1, reached through the tunnel; default) or public (all interfaces, TLS and password)",
        "group": GROUP_HELP,
        "workers": WORKERS_HELP,
        "accept-new-host-key": "trust and record the host key of a host never seen before (a changed key is always refused)",
        "socket": "listen on a Unix socket (0600, in a 0700 directory) instead of a port; the tunnel forwards to it",
        "dry-run": DRY_RUN_HELP,
    }
)
@user_task
def setup(
    c, launcher=None, port=None, root_dir=None, password_stdin=False, mode=None, group=None, workers=8,
    accept_new_host_key=False, socket=False, dry_run=False,
):
    """Set up Jupyter on the host: config, password, start, wait until it answers."""
    if dry_run:
        options = dict(launcher=launcher, port=port, root_dir=root_dir, mode=mode, socket=socket or None)
        return fleet.run(c, lambda t: dry_setup(t, password_stdin), group, workers, **options)
    if accept_new_host_key:
        c.config.jupyter.accept_new_host_key = True
    if password_stdin:
        read_password("", True)  # once, before any host is contacted
    fleet.run(
        c,
        lambda t: setup_host(t, password_stdin, fab_prefix(c, t.label)),
        group,
        workers,
        launcher=launcher,
        port=port,
        root_dir=root_dir,
        mode=mode,
        socket=socket or None,
    )
