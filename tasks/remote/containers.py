"""Jupyter from a container image (`container:` in hosts.yaml): the runtimes, one entry each in
RUNTIMES (which command, which images it takes, how an image is told apart from the next one
under the same name, its command line, GPUs), the probe of the Jupyter inside an image, and
Jupyter's command line wrapped in the runtime's. Adding a runtime is one entry.

Inside the container Jupyter sees the user's home at the same path (this tool's settings, the
password file, TLS files and the root directory are there), listens in the host's network (a
loopback port, a batch node's address, or the Unix socket in the home directory), and writes its
runtime file to the instance's own runtime directory, not to a runtime directory the image may
not have. Every runtime here keeps the host's view of the process (its pid and its socket), so
ready.py checks the server that answers as it does without a container."""

import binascii
import json
import os
import shutil

from . import own, procs
from .fail import Fail
from .files import json_text, read_json, write_atomic
from .kinds import describe_versions, kind_for
from .ready import START_ENV
from .shell import run_command

PASSED_ENV = ("HOME", "JUPYTER_CONFIG_PATH", "JUPYTER_RUNTIME_DIR", START_ENV)  # what Jupyter must see inside


class Call(object):
    """One start: the image, the directories to share (the home first), whether to pass GPUs,
    the user's extra runtime options, the container's name (where the runtime names them), and
    Jupyter's command line inside."""

    def __init__(self, image, binds, gpus, options, name, command):
        self.image, self.binds, self.gpus, self.options = image, list(binds), gpus, list(options)
        self.name, self.command = name, list(command)


class Apptainer(object):
    """Apptainer (and SingularityCE, its command line the same): a .sif file, a sandbox
    directory, or a URI it pulls (docker://...). The host's environment passes in, and the
    process stays in the host's pid and network namespaces."""

    name = "apptainer"
    commands = ("apptainer",)
    gpu = ("--nv",)
    images = "a .sif file, a sandbox directory or a URI such as docker://..."

    def argv(self, exe, call):
        argv = [exe, "exec", "--pwd", call.binds[0]]
        for path in call.binds:
            argv += ["--bind", path]
        return argv + (list(self.gpu) if call.gpus else []) + call.options + [call.image] + call.command

    def identity(self, exe, image):
        return path_identity(image, uri=True)


class Singularity(Apptainer):
    name = "singularity"
    commands = ("singularity",)


class Podman(object):
    """Rootless podman: an image in the user's own storage, by name or id. The container shares
    the host's network and pid namespace and keeps the user's uid (keep-id), so its Jupyter is a
    process of the user's that the host sees; the image's entrypoint is not run (Jupyter's
    command is). GPUs by CDI (nvidia-ctk cdi generate, done once by the site)."""

    name = "podman"
    commands = ("podman",)
    gpu = ("--device", "nvidia.com/gpu=all")
    images = "an image in your podman storage, by name (localhost/lab:1) or id"

    def argv(self, exe, call):
        argv = [exe, "run", "--rm", "--replace", "--name", call.name, "--network=host", "--pid=host", "--userns=keep-id",
                "--security-opt=label=disable", "--workdir", call.binds[0]]
        for path in call.binds:
            argv += ["--volume", "%s:%s" % (path, path)]
        for name in PASSED_ENV:
            argv += ["--env", name]  # NAME alone: its value here
        argv += list(self.gpu) if call.gpus else []
        return argv + call.options + ["--entrypoint", json.dumps(call.command[:1]), call.image] + call.command[1:]

    def identity(self, exe, image):
        out, err, code = run_command([exe, "image", "inspect", "--format", "{{.Id}}", image], timeout=60)
        if code != 0 or not out.strip():
            said = last_line(err) or "podman image inspect found nothing"
            if code != 0 and not any(words in said for words in ("image not known", "no such image")):
                # podman itself failed (its state, its storage): not a missing image
                raise Fail("container_failed", "podman image inspect %s: %s" % (image, said))
            raise Fail("no_image", "%s (%s)" % (image, said))
        return "podman:" + out.strip().splitlines()[0]

    def remove(self, exe, name):
        """The container of a server that was stopped (--rm removes it when podman's own
        process sees it end; this covers a podman process that was killed)."""
        run_command([exe, "rm", "--force", "--ignore", name], timeout=60)


class Charliecloud(object):
    """Charliecloud's ch-run: a directory image (ch-image, ch-convert) or a SquashFS file. It
    makes no network or pid namespace, and passes the host's environment in."""

    name = "charliecloud"
    commands = ("ch-run",)
    gpu = ()  # none: `ch-fromhost --nvidia IMAGE` puts the host's GPU libraries into the image once
    images = "a directory image or a SquashFS file (.sqfs)"

    def argv(self, exe, call):
        argv = [exe]
        for path in call.binds:
            argv += ["--bind", "%s:%s" % (path, path)]
        return argv + ["--cd", call.binds[0]] + call.options + [call.image, "--"] + call.command

    def identity(self, exe, image):
        return path_identity(image)


RUNTIME_LIST = (Apptainer(), Singularity(), Podman(), Charliecloud())
RUNTIMES = dict((r.name, r) for r in RUNTIME_LIST)
AUTO_ORDER = ("apptainer", "singularity", "podman", "charliecloud")  # container_runtime: auto


def last_line(text):
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def path_identity(image, uri=False):
    """An image file or directory told apart from the next one at the same path: a new file or
    directory put there (what pulling, building or converting again does) has another inode or
    modification time. A URI is its own identity (the runtime pulls it)."""
    if uri and "://" in image:
        return "uri:" + image
    try:
        st = os.stat(image)
    except OSError as e:
        raise Fail("no_image", "%s (%s)" % (image, e.strerror))
    return "path:%s:%d:%d:%d:%d" % (os.path.realpath(image), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def image_path(image, home):
    """~/x is in the home directory (a relative path is too: the agent runs there)."""
    return os.path.join(home, image[2:]) if image.startswith("~/") else image


def find_runtime(wanted, which=shutil.which):
    """(runtime, its command's path) for container_runtime WANTED: the one named, else (auto)
    the first of AUTO_ORDER whose command is on the PATH (after the activate line)."""
    names = AUTO_ORDER if wanted in ("", "auto") else (wanted,)
    if wanted not in ("", "auto") and wanted not in RUNTIMES:
        raise Fail("no_container_runtime", wanted)
    for name in names:
        for command in RUNTIMES[name].commands:
            exe = which(command)
            if exe:
                return RUNTIMES[name], exe
    raise Fail("no_container_runtime", wanted if wanted not in ("", "auto") else "auto: " + ", ".join(
        c for n in AUTO_ORDER for c in RUNTIMES[n].commands))


def binds(home, root):
    """What the container shares with the host: the home directory (this tool's files, Jupyter's
    own), and the root directory when it is elsewhere."""
    shared = [home]
    if root and not (root == home or root.startswith(home.rstrip("/") + "/")):
        shared.append(root)
    return shared


def settings_of(settings):
    """The container settings from settings.sh's (None: no container)."""
    image = (settings or {}).get("container") or ""
    if not image:
        return None
    options = (settings or {}).get("container_options") or []
    return {"image": image, "runtime": settings.get("container_runtime") or "auto", "options": options,
            "gpus": settings.get("gpus") == "1"}


# --- the Jupyter inside an image ------------------------------------------------------------------

def probe_py():
    """Run by the image's own Python: Jupyter's command, that Python, and what is installed there."""
    return own.text("versions.py") + (
        "\nimport json\nprint(json.dumps({'command': sys.argv[1:], 'python': sys.executable, "
        "'versions': installed_versions()}))\n")


def container_name(inst):
    """The container's name where the runtime names containers (podman): one per instance."""
    return "fabjupyter-%s" % inst.name


def probe(run, c):
    """The kind and version of the Jupyter in the image of C (settings_of), before anything is
    changed: the runtime and the image must be there, and Jupyter in it. Asked of the image
    once (a container started with `sh`, bootstrap.sh's fj_probe), then kept in the
    instance's container.json while the runtime, the image and jupyter: stay the same. Sets
    run.command (Jupyter's command inside) and run.container (what a start needs)."""
    inst = run.inst
    runtime, exe = find_runtime(c["runtime"])
    if c["gpus"] and not runtime.gpu:
        raise Fail("container_gpus", runtime.name)
    image = image_path(c["image"], inst.home)
    identity = runtime.identity(exe, image)
    key = [runtime.name, exe, image, identity, c["options"], list(run.command)]
    cached = read_json(inst.path("container.json")) or {}
    found = cached.get("found") if cached.get("key") == key else None
    if not found:
        found = ask_image(run, runtime, exe, image, c["options"])
        if not run.dry and os.path.isdir(inst.d):
            write_atomic(inst.path("container.json"), json_text({"key": key, "found": found}))
    run.command = found["command"]
    run.container = {"runtime": runtime.name, "exe": exe, "image": image, "image_id": identity, "options": c["options"],
                     "gpus": c["gpus"], "name": container_name(inst)}
    return kind_for(found["versions"], found["command"][0]), describe_versions(found["versions"])


def ask_image(run, runtime, exe, image, options):
    """{"command", "python", "versions"} of the Jupyter in IMAGE (jupyter:'s words, run.command,
    looked for there as on a host)."""
    script = own.text("bootstrap.sh") + '\nfj_probe "$@"\n'
    name = "%s-probe-%d" % (container_name(run.inst), os.getpid())
    call = Call(image, [run.inst.home], False, options, name, ["sh", "-c", script, "sh", probe_py()] + list(run.command))
    out, err, code = run_command(runtime.argv(exe, call), timeout=max(120, run.timeout))
    said = last_line(out)
    if said.startswith("{"):
        try:
            return json.loads(said)
        except ValueError:
            pass
    if said.startswith("no_jupyter"):
        missing = said[len("no_jupyter"):].strip()
        raise Fail("no_jupyter_image", image + (" (%s not found)" % missing if missing else ""))
    if said.startswith("no_python"):
        raise Fail("no_python", said[len("no_python "):] + " in the image " + image)
    raise Fail("container_failed", "%s %s: %s" % (runtime.name, image, last_line(err) or "exit status %d" % code))


def prepare(run, argv, root):
    """Jupyter's command line ARGV in the runtime's, and the environment that goes with it
    (run.extra_env: its own runtime directory, and this start's mark for ready.py)."""
    c, inst = run.container, run.inst
    mark = binascii.hexlify(os.urandom(12)).decode()  # not a secret: it tells our starts apart
    run.extra_env = {"JUPYTER_RUNTIME_DIR": inst.path("runtime"), START_ENV: mark}
    call = Call(c["image"], binds(inst.home, root), c["gpus"], c["options"], c["name"], argv)
    return RUNTIMES[c["runtime"]].argv(c["exe"], call), mark


def record(run):
    """What the state file keeps of the container (none without one)."""
    c = run.container
    if not c:
        return {}
    return {"container": c["image"], "container_runtime": c["runtime"], "container_exe": c["exe"],
            "container_name": c["name"], "image_id": c["image_id"]}


def remove_stopped(state):
    """After a container's Jupyter was stopped: nothing of it left, neither the runtime's process
    that started it nor the container where the runtime keeps one."""
    client = state.get("client_pid")
    if client and procs.alive(client):
        procs.kill(client)
    runtime = RUNTIMES.get(state.get("container_runtime") or "")
    if runtime is not None and hasattr(runtime, "remove") and state.get("container_exe"):
        runtime.remove(state["container_exe"], state.get("container_name") or "")
