"""setup with a container image (--containers): rootless podman and Charliecloud's ch-run, with the
test images (tests/images.py), at the proxy's RTT, against starting the same Jupyter in the same
image by hand over one SSH login until it answers."""

import shlex
import shutil
import subprocess
import time

from tasks.remote.containers import RUNTIMES, Call
from tests import images
from tests.sshhost import kill_pids

from .harness import PASSWORD, USER, turns, until_authenticated, wait_api
from .install import WAIT_API

FLOOR_PORT = 18893  # the floor's Jupyter, on the host's loopback (this machine's: 127.0.0.1)


def keep_storage_reset(b):
    """The account with nothing of this tool's and no process, its podman storage kept."""
    home = b.host.users[USER].home
    # containers first, by podman (a conmon killed leaves its container for dead, and the next
    # --replace of that name waits for an exit that never comes)
    images.as_account(b.host.users[USER].name, "podman", "rm", "--all", "--force", "--time", "2")
    kill_pids(lambda: [p for p in b.host.processes(USER) if not podman_pause(p)], timeout=5.0, survivors_fail=False)
    for child in home.iterdir():
        if child.name != ".local":
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


def podman_pause(pid):
    """Whether PID is rootless podman's pause process (one per account, holding its user
    namespace; killed, podman refuses to work until `podman system migrate`)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip() in ("catatonit", "podman pause")
    except OSError:
        return False


def container_figures(b):
    """For each runtime: setup from nothing (the image probed, the configuration written, Jupyter
    started in the image and answering) and setup after a stop (the probe kept), against the
    floor: one `ssh host sh -c` that starts the same Jupyter in the same image, with the runtime's
    command line from the same table, until its /api answers."""
    rtt = b.rtt
    at = f"{rtt * 1000:.0f} ms RTT"
    account, uid = b.host.users[USER].name, b.host.users[USER].uid
    home = str(b.host.users[USER].home)
    images.forget_podman(uid)  # what an earlier account with this uid left in /tmp
    cases = (("podman", images.podman_image(account, "lab")), ("charliecloud", str(images.rootfs("lab"))))
    print(f"Containers at {at}:", flush=True)
    for runtime, image in cases:
        exe = shutil.which(RUNTIMES[runtime].commands[0])
        lab = [f"{images.JUPYTER_VENV}/bin/jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={FLOOR_PORT}", "--port-retries=0", "--ServerApp.token=bench"]
        argv = RUNTIMES[runtime].argv(exe, Call(image, [home], False, [], "fabjupyter-bench-floor", lab))
        # JUPYTER_RUNTIME_DIR as ours sets it (a home directory the image shares), and the
        # variables the podman line names, set in the session as the agent sets them
        script = (f"export JUPYTER_RUNTIME_DIR=$HOME/floor-runtime JUPYTER_CONFIG_PATH= FABJUPYTER_START=floor; "
                  f"mkdir -p $JUPYTER_RUNTIME_DIR; nohup {shlex.join(argv)} </dev/null >$HOME/floor.log 2>&1 & "
                  f"python3 -c {shlex.quote(WAIT_API)} http://127.0.0.1:{FLOOR_PORT}/api")

        def floor():
            keep_storage_reset(b)
            start = time.monotonic()
            subprocess.run(b.ssh("far") + ["sh -c " + shlex.quote(script)], check=True, capture_output=True)
            took = time.monotonic() - start
            wait_api(FLOOR_PORT)
            return took

        def setup_fresh():
            keep_storage_reset(b)
            b.hosts_file.write_text(f"defaults:\n  container: {image}\n  container_runtime: {runtime}\n")
            start = time.monotonic()
            b.fab("far", "setup", "--password-stdin", input=PASSWORD + "\n")
            took = time.monotonic() - start
            return took + authenticated_after(b)

        def setup_after_stop():
            b.hosts_file.write_text(f"defaults:\n  container: {image}\n  container_runtime: {runtime}\n")
            b.fab("far", "setup", "--password-stdin", input=PASSWORD + "\n")
            b.fab("far", "stop")
            start = time.monotonic()
            b.fab("far", "setup")
            took = time.monotonic() - start
            return took + authenticated_after(b)

        try:
            base, fresh, again = turns(b.runs, floor, setup_fresh, setup_after_stop)
        finally:
            b.hosts_file.write_text("")
            keep_storage_reset(b)
        b.row(f"setup with a {runtime} image from nothing to authenticated 200, {at}", fresh, base,
              "floor (one ssh sh -c: the same Jupyter started in the same image until /api answers)", "<= floor + 8 RTT",
              fresh <= base + 8 * rtt)
        b.row(f"  setup with a {runtime} image after stop (the image's probe kept), {at}", again, base,
              "the same floor", "<= floor + 8 RTT", again <= base + 8 * rtt)
    kill_pids(lambda: b.host.processes(USER), timeout=5.0, survivors_fail=False)
    images.forget_podman(uid)


def authenticated_after(b):
    """Seconds until the server setup started gives an authenticated 200, asked directly on the
    host (this machine): not part of the SSH path."""
    status = b.status()
    if not status.get("container"):
        raise RuntimeError(f"setup started no container: {status}")
    t0 = time.monotonic()
    until_authenticated(f"http://127.0.0.1:{status['port']}/", sock=status.get("socket"))
    return time.monotonic() - t0
