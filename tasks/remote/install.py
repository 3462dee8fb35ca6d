"""This tool's own Jupyter environment (setup --install): the host's facts for choosing wheels,
and the install action (a venv, then pip, from the index or from the wheels the client sent)."""

import json
import os
import shutil
import sys
import time

from . import own
from .fail import Fail
from .files import json_text, make_dir, read_json, write_atomic
from .instance import INSTALL, WHEELS_TAR, venv_dir
from .shell import run_command

# what --upgrade compares, read in the environment's own Python (as old as the host's)
VERSION_NAMES = ("jupyterlab", "jupyter_server", "notebook", "ipykernel")
VERSIONS_PY = own.text("versions.py") + "\nimport json\nprint(json.dumps(environment_versions(%r)))\n" % (VERSION_NAMES,)


def may_install(run):
    """No Jupyter was found, install: true was asked, and the command (if one was set) is the
    one in this tool's environment: that environment may be made."""
    detail = run.boot_detail
    ours = venv_path(run) + os.sep
    return run.boot_code == "no_jupyter" and bool(run.req.get("install")) and (
        not detail or os.path.expanduser(detail).startswith(ours) or detail.startswith("~/.fabjupyter/venv/"))


def venv_path(run):
    return venv_dir(run.inst.home)


def install_facts(run):
    """What the client needs to fetch wheels for this host: its Python, its platform tags, and
    whether it reaches the package index itself."""
    import platform  # here: only install asks

    machine = platform.machine()
    platforms = []
    libc = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None
    if libc and libc.startswith("glibc "):
        major, minor = (int(x) for x in libc.split()[1].split(".")[:2])
        platforms += ["manylinux_%d_%d_%s" % (major, m, machine) for m in range(minor, 16, -1)]
        platforms += ["manylinux2014_%s" % machine, "manylinux2010_%s" % machine, "manylinux1_%s" % machine]
    platforms.append("linux_%s" % machine)
    index = os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple/"
    online = False
    try:
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(index, method="HEAD"), timeout=3).close()
        online = True
    except Exception:  # any failure to reach it: this host is offline for us
        online = False
    import importlib.util

    has_venv = importlib.util.find_spec("ensurepip") is not None  # Debian's python3 lacks it without python3-venv
    info = read_json(os.path.join(venv_path(run), "fabjupyter.json")) or {}
    return {
        "python": "%d.%d" % sys.version_info[:2], "implementation": sys.implementation.name,
        "platforms": platforms, "index": index, "online": online, "has_venv": has_venv,
        "venv": venv_path(run), "exists": os.path.isdir(venv_path(run)), "versions": info.get("versions") or {},
    }



def venv_versions(python):
    """The versions of Jupyter's parts in an environment (what --upgrade compares)."""
    out, _, code = run_command([python, "-c", VERSIONS_PY], timeout=60)
    try:
        return json.loads(out) if code == 0 else {}
    except ValueError:
        return {}


def unpack_wheels(tar_path, folder):
    """The wheels the client sent, from their tar into FOLDER: plain files named *.whl only."""
    import tarfile

    shutil.rmtree(folder, ignore_errors=True)
    make_dir(folder)
    try:
        with tarfile.open(tar_path) as tar:
            for member in tar.getmembers():
                name = member.name
                if not member.isfile() or "/" in name or name.startswith(".") or not name.endswith(".whl"):
                    raise Fail("install_failed", "the wheels sent", log=["unexpected member %r" % name])
                with tar.extractfile(member) as src, open(os.path.join(folder, name), "wb") as dst:
                    shutil.copyfileobj(src, dst)
    except (OSError, tarfile.TarError) as e:
        raise Fail("install_failed", "the wheels sent", log=[str(e)])


def act_install(run):
    """Make this tool's environment (~/.fabjupyter/venv) and install the spec into it, from the
    index (the host's own pip) or from the wheels the client sent (--no-index). A failure
    removes an environment this run made: none is left half-made."""
    req = run.req
    facts = install_facts(run)
    if req["probe"]:
        return {"facts": facts, "changes": [], "before": {}, "after": {}, "seconds": 0.0}
    if not facts["has_venv"]:
        raise Fail("no_venv", "python%s" % facts["python"])
    venv = venv_path(run)
    python = os.path.join(venv, "bin", "python")
    spec = list(req["spec"])
    wheels = os.path.join(run.inst.top, INSTALL, "wheels")
    here = req["source"] == "here"
    started = time.time()
    made = not os.path.isdir(venv)
    before = {} if made else venv_versions(python)
    run.change("install", " ".join(spec))
    if run.dry:
        return {"facts": facts, "changes": run.changes, "before": before, "after": {}, "seconds": 0.0}
    try:  # whatever happens, the wheels sent (~/.fabjupyter/install) go
        if here:
            unpack_wheels(os.path.join(run.inst.top, INSTALL, WHEELS_TAR), wheels)
        if made:
            run.event("install", step="venv", detail=venv)
            out, err, code = run_command([sys.executable, "-m", "venv", venv], timeout=600)
            if code != 0:
                raise Fail("install_failed", "python%s -m venv" % facts["python"], log=(out + err).splitlines()[-15:])
        argv = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
        if here:
            argv += ["--no-index", "--find-links", wheels]
        if req["upgrade"]:
            argv.append("--upgrade")
        run.event("install", step="pip", detail="from the wheels sent" if here else "from %s" % facts["index"])
        out, err, code = run_command(argv + spec, timeout=3600)
        if code != 0:
            raise Fail("install_failed", "pip install", log=[line for line in (out + err).splitlines() if line.strip()][-15:])
    except Fail:
        if made:
            shutil.rmtree(venv, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(os.path.join(run.inst.top, "install"), ignore_errors=True)
    after = venv_versions(python)
    write_atomic(os.path.join(venv, "fabjupyter.json"), json_text({
        "spec": spec, "source": "here" if here else facts["index"], "installed": int(time.time()), "versions": after}))
    return {"facts": facts, "changes": run.changes, "before": before, "after": after, "seconds": round(time.time() - started, 3)}

