"""The tasks that run Jupyter detached on the host: start, stop, restart, status, list, logs."""

from ..errors import UserError, user_task
from ..hosts import fleet
from ..hosts.options import (
    DRY_RUN_HELP, FAST_START_HELP, GROUP_HELP, LAUNCHER_HELP, NAME_HELP, PORT_HELP, QUEUE_TIMEOUT_HELP, RESTART_LAUNCHER_HELP,
    SBATCH_HELP, WORKERS_HELP, JOB_OPTION_HELP, job_options, task,
)
from ..hosts.targets import target
from ..ops.ssh_entry import flush
from ..ops.server import list_host, restart_host, start_host, status_host, stop_all_host, stop_host
from ..protocol import run_agent


@task(help={"launcher": LAUNCHER_HELP, "port": PORT_HELP, "group": GROUP_HELP, "workers": WORKERS_HELP,
            "dry-run": DRY_RUN_HELP, "fast-start": FAST_START_HELP, "name": NAME_HELP, "job-option": JOB_OPTION_HELP,
            "sbatch": SBATCH_HELP, "queue-timeout": QUEUE_TIMEOUT_HELP}, iterable=["job_option", "sbatch"])
@user_task
def start(c, launcher=None, port=None, group=None, workers=None, dry_run=False, fast_start=False, name=None, job_option=None,
          sbatch=None, queue_timeout=None):
    """Start Jupyter detached on the host and wait until it answers; does nothing if it runs."""
    core = lambda t: start_host(t, dry_run)  # noqa: E731
    with flush():
        fleet.run(c, fleet.dry("start", core) if dry_run else core, group, workers, launcher=launcher, port=port,
                  fast_start=fast_start or None, name=name, job_options=job_options(job_option, sbatch),
                  queue_timeout=queue_timeout)


@task(help={"group": GROUP_HELP, "workers": WORKERS_HELP, "dry-run": DRY_RUN_HELP, "name": NAME_HELP,
            "all": "stop every instance on the host"})
@user_task
def stop(c, group=None, workers=None, dry_run=False, name=None, all_=False):
    """Stop Jupyter on the host (and its tmux session); no process is left behind."""
    if all_ and name is not None:
        raise UserError("give either --name NAME or --all, not both")
    core = (lambda t: stop_all_host(t, dry_run)) if all_ else (lambda t: stop_host(t, dry_run))
    fleet.run(c, fleet.dry("stop", core) if dry_run else core, group, workers, name=name)


@task(
    help={"launcher": RESTART_LAUNCHER_HELP, "port": PORT_HELP, "group": GROUP_HELP,
          "workers": WORKERS_HELP, "fast-start": FAST_START_HELP, "name": NAME_HELP, "job-option": JOB_OPTION_HELP,
          "sbatch": SBATCH_HELP, "queue-timeout": QUEUE_TIMEOUT_HELP},
    iterable=["job_option", "sbatch"],
)
@user_task
def restart(c, launcher=None, port=None, group=None, workers=None, fast_start=False, name=None, job_option=None, sbatch=None,
            queue_timeout=None):
    """Stop Jupyter if it runs, then start it with the current configuration (a batch job: resubmitted)."""
    with flush():
        fleet.run(c, lambda t: restart_host(t, keep_launcher=launcher is None), group, workers, launcher=launcher, port=port,
                  fast_start=fast_start or None, name=name, job_options=job_options(job_option, sbatch),
                  queue_timeout=queue_timeout)


@task(help={"json": "print one JSON object per host instead of a sentence", "group": GROUP_HELP, "workers": WORKERS_HELP,
            "name": NAME_HELP})
@user_task
def status(c, json_=False, group=None, workers=None, name=None):
    """Tell whether Jupyter runs on the host, with its pid, port, URL and launcher."""
    fleet.run(c, status_host, group, workers, as_json=json_, name=name)


@task(name="list", help={"json": "one JSON object per server (one per line) instead of a table", "group": GROUP_HELP,
                         "workers": WORKERS_HELP})
@user_task
def list_(c, json_=False, group=None, workers=None):
    """List every Jupyter server on the host: this tool's instances, and yours it did not start."""
    fleet.run(c, list_host, group, workers, as_json=json_)


@task(help={"lines": "how many of the last lines to show (default 50)", "name": NAME_HELP})
@user_task
def logs(c, lines=50, name=None):
    """Show the last lines of Jupyter's log on the host."""
    t = target(c, name=name)
    if lines < 1:
        raise UserError("--lines: must be at least 1")
    reply = run_agent(t, "logs", lines=lines)
    if not reply.exists:
        print(f"{t.label}: no log yet (Jupyter has not been started by this tool)")
    elif reply.lines:
        print("\n".join(reply.lines))
