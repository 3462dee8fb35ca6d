"""setup on one host: configuration, password (only if none is set), start, wait until Jupyter answers."""

import dataclasses

from ..protocol import run_agent
from ..report import Outcome, Plain
from .cert import ensure_cert
from .config import settings_sh, wanted
from .install import install_host
from .password import fresh_hash, hash_password, read_password
from .render import cert_lines, setup_lines, stopped_unrecorded, url_for
from .server import describe_running, describe_start
from .ssh_entry import note_running


def run_setup(t, password_stdin=False, password=None, dry_run=False, upgrade=False):
    """Bring the host to the wanted state in as few SSH sessions as possible (usually one); a
    dry run takes the same path with the agent's writes skipped.

    The agent checks everything first and changes nothing when the running server already uses
    the wanted configuration. It asks back only for a password when none is stored, or for the
    stored salt when a password is given again (to tell an unchanged password from a new one),
    or, with install: true and no Jupyter there, for an installation (install.py).

    Returns the reply and the lines about an installation."""
    request = dict(wanted(t.settings), dry_run=dry_run)
    if password is None and password_stdin:
        password = read_password(t.label, True)
    if password:
        request["password_hash"] = fresh_hash(password)
    installed = []
    if upgrade:
        facts = run_agent(t, "install", settings_sh(t.settings), probe=True, install=True).facts
        if facts.exists:
            installed, before, after = install_host(t, facts, dry_run, upgrade=True)
            request["upgraded"] = before != after  # a new version restarts Jupyter; the same one does not
        else:
            installed.append("--upgrade: this tool has no environment there to upgrade (Jupyter there is not its own)")
    reply = run_agent(t, "setup", **request)
    if reply.ask == "install":
        lines, _, _ = install_host(t, reply.install, dry_run)
        installed += lines
        if dry_run:
            return reply, installed
        reply = run_agent(t, "setup", **request)
    if reply.ask == "password":
        password = read_password(t.label, password_stdin)
        request["password_hash"] = fresh_hash(password)
        reply = run_agent(t, "setup", **request)
    if reply.ask == "salt":
        stopped = reply.change("stop_unrecorded")  # a round that only asked for the salt may have done that
        request["password_hash"] = hash_password(password, salted=reply.salt or None)
        request["salted"] = True
        reply = run_agent(t, "setup", **request)
        if stopped:
            reply = dataclasses.replace(reply, changes=(stopped, *reply.changes))
    return reply, installed


def setup_host(t, password_stdin=False, command=None, dry_run=False, upgrade=False):
    certificate = None
    password = read_password(t.label, True) if password_stdin else None
    lines = []
    if t.settings.mode == "public":

        def password_first(facts):
            # public mode never runs without a password: have one before installing a certificate
            nonlocal password
            if password is None and not facts.has_password:
                password = read_password(t.label, False)

        certificate = ensure_cert(t, before_change=password_first, dry_run=dry_run, new_instance=True)
        if dry_run:
            lines += cert_lines(t, certificate)
        elif certificate.generated or certificate.pushed:
            lines += cert_lines(t, certificate)[:-1]  # the fingerprint is said with the URL
    reply, installed = run_setup(t, password_stdin, password, dry_run, upgrade)
    lines += installed
    if reply.ask == "install":  # a dry run on a host without Jupyter: the rest depends on what is installed
        return Outcome(lines + ["then would write the configuration, set the password and start Jupyter from it"], "would change")
    status = reply.status
    lines += stopped_unrecorded(reply, dry_run)
    changes = setup_lines(t, reply, dry_run)  # the same lines for a dry run, in the future tense
    if dry_run:
        after = [f"Jupyter would keep running (pid {status.pid})"] if reply.unchanged else describe_start(t, reply, dry_run=True)
        return Outcome(lines + changes + after, "nothing to change" if reply.unchanged and not lines else "would change")
    url = url_for(t, status.where, status.mode, status.address)
    note_running(t, status)
    if reply.unchanged:
        lines += ["nothing changed; " + describe_running(t, status), *changes]
        summary = "unchanged"
    else:
        lines += changes + describe_start(t, reply)
        summary = "restarted" if reply.change("stop") else "started"
    command = command or f"fab -H {t.host}"
    if certificate:
        lines.append(f"open {url} and log in with your password; the certificate's SHA-256 fingerprint is {certificate.fingerprint}")
        lines.append(Plain(f"Or: {command} tunnel{t.named}"))
    else:
        lines.append(Plain(f"Next: {command} tunnel{t.named}   (then open the URL it prints and log in with your password)"))
    return Outcome(lines, summary, url)

