"""The password task: read it once here, store only its hash on each host."""

from ..errors import user_task
from ..hosts import fleet
from ..hosts.options import GROUP_HELP, NAME_HELP, WORKERS_HELP, task
from ..ops.password import password_host, read_password


@task(
    help={
        "password-stdin": "read the password from the first line of standard input instead of prompting",
        "group": GROUP_HELP,
        "workers": WORKERS_HELP,
        "dry-run": "say whether a password would be set or replaced; asks for nothing, changes nothing",
        "name": NAME_HELP,
    }
)
@user_task
def password(c, password_stdin=False, group=None, workers=None, dry_run=False, name=None):
    """Set the Jupyter password on the host (prompted twice, or --password-stdin); only its hash is stored."""
    if dry_run:
        # asks for nothing: whichever password it is, it would be set (or replace the one there)
        return fleet.run(c, fleet.dry("password", lambda t: password_host(t, None, dry_run=True)), group, workers, name=name)
    label = "" if group else getattr(c, "original_host", "")
    secret = read_password(label, password_stdin)  # once for all hosts, before any is contacted
    fleet.run(c, lambda t: password_host(t, secret), group, workers, name=name)
