"""Host keys as OpenSSH checks them: a changed key is always refused; an unknown one follows
StrictHostKeyChecking (refused by default), or --accept-new-host-key records it."""

import shutil
import subprocess
import tempfile
from pathlib import Path

from .conftest import FAB, ROOT
from .jupyter_http import login_and_list
from .sshhost import end_control_master
from .test_errors import one_line_error, untouched


def config_with(fab, tmp_path, known_hosts, strict=None):
    h = fab.sshhost
    path = tmp_path / "hk_config"
    text = (
        f"Host hk\n  HostName 127.0.0.1\n  Port {h.port}\n  User {h.users['fjtest'].name}\n  IdentityFile {h.client_key}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {known_hosts}\n  GlobalKnownHostsFile /dev/null\n"
    )
    if strict:
        text += f"  StrictHostKeyChecking {strict}\n"
    path.write_text(text)
    return path


def run(fab, config, *args, input=None):
    return subprocess.run([*FAB, "-S", str(config), "-H", "hk", *args], cwd=ROOT, env=fab.env(), input=input,
                          capture_output=True, text=True, timeout=240)


def test_changed_host_key_is_refused_naming_the_line(fab, tmp_path):
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    known = tmp_path / "known_hosts"
    known.write_text("# an older key\n" + f"[127.0.0.1]:{fab.sshhost.port} " + " ".join((tmp_path / "other.pub").read_text().split()[:2]) + "\n")
    cfg = config_with(fab, tmp_path, known, strict="no")  # even `no` never accepts a changed key
    line = one_line_error(run(fab, cfg, "setup", "--password-stdin", "--accept-new-host-key", input="pw\n"))
    assert line.startswith(f"hk: the host key of [127.0.0.1]:{fab.sshhost.port} has CHANGED")
    assert f"{known}:2" in line
    untouched(fab)
    fixes_the_changed_key(fab, line, known, tmp_path / "other.pub")
    assert run(fab, cfg, "status").returncode == 0


def fixes_the_changed_key(fab, line, known, old):
    """The advice for a changed key: check it, then the command that removes the old line from
    that known_hosts file (not --accept-new-host-key, which never replaces a known key). Run
    as given, it does; the host's real key is then recorded as for a new host."""
    assert "--accept-new-host-key" not in line and "Check the new key" in line, line
    command = line.split("remove the old line: ", 1)[1]
    assert command.startswith(f"ssh-keygen -f {known} -R "), command
    subprocess.run(command, shell=True, check=True, capture_output=True)
    assert old.read_text().split()[1] not in known.read_text()
    known.write_text(known.read_text() + f"[127.0.0.1]:{fab.sshhost.port} " + " ".join(fab.sshhost.known_hosts.read_text().split()[1:]) + "\n")


def test_changed_host_key_on_the_openssh_path(fab, tmp_path):
    """multiplex: true (the `ssh` client logs in): the same advice, from OpenSSH's own words."""
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "other", "-f", str(other)], check=True)
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{fab.sshhost.port} " + " ".join((tmp_path / "other.pub").read_text().split()[:2]) + "\n")
    cfg = config_with(fab, tmp_path, known, strict="yes")
    fab.hosts("defaults:\n  multiplex: true\n")
    runtime = Path(tempfile.mkdtemp(prefix="fjrun-", dir="/tmp"))  # short: the tool's control socket goes under it
    env = dict(fab.env(), XDG_RUNTIME_DIR=str(runtime))
    try:
        r = subprocess.run([*FAB, "-S", str(cfg), "-H", "hk", "status"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
        line = one_line_error(r)
        assert line.startswith(f"hk: the host key of [127.0.0.1]:{fab.sshhost.port} has CHANGED (SHA256:"), line
        assert f"{known}:1" in line
        fixes_the_changed_key(fab, line, known, tmp_path / "other.pub")
        r = subprocess.run([*FAB, "-S", str(cfg), "-H", "hk", "status"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
        assert r.returncode == 0, r.stderr
    finally:
        for sock in (runtime / "fabjupyter" / "ssh").glob("*"):
            if sock.is_socket():
                end_control_master(sock)
        shutil.rmtree(runtime, ignore_errors=True)


def test_unknown_host_key_refused_then_accepted_with_the_flag(fab, tmp_path, local_port):
    known = tmp_path / "known_hosts"
    cfg = config_with(fab, tmp_path, known)
    line = one_line_error(run(fab, cfg, "setup", "--password-stdin", input="pw\n"))
    assert line.startswith(f"hk: unknown host key for [127.0.0.1]:{fab.sshhost.port} (ssh-ed25519 SHA256:")
    assert "--accept-new-host-key" in line
    untouched(fab)
    assert not known.exists()
    r = run(fab, cfg, "setup", "--password-stdin", "--accept-new-host-key", input="pw\n")
    assert r.returncode == 0, r.stderr
    assert known.read_text().split()[1:] == fab.sshhost.known_hosts.read_text().split()[1:]
    assert run(fab, cfg, "status").returncode == 0  # known now, no flag needed
    # the tunnel's OpenSSH client reads the same file
    proc, url, out = fab.tunnel(cmd=[*FAB, "-S", str(cfg), "-H", "hk", "tunnel", "--local-port", str(local_port)])
    assert url, out
    assert login_and_list(url, "pw")[1] == 200


def test_strict_host_key_checking_from_ssh_config(fab, tmp_path):
    known = tmp_path / "known_hosts"
    r = run(fab, config_with(fab, tmp_path, known, strict="accept-new"), "status")
    assert r.returncode == 0, r.stderr
    # accept-new recorded exactly the host's key, under the name the client used
    assert known.read_text().split() == [f"[127.0.0.1]:{fab.sshhost.port}", *fab.sshhost.known_hosts.read_text().split()[1:]]
    known2 = tmp_path / "known_hosts2"
    r = run(fab, config_with(fab, tmp_path, known2, strict="no"), "status")
    assert r.returncode == 0, r.stderr
    assert not known2.exists()


def test_hashed_known_hosts_entry(fab, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text(fab.sshhost.known_hosts.read_text())
    subprocess.run(["ssh-keygen", "-H", "-f", str(known)], check=True, capture_output=True)
    assert known.read_text().startswith("|1|")
    r = run(fab, config_with(fab, tmp_path, known, strict="yes"), "status")
    assert r.returncode == 0, r.stderr
