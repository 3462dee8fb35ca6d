"""TLS certificates for public mode: made here with `cryptography` (EC P-256, a subjectAltName
that covers every name people use), or the user's own pair, checked before the remote is touched."""

import datetime
import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..hosts import fleet
from ..localfiles import config_path
from ..protocol import run_agent
from ..report import Outcome
from .render import cert_lines

RENEW_WITHIN = datetime.timedelta(days=30)
# cryptography is imported inside the functions that use it: every run loads this module (it is
# a task), and only certificate work should pay for x509 (about 20 ms of the client's start-up)


def local_dir(label):
    """Where this machine keeps a host's generated certificate and key (0700)."""
    safe = re.sub(r"[^A-Za-z0-9._@-]", "_", label) or "_"
    return config_path("certs", safe)


def fingerprint(cert):
    from cryptography.hazmat.primitives import hashes

    digest = cert.fingerprint(hashes.SHA256()).hex().upper()
    return "SHA256:" + ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def spki_hash(cert):
    """base64 SHA-256 of the public key: what Chromium's --ignore-certificate-errors-spki-list pins."""
    import base64

    from cryptography.hazmat.primitives import serialization

    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def _general_name(name):
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name.lower())


def generate(names, days):
    """A self-signed certificate for these names (the first is the subject), and its key, as PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64]), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fabjupyter")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _san(cert):
    from cryptography import x509

    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return [n.lower() for n in ext.get_values_for_type(x509.DNSName)], ext.get_values_for_type(x509.IPAddress)


def missing_names(cert, names):
    """The names this certificate does not cover (wildcards match one label)."""
    dns, ips = _san(cert)
    missing = []
    for name in names:
        try:
            if ipaddress.ip_address(name) not in ips:
                missing.append(name)
            continue
        except ValueError:
            pass
        n = name.lower()
        if n in dns or any(d.startswith("*.") and n.count(".") == d.count(".") and n.endswith(d[1:]) for d in dns):
            continue
        missing.append(name)
    return missing


def load_pair(cert_pem, key_pem, where):
    """Parse and check a certificate and its key; every problem is a UserError before any change."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise UserError(f"{where}: the certificate is not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise UserError(
            f"{where}: the key is encrypted (has a passphrase); Jupyter cannot use it. "
            "Decrypt it first, e.g. `openssl pkey -in KEY -out KEY.plain`"
        ) from None
    except ValueError:
        raise UserError(f"{where}: the key is not an unencrypted PEM private key") from None
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.DER, pub) != cert.public_key().public_bytes(serialization.Encoding.DER, pub):
        raise UserError(f"{where}: the key does not belong to the certificate (their public keys differ)")
    if cert.not_valid_after_utc <= datetime.datetime.now(datetime.timezone.utc):
        raise UserError(f"{where}: the certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}; renew it")
    return cert


def wanted_names(t, facts, extra):
    """Every name people will use: the host as connected to, the remote's FQDN and addresses,
    localhost for the tunnel, and the extra names."""
    names = [t.conn.host, t.conn.original_host, facts.fqdn, *facts.ips, "localhost", "127.0.0.1"]
    names += list(t.settings.cert_names) + list(extra)
    out = []
    for n in names:
        n = n.strip().rstrip(".")
        if n and n not in out and not n.startswith("fe80:"):
            out.append(n)
    return out


def look(t, cert_pem, key_pem, new_instance=False):
    """The host's names, whether it has a password, and whether it has exactly this pair: compared
    by digest, so that the private key travels only to be installed. NEW_INSTANCE: setup may make
    the instance (the cert task alone only serves one that exists)."""
    return run_agent(t, "cert", cert_digest=_sha256(cert_pem), key_digest=_sha256(key_pem), new_instance=new_instance)


def push(t, cert_pem, key_pem):
    run_agent(t, "cert", cert_digest=_sha256(cert_pem), key_digest=_sha256(key_pem), cert=cert_pem.decode(), key=key_pem.decode(),
              push=True, new_instance=True)


def _sha256(data):
    return hashlib.sha256(data).hexdigest() if data else None


@dataclass
class CertOutcome:
    fingerprint: str
    spki: str
    generated: str = ""  # why a new certificate was made ("" if not)
    pushed: bool = False
    local_path: str = ""
    warnings: tuple = ()
    dry: bool = False  # what would happen (--dry-run)


def _write_private(path, data, mode):
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def ensure_cert(t, days=365, extra_names=(), force=False, cert_file=None, key_file=None, before_change=None, dry_run=False,
                new_instance=False):
    """Make sure the host has a usable certificate; change nothing if it already has.
    before_change(facts) runs after the host was looked at and before anything is changed."""
    from cryptography import x509

    if bool(cert_file) != bool(key_file):
        raise UserError("--cert and --key go together")
    warnings = []
    cert_pem: bytes | None
    key_pem: bytes | None
    if cert_file:
        try:
            cert_pem, key_pem = Path(cert_file).expanduser().read_bytes(), Path(key_file).expanduser().read_bytes()
        except OSError as e:
            raise UserError(f"cannot read {e.filename}: {e.strerror}") from None
        cert = load_pair(cert_pem, key_pem, f"{cert_file} / {key_file}")
        facts = look(t, cert_pem, key_pem, new_instance)
        missing = missing_names(cert, wanted_names(t, facts, extra_names))
        if missing:
            warnings.append(f"warning: the certificate does not cover {', '.join(missing)}; browsers will warn for those names")
        if dry_run:
            return CertOutcome(fingerprint(cert), spki_hash(cert), pushed=not facts.same, warnings=tuple(warnings), dry=True)
        if not facts.same:
            if before_change:
                before_change(facts)
            push(t, cert_pem, key_pem)
        return CertOutcome(fingerprint(cert), spki_hash(cert), pushed=not facts.same, warnings=tuple(warnings))

    folder = local_dir(t.host)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_pem = key_pem = None
    if cert_path.exists() and key_path.exists():
        cert_pem, key_pem = cert_path.read_bytes(), key_path.read_bytes()
    facts = look(t, cert_pem, key_pem, new_instance)
    names = wanted_names(t, facts, extra_names)
    reason = ""
    if force:
        reason = "renewed (--force)"
    elif cert_pem is None:
        reason = "created"
    else:
        try:
            cert = load_pair(cert_pem, key_pem, str(folder))
        except UserError:
            cert, reason = None, "replaced an unusable one"
        if cert is not None:
            missing = missing_names(cert, names)
            if missing:
                reason = f"renewed to cover {', '.join(missing)}"
            elif cert.not_valid_after_utc - datetime.datetime.now(datetime.timezone.utc) < RENEW_WITHIN:
                reason = f"renewed (it expired or was to expire on {cert.not_valid_after_utc:%Y-%m-%d})"
    if dry_run:
        current = x509.load_pem_x509_certificate(cert_pem) if cert_pem and not reason else None
        return CertOutcome(
            fingerprint(current) if current else "", spki_hash(current) if current else "", generated=reason,
            pushed=bool(reason) or not facts.same, local_path=str(cert_path), dry=True,
        )
    if (reason or not facts.same) and before_change:
        before_change(facts)
    if reason:
        with fleet.CPU_BOUND:  # a group's hosts make theirs a few at a time, not all against two cores
            cert_pem, key_pem = generate(names, days)
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        _write_private(key_path, key_pem, 0o600)
        _write_private(cert_path, cert_pem, 0o644)
    pushed = bool(reason) or not facts.same
    if pushed:
        push(t, cert_pem, key_pem)
    assert cert_pem is not None  # read above, or made here (a missing one is a REASON)
    cert = x509.load_pem_x509_certificate(cert_pem)
    return CertOutcome(fingerprint(cert), spki_hash(cert), generated=reason, pushed=pushed, local_path=str(cert_path))


def cert_host(t, days, names, force, cert_file, key_file, dry_run=False):
    outcome = ensure_cert(t, days, names, force, cert_file, key_file, dry_run=dry_run)
    if dry_run:
        return Outcome(cert_lines(t, outcome), "would change" if outcome.generated or outcome.pushed else "nothing to change")
    summary = outcome.generated or ("installed" if outcome.pushed else "unchanged")
    return Outcome(cert_lines(t, outcome), f"{summary}; {outcome.fingerprint}")
