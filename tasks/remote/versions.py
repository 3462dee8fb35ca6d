"""The versions of installed distributions, read from their directory names along sys.path
(NAME-VERSION.dist-info, or NAME-VERSION[-pyX.Y].egg-info) without importing importlib.metadata
(slow, and missing before Python 3.8). The agent reads its own Python's; `python -c` of this
file (install.VERSIONS_PY) reads an environment's, in that environment's Python."""

import os
import sys


def scanned(names=None):
    """{name: version} of the distributions along sys.path (the first of each name, as
    importlib.metadata finds them), only NAMES if given."""
    found = {}
    for entry in sys.path:
        try:
            listing = os.listdir(entry or ".")
        except OSError:
            continue
        for item in listing:
            stem, _, ext = item.rpartition(".")
            if ext in ("dist-info", "egg-info") and stem.count("-") >= 1:
                dist, version = stem.split("-")[:2]
                key = dist.lower().replace(".", "_")
                if names is None or key in names:
                    found.setdefault(key, version)
    return found


def from_metadata(names, found=None):
    """FOUND with the versions importlib.metadata knows of NAMES; None before Python 3.8."""
    try:
        from importlib import metadata
    except ImportError:
        return None
    found = dict(found or {})
    for name in names:
        try:
            found[name] = metadata.version(name)
        except Exception:
            pass
    return found


def installed_versions():
    """This Python's distributions; where neither jupyter_server nor notebook shows along
    sys.path (installed some other way, an .egg say), importlib.metadata after all."""
    found = scanned()
    if "jupyter_server" not in found and "notebook" not in found:
        found = from_metadata(("jupyter_server", "jupyterlab", "notebook"), found) or found
    return found


def environment_versions(names):
    """The versions of NAMES, as importlib.metadata says, else (before 3.8) as scanned."""
    found = from_metadata(names)
    return scanned(names) if found is None else found
