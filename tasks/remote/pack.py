"""The remote folder joined into the one script that travels, at send time (as Ansible's
AnsiballZ joins a module and its module_utils): every file here that runs on the host, as text
in one Python script, with a small loader that imports each module under its own name and
compiles it with its own file name (fabjupyter/remote/NAME.py), so that a traceback from a host
names the file and line. The script is only definitions until its last line, which holds the
call (and the request): a script cut off in transit runs nothing. On the client only; the
standard library only."""

import base64
import json
import os
import threading
import zlib

FOLDER = os.path.dirname(os.path.abspath(__file__))
CLIENT_ONLY = ("__init__.py", "pack.py")
_sources = {}
_packed = {}
_lock = threading.Lock()  # a group's hosts are sent their scripts from threads at once

# 3.6-compatible, as everything that runs on the host (tests/test_agent.py checks it)
LOADER = r'''import base64
import importlib.machinery
import json
import linecache
import sys
import zlib


class FabjupyterRemote(object):
    """fabjupyter's remote modules, joined into this script by the client (its remote/pack.py):
    each is imported under its own name, compiled with its own file name and registered with
    linecache, so that a traceback names the file and line (and shows the line). A finder and
    loader as the import system asks for them, without importlib.abc (whose import costs
    milliseconds on every run)."""

    package = "fabjupyter_remote"
    folder = "fabjupyter/remote/"

    def __init__(self, sources):
        self.sources = sources  # file name -> text (own.text reads bootstrap.sh, boot.py... here)

    def find_spec(self, name, path=None, target=None):
        if name == self.package:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        parent, _, base = name.rpartition(".")
        if parent == self.package and base + ".py" in self.sources:
            return importlib.machinery.ModuleSpec(name, self, origin=self.folder + base + ".py")
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        if module.__name__ == self.package:
            return
        filename = module.__spec__.origin
        source = self.sources[filename[len(self.folder):]]
        module.__file__ = filename
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), module.__dict__)


def _fj_excepthook(kind, value, tb):
    """A traceback printed by the traceback module, which reads linecache (the interpreter's own
    printer opens the file named, which is not on the host): each line shows."""
    import traceback

    traceback.print_exception(kind, value, tb)


def _fj_import(name):
    """The remote module NAME, this script's loader first in line."""
    if not any(isinstance(f, FabjupyterRemote) for f in sys.meta_path):
        sys.meta_path.insert(0, FabjupyterRemote(_fj_sources()))
        sys.excepthook = _fj_excepthook
    __import__(FabjupyterRemote.package + "." + name)
    return sys.modules[FabjupyterRemote.package + "." + name]
'''


def sources():
    """{file name: text} of the files that run on the host (read once)."""
    with _lock:
        if not _sources:
            for name in sorted(os.listdir(FOLDER)):
                if name.endswith((".py", ".sh")) and name not in CLIENT_ONLY:
                    with open(os.path.join(FOLDER, name), encoding="utf-8") as f:
                        _sources[name] = f.read()
        return dict(_sources)


def packed(files):
    """FILES as one line: JSON, compressed, in base64 (about a third of the text's size, and
    nothing in it that the shell's quoting must escape)."""
    key = tuple(sorted(files.items()))
    with _lock:
        if key not in _packed:
            _packed.clear()  # one entry: the folder as it is (a test may send another)
            _packed[key] = base64.b64encode(zlib.compress(json.dumps(files, sort_keys=True).encode(), 6)).decode()
        return _packed[key]


def join(call, files=None):
    """The one Python script: the loader, the files (FILES, else this folder's), then CALL as its
    last line (an expression; `_fj_import(NAME)` gives a remote module)."""
    files = sources() if files is None else files
    return (LOADER + "\n\ndef _fj_sources():\n    return json.loads(zlib.decompress(base64.b64decode(\n        '"
            + packed(files) + "')).decode())\n\n\n" + call.strip() + "\n")


def agent_payload(request, files=None):
    """The agent and its REQUEST, for FJ_AGENT_PY (the request on the last line: secrets in it
    travel only on standard input, as the bootstrap feeds this to Python through a pipe)."""
    return join("sys.exit(_fj_import('agent').main(json.loads(%r)))" % json.dumps(request), files)
