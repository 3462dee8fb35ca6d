"""fabjupyter: Fabric tasks that set up, run and tunnel to Jupyter on a machine you SSH into.

    fab -H HOST setup     configure, set the password, start Jupyter detached, wait until it answers
    fab -H HOST tunnel    forward a local port to it and print the URL
"""

import gc

# The collection's imports (Invoke, Fabric, paramiko, ours) make a few hundred thousand objects that
# live as long as the process. The garbage collector does not run over them while they are made,
# and afterwards they are frozen (set aside, never scanned again): a run starts about 10 ms sooner
# and ends about 40 ms sooner, as the collections at exit skip them (measured on 2 cores).
_collecting = gc.isenabled()
gc.disable()
try:
    from invoke import Collection

    from .commands import cert, config, password, server, setup, sshconfig
    from .forwards import tunnel
finally:
    gc.freeze()
    if _collecting:
        gc.enable()


def __getattr__(name):
    """__version__, looked up when asked (`fabjupyter --version`): importlib.metadata costs a
    task run 20 ms of start-up that it does not need."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import metadata

    try:
        version = metadata.version("fabjupyter")
    except metadata.PackageNotFoundError:  # a checkout that was never installed
        version = "0.1.0"
    globals()["__version__"] = version
    return version

ns = Collection(
    setup.setup,
    tunnel.tunnel,
    tunnel.url,
    config.config,
    password.password,
    cert.cert,
    server.start,
    server.stop,
    server.restart,
    server.status,
    server.list_,
    server.logs,
    sshconfig.ssh_config,
)
ns.configure(
    {
        # jupyter.hosts_file: the inventory (env: FABRIC_JUPYTER_HOSTS_FILE); else ./hosts.yaml, else
        # $XDG_CONFIG_HOME/fabjupyter/hosts.yaml (tasks/hosts/targets.py)
        # jupyter.accept_new_host_key: record unknown host keys (env: FABRIC_JUPYTER_ACCEPT_NEW_HOST_KEY=1)
        "jupyter": {"hosts_file": None, "accept_new_host_key": False},
        # Fabric's default is to wait for the OS (minutes); -t SECONDS overrides this.
        "timeouts": {"connect": 10},
    }
)
