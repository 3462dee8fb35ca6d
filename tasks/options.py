"""Help texts of the options that several tasks share."""

GROUP_HELP = "run on every host of this hosts.yaml group, in parallel (instead of -H)"
WORKERS_HELP = "how many hosts at once with --group (default 8)"
DRY_RUN_HELP = "show what would change (a diff for the configuration) and change nothing, not even an upload"
LAUNCHER_HELP = "how Jupyter is detached from the SSH session: nohup (default) or tmux"
PORT_HELP = "remote port (default 8888; the next free one if taken, and reported)"
ROOT_DIR_HELP = "Jupyter's root directory on the remote (default ~; created 0700 if missing)"
MODE_HELP = "ssh (127.0.0.1, reached through the tunnel; default) or public (all interfaces, TLS and password)"
FAST_START_HELP = ("start Jupyter through this tool's boot.py, which skips two start-up costs inside it "
                   "(about a second; off by default: Jupyter then runs exactly as its own script would)")
