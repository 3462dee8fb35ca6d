"""The cert task: a TLS certificate for public mode, made here or your own, installed on the host."""

from ..errors import UserError, user_task
from ..hosts import fleet
from ..hosts.options import DRY_RUN_HELP, GROUP_HELP, NAME_HELP, WORKERS_HELP, task
from ..ops.cert import cert_host


@task(
    help={
        "days": "validity of a new certificate in days (default 365)",
        "san": "an extra name (DNS or IP) for the subjectAltName; repeatable",
        "name": NAME_HELP,
        "force": "make a new certificate even if the current one is fine",
        "cert": "push your own certificate (PEM) instead of generating one; needs --key",
        "key": "the unencrypted PEM private key for --cert",
        "group": GROUP_HELP,
        "workers": WORKERS_HELP,
        "dry-run": DRY_RUN_HELP,
    },
    iterable=["san"],
)
@user_task
def cert(c, days=365, san=None, force=False, cert=None, key=None, group=None, workers=None, dry_run=False, name=None):
    """Create (or push your own) TLS certificate for public mode; prints its SHA-256 fingerprint."""
    if days < 1:
        raise UserError("--days: must be at least 1")
    for n in san or []:
        if not n.strip():
            raise UserError("--san: must not be empty")
    core = lambda t: cert_host(t, days, san or (), force, cert, key, dry_run)  # noqa: E731
    fleet.run(c, fleet.dry("cert", core) if dry_run else core, group, workers, name=name)
