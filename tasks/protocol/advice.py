"""What to do about each message: the troubleshooting page's text (docs/generate.py), beside the
wording it explains. Documentation only: nothing imports this module at run time.

ADVICE: one entry per error code of the ERRORS table (wording.py); DETAIL: what the message's
DETAIL stands for, where a plainer word reads better. CLIENT: messages this machine writes
itself (the SSH login, host keys, the tunnel, the agent's replies), each keyed by the exact text
the code prints (`find`: a piece of it that tests/test_docs.py finds in the code). NOTES: what
is worth knowing that no single message says."""

DETAIL = {
    "unknown_instance": "NAME",
    "bad_name": "NAME",
    "no_scheduler": "sbatch",
    "submit_failed": "sbatch",
    "scheduler": "squeue",
    "job_ended": "JOB",
    "queue_timeout": "SECONDS JOB PENDING",
    "cancelled": "JOB",
    "job_unknown": "JOB",
    "port_taken": "PORT",
    "bad_launcher": "LAUNCHER",
    "no_jupyter": "",
    "no_venv": "python3",
    "no_jupyter_image": "IMAGE (COMMAND not found)",
    "no_container_runtime": "RUNTIME",
    "no_image": "IMAGE (why)",
    "container_gpus": "RUNTIME",
    "container_failed": "RUNTIME IMAGE: what it said",
    "no_python": "COMMAND",
    "unsupported": "jupyter_server VERSION",
    "root_not_dir": "PATH",
    "no_free_port": "PORT",
    "timeout": "SECONDS",
    "not_stopped": "PID",
    "bad_action": "ACTION",
}

ADVICE = {
    "no_password": "Jupyter never starts without a password. `password` sets one (prompted twice, or "
                   "`--password-stdin`); `setup` asks for one only when none is set.",
    "not_configured": "The task needs the configuration that `setup` (or `config`) writes on the host, in "
                      "`~/.fabjupyter`. Run `setup` once.",
    "no_cert": "Public mode serves HTTPS only. `setup --mode public` makes a certificate; `cert` makes one "
               "(or pushes your own with `--cert` and `--key`).",
    "unknown_instance": "The name after `--name` (or `name:` in hosts.yaml) is not an instance on that host; "
                        "the message lists those there. `setup --name NAME` creates one; `list` shows what runs.",
    "bad_name": "An instance name is a file name and a tmux session name: letters, digits, `-` and `_`, "
                "up to 40 characters, not starting with `-` or `_`.",
    "no_tmux": "Install tmux on the host, or use `--launcher nohup` (the default), which needs nothing.",
    "no_scheduler": "The batch launcher runs the scheduler's commands on the host you connect to: connect to "
                    "the cluster's login node. If the commands come from a module, `activate:` in hosts.yaml "
                    "loads it first (`module load slurm`, or the cluster's name for its scheduler's module).",
    "submit_failed": "The scheduler refused the job and said why (after the colon): often a partition, "
                     "account or time limit. Fix the options in `job_options:` (or `--job-option`) and run setup again.",
    "scheduler": "The scheduler's own command failed; the lines after the message are what it printed. "
                 "Check that the scheduler answers on the login node (`squeue`), then run again.",
    "job_ended": "The batch job ended before Jupyter answered; the lines after the message are the end of "
                 "its log. A job killed at once often means an option the cluster refuses, or Jupyter not "
                 "found on the compute node (set `activate:` or `jupyter:`).",
    "queue_timeout": "The job waited in the queue longer than `queue_timeout:` allows, so it was cancelled; "
                     "the reason in parentheses is the scheduler's. Wait longer (`--queue-timeout`, or 0 to "
                     "wait until Ctrl-C), or ask for fewer resources in `job_options:`.",
    "cancelled": "You interrupted the run (Ctrl-C) while the job waited in the queue, so the job was "
                 "cancelled. Run setup again when you want it.",
    "port_taken": "Another program took the port on the compute node between the check and Jupyter's "
                  "start. Nothing had logged in; run setup again, which chooses a free port again.",
    "bad_launcher": "Use one of the launchers the message lists (`--launcher` or `launcher:` in hosts.yaml).",
    "no_jupyter": "Jupyter is not on the PATH of a non-interactive SSH command (SSH commands do not read "
                  "your `~/.bashrc`). Set `jupyter:` to its full path (`~/venv/bin/jupyter lab`), or "
                  "`activate:` to what your `.bashrc` would do, or let setup install JupyterLab "
                  "(`setup --install`).",
    "no_jupyter_image": "Jupyter is looked for inside the image as on a host: the command `jupyter:` names, else "
                        "`jupyter lab`, `jupyter notebook` or `jupyter server` on the image's PATH (podman: the PATH "
                        "the image sets; Apptainer and Charliecloud: your session's). Set `jupyter:` to the full path "
                        "inside the image.",
    "no_container_runtime": "`container:` asks for Jupyter from an image, and no runtime was found on the host's PATH "
                            "after the activate line: apptainer, singularity, podman or ch-run (`container_runtime: "
                            "auto` tries them in that order), or the one `container_runtime:` names. On a cluster "
                            "the runtime often comes from a module: `activate: module load apptainer`.",
    "no_image": "The image `container:` names was not found: a path on the host (a `.sif` file, a directory image, "
                "`~/` for your home) or, for podman, an image in your own storage (`podman images` lists them; "
                "this tool never pulls one). Nothing was changed on the host.",
    "container_gpus": "`gpus: true` is given to Apptainer and Singularity as `--nv` and to podman as the CDI device "
                      "`nvidia.com/gpu=all`; Charliecloud has no such option: `ch-fromhost --nvidia IMAGE` puts the "
                      "host's GPU libraries into the image once, then leave `gpus:` off.",
    "container_failed": "The runtime failed before Jupyter was started: asked about the image, or started with "
                        "`sh` in it to look for Jupyter; what it said is after the colon (podman's own advice, such "
                        "as `podman system migrate`, included). Try the same by hand on the host (`podman run --rm IMAGE true`, "
                        "`ch-run IMAGE -- true`, `apptainer exec IMAGE true`).",
    "no_venv": "The host's Python lacks the venv module that `--install` needs. Install it there (on "
               "Debian and Ubuntu, the `python3-venv` package), then run setup again.",
    "install_failed": "pip could not install what `install_spec:` asks for; the lines after the message "
                      "are what it printed. Nothing was changed on the host. `install_from: here` sends the "
                      "wheels from this machine when the host cannot reach a package index.",
    "no_python": "The agent runs in Jupyter's own Python, and that was not found (nor a `python3`). "
                 "Set `jupyter:` to the jupyter command inside its environment, e.g. `~/venv/bin/jupyter lab`.",
    "no_python_agent": "Install `python3` on the host, or run `setup` once: it records Jupyter's Python for the "
                       "other tasks. `activate:` that brings Jupyter's environment also works.",
    "unsupported": "An old Jupyter (Notebook before 6.1, or no jupyter_server at all). Upgrade it on the "
                   "host, e.g. `pip install -U jupyterlab`.",
    "activate_failed": "The lines after the message are everything the activate line printed. For conda in a "
                       'shell that was never initialised: `activate: eval "$(~/miniconda3/bin/conda shell.posix '
                       'hook)" && conda activate ml`.',
    "root_not_dir": "`root_dir:` (or `--root-dir`) names a file, not a directory. Choose another path; "
                    "a missing directory is created (mode 0700).",
    "cannot_write": "This tool writes its files under `~/.fabjupyter` on the host. Check the free space "
                    "(`df -h ~`) and that the home directory is writable.",
    "no_free_port": "No port was free from the one asked for upwards. Choose another with `--port` "
                    "(or `port:` in hosts.yaml).",
    "died": "The log lines after the message say why Jupyter stopped; `logs --lines 200` shows more.",
    "timeout": "Jupyter did not answer in time and was stopped; the log lines after the message show how "
               "far it got. A slow file system or a first start that builds caches may need more time: "
               "`start_timeout:` in hosts.yaml.",
    "launch_failed": "The launcher could not start Jupyter; the message says what it reported. With tmux, "
                     "check that `tmux` runs there; with a batch job, check the `job_options:`.",
    "unsafe": "A key in your own Jupyter config (named in the message) changes what this tool set; the server "
              "was stopped before anyone could use it. Remove that key from `~/.jupyter/*` or the "
              "environment's `etc/jupyter/*`.",
    "not_stopped": "The process is stuck in the kernel (state D, often a hung network file system) and no "
                   "signal ends it. Run `stop` again once the system lets it go, or ask the host's administrators.",
    "locked": "Another run of yours (setup, stop or restart) still works on that host. Wait until it has "
              "finished and run again; `status` shows `busy` meanwhile.",
    "protocol": "Two versions of this tool are mixed (an old checkout on the PATH, say). Use one version "
                "on this machine; the agent travels with each run, so the host needs nothing.",
    "bad_action": "Two versions of this tool are mixed, or a bug: run again with one version, and report it "
                  "if it stays.",
    "bad_request": "Two versions of this tool are mixed, or a bug: run again with one version, and report it "
                   "if it stays.",
    "job_unknown": "The scheduler's query command kept failing (its controller down or restarting): while "
                   "setup waited, for ten minutes or past the wait's own limit; or while stop waited for the job "
                   "to go. The lines after the message are what it said. A failing query never counts as an "
                   "ended job, so nothing was cancelled on it and the job is still recorded: `status` shows its "
                   "state once the scheduler answers, `stop` cancels it, setup again keeps it when it runs.",
}

# title: the heading; message: as the user sees it, with HOST and the like for what varies; find: a literal piece of
# the code's text (tests/test_docs.py checks it is in tasks/); anchor: the page's anchor for it.
CLIENT = [
    {"anchor": "unknown-host-key", "title": "unknown host key for HOST",
     "message": "HOST: unknown host key for HOST (FINGERPRINT); if it is right, run again with --accept-new-host-key "
                "(or FABRIC_JUPYTER_ACCEPT_NEW_HOST_KEY=1, or StrictHostKeyChecking accept-new in ssh_config)",
     "find": "unknown host key for ",
     "advice": "The host's key is not in your known_hosts. Check the fingerprint with the host's administrator, "
               "then run `setup --accept-new-host-key`, or `ssh HOST` once."},
    {"anchor": "host-key-changed", "title": "the host key of HOST has CHANGED",
     "message": "HOST: the host key of HOST has CHANGED (FINGERPRINT; known_hosts says otherwise at FILE:LINE); "
                "this may be an impostor. Check the new key with the host's administrator; if the change is "
                "expected, remove the old line: ssh-keygen -f FILE -R HOST",
     "find": "has CHANGED (",
     "advice": "Check the new fingerprint with the host's administrator. If the server was reinstalled, remove "
               "the old line with the command the message gives; otherwise do not connect. "
               "`--accept-new-host-key` never replaces a known key."},
    {"anchor": "local-port-busy", "title": "local port PORT is busy",
     "message": "HOST: local port PORT is busy; choose another with --local-port",
     "find": "is busy; choose another with --local-port",
     "advice": "Another program on this machine (often an older tunnel) holds the port you asked for: "
               "`tunnel --local-port 8899`, or `local_port:` in hosts.yaml. A port from hosts.yaml that is "
               "busy moves to the next free one by itself, and the tunnel says so."},
    {"anchor": "no-terminal", "title": "the host asks for interactive authentication and there is no terminal",
     "message": "HOST: the host asks for interactive authentication (a one-time code or password) and there is no "
                "terminal to ask on; run this from a terminal (once, with multiplex: true in hosts.yaml, to keep "
                "that login for later runs)",
     "find": "the host asks for interactive authentication",
     "advice": "Run it from a terminal once with `multiplex: true` in hosts.yaml: the login is kept for 10 "
               "minutes and serves scripts meanwhile. Your own `ControlMaster`/`ControlPersist` in ssh_config "
               "works too."},
    {"anchor": "answer-refused", "title": "the server did not accept the answer to its prompt",
     "message": "HOST: the server did not accept the answer to its prompt (a one-time code or password); nothing "
                "was changed; run again with a new code",
     "find": "the server did not accept the answer to its prompt",
     "advice": "A mistyped code, or one already used (servers with `DISALLOW_REUSE` take each code once): "
               "wait for the next code and run again."},
    {"anchor": "reply-not-understood", "title": "the agent's reply was not understood",
     "message": "HOST: ACTION: the agent's reply was not understood (DETAIL); is this tool installed twice, "
                "in two versions?",
     "find": "the agent's reply was not understood",
     "advice": "Two versions of this tool are mixed (an old checkout on the PATH, say); the message names the "
               "key it did not understand. Use one version."},
    {"anchor": "waiting-for-another-run", "title": "waiting for another fabjupyter run there to finish",
     "message": "HOST: waiting for another fabjupyter run there to finish: OWNER (up to SECONDS s)",
     "find": "waiting for another fabjupyter run there to finish",
     "advice": "Not an error: another setup, stop or restart of yours runs on that host, and this one goes on "
               "when it ends. If it does not end in time, the run stops with "
               "[another fabjupyter run there still holds its lock](#locked)."},
    {"anchor": "password-restart-to-apply", "title": "the running Jupyter still uses the old password",
     "message": "the running Jupyter still uses the old password; `fab -H HOST restart` applies it",
     "find": "the running Jupyter still uses the old password",
     "advice": "`password` stored the new password's hash; the running server reads it only when it starts: "
               "run `restart` when it suits you."},
    {"anchor": "restart-to-apply", "title": "the running Jupyter uses the old configuration",
     "message": "the running Jupyter uses the old configuration; `fab -H HOST restart` applies it",
     "find": "the running Jupyter uses the old configuration",
     "advice": "`config` wrote a change that the running server reads only when it starts: "
               "run `restart` when it suits you. `setup` restarts it for you."},
]

NOTES = [
    {"anchor": "socket-already-exists",
     "title": "`ControlSocket ... already exists, disabling multiplexing` from your own ssh",
     "text": "OpenSSH prints this when a master was killed and left its socket behind. This tool removes such "
             "leftovers at its own paths before it starts a master."},
    {"anchor": "shell-wrapper",
     "title": "A `jupyter:` that is a shell wrapper",
     "text": "Module systems and container runners work: the agent then runs in `python3` (it runs in "
             "Jupyter's own Python when the command is a Python script, to see what Jupyter sees; pip's "
             "`#!/bin/sh` form for long interpreter paths is understood), and Jupyter starts through the wrapper."},
    {"anchor": "exit-status",
     "title": "Exit statuses",
     "text": "An error ends as one line on stderr naming the host and what to do, with exit status 1 "
             "(130 after Ctrl-C at a prompt)."},
]
