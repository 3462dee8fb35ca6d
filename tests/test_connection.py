"""Every way of naming the host reaches the same account, for Fabric and for the tunnel's ssh:
user@host:port with -i, hosts.yaml connection fields, and a ProxyJump in ssh_config."""

import os
import signal
import subprocess

import pytest

from .conftest import FAB, ROOT
from .jupyter_http import login_and_list
from .sshhost import SSHHost, free_port


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
    host = f"{h.users['fjtest'].name}@127.0.0.1:{h.port}"
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
        f"    host: 127.0.0.1\n    user: {h.users['fjtest'].name}\n    ssh_port: {h.port}\n    identity: {h.client_key}\n    launcher: tmux\n"
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
        + f"\nHost viajump\n  HostName 127.0.0.1\n  Port {h.port}\n  User {h.users['fjtest'].name}\n  ProxyJump fjtest\n"
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


@pytest.fixture(scope="module")
def behind_jump():
    """A jump host in its own network namespace (reachable at 10.231.9.2 in slot 0), and a target that
    listens on that namespace's loopback only: from here, reachable through the jump host alone."""
    jump = SSHHost(users=[("fjpjump", "/bin/bash", False, False)], prefix="fabjupyter-pjjump-", netns=("fjpjns", 9))
    try:
        target = SSHHost(users=[("fjpjtgt", "/bin/bash", True, False)], prefix="fabjupyter-pjtgt-", inside=(jump, free_port()))
    except BaseException:
        jump.close()
        raise
    try:
        yield jump, target
    finally:
        target.close()
        jump.close()


def jump_config(tmp_path, jump, target, jump_known=None):
    known = tmp_path / "pj_known_hosts"
    known.write_text((jump_known or jump.known_hosts.read_text()) + target.known_hosts.read_text())
    cfg = tmp_path / "pj_config"
    common = f"  IdentitiesOnly yes\n  UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n"
    cfg.write_text(
        f"Host pjjump\n  HostName {jump.address}\n  Port {jump.port}\n  User {jump.users['fjpjump'].name}\n  IdentityFile {jump.client_key}\n{common}"
        f"Host pjtarget\n  HostName 127.0.0.1\n  Port {target.port}\n  User {target.users['fjpjtgt'].name}\n  ProxyJump pjjump\n"
        f"  IdentityFile {target.client_key}\n{common}"
    )
    return cfg


def test_proxyjump_reaches_a_target_only_the_jump_host_can_reach(behind_jump, tmp_path, local_port):
    jump, target = behind_jump
    cfg = jump_config(tmp_path, jump, target)
    env = dict(os.environ, FABRIC_JUPYTER_HOSTS_FILE=str(tmp_path / "none.yaml"), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    (tmp_path / "none.yaml").write_text("")
    direct = subprocess.run(["ssh", "-F", str(cfg), "-o", "ProxyJump=none", "-o", "ConnectTimeout=5", "pjtarget", "true"],
                            capture_output=True, text=True, timeout=30)
    assert direct.returncode == 255 and "refused" in direct.stderr, direct.stderr  # not from here
    r = subprocess.run([*FAB, "-S", str(cfg), "-H", "pjtarget", "setup", "--password-stdin"], cwd=ROOT, env=env,
                       input="pw jump\n", capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    proc = subprocess.Popen([*FAB, "-S", str(cfg), "-H", "pjtarget", "tunnel", "--local-port", str(local_port)], cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "Jupyter is at http://localhost:" in line, line + proc.stderr.read() if proc.poll() is not None else line
        assert login_and_list(f"http://localhost:{local_port}/", "pw jump")[1] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    log = target.sshd_log.read_text()
    sources = {line.split(" from ")[1].split()[0] for line in log.splitlines() if "Accepted publickey" in line}
    assert sources == {"127.0.0.1"}, log  # every login (setup's and the tunnel's) came through the jump host
    assert jump.sshd_log.read_text().count(f"Accepted publickey for {jump.users['fjpjump'].name} ") >= 2
    subprocess.run([*FAB, "-S", str(cfg), "-H", "pjtarget", "stop"], cwd=ROOT, env=env, capture_output=True, timeout=120)


def test_a_jump_host_with_a_changed_key_is_not_used(behind_jump, tmp_path):
    """The jump host's key is checked like the target's: a changed one stops the run before any
    login, on the jump host or beyond it."""
    jump, target = behind_jump
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other = (tmp_path / "other.pub").read_text().split()
    cfg = jump_config(tmp_path, jump, target, jump_known=f"{jump.address} {other[0]} {other[1]}\n")
    env = dict(os.environ, FABRIC_JUPYTER_HOSTS_FILE=str(tmp_path / "none.yaml"), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    (tmp_path / "none.yaml").write_text("")
    logins = (jump.sshd_log.read_text().count("Accepted publickey"), target.sshd_log.read_text().count("Accepted publickey"))
    r = subprocess.run([*FAB, "-S", str(cfg), "-H", "pjtarget", "status"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "CHANGED" in lines[0] and jump.address in lines[0], r.stderr
    assert (jump.sshd_log.read_text().count("Accepted publickey"), target.sshd_log.read_text().count("Accepted publickey")) == logins
