"""The ssh-config task: this tool's own ssh_config file, so that `ssh fabjupyter-HOST` (and an
IDE's Remote-SSH) reaches the host, or a batch job's node, and forwards Jupyter."""

from ..errors import user_task
from ..hosts import fleet
from ..hosts.options import GROUP_HELP, NAME_HELP, WORKERS_HELP, task
from ..ops.ssh_entry import ssh_config_host


@task(name="ssh-config", help={"name": NAME_HELP, "group": GROUP_HELP, "workers": WORKERS_HELP,
                               "json": "print one JSON object per host instead of sentences"})
@user_task
def ssh_config(c, name=None, group=None, workers=None, json_=False):
    """Write the host's entry for `ssh fabjupyter-HOST` (a batch job's: to its node), Jupyter forwarded; print the Include line."""
    fleet.run(c, ssh_config_host, group, workers, as_json=json_, name=name)
