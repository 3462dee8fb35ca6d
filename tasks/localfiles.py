"""This machine's own files: where they live (XDG), and the small JSON records kept between runs
(where Jupyter was last seen, local ports, hosts that ask for a code)."""

import json
import os
import threading
from pathlib import Path


def config_path(*parts):
    """$XDG_CONFIG_HOME/fabjupyter/PARTS (~/.config/fabjupyter/...)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(base, "fabjupyter", *parts)


def cache_path(*parts):
    """$XDG_CACHE_HOME/fabjupyter/PARTS (~/.cache/fabjupyter/...)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base, "fabjupyter", *parts)


def read_record(path):
    """A JSON object kept between runs, or {} where there is none (or it is not one)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def update_record(path, changes):
    """Merge CHANGES into the record at PATH, written whole under a temporary name and moved into
    place (a reader never sees half a file). Remembering is a convenience: a failure is ignored."""
    record = read_record(path)
    record.update(changes)
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except OSError:
        pass
