"""README promises that no other test checks: --port, restarts on a changed root_dir or port,
`config` telling that a restart is needed (and status's `current`), KILL after 10 s on stop,
start_timeout and its error, an old Notebook refused, a wrong TLS key failing readiness, Ctrl-C
ending the tunnel, dry runs of cert and of public setup on a host set up already, the variables
the launcher unsets and ~/.local/bin, GlobalKnownHostsFile and FABRIC_JUPYTER_ACCEPT_NEW_HOST_KEY,
fish and tcsh login shells."""

import signal
import subprocess
import time

import pytest

from .conftest import FAB, ROOT
from .jupyter_http import login_and_list
from .sshhost import JUPYTER_VENV, free_port
from .test_core import listening, ssh_forwarders
from .test_errors import one_line_error
from .test_hostkeys import config_with, run

PASSWORD = "correct horse"


def gone(pid):
    """No such process, or only its zombie (killed, not yet reaped by whoever adopted it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_port_option_and_setting(fab, local_port):
    port = free_port()
    fab.setup("--port", str(port))
    record = fab.status()
    assert record["port"] == port and listening(port) == ["127.0.0.1"]
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert login_and_list(url, PASSWORD)[1] == 200
    fab.cleanup()
    other = free_port()
    fab.hosts(f"hosts:\n  fjtest:\n    port: {other}\n")
    r = fab.setup()
    assert f"stopped the running Jupyter (pid {record['pid']}) to apply the changes" in r.stdout
    assert fab.status()["port"] == other and listening(other) == ["127.0.0.1"] and listening(port) == []


def test_a_changed_root_dir_restarts_and_config_says_when_a_restart_is_needed(fab):
    fab.setup()
    first = fab.status()
    assert first["current"] is True
    r = fab("config", "--root-dir", "~/work")
    assert "fjtest: the running Jupyter uses the old configuration; `fab -H fjtest restart` applies it" in r.stdout
    record = fab.status()
    assert record["current"] is False and record["pid"] == first["pid"]
    assert "the configuration changed since it started" in fab("status").stdout
    fab("restart")
    record = fab.status()
    assert record["current"] is True and record["pid"] != first["pid"]
    args = open(f"/proc/{record['pid']}/cmdline", "rb").read().split(b"\0")
    assert f"--ServerApp.root_dir={fab.home / 'work'}".encode() in args
    r = fab.setup("--root-dir", "~/other")
    assert f"stopped the running Jupyter (pid {record['pid']}) to apply the changes" in r.stdout
    assert (fab.home / "other").is_dir()


def test_stop_kills_a_server_that_ignores_term_after_10_seconds(fab):
    """A server that ignores SIGTERM (a user config that replaces Jupyter's signal set-up) is
    killed after 10 s, and stop reports it stopped."""
    fab.as_user(
        "mkdir -p .jupyter && printf '%s\\n' 'import signal' 'from jupyter_server.serverapp import ServerApp' "
        "'ServerApp.init_signal = lambda self: signal.signal(signal.SIGTERM, signal.SIG_IGN)' > .jupyter/jupyter_server_config.py"
    )
    fab.setup()
    pid = fab.status()["pid"]
    started = time.monotonic()
    r = fab("stop")
    took = time.monotonic() - started
    assert f"Jupyter stopped (pid {pid})" in r.stdout
    assert gone(pid)
    assert took >= 9.5, took  # it did wait for TERM first (a property of stop, not a speed goal)


def test_start_timeout_and_its_error(fab):
    fab.hosts("hosts:\n  fjtest:\n    start_timeout: 2\n    jupyter: sh -c 'echo never answers; exec sleep 300'\n")
    r = fab.setup(check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.splitlines()[0] == "fjtest: Jupyter did not answer within 2 s, so it was stopped; its log ends with:", r.stderr
    # Jupyter's output (run.sh's own note left out), then what to do
    assert r.stderr.splitlines()[1].strip() == "never answers (start_timeout: in hosts.yaml waits longer)", r.stderr
    assert fab.status()["running"] is False


def test_classic_notebook_older_than_6_1_is_refused(fab_dash):
    """Found by its installed version (a stand-in environment whose dist-info says 6.0.3)."""
    fab_dash.as_user(
        "/usr/bin/python3 -m venv --without-pip old && "
        "mkdir -p old/lib/python3.11/site-packages/notebook-6.0.3.dist-info && "
        "printf '#!%s\\nprint(1)\\n' \"$HOME/old/bin/python3\" > old/bin/jupyter-notebook && chmod +x old/bin/jupyter-notebook"
    )
    fab_dash.hosts(f"hosts:\n  fjdash:\n    jupyter: {fab_dash.home}/old/bin/jupyter-notebook\n")
    line = one_line_error(fab_dash.setup(check=False))
    assert line.startswith("fjdash: classic Notebook 6.0.3 (6.1 or newer is needed) is not supported"), line
    assert not (fab_dash.home / ".fabjupyter").exists()


def test_a_wrong_tls_key_fails_readiness(fab):
    """A key that does not match the certificate: Jupyter "starts", but every handshake fails;
    the readiness check makes a real TLS handshake, so start fails and nothing stays running."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    fab.setup("--mode", "public", password=PASSWORD)
    fab("stop")
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fab.sshhost.as_user("fjtest", "cat > .fabjupyter/tls/key.pem", input=other.decode())
    fab.hosts("hosts:\n  fjtest:\n    start_timeout: 5\n")
    r = fab("start", check=False)
    assert r.returncode == 1 and "Jupyter did not answer within 5 s, so it was stopped" in r.stderr, r.stderr
    assert fab.status()["running"] is False and listening(fab.port) == []


def test_ctrl_c_ends_the_tunnel(fab, local_port):
    fab.setup()
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert url, out
    proc.send_signal(signal.SIGINT)
    assert proc.wait(20) in (0, 130)
    assert ssh_forwarders(local_port) == []
    assert listening(local_port) == []


def test_dry_runs_of_cert_and_public_setup_on_a_host_set_up_already(fab):
    fab.setup()
    pid = fab.status()["pid"]
    before = sorted((p, p.stat().st_mtime_ns) for p in fab.home.rglob("*"))
    here = sorted((p, p.stat().st_mtime_ns) for p in fab.config_home.rglob("*"))  # setup's ssh_config entry
    r = fab("cert", "--dry-run")
    assert "would make a new certificate (created)" in r.stdout, r.stdout
    r = fab("setup", "--mode", "public", "--dry-run")
    assert f"fjtest: would restart Jupyter (pid {pid}) with the new settings" in r.stdout, r.stdout
    assert '+    "ip": "0.0.0.0",' in r.stdout
    assert sorted((p, p.stat().st_mtime_ns) for p in fab.home.rglob("*")) == before
    assert sorted((p, p.stat().st_mtime_ns) for p in fab.config_home.rglob("*")) == here  # no local certificate
    assert fab.status()["pid"] == pid


def test_launcher_unsets_jupyter_port_and_no_config_and_adds_local_bin(fab_dash):
    """An activation that sets JUPYTER_PORT and JUPYTER_NO_CONFIG (which would override our port
    and drop our configuration), and a Jupyter found only in ~/.local/bin."""
    fab_dash.as_user(f"mkdir -p .local/bin && ln -s {JUPYTER_VENV}/bin/jupyter-lab .local/bin/jupyter-lab")
    fab_dash.hosts("hosts:\n  fjdash:\n    activate: export JUPYTER_PORT=9931 JUPYTER_NO_CONFIG=1\n")
    fab_dash.setup()
    record = fab_dash.status()
    assert record["port"] == fab_dash.port and listening(9931) == []
    environ = open(f"/proc/{record['pid']}/environ", "rb").read().split(b"\0")
    assert not any(v.startswith((b"JUPYTER_PORT=", b"JUPYTER_NO_CONFIG=")) for v in environ)
    assert any(v.startswith(b"PATH=") and v.endswith(f":{fab_dash.home}/.local/bin".encode()) for v in environ)


def test_global_known_hosts_file_and_the_accept_new_variable(fab, tmp_path):
    h = fab.sshhost
    empty = tmp_path / "empty_known"
    glob_known = tmp_path / "global_known"
    glob_known.write_text(h.known_hosts.read_text())
    cfg = tmp_path / "global_config"
    cfg.write_text(
        f"Host hk\n  HostName 127.0.0.1\n  Port {h.port}\n  User {h.users['fjtest'].name}\n  IdentityFile {h.client_key}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {empty}\n  GlobalKnownHostsFile {glob_known}\n  StrictHostKeyChecking yes\n"
    )
    assert run(fab, cfg, "status").returncode == 0  # known from the global file alone
    known = tmp_path / "known_hosts"
    cfg2 = config_with(fab, tmp_path, known)
    env = dict(fab.env(), FABRIC_JUPYTER_ACCEPT_NEW_HOST_KEY="1")
    r = subprocess.run([*FAB, "-S", str(cfg2), "-H", "hk", "status"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert known.read_text().split()[1:] == h.known_hosts.read_text().split()[1:]


@pytest.mark.parametrize("fixture", ["fab_fish", "fab_tcsh"])
def test_fish_and_tcsh_login_shells(request, fixture, local_port):
    fab = request.getfixturevalue(fixture)
    fab.setup()
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert login_and_list(url, PASSWORD)[1] == 200
    fab.cleanup()
    assert "nothing changed" in fab.setup().stdout
    fab("stop")
    assert fab.sshhost.processes(fab.user) == []
