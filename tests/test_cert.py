"""Public mode: TLS with a certificate whose subjectAltName covers the names people use."""

import datetime
import json
import socket
import ssl
import subprocess
import urllib.error
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .jupyter_http import Session, login_and_list
from .test_core import listening
from .test_errors import one_line_error

PASSWORD = "correct horse"


def local_copy(fab, name="fjtest"):
    return fab.config_home / "fabjupyter" / "certs" / name


def trusting(cert_path, hostname_check=True):
    """An SSL context whose only trusted certificate is cert_path."""
    context = ssl.create_default_context(cafile=str(cert_path))
    context.check_hostname = hostname_check
    return context


def https_status(port, server_hostname, context):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=server_hostname) as tls:
            tls.sendall(f"GET /api HTTP/1.1\r\nHost: {server_hostname}:{port}\r\nConnection: close\r\n\r\n".encode())
            return int(tls.recv(200).split()[1])


def own_pair(tmp_path, names=("other.example",), days=30, expired=False, encrypted=False, mismatched=False):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = (now - datetime.timedelta(days=60), now - datetime.timedelta(days=1)) if expired else (now, now + datetime.timedelta(days=days))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    if mismatched:
        key = ec.generate_private_key(ec.SECP256R1())
    encryption = serialization.BestAvailableEncryption(b"secret") if encrypted else serialization.NoEncryption()
    cert_path, key_path = tmp_path / "own.crt", tmp_path / "own.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    return cert_path, key_path, cert


def test_public_mode_serves_verified_https_with_a_password(fab):
    r = fab.setup("--mode", "public")
    assert "certificate created" in r.stdout and "Jupyter started" in r.stdout
    assert f"open https://127.0.0.1:{fab.port}/ and log in with your password" in r.stdout
    assert "SHA256:" in r.stdout
    record = fab.status()
    assert record["mode"] == "public" and record["url"] == f"https://127.0.0.1:{fab.port}/"
    assert listening(fab.port) == ["0.0.0.0"]

    cert_path = local_copy(fab) / "cert.pem"
    assert oct((local_copy(fab) / "key.pem").stat().st_mode & 0o777) == "0o600"
    assert oct(local_copy(fab).stat().st_mode & 0o777) == "0o700"
    tls_dir = fab.home / ".fabjupyter" / "tls"
    assert oct(tls_dir.stat().st_mode & 0o777) == "0o700"
    assert oct((tls_dir / "key.pem").stat().st_mode & 0o777) == "0o600"
    assert (tls_dir / "cert.pem").read_bytes() == cert_path.read_bytes()

    fqdn = subprocess.run(["hostname", "-f"], capture_output=True, text=True).stdout.strip()
    context = trusting(cert_path)
    assert https_status(fab.port, fqdn, context) == 200  # by the host's name
    assert https_status(fab.port, "127.0.0.1", context) == 200  # by its IP address
    with pytest.raises(ssl.SSLCertVerificationError):
        https_status(fab.port, "not-in-the-certificate.example", context)
    # plain HTTP gets no answer from a TLS port
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(f"http://127.0.0.1:{fab.port}/api", timeout=5)
    # and the password is still the way in
    assert login_and_list(f"https://127.0.0.1:{fab.port}/", PASSWORD, context)[1] == 200
    assert login_and_list(f"https://127.0.0.1:{fab.port}/", "wrong", context)[1] == 403
    assert Session(f"https://127.0.0.1:{fab.port}/", context).get("api/contents")[0] == 403


def test_second_cert_run_changes_nothing_and_force_renews(fab):
    first = fab("cert").stdout
    assert "certificate created" in first
    fp = first.split("fingerprint ")[1].split()[0]
    again = fab("cert").stdout
    assert "certificate unchanged" in again and fp in again
    forced = fab("cert", "--force").stdout
    assert "renewed (--force)" in forced and fp not in forced


def test_certificate_expiring_soon_is_renewed(fab):
    fab("cert", "--days", "10")
    r = fab("cert")
    assert "renewed (it expired or was to expire on" in r.stdout


def test_extra_names_are_covered(fab):
    fab.hosts("hosts:\n  fjtest:\n    cert_names: [jupyter.lab.example]\n")
    fab("cert", "--san", "10.20.30.40")
    cert = x509.load_pem_x509_certificate((local_copy(fab) / "cert.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = san.get_values_for_type(x509.DNSName) + [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    for expected in ["jupyter.lab.example", "10.20.30.40", "localhost", "127.0.0.1"]:
        assert expected in names
    # a new name for a host that already has a certificate renews it
    r = fab("cert", "--san", "another.example")
    assert "renewed to cover another.example" in r.stdout


@pytest.mark.parametrize(
    "problem, message",
    [
        ({"mismatched": True}, "the key does not belong to the certificate"),
        ({"expired": True}, "the certificate expired on"),
        ({"encrypted": True}, "the key is encrypted (has a passphrase); Jupyter cannot use it"),
    ],
)
def test_bad_own_pairs_are_refused_before_any_change(fab, tmp_path, problem, message):
    cert_path, key_path, _ = own_pair(tmp_path, **problem)
    line = one_line_error(fab("cert", "--cert", str(cert_path), "--key", str(key_path), check=False))
    assert message in line
    assert not (fab.home / ".fabjupyter").exists()


def test_own_pair_is_pushed_and_used_with_a_warning_for_missing_names(fab, tmp_path):
    cert_path, key_path, cert = own_pair(tmp_path, names=("other.example", "localhost"))
    r = fab("cert", "--cert", str(cert_path), "--key", str(key_path))
    assert "warning: the certificate does not cover 127.0.0.1" in r.stdout
    assert "installed" in r.stdout
    assert (fab.home / ".fabjupyter/tls/cert.pem").read_bytes() == cert_path.read_bytes()
    assert "unchanged" in fab("cert", "--cert", str(cert_path), "--key", str(key_path)).stdout


def test_public_mode_refuses_to_start_without_a_password(fab):
    line = one_line_error(fab("setup", "--mode", "public", input="", check=False))
    assert line == "fjtest: a password is needed and there is no terminal to ask on; use --password-stdin"
    assert not (fab.home / ".fabjupyter").exists()
    # start with a configuration but no password: refused too
    fab("config", "--mode", "public")
    fab("cert")
    line = one_line_error(fab("start", check=False))
    assert "no Jupyter password is set there" in line
    assert not fab.status()["running"]


def test_switching_modes_leaves_no_stale_setting(fab, local_port):
    fab.setup("--mode", "public")
    r = fab.setup("--mode", "ssh")
    assert "stopped the running Jupyter" in r.stdout
    record = fab.status()
    assert record["mode"] == "ssh" and record["url"] == f"http://127.0.0.1:{fab.port}/"
    assert listening(fab.port) == ["127.0.0.1"]
    config = json.loads((fab.home / ".fabjupyter/config/jupyter_server_config.json").read_text())
    assert config["ServerApp"]["ip"] == "127.0.0.1" and config["ServerApp"]["certfile"] == ""
    assert "certfile" not in (fab.home / ".fabjupyter/state").read_text()
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert url == f"http://localhost:{local_port}/"
    assert login_and_list(url, PASSWORD)[1] == 200
    fab.cleanup()
    fab.setup("--mode", "public")
    assert fab.status()["mode"] == "public" and listening(fab.port) == ["0.0.0.0"]


def test_tunnel_to_a_tls_server(fab, local_port):
    fab.hosts("defaults:\n  mode: public\n")
    fab.setup()
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert url == f"https://localhost:{local_port}/", out
    context = trusting(local_copy(fab) / "cert.pem")
    assert login_and_list(url, PASSWORD, context)[1] == 200


def test_the_dry_run_compares_digests_and_never_sends_the_key(fab, monkeypatch):
    """A certificate dry run (cert --dry-run, setup --dry-run in public mode) asks the host
    whether it has the same pair by digest: the private key never travels for that. Every
    script sent is recorded here (the client runs in this process)."""
    from fabric import Config, Connection

    from tasks.ops import cert as cert_module
    from tasks import protocol
    from tasks.ssh.connection import one_timeout
    from tasks.hosts.targets import Target
    from tasks.hosts.inventory import Inventory, Settings

    fab.setup("--mode", "public")
    key = (local_copy(fab) / "key.pem").read_bytes()
    body = b"".join(key.splitlines()[1:-1]).decode()  # the base64 inside the PEM armour
    sent = []
    real = protocol.script.agent_script
    monkeypatch.setattr(protocol.script, "agent_script", lambda *a, **k: sent.append(real(*a, **k)) or sent[-1])
    monkeypatch.setenv("XDG_CONFIG_HOME", str(fab.config_home))
    conn = Connection(fab.user, config=Config(runtime_ssh_path=str(fab.sshhost.ssh_config)))
    one_timeout(conn)
    t = Target(fab.user, conn, Settings(mode="public", port=fab.port), Inventory(str(fab.hosts_file)))
    try:
        outcome = cert_module.ensure_cert(t, dry_run=True)
        assert outcome.dry and not outcome.pushed and not outcome.generated  # the host has exactly this pair
        # its own pair given on the command line: the same
        (fab.hosts_file.parent / "k.pem").write_bytes(key)
        (fab.hosts_file.parent / "c.pem").write_bytes((local_copy(fab) / "cert.pem").read_bytes())
        outcome = cert_module.ensure_cert(t, cert_file=str(fab.hosts_file.parent / "c.pem"),
                                          key_file=str(fab.hosts_file.parent / "k.pem"), dry_run=True)
        assert outcome.dry and not outcome.pushed
    finally:
        conn.close()
    assert len(sent) == 2
    for script in sent:
        assert body[:40] not in script and "PRIVATE KEY" not in script
    fab("stop")
