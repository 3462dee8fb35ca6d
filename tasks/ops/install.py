"""setup --install: JupyterLab in an environment of this tool's own on the host
(~/.fabjupyter/venv), when no Jupyter is found there. The host's pip fetches it from the index when
the host reaches it; otherwise (an offline compute node, or install_from: here) this side
downloads the wheels for the host's Python and platform into a local cache, sends them in one
transfer, and the host installs them with --no-index."""

import hashlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from filelock import FileLock

from ..errors import HostError
from ..localfiles import cache_path
from ..protocol import run_agent, sh_quote
from ..remote.instance import INSTALL, TOP, WHEELS_TAR
from ..report import say
from ..ssh.connection import session
from .config import settings_sh

_locks: dict[str, threading.Lock] = {}
_locks_lock = threading.Lock()


def cache_root():
    return cache_path("wheels")


def mb(size):
    return f"{size / 1e6:.1f} MB"


def wheel_files(folder):
    return sorted(p for p in folder.glob("*.whl") if p.is_file())


def download(t, spec, facts, upgrade=False):
    """The wheels for SPEC on the host's Python and platform, in the local cache (downloaded once
    per spec and kind of host; --upgrade looks again). Returns (folder, files, seconds, cached)."""
    key = hashlib.sha256(json.dumps([list(spec), facts.python, facts.implementation, list(facts.platforms)]).encode()).hexdigest()[:16]
    folder = cache_root() / key
    with _locks_lock:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:  # the hosts of a group that are of one kind download once
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(folder / ".lock", mode=0o600):  # and two runs of this tool at once
            marker = folder / "complete.json"
            if marker.exists() and not upgrade:
                names = json.loads(marker.read_text())["files"]
                files = [folder / n for n in names]
                if all(f.exists() for f in files):
                    return folder, files, 0.0, True
            abi = "cp" + facts.python.replace(".", "")
            argv = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-input", "--only-binary=:all:",
                    "--python-version", facts.python, "--implementation", "cp", "--abi", abi, "--abi", "abi3", "--abi", "none"]
            for platform in facts.platforms:
                argv += ["--platform", platform]
            argv += ["--dest", str(folder), *spec]
            say(f"{t.label}: downloading the wheels of {' '.join(spec)} for Python {facts.python} on {facts.platforms[0]} "
                f"into {folder} ...")
            started = time.monotonic()
            with tempfile.TemporaryDirectory() as report_dir:
                report = Path(report_dir) / "pip.log"
                r = subprocess.run(argv + ["--log", str(report)], stdin=subprocess.DEVNULL, capture_output=True, text=True)
                if r.returncode != 0:
                    lines = [line for line in (r.stdout + r.stderr).splitlines() if line.strip()][-10:]
                    raise HostError(t.label, "pip download (here, for the host's Python and platform) failed; nothing was "
                                    "changed there. It said:" + "".join("\n    " + line for line in lines))
                # the files this spec resolved to (the folder may hold older ones of an upgrade)
                names = sorted({Path(line.split("Saved ", 1)[1].strip()).name for line in r.stdout.splitlines() if "Saved " in line}
                               | {line.split("File was already downloaded ", 1)[1].strip().rsplit("/", 1)[-1]
                                  for line in r.stdout.splitlines() if "File was already downloaded " in line})
            files = [folder / n for n in names if (folder / n).exists()] or wheel_files(folder)
            marker.write_text(json.dumps({"files": [f.name for f in files], "spec": list(spec)}) + "\n")
            return folder, files, time.monotonic() - started, False


def send(t, files):
    """The wheels to the host, as one tar on one SSH channel (~/.fabjupyter/install/wheels.tar:
    remote/instance.py names the place, and the agent unpacks it from there)."""
    import tarfile  # only an install loads it

    folder = f"{TOP}/{INSTALL}"  # from the home directory, where `cd` goes
    tar_path = f"{folder}/{WHEELS_TAR}"
    script = f"umask 077 && cd && mkdir -p {sh_quote(folder)} && cat > {sh_quote(tar_path + '.tmp')} && " \
             f"mv -f {sh_quote(tar_path + '.tmp')} {sh_quote(tar_path)}"
    started = time.monotonic()
    with session(t, "sh -c " + sh_quote(script), "sending the wheels failed: {e}") as s:
        with tarfile.open(fileobj=s.stdin, mode="w|") as tar:
            for f in files:
                tar.add(str(f), arcname=f.name, recursive=False)
        s.close_stdin()
        err = s.stderr_text().strip()
        status = s.exit_status()
    if status != 0:
        raise HostError(t.label, f"sending the wheels failed: {err or f'exit status {status}'}")
    return time.monotonic() - started


def install_host(t, facts, dry_run=False, upgrade=False):
    """Install (or, with UPGRADE, upgrade) Jupyter into this tool's environment on the host.
    Returns (lines, versions before, versions after)."""
    s = t.settings
    spec = list(s.install_spec)
    if not facts.has_venv:
        raise HostError(t.label, f"python{facts.python} there cannot make an environment (no venv/ensurepip module); install it "
                        f"there, e.g. `sudo apt install python{facts.python}-venv` (Debian/Ubuntu), then run setup again")
    here = s.install_from == "here" or not facts.online
    why = "install_from: here" if s.install_from == "here" else f"the host does not reach {facts.index}"
    verb = "upgrade" if upgrade else "install"
    lines = []
    files = []
    if here:
        folder, files, took, cached = download(t, spec, facts, upgrade)
        size = sum(f.stat().st_size for f in files)
        got = "from the local cache" if cached else f"downloaded in {took:.1f} s"
        say(f"{t.label}: {len(files)} packages, {mb(size)} ({got}: {folder})")
        where = f"from here ({why}): {len(files)} packages, {mb(size)}, sent in one transfer"
    else:
        where = f"from {facts.index}, by the host's own pip"
    if dry_run:
        return [f"would {verb} {' '.join(spec)} into {facts.venv} (Python {facts.python}) {where}"], {}, {}
    say(f"{t.label}: {'upgrading' if upgrade else 'installing'} {' '.join(spec)} into {facts.venv} {where}")
    if here:
        took = send(t, files)
        say(f"{t.label}: sent {len(files)} packages in {took:.1f} s")
    # with the settings (the activate line: a `module load python` may bring the Python to use)
    reply = run_agent(t, "install", settings_sh(s), spec=spec, source="here" if here else "index", upgrade=upgrade, install=True)
    versions = ", ".join(f"{k} {v}" for k, v in sorted(reply.after.items()))
    if upgrade and reply.before == reply.after:
        lines.append(f"{' '.join(spec)} already up to date in {facts.venv} ({versions}); nothing changed")
    else:
        lines.append(f"{'upgraded' if upgrade else 'installed'} {' '.join(spec)} into {facts.venv} in {reply.seconds:.1f} s ({versions})")
    return lines, reply.before, reply.after
