"""Remote compatibility: JupyterLab 4, Notebook 7, JupyterLab 3 (Jupyter Server 1) and classic
Notebook 6.5, each in its own venv
(one reached only through `activate:`), for accounts whose login shell is bash, dash or zsh.
Each: setup, a password login through the tunnel, status, an idempotent re-run, stop, and no
deprecation warning in the server log."""

import re

import pytest

from tasks.remote.kinds import MOVED_KEYS, SHIMMED_CLASSES

from .jupyter_http import login_and_list
from .sshhost import JUPYTER_VENV, interpreter_of

NB7 = JUPYTER_VENV.parent / "nb7"
NB6 = JUPYTER_VENV.parent / "nb6"
LAB3 = JUPYTER_VENV.parent / "lab3"  # JupyterLab 3.6 on Jupyter Server 1.24
PASSWORD = "compat horse"

CASES = {
    "lab4-path-zsh": ("fab_zsh", f"jupyter: {JUPYTER_VENV}/bin/jupyter lab", "JupyterLab 4.", "server2", JUPYTER_VENV / "bin/jupyter-lab"),
    "nb7-path-dash": ("fab_dash", f"jupyter: {NB7}/bin/jupyter notebook", "Notebook 7.", "server2", NB7 / "bin/jupyter-notebook"),
    "lab3-server1-dash": ("fab_dash", f"jupyter: {LAB3}/bin/jupyter lab", "JupyterLab 3.", "server1", LAB3 / "bin/jupyter-lab"),
    "nb6-activate-dash": ("fab_dash", f"activate: . {NB6}/bin/activate", "Notebook 6.5", "nb6", NB6 / "bin/jupyter-notebook"),
    "nb6-activate-zsh": ("fab_zsh", f"activate: source {NB6}/bin/activate", "Notebook 6.5", "nb6", NB6 / "bin/jupyter-notebook"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_remote_jupyter_kinds_and_login_shells(case, request, local_port):
    fixture, setting, version, flavour, script = CASES[case]
    fab = request.getfixturevalue(fixture)
    fab.hosts(f"hosts:\n  {fab.user}:\n    {setting}\n")
    r = fab.setup(password=PASSWORD)
    assert version in r.stdout, r.stdout
    record = fab.status()
    assert record["running"]
    # started as its own script says (fast_start is off by default), the kind's own script
    # directly (no `jupyter` hop)
    args = open(f"/proc/{record['pid']}/cmdline", "rb").read().split(b"\0")
    assert [a.decode() for a in args[:2]] == [interpreter_of(script), str(script)], args
    assert b"boot.py" not in b" ".join(args)
    assert record["kind"] == flavour and record["fast_start"] is False
    config_name = "jupyter_notebook_config.json" if flavour == "nb6" else "jupyter_server_config.json"
    assert [p.name for p in (fab.home / ".fabjupyter" / "config").iterdir()] == [config_name]
    assert [p.name for p in (fab.home / ".fabjupyter" / "password").iterdir()] == [config_name]

    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert url, out
    assert login_and_list(url, PASSWORD)[1] == 200
    assert login_and_list(url, "wrong")[1] == 403
    fab.cleanup()

    r = fab.setup(password=PASSWORD)
    assert "nothing changed" in r.stdout and fab.status()["pid"] == record["pid"]
    # a dry run diffs the file this kind of Jupyter reads, against its own keys
    r = fab("config", "--dry-run", "--mode", "public")
    assert f"config/{config_name} (would be)" in r.stdout, r.stdout
    assert '-    "ip": "127.0.0.1",' in r.stdout and '+    "ip": "0.0.0.0",' in r.stdout
    # ip is pinned on ServerApp and the classes notebook_shim moves onto it; on NotebookApp for nb6
    assert r.stdout.count('+    "ip": "0.0.0.0",') == (1 if flavour == "nb6" else 1 + len(SHIMMED_CLASSES)), r.stdout
    log = (fab.home / ".fabjupyter" / "jupyter.log").read_text()
    for word in ("deprecat", "will be removed", "not recognized"):
        assert word not in log.lower(), log
    # notebook_shim warns that keys "have moved" onto ServerApp: only the ones we pin there
    moved = set(re.findall(r"'(\w+)' has moved from", log))
    assert moved <= set(MOVED_KEYS), moved - set(MOVED_KEYS)
    assert "has moved" not in fab("logs", "--lines", "1000").stdout  # those are ours: `logs` leaves them out
    fab("stop")
    assert fab.sshhost.processes(fab.user) == []


def test_conda_never_initialised_for_non_interactive_shells(fab_dash, local_port):
    """`activate: conda activate ml` where conda's shell hook was never loaded (no .bashrc is read):
    the launcher loads it from the usual install place and says so. The conda here is a stand-in
    with conda's interface (`conda shell.posix hook` prints a `conda` shell function)."""
    fake = fab_dash.home / "miniconda3" / "bin" / "conda"
    fab_dash.as_user(
        "mkdir -p miniconda3/bin && cat > miniconda3/bin/conda <<'EOF'\n"
        "#!/bin/sh\n"
        "if [ \"$1 $2\" = 'shell.posix hook' ]; then\n"
        f"  echo 'conda() {{ if [ \"$1\" = activate ] && [ \"$2\" = ml ]; then . {NB7}/bin/activate; else return 1; fi; }}'\n"
        "fi\n"
        "EOF\n"
        "chmod +x miniconda3/bin/conda"
    )
    fab_dash.hosts("hosts:\n  fjdash:\n    activate: conda activate ml\n")
    r = fab_dash.setup(password=PASSWORD)
    assert f"note: conda was not initialised for non-interactive shells; used {fake} shell.posix hook" in r.stdout
    assert "Notebook 7." in r.stdout
    proc, url, out = fab_dash.tunnel("--local-port", str(local_port))
    assert login_and_list(url, PASSWORD)[1] == 200
