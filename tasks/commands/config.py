"""The config task: write this tool's Jupyter configuration on the host."""

from ..errors import user_task
from ..hosts import fleet
from ..hosts.options import (
    CONTAINER_HELP, CONTAINER_RUNTIME_HELP, DRY_RUN_HELP, GPUS_HELP, GROUP_HELP, IDLE_HELP, MODE_HELP, NAME_HELP, ROOT_DIR_HELP,
    SOCKET_HELP, TCP_HELP, WORKERS_HELP, listen_on, task,
)
from ..ops.config import config_host


@task(
    help={
        "root-dir": ROOT_DIR_HELP,
        "mode": MODE_HELP,
        "group": GROUP_HELP,
        "workers": WORKERS_HELP,
        "socket": SOCKET_HELP,
        "tcp": TCP_HELP,
        "dry-run": DRY_RUN_HELP,
        "name": NAME_HELP,
        "idle-timeout": IDLE_HELP,
        "container": CONTAINER_HELP,
        "container-runtime": CONTAINER_RUNTIME_HELP,
        "gpus": GPUS_HELP,
    }
)
@user_task
def config(
    c, root_dir=None, mode=None, group=None, workers=None, socket=False, tcp=False, dry_run=False, name=None, idle_timeout=None,
    container=None, container_runtime=None, gpus=False,
):
    """Write the Jupyter configuration on the host (~/.fabjupyter); your own files stay as they are."""
    core = lambda t: config_host(t, dry_run)  # noqa: E731
    fleet.run(c, fleet.dry("config", core) if dry_run else core, group, workers, root_dir=root_dir, mode=mode,
              socket=listen_on(socket, tcp), name=name, idle_timeout=idle_timeout,
              container=container, container_runtime=container_runtime, gpus=gpus or None)
