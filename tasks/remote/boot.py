# Written by fabjupyter as ~/.fabjupyter/boot.py; run.sh starts Jupyter through it.
#   PYTHON boot.py JUPYTER-SCRIPT ARGS...
# runs the Jupyter script in this interpreter exactly as its own first line would, less two
# start-up costs that buy nothing (together about 1.2 s of CPU, two thirds of JupyterLab 4's start):
#  - jsonschema imports rfc3987_syntax (installed as a dependency of nbformat and jupyter_events),
#    which builds about 35 Lark parsers at import, ~0.9 s, for the "iri" formats no Jupyter
#    schema uses. Here the module is imported on its first use instead.
#  - jupyterlab.labapp asks for the app's version at import, and the object that reads it first
#    runs `node yarn.js config` (where node is installed), ~0.3 s, for an npm registry address
#    that reading a version never uses. That one call is given the default address instead;
#    builds and extension commands still ask yarn.
# Each is skipped when the module is absent or looks different. Nothing else changes, and kernels
# and terminals, separate processes, never see this file.
import importlib.abc
import importlib.machinery
import os
import runpy
import sys


class _LoadOnUse(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """rfc3987_syntax as a stand-in whose functions import the real module when first called."""

    name = "rfc3987_syntax"

    def find_spec(self, name, path=None, target=None):
        if name != self.name:
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
                del sys.modules[self.name]
                real.append(importlib.import_module(self.name))
                sys.modules[self.name] = real[0]
            return real[0]

        def is_valid_syntax(*args, **kwargs):
            return load().is_valid_syntax(*args, **kwargs)

        def other(attribute):
            if attribute.startswith("__"):  # the import system asks for __path__ & co.
                raise AttributeError(attribute)
            return getattr(load(), attribute)

        module.is_valid_syntax = is_valid_syntax
        module.__getattr__ = other


class _AfterImport(importlib.abc.MetaPathFinder):
    """Calls `mend(module)` once a module has been imported, before anyone uses it."""

    def __init__(self, name, mend):
        self.name, self.mend = name, mend

    def find_spec(self, name, path=None, target=None):
        if name != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_mend(module):
            exec_module(module)
            try:
                self.mend(module)
            except Exception:  # a JupyterLab that looks different: leave it as it is
                pass

        spec.loader.exec_module = exec_and_mend
        return spec


def _version_without_yarn(commands):
    get_app_version, options, registry = commands.get_app_version, commands.AppOptions, commands.YARN_DEFAULT_REGISTRY

    def app_version(app_options=None):
        if app_options is None:
            app_options = options(registry=registry)
        return get_app_version(app_options)

    commands.get_app_version = app_version


def main():
    script = sys.argv[1]
    del sys.argv[0]  # the script sees itself as argv[0], as when it runs on its own
    sys.path[0] = os.path.dirname(os.path.realpath(script))
    sys.meta_path[:0] = [_LoadOnUse(), _AfterImport("jupyterlab.commands", _version_without_yarn)]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
