"""Every way of naming the host reaches the same account, for Fabric and for the tunnel's ssh:
user@host:port with -i, hosts.yaml connection fields, and a ProxyJump in ssh_config."""

import subprocess

from .conftest import FAB, ROOT
from .jupyter_http import login_and_list


def known_hosts_only(fab, tmp_path, extra=""):
    """An ssh_config that trusts the test host's key and names no host: the rest is on the command line."""
    path = tmp_path / "known_only_config"
    path.write_text(extra + f"Host *\n  UserKnownHostsFile {fab.sshhost.known_hosts}\n  StrictHostKeyChecking yes\n")
    return path


def run(fab, args, input=None):
    return subprocess.run([*FAB, *args], cwd=ROOT, env=fab.env(), input=input, capture_output=True, text=True, timeout=240)


def test_user_at_host_port_with_identity_flag(fab, tmp_path, local_port):
    h = fab.sshhost
    cfg = known_hosts_only(fab, tmp_path)
    host = f"fjtest@127.0.0.1:{h.port}"
    r = run(fab, ["-S", str(cfg), "-i", str(h.client_key), "-t", "5", "-H", host, "setup", "--password-stdin"], "pw one\n")
    assert r.returncode == 0, r.stderr
    assert f"Next: fab -S {cfg} -H 127.0.0.1 tunnel" in r.stdout
    proc, url, out = fab.tunnel(cmd=[*FAB, "-S", str(cfg), "-i", str(h.client_key), "-t", "5", "-H", host, "tunnel", "--local-port", str(local_port)])
    assert url, out
    assert login_and_list(url, "pw one")[1] == 200


def test_hosts_yaml_connection_fields(fab, tmp_path, local_port):
    h = fab.sshhost
    cfg = known_hosts_only(fab, tmp_path)
    fab.hosts(
        "hosts:\n  lab:\n"
        f"    host: 127.0.0.1\n    user: fjtest\n    ssh_port: {h.port}\n    identity: {h.client_key}\n    launcher: tmux\n"
    )
    r = run(fab, ["-S", str(cfg), "-H", "lab", "setup", "--password-stdin"], "pw two\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("lab: ")
    assert fab.status()["launcher"] == "tmux"  # the same account, seen through the fjtest alias
    proc, url, out = fab.tunnel(cmd=[*FAB, "-S", str(cfg), "-H", "lab", "tunnel", "--local-port", str(local_port)])
    assert url, out
    assert login_and_list(url, "pw two")[1] == 200


def test_proxyjump_from_ssh_config(fab, tmp_path, local_port):
    h = fab.sshhost
    cfg = tmp_path / "jump_config"
    cfg.write_text(
        h.ssh_config.read_text()
        + f"\nHost viajump\n  HostName 127.0.0.1\n  Port {h.port}\n  User fjtest\n  ProxyJump fjtest\n"
        f"  IdentityFile {h.client_key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {h.known_hosts}\n  HostKeyAlias [127.0.0.1]:{h.port}\n"
    )
    before = h.sshd_log.read_text().count("Accepted publickey")
    r = run(fab, ["-S", str(cfg), "-H", "viajump", "setup", "--password-stdin"], "pw three\n")
    assert r.returncode == 0, r.stderr
    # through the jump host: two authentications per connection (the jump, then the target)
    assert h.sshd_log.read_text().count("Accepted publickey") - before >= 2
    proc, url, out = fab.tunnel(cmd=[*FAB, "-S", str(cfg), "-H", "viajump", "tunnel", "--local-port", str(local_port)])
    assert url, out
    assert login_and_list(url, "pw three")[1] == 200
