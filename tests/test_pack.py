"""The remote folder joined into the one script that travels (tasks/remote/pack.py): a traceback
from the host names the remote module's own file and line; a script cut off in transit runs
nothing."""

import subprocess
import sys

import pytest

from tasks import protocol
from tasks.ops import config
from tasks.ops.password import hash_password
from tasks.remote import files, pack

from .localagent import LocalHost, settings
from .sshhost import free_port


def test_a_traceback_names_the_remote_module_file_and_line(tmp_path):
    """A module raises as it runs from the joined script: the traceback names its file and the
    line, and shows the line (the loader registers the text with linecache)."""
    script = pack.join("_fj_import('files').json_text(object())")
    r = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    line = files.json_text.__code__.co_firstlineno + 1
    assert f'File "fabjupyter/remote/files.py", line {line}, in json_text' in r.stderr, r.stderr
    assert "return json.dumps(obj, indent=2, sort_keys=True)" in r.stderr, r.stderr


def test_a_traceback_from_the_agent_on_a_host_names_the_file_and_line(tmp_path, monkeypatch):
    """The whole way, as the client sends it (sh -s, the bootstrap, the agent): a bug in a remote
    module is reported at its own file and line."""
    real = pack.sources()
    lines = real["status.py"].splitlines(True)
    at = next(i for i, text in enumerate(lines) if text.startswith("def status(")) + 1
    lines.insert(at, "    raise RuntimeError('a bug in status')\n")
    broken = dict(real, **{"status.py": "".join(lines)})
    monkeypatch.setattr(pack, "sources", lambda: dict(broken))
    host = LocalHost(tmp_path / "home")
    script = protocol.agent_script("status", {})
    r = subprocess.run(["/bin/sh", "-s"], input=script.encode(), capture_output=True, env=host.env(), cwd=host.home, timeout=60)
    err = r.stderr.decode()
    assert f'File "fabjupyter/remote/status.py", line {at + 1}, in status' in err, err
    assert "raise RuntimeError('a bug in status')" in err and "RuntimeError: a bug in status" in err, err


def cut_points(text, tail):
    """Places to cut TEXT: through its body, and in and just before its last line (TAIL)."""
    end = len(text) - len(tail)
    return sorted({len(text) // 10, len(text) // 3, len(text) // 2, len(text) * 9 // 10, end - 1, end, end + 3,
                   len(text) - 2})


@pytest.fixture
def setup_request():
    request = dict(config.wanted(settings(port=free_port())), password_hash=hash_password("cut off"))
    return request


def test_a_script_cut_off_in_transit_runs_nothing(tmp_path, setup_request):
    """The script for `sh -s`, cut anywhere before its end: no reply, and nothing on the host."""
    script = protocol.agent_script("setup", setup_request)
    assert script.endswith("\nfj_boot agent\n")
    for n, at in enumerate(cut_points(script, "fj_boot agent\n")):
        host = LocalHost(tmp_path / ("home%d" % n))
        r = subprocess.run(["/bin/sh", "-s"], input=script[:at].encode(), capture_output=True, env=host.env(), cwd=host.home,
                           timeout=60)
        assert r.stdout == b"" and list(host.home.iterdir()) == [], (at, r.stdout, r.stderr)


def test_the_joined_python_cut_off_runs_nothing(tmp_path, setup_request):
    """The Python the bootstrap hands over, cut anywhere before its end: only definitions ran."""
    request = dict(setup_request, v=protocol.PROTOCOL, action="setup", instance="default")
    payload = pack.agent_payload(request)
    last = payload.rstrip("\n").rsplit("\n", 1)[1]
    assert last.startswith("sys.exit(_fj_import('agent').main(")  # the one call, on the last line
    for n, at in enumerate(cut_points(payload, last + "\n")[:-1]):
        host = LocalHost(tmp_path / ("home%d" % n))
        r = subprocess.run([sys.executable, "-"], input=payload[:at].encode(), capture_output=True, env=host.env(),
                           cwd=host.home, timeout=60)
        assert r.stdout == b"" and list(host.home.iterdir()) == [], (at, r.stdout, r.stderr)


def test_a_group_s_threads_build_their_scripts_at_once(monkeypatch):
    """The folder is read once, by whichever thread comes first, while the others wait for all of
    it (a group's hosts are sent their scripts from threads at once; a half-read folder was a
    KeyError for 'bootstrap.sh')."""
    import builtins
    import threading
    import time

    def slow_open(*args, **kwargs):
        time.sleep(0.002)  # the reading thread yields between files, as under load
        return builtins.open(*args, **kwargs)

    monkeypatch.setattr(pack, "_sources", {})
    monkeypatch.setattr(pack, "_packed", {})
    monkeypatch.setattr(pack, "open", slow_open, raising=False)
    errors, scripts = [], []

    def build():
        try:
            scripts.append(protocol.agent_script("status", {}))
        except Exception as e:  # noqa: BLE001 (collected and shown below)
            errors.append(repr(e))

    threads = [threading.Thread(target=build) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(scripts)) == 1, errors[:3]
