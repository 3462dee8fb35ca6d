"""Container images for the tests, built from what this machine has (there is no registry to pull
from): a minimal root filesystem with the system Python 3.11, the test hosts' JupyterLab venv at
its own path, dash and a few tools, and a marker file naming the image.

- rootfs(name) is that directory: a Charliecloud directory image as it is (`ch-run DIR -- CMD`).
- podman_image(user, name) imports it into the account's rootless podman storage and gives the
  image's reference (`localhost/fjtest-lab:latest`).

Two images: "lab", and "lab2", which differs only in the marker /etc/fabjupyter-test-image (its
content is the image's name): the same path with other content, a new image id.

Built once per machine under /opt/fabjupyter-test/images (readable by every account), under a
lock, and again when what it is made of changes (the venv, the stdlib, the binaries and the
libraries ldd names: their sizes and times)."""

import fcntl
import hashlib
import json
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from .sshhost import JUPYTER_VENV

IMAGES = Path(os.environ.get("FABJUPYTER_TEST_IMAGES", "/opt/fabjupyter-test/images"))
NAMES = ("lab", "lab2")
MARKER = "/etc/fabjupyter-test-image"
PYTHON = Path("/usr/bin/python3.11")
STDLIB = Path("/usr/lib/python3.11")
# copied whole (the static libpython of config-3.11-* is only for building extensions)
TREES = (STDLIB, Path("/etc/python3.11"), JUPYTER_VENV)
SKIP = (STDLIB / "config-3.11-x86_64-linux-gnu",)
# what a start script in the image may call: the shell, and what `jupyter` itself needs (env, for
# `#!/usr/bin/env` lines); the others are for the tests and a launcher's small checks
TOOLS = ("/bin/sh", "/usr/bin/python3", "/usr/bin/env", "/usr/bin/cat", "/usr/bin/mkdir", "/usr/bin/rm",
         "/usr/bin/ls", "/usr/bin/id", "/usr/bin/sleep", "/usr/bin/true", "/usr/bin/false", "/usr/bin/echo",
         "/usr/bin/test", "/usr/bin/printf", "/usr/bin/mv", "/usr/bin/cp", "/usr/bin/ln", "/usr/bin/chmod",
         "/usr/bin/touch", "/usr/bin/uname", "/usr/bin/dirname", "/usr/bin/basename", "/usr/bin/readlink",
         "/usr/bin/head", "/usr/bin/tail", "/usr/bin/which", "/usr/bin/grep", "/usr/bin/wc", "/usr/bin/sed")
# glibc loads it itself when a thread is cancelled or exits (ldd does not name it)
DLOPENED = ("/usr/lib/x86_64-linux-gnu/libgcc_s.so.1",)
# mount points: ch-run binds /dev, /proc, /sys (required), /etc/hosts and /etc/resolv.conf (when
# they exist in the image), and a tmpfs on /home with --home; podman mounts over /dev, /proc,
# /sys, /run, /tmp itself
DIRS = ("dev", "proc", "sys", "home", "run", "root", "var/tmp", "mnt")
ETC = {
    "passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    "group": "root:x:0:\nnogroup:x:65534:\n",
    "hosts": "",
    "resolv.conf": "",
}
# bump when what build() makes changes without its inputs changing
VERSION = 1


def rootfs(name="lab"):
    """The image NAME's root filesystem directory (built or rebuilt first if needed)."""
    if name not in NAMES:
        raise ValueError(f"no test image {name!r}: {NAMES}")
    ensure()
    return IMAGES / name


def ensure():
    """Every image built and up to date; the manifest of the build (what the images are made of)."""
    IMAGES.mkdir(mode=0o755, parents=True, exist_ok=True)
    IMAGES.chmod(0o755)
    with open(IMAGES / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = IMAGES / "manifest.json"
        try:
            old = json.loads(manifest.read_text())
        except (OSError, ValueError):
            old = None
        if up_to_date(old):
            return old
        new = _build()
        tmp = manifest.with_suffix(".tmp")
        tmp.write_text(json.dumps(new))
        tmp.chmod(0o644)
        tmp.replace(manifest)
        return new


def up_to_date(manifest):
    """Whether the images a build's MANIFEST describes are there and made of what this machine
    has now (the same files, of the same sizes and times)."""
    return bool(manifest) and manifest.get("version") == VERSION and all((IMAGES / n).is_dir() for n in NAMES) \
        and _sources(manifest["libraries"]) == manifest["sources"]


# the image's configuration in podman: an image made for Jupyter has it on the PATH it sets (podman
# passes the session's PATH in no more than the rest of its environment)
PODMAN_CHANGES = ("CMD=/bin/sh", f"ENV=PATH={JUPYTER_VENV}/bin:/usr/local/bin:/usr/bin:/bin")


def stamp():
    """A short name of the current build: podman_image() imports again when it changes."""
    made_of = [ensure()["sources"], PODMAN_CHANGES]
    return hashlib.sha256(json.dumps(made_of, sort_keys=True).encode()).hexdigest()[:16]


def _files(path):
    """PATH and everything under it (lstat: links as links), without SKIP."""
    if any(path == s or s in path.parents for s in SKIP):
        return
    yield path
    if path.is_dir() and not path.is_symlink():
        for entry in sorted(path.iterdir()):
            yield from _files(entry)


def _sources(libraries):
    """{path: [size, mtime_ns]} of every file an image is made of."""
    found = {}
    for top in [*TREES, *_singles(), *libraries]:
        for p in _files(Path(top)):
            st = p.lstat()
            found[str(p)] = [st.st_size, st.st_mtime_ns]
    return found


def _singles():
    """The single files (and what their links point to) an image has besides TREES."""
    return sorted({p for t in (str(PYTHON), *TOOLS, *DLOPENED) for p in (t, os.path.realpath(t))})


def _in_usr(path):
    """/lib/x -> /usr/lib/x on this merged-/usr machine, where /bin, /lib, /lib64, /sbin are links."""
    parts = Path(path).parts
    if len(parts) > 1 and parts[1] in ("bin", "lib", "lib64", "sbin") and Path("/", parts[1]).is_symlink():
        return Path("/usr", *parts[1:])
    return Path(path)


def _add(root, path):
    """Copy PATH (a file or a link, and what the link points to) to the same place under ROOT."""
    path = _in_usr(path)
    dest = root / path.relative_to("/")
    if os.path.lexists(dest):
        return
    dest.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    if path.is_symlink():
        target = os.readlink(path)
        os.symlink(target, dest)
        _add(root, path.parent / target)  # an absolute target stays absolute
    else:
        shutil.copy2(path, dest)


def _elf(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _libraries(binaries):
    """Every shared library the BINARIES load (ldd: all the way down); an error if one is missing."""
    found, missing = set(), []
    for i in range(0, len(binaries), 200):
        out = subprocess.run(["ldd", *binaries[i:i + 200]], capture_output=True, text=True).stdout
        current = None
        for line in out.splitlines():
            if not line.startswith("\t"):
                current = line.rstrip(":")
                continue
            line = line.strip()
            if "not found" in line:
                missing.append(f"{current}: {line}")
            elif "=>" in line:
                target = line.split("=>", 1)[1].split("(")[0].strip()
                if target:
                    found.add(target)
            elif line.startswith("/"):
                found.add(line.split()[0])
    if missing:
        raise RuntimeError("libraries not found for the test image:\n" + "\n".join(missing))
    return sorted(found)


def _build():
    work = IMAGES / f".build-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    root = work / "lab"
    root.mkdir(mode=0o755, parents=True)
    for top in ("bin", "lib", "lib64", "sbin"):
        (root / "usr" / top).mkdir(mode=0o755, parents=True, exist_ok=True)
        os.symlink(f"usr/{top}", root / top)
    for d in DIRS:
        (root / d).mkdir(mode=0o755, parents=True, exist_ok=True)
    (root / "tmp").mkdir()
    (root / "tmp").chmod(0o1777)
    (root / "var/tmp").chmod(0o1777)
    for tree in TREES:
        dest = root / tree.relative_to("/")
        dest.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        shutil.copytree(tree, dest, symlinks=True, ignore=lambda d, names: [n for n in names if Path(d, n) in SKIP])
    for single in _singles():
        _add(root, single)
    binaries = sorted(str(p) for top in (*TREES, *_singles())
                      for p in _files(Path(top)) if not p.is_symlink() and p.is_file() and _elf(p))
    libraries = _libraries(binaries)
    for lib in libraries:
        _add(root, lib)
    for name, text in ETC.items():
        (root / "etc" / name).write_text(text)
        (root / "etc" / name).chmod(0o644)
    sources = _sources(libraries)  # before the copy would be the same: taken after, to be safe
    for name in NAMES:
        if name != "lab":
            subprocess.run(["cp", "-al", str(root), str(work / name)], check=True)
        marker = work / name / MARKER.lstrip("/")
        marker.unlink(missing_ok=True)  # a hard link to lab's: replaced, not written through
        marker.write_text(f"{name}\n")
        marker.chmod(0o644)
    for name in NAMES:
        old = IMAGES / f".old-{name}-{os.getpid()}"
        if (IMAGES / name).exists():
            (IMAGES / name).rename(old)
        (work / name).rename(IMAGES / name)
        shutil.rmtree(old, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    return {"version": VERSION, "libraries": libraries, "sources": sources}


# --- rootless podman ---------------------------------------------------------------------------
def login_env(user):
    """The environment sshd (without PAM) gives USER's session: no XDG_RUNTIME_DIR."""
    info = pwd.getpwnam(user)
    return {"HOME": info.pw_dir, "USER": user, "LOGNAME": user, "SHELL": info.pw_shell,
            "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


def as_account(user, *cmd, **kw):
    """Run CMD as USER with a login's environment (runuser: no PAM session, as sshd here)."""
    env = login_env(user)
    return subprocess.run(["runuser", "-u", user, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *cmd],
                          cwd=env["HOME"], capture_output=True, text=True, **kw)


def podman_ref(name="lab"):
    return f"localhost/fjtest-{name}:latest"


def subordinate_ids(user):
    """USER's lines in /etc/subuid and /etc/subgid (useradd adds them here, userdel removes them)."""
    found = {}
    for table in ("subuid", "subgid"):
        with open(f"/etc/{table}") as f:
            found[table] = [line.strip() for line in f if line.split(":", 1)[0] == user]
    return found


def podman_image(user, name="lab"):
    """The reference of image NAME in USER's rootless podman storage, imported first if it is not
    there (or is from an older build). USER: an account name."""
    ref = podman_ref(name)
    if not all(subordinate_ids(user).values()):
        raise RuntimeError(f"{user} has no /etc/subuid or /etc/subgid range: rootless podman cannot map the image's ids")
    built = stamp()
    r = as_account(user, "podman", "image", "inspect", "--format", '{{index .Labels "fabjupyter.build"}}', ref)
    if r.returncode == 0 and r.stdout.strip() == built:
        return ref
    tar = subprocess.Popen(["tar", "-C", str(rootfs(name)), "--numeric-owner", "--owner=0", "--group=0", "-cf", "-", "."],
                           stdout=subprocess.PIPE)
    try:
        changes = [word for change in PODMAN_CHANGES for word in ("--change", change)]
        r = as_account(user, "podman", "import", "--quiet", "--change", f"LABEL=fabjupyter.build={built}",
                       *changes, "-", ref, stdin=tar.stdout, timeout=600)
    finally:
        tar.stdout.close()
        tar.wait()
    if r.returncode != 0:
        raise RuntimeError(f"podman import as {user} failed ({r.returncode}):\n{r.stderr}")
    return ref


def podman_leftovers(uid):
    """What rootless podman keeps outside the home of the account with UID (no XDG_RUNTIME_DIR:
    its run and temporary directories under /tmp; its lock file in /dev/shm), which outlive the
    account, and which a later account with the same uid would find."""
    return [p for p in (Path(f"/tmp/podman-run-{uid}"), Path(f"/tmp/containers-user-{uid}"),
                        Path(f"/tmp/storage-run-{uid}"), Path(f"/dev/shm/libpod_rootless_lock_{uid}"))
            if os.path.lexists(p)]


def forget_podman(uid):
    """Remove podman_leftovers(UID): after the account's processes are gone."""
    for path in podman_leftovers(uid):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
