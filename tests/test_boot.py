"""boot.py, through which run.sh starts a Python Jupyter: it defers rfc3987_syntax's import and
spares JupyterLab's version query its `node yarn.js config` call (together two thirds of
JupyterLab's start-up CPU), and changes nothing else. Checked with the real jsonschema,
rfc3987_syntax and jupyterlab of the test venv, and end to end on the real sshd."""

import json
import os
import subprocess
import sys

from tasks.remote.own import text

from .sshhost import JUPYTER_VENV, interpreter_of

BOOT = text("boot.py")

PROBE = r"""
import json, sys
import jsonschema
lazy = "lark" not in sys.modules
check = jsonschema.Draft7Validator.FORMAT_CHECKER
verdicts = [check.conforms(v, f) for f in ("iri", "iri-reference") for v in ("http://ex.org/a?b#c", "http://[bad", "/rel", 7)]
print(json.dumps({"argv": sys.argv, "path0": sys.path[0], "lazy": lazy, "loaded": "lark" in sys.modules, "verdicts": verdicts}))
"""


def run_probe(tmp_path, through_boot):
    script = tmp_path / "probe"
    script.write_text(f"#!{JUPYTER_VENV}/bin/python3\n{PROBE}")
    boot = tmp_path / "boot.py"
    boot.write_text(BOOT)
    python = str(JUPYTER_VENV / "bin" / "python3")
    args = [python, str(boot), str(script), "--x"] if through_boot else [python, str(script), "--x"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_boot_defers_rfc3987_syntax_and_keeps_every_verdict(tmp_path):
    plain, booted = run_probe(tmp_path, through_boot=False), run_probe(tmp_path, through_boot=True)
    # the script sees the same argv and sys.path[0] either way
    assert (booted["argv"], booted["path0"]) == (plain["argv"], plain["path0"]) == ([str(tmp_path / "probe"), "--x"], str(tmp_path))
    assert (plain["lazy"], plain["loaded"]) == (False, True)  # without boot: the parsers are built at import
    assert (booted["lazy"], booted["loaded"]) == (True, True)  # with boot: only by the first IRI check
    assert booted["verdicts"] == plain["verdicts"]
    assert True in plain["verdicts"] and False in plain["verdicts"]  # real checks, not all-pass


def test_boot_leaves_a_missing_module_missing(tmp_path):
    """Where rfc3987_syntax is not installed, the importer still gets its ImportError."""
    boot = tmp_path / "boot.py"
    boot.write_text(BOOT)
    script = tmp_path / "probe"
    script.write_text(
        "import sys\nsys.path = [p for p in sys.path if 'site-packages' not in p]\n"
        "try:\n    import rfc3987_syntax\nexcept ImportError:\n    print('ImportError')\n"
    )
    r = subprocess.run([sys.executable, str(boot), str(script)], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "ImportError", r.stdout + r.stderr


def test_boot_spares_the_version_query_its_yarn_call_and_nothing_else(tmp_path):
    """JupyterLab's import reads its version without running node (a `node` on the PATH here
    records each call); the version is the same; an AppOptions asked for its registry, as
    builds do, still runs yarn."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "node-calls"
    bin_dir.mkdir()
    (bin_dir / "node").write_text(f"#!/bin/sh\necho \"$*\" >> {calls}\n")
    (bin_dir / "node").chmod(0o755)
    script = tmp_path / "probe"
    script.write_text(
        f"#!{JUPYTER_VENV}/bin/python3\n"
        "import json, os, sys\n"
        "from jupyterlab import labapp, commands\n"
        "imported = os.path.exists(sys.argv[1])\n"
        "commands.AppOptions().registry\n"
        "print(json.dumps({'version': labapp.app_version, 'node at import': imported, 'node for registry': os.path.exists(sys.argv[1])}))\n"
    )
    (tmp_path / "boot.py").write_text(BOOT)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    python = str(JUPYTER_VENV / "bin" / "python3")
    seen = {}
    for way, head in (("plain", [python]), ("boot", [python, str(tmp_path / "boot.py")])):
        calls.unlink(missing_ok=True)
        r = subprocess.run([*head, str(script), str(calls)], capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 0, r.stderr
        seen[way] = json.loads(r.stdout)
        assert "config --json" in calls.read_text()
    assert seen["plain"]["node at import"] is True  # the cost boot.py removes is real
    assert seen["boot"]["node at import"] is False
    assert seen["boot"]["node for registry"] is True
    assert seen["boot"]["version"] == seen["plain"]["version"] and seen["plain"]["version"]


def test_fast_start_is_opt_in_and_outside_the_restart_fingerprint(fab):
    """Off by default: Jupyter runs as its own script would. `fast_start: true` starts it through
    ~/.fabjupyter/boot.py and status says so; switching it restarts nothing (it is not a setting
    Jupyter reads): the next start uses it."""
    script = JUPYTER_VENV / "bin" / "jupyter-lab"
    fab.setup()
    record = fab.status()
    args = open(f"/proc/{record['pid']}/cmdline", "rb").read().split(b"\0")
    assert args[:2] == [interpreter_of(script).encode(), str(script).encode()] and record["fast_start"] is False, args
    assert not (fab.home / ".fabjupyter" / "boot.py").exists()
    fab.hosts(f"defaults:\n  port: {fab.port}\n  fast_start: true\n")
    r = fab.setup()
    assert "nothing changed" in r.stdout and fab.status()["pid"] == record["pid"], r.stdout
    r = fab("restart")
    record = fab.status()
    assert record["fast_start"] is True and "fast_start" in fab("status").stdout
    args = open(f"/proc/{record['pid']}/cmdline", "rb").read().split(b"\0")
    assert args[:3] == [interpreter_of(script).encode(), str(fab.home / ".fabjupyter" / "boot.py").encode(), str(script).encode()], args
    assert (fab.home / ".fabjupyter" / "boot.py").read_text() == BOOT
    fab("stop")


def test_jupyter_script_with_interpreter_options_runs_as_written(fab, local_port):
    """A script whose first line passes options to Python (here -s) is started as it is, not
    through boot.py, which would lose them."""
    fab.as_user(f"mkdir -p bin && sed '1s|$| -s|' {JUPYTER_VENV}/bin/jupyter-lab > bin/lab-s && chmod +x bin/lab-s")
    fab.hosts(f"hosts:\n  {fab.user}:\n    jupyter: ~/bin/lab-s\n    fast_start: true\n")
    fab.setup()
    pid = fab.status()["pid"]
    args = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
    assert args[:3] == [interpreter_of(JUPYTER_VENV / "bin" / "jupyter-lab").encode(), b"-s", str(fab.home / "bin" / "lab-s").encode()], args
    fab("stop")


def test_jupyter_starts_without_boot_when_it_cannot_be_written(fab):
    """boot.py is a speed-up, never a reason not to start: where it cannot be written (here its
    name is taken by a directory), Jupyter starts as its script says."""
    fab.hosts(f"defaults:\n  port: {fab.port}\n  fast_start: true\n")
    fab.setup()
    pid = fab.status()["pid"]
    fab.as_user("rm .fabjupyter/boot.py && mkdir .fabjupyter/boot.py")
    fab("restart")
    record = fab.status()
    assert record["running"] and record["pid"] != pid
    args = open(f"/proc/{record['pid']}/cmdline", "rb").read().split(b"\0")
    assert args[1] == str(JUPYTER_VENV / "bin" / "jupyter-lab").encode() and b"boot.py" not in b" ".join(args), args
    assert record["fast_start"] is False
    assert not [p for p in (fab.home / ".fabjupyter").iterdir() if ".tmp." in p.name]
    fab("stop")
