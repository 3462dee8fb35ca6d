# Written by fabjupyter as ~/.fabjupyter/boot.py; run.sh starts Jupyter through it.
#   PYTHON boot.py JUPYTER-SCRIPT ARGS...
# runs the Jupyter script in this interpreter exactly as its own first line would, less one
# start-up cost: jsonschema imports rfc3987_syntax (when installed, as nbformat's and
# jupyter_events' dependencies make it) and that module builds about 35 Lark parsers at import,
# about 0.9 s of CPU, half of JupyterLab's start, for the "iri" formats no Jupyter schema uses.
# Here it is imported on its first use instead; everything else is untouched, and kernels and
# terminals, which are separate processes, never see this file.
import importlib.abc
import importlib.machinery
import os
import runpy
import sys

LAZY = "rfc3987_syntax"


class _LoadOnUse(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name != LAZY:
            return None
        sys.meta_path.remove(self)  # from now on the real module is found
        if importlib.machinery.PathFinder.find_spec(name) is None:
            return None  # not installed: the importer gets its ImportError as before
        return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        real = []

        def load():
            if not real:
                del sys.modules[LAZY]
                real.append(importlib.import_module(LAZY))
                sys.modules[LAZY] = real[0]
            return real[0]

        def is_valid_syntax(*args, **kwargs):
            return load().is_valid_syntax(*args, **kwargs)

        def other(attribute):
            if attribute.startswith("__"):  # the import system asks for __path__ & co.
                raise AttributeError(attribute)
            return getattr(load(), attribute)

        module.is_valid_syntax = is_valid_syntax
        module.__getattr__ = other


def main():
    script = sys.argv[1]
    del sys.argv[0]  # the script sees itself as argv[0], as when it runs on its own
    sys.path[0] = os.path.dirname(os.path.realpath(script))
    sys.meta_path.insert(0, _LoadOnUse())
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
