"""The agent's error codes as sentences for the user, in one place."""

from ..errors import HostError
from ..hosts.inventory import launcher_words

ERRORS = {
    "no_password": "no Jupyter password is set there; run `{fab} password{named}` (or `setup{named}`)",
    "not_configured": "not configured yet; run `{fab} setup{named}` (or `config{named}`)",
    "no_cert": "public mode needs a certificate and there is none; run `{fab} cert{named}` (setup --mode public makes one)",
    "unknown_instance": "no instance {detail!r} there (instances there: {known}); `{fab} setup --name {detail}` makes it",
    "bad_name": "{detail} is not an instance name (letters, digits, - and _; up to 40, not starting with - or _)",
    "no_tmux": "tmux is not installed there; install it, or use --launcher nohup",
    "no_scheduler": "{detail} is not on the PATH there (is this the cluster's login node? an `activate:` line that loads the scheduler's module, e.g. `module load slurm`, may bring it)",
    "submit_failed": "{detail} refused the job: {log_line}",
    "scheduler": "the scheduler could not be asked ({detail}):{logs}",
    "job_unknown": "the scheduler could not be asked about job {detail} for too long; the job is kept as it is, and nothing "
    "was started beside it (`{fab} status{named}` shows it once the scheduler answers; `{fab} stop{named}` cancels it). "
    "It said:{logs}",
    "job_ended": "the batch job ended before Jupyter answered: job {detail}; its log ends with:{logs}",
    "queue_timeout": "{queue_words}; cancelled it (queue_timeout: in hosts.yaml, or --queue-timeout, waits longer)",
    "cancelled": "job {detail} cancelled: this run was interrupted while it waited",
    "port_taken": "{detail} was taken by another process before Jupyter could listen on it, so the job was cancelled "
    "before any login; run setup again (it chooses a free port again)",
    "bad_launcher": "unknown launcher {detail!r}; use " + launcher_words(),
    "no_jupyter": "no Jupyter found there{detail_in}; set `jupyter:` (the command, e.g. ~/venv/bin/jupyter lab) or `activate:` (e.g. source ~/venv/bin/activate) in hosts.yaml, or let setup install JupyterLab into an environment of its own there (--install, or install: true)",
    "no_jupyter_image": "no Jupyter found in the container image {detail}; set `jupyter:` to its command inside the image "
    "(e.g. /opt/conda/bin/jupyter lab), else the image's own PATH is searched; nothing was changed",
    "no_container_runtime": "no container runtime {detail} on the PATH there; install one (apptainer, singularity, "
    "podman or Charliecloud's ch-run), or load its module with `activate:` (e.g. module load apptainer), or name the one "
    "there with container_runtime:",
    "no_image": "the container image {detail} is not there; check `container:` (a path on the host, or an image in your "
    "podman storage: `podman images`); nothing was changed",
    "container_gpus": "gpus: true, but {detail} has no option for GPUs; for Charliecloud run `ch-fromhost --nvidia IMAGE` "
    "once and set gpus: false",
    "container_failed": "the container runtime failed ({detail}); nothing was changed",
    "no_venv": "{detail} there cannot make an environment (no venv/ensurepip module); install it there, e.g. `sudo apt install {detail}-venv` (Debian/Ubuntu), then run setup again",
    "install_failed": "installing failed ({detail}); nothing was changed. It said:{logs}",
    "no_python": "cannot find the Python that runs {detail}, and there is no python3 there; set `jupyter:` to the "
    "jupyter command inside its environment, e.g. ~/venv/bin/jupyter lab",
    "no_python_agent": "there is no python3 on the host's PATH to run this tool's agent (and no Jupyter environment "
    "recorded there); install python3, or set `activate:` so that Jupyter's is found",
    "unsupported": "{detail} is not supported (this tool runs Jupyter Server 1 or 2 — JupyterLab 3/4, Notebook 7 — or classic Notebook 6.1+); upgrade it there, e.g. pip install -U jupyterlab",
    "activate_failed": "the activate line failed; fix `activate:` in hosts.yaml. It said:{output}",
    "root_not_dir": "root_dir {detail} exists but is not a directory; choose another with --root-dir",
    "cannot_write": "cannot write there ({detail}); is the disk full or the home directory read-only?",
    "no_free_port": "no free port from {detail} on; choose another with --port",
    "died": "Jupyter exited while starting; its log ends with:{logs}",
    "timeout": "Jupyter did not answer within {detail} s, so it was stopped; its log ends with:{logs} (start_timeout: in hosts.yaml waits longer)",
    "launch_failed": "could not launch Jupyter: {detail}",
    "unsafe": "Jupyter started, but not with this tool's settings: {detail}. It was stopped. A setting in your own "
    "Jupyter config (~/.jupyter, or the environment's etc/jupyter) overrides ours there; remove it",
    "not_stopped": "Jupyter (pid {detail}) is still there 10 s after SIGKILL: the system holds it (state D: I/O that "
    "does not return, such as a hung network file system). It ends when the system lets it go; run `{fab} stop{named}` "
    "again then, or ask the host's administrators",
    "locked": "another fabjupyter run there still holds its lock: {detail}; try again when it has finished",
    "protocol": "this tool's agent and client disagree ({detail})",
    "bad_action": "this tool's agent and client disagree (no action {detail!r})",
    "bad_request": "this tool's agent and client disagree on a request ({detail})",
}


def queue_words(error):
    """queue_timeout's detail, "SECONDS JOB STATE", as a sentence."""
    words = error.detail.split()
    if error.code != "queue_timeout" or len(words) != 3:
        return ""
    reason = f" ({error.log[0]})" if error.log else ""
    return f"job {words[1]} was still {words[2]}{reason} after {words[0]} s in the queue"


def indented(lines):
    return "".join("\n    " + line for line in lines) or " (empty)"


class RemoteError(HostError):
    """A failure the agent reported with an error code; the message is written here, in one place."""

    def __init__(self, t, error, stderr=""):
        self.error = error
        template = ERRORS.get(error.code, "failed: {code} {detail}")
        output = [line for line in stderr.splitlines() if line.strip()][-10:]
        message = template.format(
            fab=f"fab -H {t.host}", named=t.named, known=", ".join(error.log), code=error.code, detail=error.detail, logs=indented(error.log), output=indented(output),
            detail_in=f" ({error.detail!r} not found)" if error.detail else "",
            queue_words=queue_words(error), log_line="; ".join(error.log),
        )
        super().__init__(t.label, message)
