"""The README's first quick-start command ends in this demo: it must keep working, and the
committed hosts.yaml must be valid as it is."""

import subprocess
import sys

from tasks.hosts import inventory

from .conftest import ROOT
from .sshhost import free_port


def test_committed_hosts_yaml_is_valid_and_neutral():
    inv = inventory.load(str(ROOT / "hosts.yaml"), required=True)
    assert inv.hosts == {}
    assert inv.settings_for("anything") == inventory.Settings(socket=True)  # the default, resolved: a socket in ssh mode


def test_demo_sets_up_and_logs_in_through_the_tunnel():
    # on a free port: 8888 is on the loopback that a second run of the suite shares
    r = subprocess.run([sys.executable, "-m", "tests.demo", "--check", "--port", str(free_port())], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Jupyter started" in r.stdout
    assert "checked: login 200, GET /api/contents with the session: 200" in r.stdout
    assert "demo host removed" in r.stdout
