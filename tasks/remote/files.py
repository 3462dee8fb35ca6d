"""Files on the host: read, written atomically (0600 unless said), compared, hashed."""

import hashlib
import json
import os

from .fail import Fail


def read_text(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def read_tail(path, size=65536):
    """The last SIZE bytes of a file (a log may be large), as text; "" without one."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def read_json(path):
    text = read_text(path)
    try:
        return json.loads(text) if text is not None else None
    except ValueError:
        return None


def json_text(obj):
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def write_atomic(path, text, mode=0o600):
    """Replace PATH: a temporary name, then rename, so that a cut-off run leaves the old file."""
    tmp = "%s.tmp.%d" % (path, os.getpid())
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise Fail("cannot_write", "%s: %s" % (path, e.strerror or e))


def make_dir(path, mode=0o700):
    try:
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)
    except OSError as e:
        raise Fail("cannot_write", "%s: %s" % (path, e.strerror or e))


def diff(old, new, name):
    import difflib  # here: only a change asks

    return [
        line.rstrip("\n")
        for line in difflib.unified_diff(
            (old or "").splitlines(), new.splitlines(), "%s (now)" % name, "%s (would be)" % name, lineterm=""
        )
    ]



def remove(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def json_files(folder):
    """The *.json files of FOLDER, sorted ([] without the folder)."""
    try:
        return [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if n.endswith(".json")]
    except OSError:
        return []


def cksum(data):
    """POSIX cksum's checksum and size, as an earlier version recorded its fingerprint."""
    crc = 0
    for byte in bytearray(data):
        crc = ((crc << 8) & 0xFFFFFFFF) ^ CRC_TABLE[(crc >> 24) ^ byte]
    n = len(data)
    while n:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ CRC_TABLE[(crc >> 24) ^ (n & 0xFF)]
        n >>= 8
    return "%d-%d" % (~crc & 0xFFFFFFFF, len(data))


def _crc_table():
    table = []
    for i in range(256):
        c = i << 24
        for _ in range(8):
            c = ((c << 1) ^ 0x04C11DB7) if c & 0x80000000 else (c << 1)
        table.append(c & 0xFFFFFFFF)
    return table


CRC_TABLE = _crc_table()


def digest(path):
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def fingerprint(settings, kind, config, password, tls):
    """What the running Jupyter reads, in one hash: the settings (activation, command, root,
    address, TLS, socket), its kind, the settings file, the password file and the TLS files.
    Not the text of this tool's scripts: an upgrade of the tool restarts nothing."""
    doc = {"settings": settings, "kind": kind, "config": config, "password": password, "tls": tls}
    return "sha256:" + hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


