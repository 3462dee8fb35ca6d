"""The setup task: configuration, password (only if none is set), start, wait until Jupyter answers."""

from ..errors import UserError, user_task
from ..hosts import fleet
from ..hosts.options import (
    CONTAINER_HELP, CONTAINER_RUNTIME_HELP, DRY_RUN_HELP, FAST_START_HELP, GPUS_HELP, GROUP_HELP, IDLE_HELP, INSTALL_HELP, LAUNCHER_HELP, MODE_HELP, NAME_HELP, PORT_HELP, QUEUE_TIMEOUT_HELP, ROOT_DIR_HELP,
    SBATCH_HELP, SOCKET_HELP, TCP_HELP, WORKERS_HELP, JOB_OPTION_HELP, job_options, listen_on, task,
)
from ..ops.password import read_password
from ..ops.setup import setup_host
from ..ops.ssh_entry import flush


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
        "root-dir": ROOT_DIR_HELP,
        "password-stdin": "read the password from the first line of standard input (used only if none is set, or to change it)",
        "mode": MODE_HELP,
        "group": GROUP_HELP,
        "workers": WORKERS_HELP,
        "accept-new-host-key": "trust and record the host key of a host never seen before (a changed key is always refused)",
        "socket": SOCKET_HELP,
        "tcp": TCP_HELP,
        "dry-run": DRY_RUN_HELP,
        "fast-start": FAST_START_HELP,
        "name": NAME_HELP,
        "idle-timeout": IDLE_HELP,
        "job-option": JOB_OPTION_HELP,
        "sbatch": SBATCH_HELP,
        "queue-timeout": QUEUE_TIMEOUT_HELP,
        "install": INSTALL_HELP,
        "upgrade": "with --install: upgrade that environment (restarting Jupyter only if its version changed)",
        "container": CONTAINER_HELP,
        "container-runtime": CONTAINER_RUNTIME_HELP,
        "gpus": GPUS_HELP,
    },
    iterable=["job_option", "sbatch"],
)
@user_task
def setup(
    c, launcher=None, port=None, root_dir=None, password_stdin=False, mode=None, group=None, workers=None,
    accept_new_host_key=False, socket=False, tcp=False, dry_run=False, fast_start=False, name=None, idle_timeout=None, job_option=None,
    sbatch=None, queue_timeout=None, install=False, upgrade=False, container=None, container_runtime=None, gpus=False,
):
    """Set up Jupyter on the host: config, password, start, wait until it answers."""
    if accept_new_host_key and not dry_run:
        c.config.jupyter.accept_new_host_key = True
    if password_stdin:
        read_password("", True)  # once, before any host is contacted
    def core(t):
        if upgrade and not t.settings.install:
            raise UserError("--upgrade upgrades the environment --install made: give --install too (or install: true)")
        return setup_host(t, password_stdin, fab_prefix(c, t.host), dry_run, upgrade)

    with flush():  # then the hosts' entries in this tool's ssh_config file, in one write
        fleet.run(
            c,
            fleet.dry("setup", core) if dry_run else core,
            group,
            workers,
            launcher=launcher,
            port=port,
            root_dir=root_dir,
            mode=mode,
            socket=listen_on(socket, tcp),
            fast_start=fast_start or None,
            name=name,
            idle_timeout=idle_timeout,
            job_options=job_options(job_option, sbatch),
            queue_timeout=queue_timeout,
            install=install or None,
            container=container,
            container_runtime=container_runtime,
            gpus=gpus or None,
        )
