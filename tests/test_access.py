"""The password is the only way in, whatever the user's own Jupyter config says: a hostile config
(every setting that decides who gets in, on every class that could carry it, see hostile.py) in
~/.jupyter or in the environment's etc/jupyter, as .py or .json, under every file name the kind of
Jupyter reads, for JupyterLab 4, Notebook 7, JupyterLab 3 (Server 1) and classic Notebook 6. And where a user's setting
still changes the running server, the check after the start stops it with a clear error."""

import re

import pytest

from . import hostile, userenv
from .sshhost import JUPYTER_VENV, interpreter_of
from .test_core import listening

NB7 = JUPYTER_VENV.parent / "nb7"
NB6 = JUPYTER_VENV.parent / "nb6"
LAB3 = JUPYTER_VENV.parent / "lab3"
PASSWORD = "the real one"

# kind: (installed venv, its script, the config file names it reads)
KINDS = {
    "lab4": (JUPYTER_VENV, "jupyter-lab", ("jupyter_server_config", "jupyter_lab_config", "jupyter_notebook_config")),
    "nb7": (NB7, "jupyter-notebook", ("jupyter_server_config", "jupyter_notebook_config")),
    "nb6": (NB6, "jupyter-notebook", ("jupyter_notebook_config",)),
    "lab3": (LAB3, "jupyter-lab", ("jupyter_server_config", "jupyter_lab_config", "jupyter_notebook_config")),
}
PY_KIND = {"nb6": "nb6", "lab3": "server1"}


def own_env(fab, kind):
    base, script, _ = KINDS[kind]
    return userenv.own_env(fab, base, script)


def write_as_user(fab, path, text):
    fab.sshhost.as_user(fab.user, f"mkdir -p '{path.parent}' && cat > '{path}'", input=text)


CASES = [(kind, where, fmt) for kind in KINDS for where in ("home", "env") for fmt in ("py", "json")]


@pytest.mark.parametrize("kind,where,fmt", CASES, ids=["-".join(c) for c in CASES])
def test_users_config_opens_no_other_way_in(fab_dash, local_port, kind, where, fmt):
    fab = fab_dash
    env = own_env(fab, kind)
    _, script, names = KINDS[kind]
    config_dir = fab.home / ".jupyter" if where == "home" else env / "etc" / "jupyter"
    py_kind = PY_KIND.get(kind, "server")
    text = hostile.as_json(py_kind) if fmt == "json" else hostile.as_py(py_kind)
    for name in names:
        write_as_user(fab, config_dir / f"{name}.{fmt}", text)
    fab.hosts(f"hosts:\n  {fab.user}:\n    jupyter: {env}/bin/{script}\n")
    r = fab.setup(password=PASSWORD)
    record = fab.status()
    assert record["running"] and record["port"] == fab_dash.port, r.stdout
    assert listening(fab_dash.port) == ["127.0.0.1"]
    args = open(f"/proc/{record['pid']}/cmdline", "rb").read().split(b"\0")
    assert args[0].decode() == interpreter_of(env / "bin" / script)  # the user's env, as asked
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert url, out
    assert hostile.ways_in(url, PASSWORD) == []
    for name in names:  # the user's files stay as they were
        assert (config_dir / f"{name}.{fmt}").read_text() == text
    fab("stop")


def test_public_mode_keeps_tls_and_the_password_under_a_hostile_config(fab):
    """Public mode (all interfaces, TLS): the same hostile config opens no way in over HTTPS."""
    from .test_cert import local_copy, trusting

    write_as_user(fab, fab.home / ".jupyter" / "jupyter_server_config.json", hostile.as_json())
    write_as_user(fab, fab.home / ".jupyter" / "jupyter_lab_config.py", hostile.as_py("server"))
    fab.setup("--mode", "public", password=PASSWORD)
    assert listening(fab.port) == ["0.0.0.0"]
    context = trusting(local_copy(fab) / "cert.pem", hostname_check=False)
    assert hostile.ways_in(f"https://127.0.0.1:{fab.port}/", PASSWORD, context, public=True) == []
    fab("stop")


def test_a_server_that_is_not_as_set_up_is_stopped_with_a_clear_error(fab):
    """A user's config that changes what the server reports after our settings are applied
    (here a .py config that rewrites Jupyter's record of itself to show a token, as a config we
    cannot pin would): the check after the start notices, stops it, and says what and where."""
    write_as_user(
        fab,
        fab.home / ".jupyter" / "jupyter_server_config.py",
        "from jupyter_server.serverapp import ServerApp\n"
        "_info = ServerApp.server_info\n"
        "ServerApp.server_info = lambda self: dict(_info(self), token='sneaky')\n",
    )
    r = fab.setup(check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("fjtest: Jupyter started, but not with this tool's settings: it accepts a token"), line
    assert "It was stopped" in line and "~/.jupyter" in line
    assert listening(fab.port) == []
    assert fab.sshhost.processes(fab.user) == []
    assert fab.status()["running"] is False


def test_a_port_moved_by_a_notebook_setting_is_refused(fab):
    """`c.NotebookApp.port` in jupyter_server_config.py (an old key in the server's file) is moved
    onto ServerApp by JupyterLab's notebook_shim, over the port we chose on the command line: the
    server is stopped and the error names the setting, instead of a server that status and tunnel
    would look for on another port."""
    write_as_user(fab, fab.home / ".jupyter" / "jupyter_server_config.py", "c.NotebookApp.port = 9912\n")
    r = fab.setup(check=False)
    assert r.returncode == 1, r.stdout
    line = r.stderr.strip().splitlines()[-1]
    assert re.search(rf"it listens on port 9912, not {fab.port} \(port\)", line), line
    assert listening(9912) == [] and fab.sshhost.processes(fab.user) == []
