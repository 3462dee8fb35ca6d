"""fabjupyter's agent: the remote side, in Python (standard library only; Python 3.6 or newer).

It runs on the host in the Python that runs Jupyter (setup, config, start, restart: bootstrap.sh
activated the environment and found that Python), or in the one that ran Jupyter last, else
python3 (status, stop, logs, password, cert: these work when the environment is gone). The client
sends it, with its request, inside the bootstrap on the SSH session's standard input. It answers
on file descriptor 3 with JSON lines: events as they happen ({"event": ...}), then exactly one
{"reply": {...}} or {"error": {"code", "detail", "log"}}.

Check mode (a dry run) takes the same path: every change goes through Run.change(), which records
it and, outside check mode, makes it. What the kinds of Jupyter differ in is one table, KINDS.
"""

import base64
import difflib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

PROTOCOL = 1


class Fail(Exception):
    """A failure the user can fix: a code (the client words the message), a detail (any number
    of lines) and, for a Jupyter that did not start, the end of its log."""

    def __init__(self, code, detail="", log=()):
        Exception.__init__(self, code)
        self.code, self.detail, self.log = code, detail, list(log)


# --- the kinds of Jupyter -------------------------------------------------------------------

# The settings that decide who gets in, pinned on every class that reads them. Traitlets applies
# a subclass's section over its parent's, whatever the file, so a key pinned only on a parent
# loses to the same key on a subclass in the user's own config; and JupyterLab's notebook_shim
# moves NotebookApp.*, LabApp.* and JupyterNotebookApp.* keys of any config file onto ServerApp,
# over ServerApp's own (an old `c.NotebookApp.ip = '*'` would win).
IDENTITY_CLASSES = ("IdentityProvider", "PasswordIdentityProvider", "LegacyIdentityProvider")
PASSWORD_CLASSES = IDENTITY_CLASSES[1:]
SHIMMED_CLASSES = ("NotebookApp", "LabApp", "JupyterNotebookApp")
SERVER2_SHIMMED = (
    "ip", "base_url", "allow_origin", "allow_origin_pat", "allow_credentials", "disable_check_xsrf", "allow_remote_access",
    "local_hostnames", "allow_unauthenticated_access", "identity_provider_class", "login_handler_class",
)
# Jupyter Server 1 reads these on ServerApp itself (Server 2 only as deprecated aliases of the
# pinned identity-provider keys, which cannot override those)
SHIMMED_KEYS = SERVER2_SHIMMED + ("token", "password_required", "allow_password_change", "logout_handler_class")
# every key of ours that notebook_shim's "has moved" warnings can name
MOVED_KEYS = SHIMMED_KEYS + ("password",)


def access_settings(mode):
    """Who may connect and from where (ServerApp or NotebookApp keys)."""
    public = mode == "public"
    return {
        "ip": "0.0.0.0" if public else "127.0.0.1",
        "port_retries": 0,  # a busy port is an error we handle, never a silent move
        "open_browser": False,
        "base_url": "/",
        "allow_origin": "",
        "allow_origin_pat": "",
        "allow_credentials": False,
        "disable_check_xsrf": False,
        # the Host-header check against DNS rebinding; public mode is reached by its host name
        "allow_remote_access": public,
        "local_hostnames": ["localhost"],
        "trust_xheaders": False,
        "authenticate_prometheus": True,
    }


def server2_settings(mode):
    """Jupyter Server 2 (JupyterLab 4, Notebook 7)."""
    app = access_settings(mode)
    if mode != "public":
        app.update(certfile="", keyfile="")  # public mode passes ~/.fabjupyter/tls/* on the command line
    app.update(
        sock="",
        allow_unauthenticated_access=False,
        identity_provider_class="jupyter_server.auth.identity.PasswordIdentityProvider",
        login_handler_class="jupyter_server.auth.login.LoginHandler",
        logout_handler_class="jupyter_server.auth.logout.LogoutHandler",
    )
    config = {"ServerApp": app}
    for name in IDENTITY_CLASSES:
        # the password is the only way in: no token, no other login or logout handler
        config[name] = {
            "token": "",
            "login_handler_class": "jupyter_server.auth.login.LoginFormHandler",
            "logout_handler_class": "jupyter_server.auth.logout.LogoutHandler",
        }
    for name in PASSWORD_CLASSES:
        config[name].update(password_required=True, allow_password_change=False)
    # LegacyIdentityProvider's own login handler is what it defers to; it is never used here
    config["LegacyIdentityProvider"]["login_handler_class"] = "jupyter_server.auth.login.LegacyLoginHandler"
    config.update({name: {k: app[k] for k in SERVER2_SHIMMED} for name in SHIMMED_CLASSES})
    return config


def token_era_settings(mode, app_name, package, shimmed):
    """Jupyter Server 1 and classic Notebook 6: token and password on the app class itself."""
    app = access_settings(mode)
    if mode != "public":
        app.update(certfile="", keyfile="")
    app.update(
        token="",
        password_required=True,
        allow_password_change=False,
        login_handler_class="%s.auth.login.LoginHandler" % package,
        logout_handler_class="%s.auth.logout.LogoutHandler" % package,
    )
    config = {app_name: app}
    if shimmed:
        config.update({name: {k: app[k] for k in SHIMMED_KEYS if k in app} for name in SHIMMED_CLASSES})
    return config


def number(version):
    try:
        return tuple(int(x) for x in version.split(".")[:2])
    except ValueError:
        return (0, 0)


def classic_notebook(versions, command):
    """The command runs classic Notebook (6.x), which reads NotebookApp.* from its own file."""
    notebook = versions.get("notebook", "")
    if "notebook" not in os.path.basename(command) or not notebook or number(notebook) >= (7, 0):
        return False
    if number(notebook) < (6, 1):  # argon2 hashes from 6.1 on
        raise Fail("unsupported", "classic Notebook %s (6.1 or newer is needed)" % notebook)
    return True


def server1_password(h):
    # notebook_shim moves NotebookApp/LabApp/JupyterNotebookApp.password onto ServerApp.password,
    # over ours: the same hash there too
    return {app: {"password": h} for app in SHIMMED_CLASSES + ("ServerApp",)}


class Kind:
    def __init__(self, name, detect, app, root_key, config_name, settings, password):
        self.name = name
        self.detect = detect  # (versions, command) -> does the command run this kind?
        self.app = app  # the class whose options the command line sets
        self.root_key = root_key  # its root directory option
        self.config_name = config_name  # the settings (and password) file it reads
        self.settings = settings  # mode -> the settings file's content
        self.password = password  # hash -> the password file's content


# The kinds of Jupyter, tried in this order: everything that differs between them is here.
KIND_LIST = (
    Kind("nb6", classic_notebook, "NotebookApp", "notebook_dir", "jupyter_notebook_config.json",
         lambda mode: token_era_settings(mode, "NotebookApp", "notebook", False),
         lambda h: {"NotebookApp": {"password": h}}),
    Kind("server2", lambda v, c: number(v.get("jupyter_server", "")) >= (2, 0), "ServerApp", "root_dir",
         "jupyter_server_config.json", server2_settings, lambda h: {"PasswordIdentityProvider": {"hashed_password": h}}),
    Kind("server1", lambda v, c: number(v.get("jupyter_server", "")) >= (1, 0), "ServerApp", "root_dir",
         "jupyter_server_config.json", lambda mode: token_era_settings(mode, "ServerApp", "jupyter_server", True),
         server1_password),
)
KINDS = {k.name: k for k in KIND_LIST}


def config_for(kind, settings):
    """The settings file for this kind of Jupyter and these settings (settings.sh's values)."""
    config = KINDS[kind].settings("public" if settings.get("tls") == "1" else "ssh")
    idle = int(settings.get("idle") or 0)
    if idle:
        # shut down after IDLE seconds without activity, and cull kernels idle that long (a kernel,
        # even an idle one with a browser tab on it, keeps the server up otherwise). Jupyter checks
        # the server's activity once a minute.
        config[KINDS[kind].app]["shutdown_no_activity_timeout"] = idle
        config["MappingKernelManager"] = {"cull_idle_timeout": idle, "cull_interval": max(10, min(60, idle)), "cull_connected": True}
    return config


def kind_for(versions, command):
    """Which kind of Jupyter the command runs: that decides which settings it reads."""
    for kind in KIND_LIST:
        if kind.detect(versions, command):
            return kind.name
    server = versions.get("jupyter_server", "")
    raise Fail("unsupported", "jupyter_server " + server if server else "this Jupyter (no jupyter_server, no classic Notebook)")


def installed_versions():
    """Versions from the installed distributions' directory names (NAME-VERSION.dist-info, or
    NAME-VERSION[-pyX.Y].egg-info), first along sys.path as importlib.metadata finds them,
    without importing importlib.metadata (slow)."""
    found = {}
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            stem, _, ext = name.rpartition(".")
            if ext in ("dist-info", "egg-info") and stem.count("-") >= 1:
                dist, version = stem.split("-")[:2]
                found.setdefault(dist.lower().replace(".", "_"), version)
    if "jupyter_server" not in found and "notebook" not in found:
        try:  # installed some other way (an .egg, say): ask importlib.metadata after all
            from importlib import metadata

            for name in ("jupyter_server", "jupyterlab", "notebook"):
                try:
                    found[name] = metadata.version(name)
                except Exception:
                    pass
        except ImportError:
            pass
    return found


def describe_versions(found):
    names = (("JupyterLab", "jupyterlab"), ("Notebook", "notebook"), ("jupyter_server", "jupyter_server"))
    return ", ".join("%s %s" % (label, found[key]) for label, key in names if found.get(key))


# --- files -----------------------------------------------------------------------------------


def sh_quote(value):
    """Quote one value for a POSIX shell: the one helper, used by the client for everything it
    sends and by this agent for the command line it hands to run.sh."""
    text = str(value)
    if "\0" in text:
        raise ValueError("a value for the shell contains a NUL byte")
    return shlex.quote(text)



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
    return [
        line.rstrip("\n")
        for line in difflib.unified_diff(
            (old or "").splitlines(), new.splitlines(), "%s (now)" % name, "%s (would be)" % name, lineterm=""
        )
    ]


def settings_from_sh(text):
    """The settings for Jupyter from settings.sh (or the block of an older run.sh): assignments
    quoted by the client's one helper, read back here with shlex, never run."""
    values = {}
    for word in shlex.split(text or "", comments=True):
        name, sep, value = word.partition("=")
        if sep and name.startswith("FJ_"):
            values[name[3:].lower()] = value
    if "jupyter" in values:
        values["jupyter"] = shlex.split(values["jupyter"])
    return values


def legacy_block(run_sh):
    """The settings lines of a run.sh written by an earlier version (FJ_ACTIVATE= to FJ_SOCK=)."""
    lines, inside = [], False
    for line in (run_sh or "").splitlines():
        inside = inside or line.startswith("FJ_ACTIVATE=")
        if inside:
            lines.append(line)
            if line.startswith("FJ_SOCK="):
                return "\n".join(lines) + "\n"
    return None


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


# --- processes -------------------------------------------------------------------------------


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        pass
    try:
        out = subprocess.check_output(["ps", "-p", str(pid), "-o", "args="], stderr=subprocess.DEVNULL)
        return out.decode("utf-8", "replace")
    except (OSError, subprocess.CalledProcessError):
        return ""


def process_state(pid):
    """The state letter of PID in /proc (R, S, D, Z, T...), or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def is_zombie(pid):
    return process_state(pid) == "Z"


def alive(pid):
    """Is PID a live Jupyter (not a recycled pid of something else)?"""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return not is_zombie(pid) and "jupyter" in cmdline(pid)


def kill(pid, term_wait=10, kill_wait=10):
    """TERM, then KILL after TERM_WAIT s; True once it is gone. False if it is still there
    KILL_WAIT s after the KILL: the kernel holds it (state D: uninterruptible, such as I/O on a
    hung network file system, or a frozen cgroup), and waiting longer would hold the run (and
    its lock) for as long."""
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return not alive(pid)
    if gone_within(pid, term_wait):
        return True
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    return gone_within(pid, kill_wait)


def gone_within(pid, seconds):
    deadline = time.time() + seconds
    while alive(pid):
        if time.time() > deadline:
            return False
        reap()
        time.sleep(0.05)
    return True


def end(pid, term_wait=10, kill_wait=10):
    """kill, or Fail when the process outlives its SIGKILL."""
    if not kill(pid, term_wait, kill_wait):
        raise Fail("not_stopped", "%d, state %s" % (pid, process_state(pid) or "?"))


def reap():
    """Collect our own children that ended (a Jupyter started here with nohup)."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def free_port(first, ip):
    for port in range(first, min(first + 100, 65536)):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Tornado binds
        try:
            s.bind((ip, port))
        except OSError:
            continue
        finally:
            s.close()
        return port
    raise Fail("no_free_port", str(first))


def runtime_dir(env):
    """Where Jupyter writes its runtime file (jupyter_core's rule), for the check after the start."""
    if env.get("JUPYTER_RUNTIME_DIR"):
        return env["JUPYTER_RUNTIME_DIR"]
    if env.get("JUPYTER_DATA_DIR"):
        return os.path.join(env["JUPYTER_DATA_DIR"], "runtime")
    home = os.path.expanduser("~")
    if sys.platform == "darwin":
        return os.path.join(home, "Library", "Jupyter", "runtime")
    return os.path.join(env.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share"), "jupyter", "runtime")


# --- batch schedulers ------------------------------------------------------------------------

class Slurm:
    """What this tool asks of a batch scheduler, for SLURM. Another scheduler (PBS/Torque: qsub,
    qstat -f, qdel; LSF: bsub, bjobs, bkill) is another class with these methods and an entry in
    SCHEDULERS; the job script (bootstrap.sh's fj_job) reads the node's name from
    $SLURMD_NODENAME, else `hostname`."""

    name = "slurm"
    submit_command = "sbatch"
    ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED", "COMPLETING")

    def script_header(self, job_name, log, options):
        """The #SBATCH lines: ours (name, output), then the user's (which may override them)."""
        lines = ["#SBATCH --job-name=%s" % job_name, "#SBATCH %s" % sbatch_quote("--output=" + log.replace("%", "%%")),
                 "#SBATCH --open-mode=append"]
        return lines + ["#SBATCH %s" % o for o in options]

    def submit(self, script):
        """The job id, or Fail with sbatch's own words (one line: its lines, without their
        `sbatch: error: ` prefixes)."""
        out, err, code = run_command(["sbatch", "--parsable", script], timeout=60)
        if code != 0:
            words = [line.strip().replace("sbatch: error: ", "", 1) for line in err.splitlines() if line.strip()]
            raise Fail("submit_failed", "sbatch", log=["; ".join(words) or "exit status %d" % code])
        job = out.strip().split(";")[0]
        if not job.isdigit():
            raise Fail("submit_failed", "sbatch", log=["sbatch answered %r, not a job id" % out.strip()])
        return job

    def query(self, job):
        """{state, reason, node, time_left} while the scheduler lists the job; None once it left
        the queue; raises Fail when the scheduler cannot be asked."""
        out, err, code = run_command(["squeue", "-h", "-j", job, "-o", "%T|%r|%N|%L"], timeout=30)
        if code != 0:
            if "Invalid job id" in err:
                return None
            raise Fail("scheduler", "squeue", log=err.splitlines()[-3:])
        for line in out.splitlines():
            parts = line.split("|")
            if len(parts) == 4:
                state, reason, node, left = parts
                return {"state": state, "reason": "" if reason in ("None", "(null)") else reason,
                        "node": node or None, "time_left": left if left not in ("", "INVALID") else None}
        return None

    def ended(self, job):
        """(state, reason) of a job that left the queue: from accounting where the cluster keeps
        it (sacct), else from the controller while it remembers the job (scontrol), else None."""
        out, _, code = run_command(["sacct", "-n", "-X", "-P", "-j", job, "-o", "State,Reason,ExitCode"], timeout=30)
        if code == 0:
            for line in out.splitlines():
                parts = line.split("|")
                if len(parts) >= 2 and parts[0]:
                    reason = parts[1] if parts[1] not in ("None", "") else ""
                    return parts[0].split()[0], reason
        out, _, code = run_command(["scontrol", "-o", "show", "job", job], timeout=30)
        if code == 0:
            fields = dict(word.split("=", 1) for word in out.split() if "=" in word)
            if fields.get("JobState"):
                reason = fields.get("Reason", "")
                return fields["JobState"], "" if reason == "None" else reason
        return None

    def cancel(self, job):
        run_command(["scancel", job], timeout=30)

    def find(self, job_name):
        """The ids of this user's queued or running jobs with that name."""
        out, _, code = run_command(["squeue", "-h", "-u", str(os.getuid()), "-n", job_name, "-o", "%i"], timeout=30)
        return out.split() if code == 0 else []


SCHEDULERS = {"slurm": Slurm}


def sbatch_quote(word):
    """One word of an #SBATCH line as sbatch reads it (its _get_argument: whitespace splits,
    quotes group, a backslash escapes the next character, an unquoted # starts a comment, and
    older versions end a word at # even inside quotes): as it is when nothing in it is special,
    else in double quotes with \\, " and # escaped."""
    text = str(word)
    if "\n" in text or "\r" in text or "\0" in text:
        raise Fail("launch_failed", "%r cannot be an #SBATCH option (it holds a line break)" % text)
    if text and all(c.isalnum() or c in "-_=/.,:+@%" for c in text):
        return text
    return '"%s"' % "".join("\\" + c if c in '\\"#' else c for c in text)


def run_command(argv, timeout=30):
    """(stdout, stderr, exit status) of a command; 127 when it is not there."""
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True)
    except OSError as e:
        return "", "%s: %s" % (argv[0], e.strerror), 127
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        return "", "%s did not answer within %d s" % (argv[0], timeout), 124
    return out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), p.returncode


def job_answers(addr, port, timeout=3):
    """What Jupyter in a job answers, from here: 'login' (it asks for the password), 'open' (it
    lets anyone in: never ours), or None (nothing answers yet)."""
    import http.client

    try:
        conn = http.client.HTTPConnection(addr, port, timeout=timeout)
        conn.request("GET", "/api/contents", headers={"Host": "localhost:%d" % port})
        status = conn.getresponse().status
        conn.close()
    except (OSError, http.client.HTTPException):
        return None
    return "login" if status in (401, 403) else "open" if status == 200 else None


# --- one run ---------------------------------------------------------------------------------

# jupyter_server 2's words (Server 1 and classic Notebook also say "or terminals")
IDLE_LINE = re.compile(r"No kernels (?:or terminals )?for (\d+) seconds; shutting down")
MOVED_LINE = re.compile(r"'(\w+)' has moved from (\w+) to ServerApp\.")
MOVED_NOTE = (
    "fabjupyter: Jupyter's warnings that keys 'moved from NotebookApp/LabApp/JupyterNotebookApp to ServerApp' are "
    "about this tool's own settings, pinned there so that an older config cannot override them\n"
)


# An instance's name: a file name and a tmux session name as it is (bootstrap.sh and the client
# check the same rule).
NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
NAME_MAX = 40


def good_name(name):
    return isinstance(name, str) and 0 < len(name) <= NAME_MAX and name[0] not in "_-" and all(c in NAME_CHARS for c in name)


def instance_dir(home, name):
    """~/.fabjupyter for the default instance (where a single-server host keeps everything, as
    before instances existed); ~/.fabjupyter/instances/NAME for the others."""
    top = os.path.join(home, ".fabjupyter")
    return top if name == "default" else os.path.join(top, "instances", name)


def instance_names(home):
    """The instances set up on this host: default (if anything of it is there), then the others."""
    top = os.path.join(home, ".fabjupyter")
    names = []
    if any(os.path.exists(os.path.join(top, f)) for f in ("state", "settings.sh", "run.sh", "password", "config")):
        names.append("default")
    try:
        names += sorted(n for n in os.listdir(os.path.join(top, "instances"))
                        if good_name(n) and n != "default" and os.path.isdir(os.path.join(top, "instances", n)))
    except OSError:
        pass
    return names


class Run:
    """One action on one instance on this host: the request, the paths, and the changes made
    (or, in check mode, that would be made)."""

    def __init__(self, request, out, bootstrap):
        self.req = request
        self.out = out
        self.dry = bool(request.get("dry_run"))
        self.changes = []
        self.note = bootstrap.get("note") or None
        self.command = bootstrap.get("command") or []
        self.boot_code, self.boot_detail = bootstrap.get("code") or "", bootstrap.get("detail") or ""
        self.plain = bool(bootstrap.get("plain"))
        self.home = os.path.expanduser("~")
        self.name = request.get("instance") or "default"
        if not good_name(self.name):
            self.name = "default"  # main() refuses the request before any path is used
        self.top = os.path.join(self.home, ".fabjupyter")
        self.d = instance_dir(self.home, self.name)
        self.tmux_session = "jupyter" if self.name == "default" else "jupyter-" + self.name
        # the directories this run may make only to hold its lock (removed again if it changes nothing)
        self.fresh = [p for p in (self.top, os.path.join(self.top, "instances"), self.d) if not os.path.isdir(p)]
        self.lock_fd = None
        self.child = None  # a Jupyter started here with nohup (ours to reap)
        self.password_from = ""  # where a new instance's password came from
        self.jobs = {}  # job id -> the scheduler's answer, asked once per run
        self.gone = False  # the client went away (a reply could not be written)

    # paths
    def path(self, *parts):
        return os.path.join(self.d, *parts)

    def config_path(self, kind):
        return self.path("config", KINDS[kind].config_name)

    def password_path(self, kind):
        return self.path("password", KINDS[kind].config_name)

    # output
    def event(self, name, **fields):
        fields["event"] = name
        self.send(fields)

    def send(self, obj):
        try:
            self.out.write(json.dumps(obj) + "\n")
            self.out.flush()
        except (OSError, ValueError):
            self.gone = True  # the client went away: finish the job all the same (a queued batch job excepted)

    def change(self, what, detail="", diff=(), act=None):
        """Record a change; make it unless this is a dry run."""
        self.changes.append({"what": what, "detail": detail, "diff": list(diff)})
        if act is not None and not self.dry:
            act()

    # the lock: one changing run at a time per user and host. Another run's setup, a retry at
    # once after a cut-off run (whose agent goes on), a group run overlapping a single one: each
    # waits here (bounded, and says for whom) instead of starting a second Jupyter. flock's lock
    # goes with the process, so a killed run leaves none behind.
    def lock(self):
        wait = int(self.req.get("timeout") or 60) + 60
        said = False
        while True:
            make_dir(self.d)
            try:
                fd = os.open(self.path("lock"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            except FileNotFoundError:
                continue  # a failed run for another instance removed the directories it had made
            except OSError as e:
                raise Fail("cannot_write", "%s: %s" % (self.path("lock"), e.strerror))
            deadline = time.time() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    if not said:
                        self.event("waiting", owner=self.lock_owner(), seconds=wait)
                        said = True
                    if time.time() > deadline:
                        os.close(fd)
                        raise Fail("locked", self.lock_owner())
                    time.sleep(0.1)
            try:  # still the lock file, not one that a run failing on a fresh host removed meanwhile?
                if os.fstat(fd).st_ino == os.stat(self.path("lock")).st_ino:
                    break
            except OSError:
                pass
            os.close(fd)
        self.lock_fd = fd
        write_atomic(self.path("lock.owner"), "%s (pid %d, since %s)\n" % (
            self.req["action"], os.getpid(), time.strftime("%H:%M:%S")))

    def lock_owner(self):
        return (read_text(self.path("lock.owner")) or "another run").strip()

    def busy(self):
        """Is a changing run going on now (status does not wait for it)?"""
        try:
            fd = os.open(self.path("lock"), os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return None
        except OSError:
            return self.lock_owner()
        finally:
            os.close(fd)

    def tidy_fresh(self):
        """A run that made ~/.fabjupyter (or an instance's directory) only to hold its lock, and
        then changed nothing (it failed, or it asks for a password first), leaves no trace of it."""
        if self.d not in self.fresh or not os.path.isdir(self.d):
            return
        names = set(os.listdir(self.d))
        if names <= {"lock", "lock.owner"}:
            for name in names:
                try:
                    os.unlink(self.path(name))
                except OSError:
                    pass
            for folder in reversed(self.fresh):  # the instance's, then instances/, then ~/.fabjupyter
                try:
                    os.rmdir(folder)
                except OSError:
                    break  # not empty: another instance's

    # what is on disk
    def state(self):
        """The record of the server this tool started (JSON; an earlier version's key=value is
        read too, and its fingerprint carried over when the files it covered are unchanged)."""
        text = read_text(self.path("state"))
        if text is None:
            return {}
        try:
            state = json.loads(text)
            if isinstance(state, dict):
                return state
        except ValueError:
            pass
        old = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

        def integer(key):
            return int(old[key]) if old.get(key, "").isdigit() else None

        kind = old.get("flavour") or "server2"
        state = {
            "pid": integer("pid"), "port": integer("port"), "socket": old.get("sock") or None,
            "requested_port": integer("requested_port"), "launcher": old.get("launcher") or "nohup",
            "started": integer("started"), "mode": old.get("mode") or "ssh", "kind": kind,
            "fingerprint": None, "version": None, "fast_start": True, "python": None,
        }
        if state["socket"]:
            state["requested_port"] = None
        data = b""
        for path in (self.path("run.sh"), self.config_path(kind), self.password_path(kind)):
            try:
                with open(path, "rb") as f:
                    data += f.read()
            except OSError:
                pass
        if cksum(data) == old.get("fingerprint"):  # it runs with the files there now
            state["fingerprint"] = self.disk_fingerprint(kind)
        return state

    def migrate(self):
        """What an earlier version left, in this version's files (under the lock, before this run
        rewrites the scripts): its key=value state as JSON, with its fingerprint carried over
        while the scripts its checksum covered are still there; the settings inside its run.sh
        as settings.sh."""
        text = read_text(self.path("state"))
        if text is not None and not text.lstrip().startswith("{"):
            write_atomic(self.path("state"), json_text(dict(self.state(), v=PROTOCOL)))
        if not os.path.exists(self.path("settings.sh")):
            block = legacy_block(read_text(self.path("run.sh")))
            if block is not None:
                write_atomic(self.path("settings.sh"), block)

    def disk_settings(self):
        text = read_text(self.path("settings.sh"))
        if text is None:
            text = legacy_block(read_text(self.path("run.sh")))
        return settings_from_sh(text) if text is not None else None

    def tls_digests(self, settings):
        if settings.get("tls") != "1":
            return None
        return [digest(self.path("tls", "cert.pem")), digest(self.path("tls", "key.pem"))]

    def disk_fingerprint(self, kind):
        settings = self.disk_settings()
        return fingerprint(settings, kind, read_json(self.config_path(kind)), read_json(self.password_path(kind)),
                           self.tls_digests(settings or {}))

    def stored_hash(self):
        """The stored password hash, whichever kind's file holds it."""
        folder = self.path("password")
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            return None
        for name in names:
            data = read_json(os.path.join(folder, name))
            for section in (data or {}).values():
                if isinstance(section, dict):
                    h = section.get("hashed_password") or section.get("password")
                    if h:
                        return h
        return None

    def unrecorded(self, pid):
        """Jupyter servers this tool launched that still run but are not the recorded one (a run
        killed between the start and the record)."""
        found = []
        for word in (read_text(self.path("launched")) or "").split():
            if word.isdigit() and int(word) != pid and alive(int(word)) and int(word) not in found:
                found.append(int(word))
        return found

    def status(self, state=None):
        state = self.state() if state is None else state
        pid = state.get("pid")
        kind = state.get("kind") or "server2"
        configured = self.disk_settings() is not None and os.path.isfile(self.config_path(kind))
        batch = {"job_id": None, "job_state": None, "node": None, "time_left": None, "address": None, "ended": None}
        if state.get("launcher") in SCHEDULERS and state.get("job_id"):
            job_id = state["job_id"]
            job = self.job(state)
            where = self.job_where(job_id)
            if where and not state.get("port"):  # its agent was cut off before it recorded them
                state = dict(state, address=where[0], port=where[1], node=where[2])
            running = bool(job and job["state"] == "RUNNING" and state.get("port"))
            batch.update(job_id=job_id, node=state.get("node") or (job or {}).get("node"), address=state.get("address"))
            if job and job["state"] in SCHEDULERS[state["launcher"]].ACTIVE:
                batch.update(job_state=job["state"], time_left=job["time_left"])
            else:
                ended = SCHEDULERS[state["launcher"]]().ended(job_id) or (job and (job["state"], job["reason"]))
                # the scheduler forgot it (no accounting, and past MinJobAge): this tool's record
                state_word, reason = ended or ("ENDED", "no longer known to the scheduler")
                batch.update(job_state=state_word, ended=(state_word + (" (%s)" % reason if reason else "")))
        else:
            running = alive(pid)
        status = {
            "running": running,
            "pid": pid if running else None,
            "port": state.get("port") if running else None,
            "socket": state.get("socket") if running else None,
            "launcher": state.get("launcher") if running else None,
            "mode": state.get("mode") if running else None,
            "started": state.get("started") if running else None,
            "current": (state.get("fingerprint") == self.disk_fingerprint(kind)) if running else None,
            "kind": kind if running else None,
            "version": state.get("version") if running else None,
            "fast_start": bool(state.get("fast_start")) if running else None,
            "stale_pid": pid if pid and not running else None,
            "idle_shutdown": self.idle_shutdown() if pid and not running and not batch["job_id"] else None,
            "has_password": self.stored_hash() is not None,
            "configured": configured,
            "unrecorded": self.unrecorded(pid),
            "busy": self.busy(),
        }
        status.update(batch)
        command = state.get("command") or []
        status["own_env"] = bool(running and command and command[0].startswith(os.path.join(self.top, "venv") + os.sep))
        return status

    # changes
    def stop_unrecorded(self, state):
        pids = self.unrecorded(state.get("pid"))
        if pids:
            self.change("stop_unrecorded", " ".join(map(str, pids)), act=lambda: [end(p) for p in pids])
        launcher = state.get("launcher") if state.get("launcher") in SCHEDULERS else self.req.get("launcher")
        if launcher in SCHEDULERS and shutil.which("squeue"):
            # a job of this instance that no record names (its run was killed right after submitting it)
            scheduler = SCHEDULERS[launcher]()
            for job_id in scheduler.find(self.job_name()):
                if job_id != state.get("job_id"):
                    self.change("stop_unrecorded", "job " + job_id, act=lambda j=job_id: self.cancel_job(scheduler, j))
        if not self.dry:
            if not alive(state.get("pid")):
                self._remove("launched")
            elif (read_text(self.path("launched")) or "").split() != [str(state["pid"])]:
                write_atomic(self.path("launched"), "%d\n" % state["pid"])

    def _remove(self, name):
        try:
            os.unlink(self.path(name))
        except OSError:
            pass

    def stop_server(self, state, what="stop"):
        pid = state.get("pid")
        if state.get("launcher") in SCHEDULERS and state.get("job_id"):
            if self.server_alive(state):
                self.change(what, "job %s" % state["job_id"],
                            act=lambda: self.cancel_job(SCHEDULERS[state["launcher"]](), state["job_id"]))
        elif alive(pid):
            self.change(what, str(pid), act=lambda: end(pid))

        def tidy():
            if shutil.which("tmux"):
                subprocess.call(["tmux", "-L", "fabjupyter", "kill-session", "-t", "=" + self.tmux_session],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self._remove("state")
            self._remove("pid")

        if not self.dry:
            tidy()

    def check_launcher(self, launcher):
        if launcher == "tmux":
            if not shutil.which("tmux"):
                raise Fail("no_tmux")
        elif launcher in SCHEDULERS:
            if not shutil.which(SCHEDULERS[launcher].submit_command):
                raise Fail("no_scheduler", SCHEDULERS[launcher].submit_command)
        elif launcher != "nohup":
            raise Fail("bad_launcher", launcher)

    # batch jobs
    def job(self, state):
        """The scheduler's word on the recorded job: {state, reason, node, time_left}, or None
        once it left the queue (asked once per run)."""
        launcher, job_id = state.get("launcher"), state.get("job_id")
        if launcher not in SCHEDULERS or not job_id:
            return None
        if job_id not in self.jobs:
            self.jobs[job_id] = SCHEDULERS[launcher]().query(job_id)
        return self.jobs[job_id]

    def server_alive(self, state):
        """Is the recorded server there: its process, or its job (queued or running)?"""
        if state.get("launcher") in SCHEDULERS:
            job = self.job(state)
            return bool(job and job["state"] in SCHEDULERS[state["launcher"]].ACTIVE)
        return alive(state.get("pid"))

    def job_record(self, job_id):
        """What the job JOB_ID wrote to job.where on its node (ready.py's verdict): its Jupyter,
        checked there to be the process listening, or why it is not serving; None until then
        (and for anything else, such as another job's record)."""
        record = read_json(self.path("job.where"))
        if not isinstance(record, dict) or record.get("job_id") != job_id:
            return None
        if record.get("ours") is True and isinstance(record.get("port"), int) and isinstance(record.get("pid"), int) \
                and record.get("address") and record.get("node"):
            return record
        return record if isinstance(record.get("failed"), str) else None

    def job_where(self, job_id):
        """(address, port, node) of the job's Jupyter, once the job proved it is the one listening."""
        record = self.job_record(job_id)
        if record and record.get("ours"):
            return record["address"], record["port"], record["node"]
        return None

    def job_failure(self, record):
        """The job's own word that its Jupyter is not serving, as the failure to report."""
        code, detail = record["failed"], str(record.get("detail") or "")
        if code == "port_taken":
            return Fail("port_taken", detail)
        if code == "unsafe":
            return Fail("unsafe", detail)
        if code == "timeout":
            return Fail("timeout", str(self.req.get("timeout") or 60), log=self.log_tail())
        return Fail("died", log=self.log_tail())

    def job_name(self):
        return "fabjupyter-" + self.name

    def cancel_job(self, scheduler, job_id, wait=60):
        """Cancel the job and wait until the scheduler no longer runs it."""
        scheduler.cancel(job_id)
        deadline = time.time() + wait
        while time.time() < deadline:
            job = scheduler.query(job_id)
            if job is None or job["state"] not in scheduler.ACTIVE:
                break
            time.sleep(0.5)
        self.jobs.pop(job_id, None)

    def launch_job(self, scheduler, kind, version, settings, root, requested):
        """Submit Jupyter as a batch job; follow it through the queue (one event per change of
        state); wait until the job proved that its Jupyter is the one listening and Jupyter
        answers on the node, asking for the password; record it. The port is chosen on the node
        by the job (bootstrap.sh's `job`), which runs ready.py there and writes the verdict to
        job.where in this (shared) directory: where Jupyter listens, or why it is not serving."""
        k = KINDS[kind]
        options = [str(o) for o in self.req.get("sbatch") or []]
        script = "\n".join(["#!/bin/sh"] + scheduler.script_header(self.job_name(), self.path("jupyter.log"), options) + [
            "# fabjupyter's batch job: Jupyter for the instance %r on the node this job runs on" % self.name,
            "exec sh %s job" % sh_quote(self.path("run.sh")), ""])
        self.change("start", "%s job, a free port from %s on its node" % (scheduler.name, requested or 8888),
                    diff=script.splitlines())
        if self.dry:
            return
        argv = self.jupyter_argv(kind, root, None, "", False)
        ip_config = {k.app: {"ip": "@ADDR@"}}
        if kind != "nb6":
            ip_config.update({name: {"ip": "@ADDR@"} for name in SHIMMED_CLASSES})
        write_atomic(self.path("serve.sh"), "\n".join([
            "# Jupyter's command line, for run.sh (written at each start)",
            "set -- %s" % " ".join(sh_quote(a) for a in argv),
            "FJ_APP=%s FJ_PORT=%d FJ_PYTHON=%s" % (k.app, requested or 8888, sh_quote(sys.executable)),
            "FJ_CONFIG_NAME=%s FJ_TIMEOUT=%d" % (k.config_name, int(self.req.get("timeout") or 60)),
            "FJ_IP_CONFIG=%s" % sh_quote(json.dumps(ip_config)), ""]))
        write_atomic(self.path("ready.py"), self.req["ready_py"], 0o600)  # the job's check, on its node
        write_atomic(self.path("job.sh"), script, 0o700)
        self._remove("job.where")
        log = self.path("jupyter.log")
        if os.path.exists(log):
            os.replace(log, log + ".1")
        job_id = scheduler.submit(self.path("job.sh"))
        state = {
            "v": PROTOCOL, "pid": None, "job_id": job_id, "launcher": scheduler.name, "sbatch": options, "port": None,
            "address": None, "node": None, "socket": None, "requested_port": requested, "mode": "ssh", "started": None,
            "submitted": int(time.time()), "kind": kind, "version": version, "fast_start": False, "python": sys.executable,
            "command": self.command, "fingerprint": self.disk_fingerprint(kind),
        }
        write_atomic(self.path("state"), json_text(state))
        write_atomic(self.path("python"), sys.executable + "\n")
        self.event("job", job_id=job_id, state="SUBMITTED", reason="", node=None)
        queue_timeout = int(self.req.get("queue_timeout") or 0)
        queue_deadline = time.time() + queue_timeout if queue_timeout else None
        ready_deadline, last, ticked = None, None, time.time()

        def give_up(failure):
            self.cancel_job(scheduler, job_id)
            self._remove("state")
            raise failure

        while True:
            job = scheduler.query(job_id)
            record = self.job_record(job_id)
            if record and record.get("failed"):  # its Jupyter is not the one listening, or not as we said
                give_up(self.job_failure(record))
            if job is None or job["state"] not in scheduler.ACTIVE:
                ended = scheduler.ended(job_id) or ((job["state"], job["reason"]) if job else ("ENDED", ""))
                self._remove("state")
                raise Fail("job_ended", "%s %s" % (job_id, " ".join(w for w in ended if w)), log=self.log_tail())
            seen = (job["state"], job["reason"], job["node"])
            if seen != last:
                self.event("job", job_id=job_id, state=job["state"], reason=job["reason"], node=job["node"])
                last = seen
            elif time.time() - ticked > 2:
                self.event("tick")
                ticked = time.time()
            if self.gone:  # Ctrl-C on the client, or its connection dropped: this job is nobody's
                give_up(Fail("cancelled", job_id))
            if job["state"] == "RUNNING":
                # the job's own check waits as long for Jupyter; its verdict may come a little later
                ready_deadline = ready_deadline or time.time() + int(self.req.get("timeout") or 60) + 15
                where = self.job_where(job_id)
                answer = job_answers(where[0], where[1]) if where else None
                if answer == "login":
                    break
                if answer == "open":
                    give_up(Fail("unsafe", "Jupyter in job %s lets anyone in without the password" % job_id))
                if time.time() > ready_deadline:
                    give_up(Fail("timeout", str(self.req.get("timeout") or 60), log=self.log_tail()))
            elif queue_deadline and time.time() > queue_deadline:
                give_up(Fail("queue_timeout", "%s %s %s" % (queue_timeout, job_id, job["state"]), log=[job["reason"]] if job["reason"] else []))
            time.sleep(0.5)
        address, port, node = where
        state.update(address=address, port=port, node=node, started=int(time.time()))
        write_atomic(self.path("state"), json_text(state))

    def root_dir(self, settings):
        root = settings.get("root", "")
        if not root:
            return self.home
        return root if root.startswith("/") else os.path.join(self.home, root)

    def check_root(self, settings):
        root = self.root_dir(settings)
        if os.path.exists(root) and not os.path.isdir(root):
            raise Fail("root_not_dir", root)

    def probe(self):
        """The kind and version of the Jupyter the bootstrap found (this is its Python)."""
        if not self.command:
            raise Fail("no_jupyter")
        versions = installed_versions()
        return kind_for(versions, self.command[0]), describe_versions(versions)

    def write_config(self, kind, settings_sh):
        """settings.sh, run.sh and the kind's settings file (and no other kind's, whose keys
        would warn). Only the first and the last are what Jupyter reads."""
        old = read_text(self.path("settings.sh"))
        wanted = settings_from_sh(settings_sh)
        now = self.disk_settings()
        want_cfg = config_for(kind, wanted)
        cfg_path = self.config_path(kind)
        old_cfg = read_json(cfg_path)
        others = [p for p in self._json_files("config") if p != cfg_path]
        if not self.dry:
            make_dir(self.d)
            make_dir(self.path("config"))
            make_dir(self.path("password"))
        if now != wanted:
            self.change("settings", diff=diff(old if old is not None else legacy_block(read_text(self.path("run.sh"))),
                                              settings_sh, "settings.sh"),
                        act=lambda: write_atomic(self.path("settings.sh"), settings_sh))
        elif old != settings_sh:
            self.change("tool", "settings.sh", act=lambda: write_atomic(self.path("settings.sh"), settings_sh))
        if old_cfg != want_cfg or others:
            old_text = read_text(cfg_path)
            name = "config/" + KINDS[kind].config_name
            self.change("config", name, diff=diff(old_text, json_text(want_cfg), name),
                        act=lambda: [write_atomic(cfg_path, json_text(want_cfg))] + [os.unlink(p) for p in others])
        self.refresh_tool_files()
        return want_cfg

    def refresh_tool_files(self):
        """This tool's own scripts (run.sh, boot.py): rewritten when they differ, never a reason
        to restart Jupyter. A "tool" change is one that replaced a file of an earlier version
        (the client says so); "tool_added" one that was not there (nothing to say)."""
        wanted = [("run.sh", self.req.get("run_sh"), 0o700)]
        if self.req.get("fast_start"):
            wanted.append(("boot.py", self.req.get("boot_py"), 0o600))
        for name, text, mode in wanted:
            old = read_text(self.path(name))
            if text is not None and old != text:
                self.change("tool" if old is not None else "tool_added", name,
                            act=lambda name=name, text=text, mode=mode: self._write_tool(name, text, mode))

    def _write_tool(self, name, text, mode):
        try:
            make_dir(self.d)
            write_atomic(self.path(name), text, mode)
        except Fail:
            if name != "boot.py":
                raise  # boot.py is a speed-up, never a reason not to start: without it, Jupyter starts as its script says

    def _json_files(self, folder):
        try:
            return [self.path(folder, n) for n in sorted(os.listdir(self.path(folder))) if n.endswith(".json")]
        except OSError:
            return []

    def write_password(self, kind, h, new):
        """The kind's password file with hash H (a new password when NEW; else the stored one in
        this kind's format), and no other kind's."""
        path = self.password_path(kind)
        want = KINDS[kind].password(h)
        others = [p for p in self._json_files("password") if p != path]
        if read_json(path) == want and not others:
            return
        act = lambda: (make_dir(self.d), make_dir(self.path("password")), write_atomic(path, json_text(want)),  # noqa: E731
                       [os.unlink(p) for p in others])
        if new:
            self.change("password", self.password_from, act=act)
        elif not self.dry:
            act()

    def launch(self, kind, version, settings, launcher, requested):
        """Start Jupyter detached and wait until it answers as ours; record it."""
        if self.stored_hash() is None and not self.dry:
            raise Fail("no_password")
        if settings is None:
            raise Fail("not_configured")
        self.check_launcher(launcher)
        self.check_root(settings)
        root = self.root_dir(settings)
        if not os.path.exists(root):
            self.change("root_dir", root, act=lambda: make_dir(root))
        tls, sock = settings.get("tls") == "1", settings.get("sock") == "1"
        if not self.dry:
            self.fresh_cookie_secret()
        if launcher in SCHEDULERS:
            return self.launch_job(SCHEDULERS[launcher](), kind, version, settings, root, requested)
        where = "socket" if sock else "port %s or the next free one" % requested
        self.change("start", "%s, %s" % (launcher, where))
        if self.dry:
            return
        if not os.path.isfile(self.config_path(kind)):
            raise Fail("not_configured")  # configured for another kind of Jupyter
        if not os.path.isfile(self.password_path(kind)):
            self.write_password(kind, self.stored_hash(), new=False)
        if tls and not (os.path.isfile(self.path("tls", "cert.pem")) and os.path.isfile(self.path("tls", "key.pem"))):
            raise Fail("no_cert")
        ip = settings.get("ip") or "127.0.0.1"
        sock_path = self.path("run", "jupyter.sock") if sock else ""
        if sock:
            make_dir(self.path("run"))
            try:
                os.unlink(sock_path)
            except OSError:
                pass
        want = requested or 8888
        ports_lock = self.ports_lock()  # until it listens: another instance starting now never takes the same port
        for attempt in range(3):
            port = None if sock else free_port(want, ip)
            pid = self.start_process(kind, settings, launcher, root, port, sock_path, tls)
            result = self.wait_ready(pid, port, sock_path, ip, tls)
            if result.startswith("ready "):
                break
            if result.startswith("unsafe "):
                kill(pid)
                raise Fail("unsafe", result[len("unsafe "):])
            if result == "died":
                # a port taken between our check and Jupyter's bind: the next one. (A socket in use
                # is no race to retry: another process listens at our path, and the log says so.)
                if port and attempt < 2 and "already in use" in (read_text(self.path("jupyter.log")) or ""):
                    want = port + 1
                    continue
                raise Fail("died", log=self.log_tail())
            if result == "timeout":
                kill(pid)
                raise Fail("timeout", str(self.req.get("timeout") or 60), log=self.log_tail())
            raise Fail("launch_failed", result)
        state = {
            "v": PROTOCOL, "pid": pid, "port": port, "socket": sock_path or None, "requested_port": requested,
            "launcher": launcher, "mode": "public" if tls else "ssh", "started": int(time.time()), "kind": kind,
            "version": version, "fast_start": self.fast_start_used, "python": sys.executable,
            "command": self.command, "fingerprint": self.disk_fingerprint(kind),
        }
        write_atomic(self.path("state"), json_text(state))
        write_atomic(self.path("python"), sys.executable + "\n")
        os.close(ports_lock)

    def fresh_cookie_secret(self):
        """New random bytes for the key Jupyter signs its login cookies with (Jupyter's own file in
        its runtime directory outlives restarts, and is shared by all of a user's servers)."""
        make_dir(self.d)
        write_atomic(self.path("cookie_secret"), base64.b64encode(os.urandom(32)).decode() + "\n")

    def ports_lock(self):
        """Held from choosing a port until Jupyter listens on it (instances of one user choose
        ports one at a time); released when this process ends, whatever happens."""
        try:
            fd = os.open(os.path.join(self.top, "ports.lock"), os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError as e:
            raise Fail("cannot_write", "%s: %s" % (os.path.join(self.top, "ports.lock"), e.strerror))
        deadline = time.time() + int(self.req.get("timeout") or 60) + 60
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except OSError:
                if time.time() > deadline:
                    os.close(fd)
                    raise Fail("locked", "another instance's start")
                time.sleep(0.05)

    def inherited_hash(self):
        """A new instance starts with the default instance's password (one password opens all
        of a user's servers on a host, unless one is set apart with `password --name`)."""
        if self.name == "default":
            return None
        return Run(dict(self.req, instance="default", dry_run=True), self.out, {}).stored_hash()

    def known(self):
        """That this instance exists; an unknown name is an error that lists the known ones.
        A directory that holds only a lock is not one: a changing run (stop, start) made it for
        its lock before asking."""
        if self.name == "default":
            return
        try:
            names = set(os.listdir(self.d))
        except OSError:
            names = set()
        if not names - {"lock", "lock.owner"}:
            raise Fail("unknown_instance", self.name, log=[n for n in instance_names(self.home) if n != self.name] or ["none"])

    def jupyter_argv(self, kind, root, port, sock_path, tls):
        """Jupyter's command line (a batch job adds the port it finds free on its node)."""
        k = KINDS[kind]
        argv = list(self.command)
        if tls:
            argv += ["--%s.certfile=%s" % (k.app, self.path("tls", "cert.pem")), "--%s.keyfile=%s" % (k.app, self.path("tls", "key.pem"))]
        if sock_path:
            # a Unix socket instead of a port (Jupyter aborts on --sock with any port option)
            argv += ["--%s.sock=%s" % (k.app, sock_path), "--%s.sock_mode=0600" % k.app]
        elif port:
            argv += ["--%s.port=%d" % (k.app, port)]
        argv.append("--%s.%s=%s" % (k.app, k.root_key, root))
        # a key of its own, new at every start (fresh_cookie_secret): a login cookie dies with the
        # server that issued it, and a captured one is worthless after a restart or a new password
        argv.append("--%s.cookie_secret_file=%s" % (k.app, self.path("cookie_secret")))
        if os.getuid() == 0:
            argv.append("--allow-root")
        return argv

    def start_process(self, kind, settings, launcher, root, port, sock_path, tls):
        argv = self.jupyter_argv(kind, root, port, sock_path, tls)
        # fast_start (opt-in): through boot.py, when Jupyter is a Python script run by its own
        # Python as its first line says
        self.fast_start_used = bool(self.req.get("fast_start") and self.plain and read_text(self.path("boot.py")) == self.req.get("boot_py"))
        if self.fast_start_used:
            argv = [sys.executable, self.path("boot.py")] + argv
        log = self.path("jupyter.log")
        if os.path.exists(log):
            os.replace(log, log + ".1")
        with open(log, "w") as f:
            if kind != "nb6":
                f.write(MOVED_NOTE)
        self._remove("pid")
        if launcher == "nohup":
            env = dict(os.environ)
            env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(
                [self.path("password"), self.path("config")] + ([env["JUPYTER_CONFIG_PATH"]] if env.get("JUPYTER_CONFIG_PATH") else []))
            with open(log, "a") as out, open(os.devnull) as devnull:
                self.child = subprocess.Popen(argv, stdin=devnull, stdout=out, stderr=out, cwd=self.home, env=env,
                                              start_new_session=True, close_fds=True)
            pid = self.child.pid
            write_atomic(self.path("pid"), "%d\n" % pid)
            with open(self.path("launched"), "a") as f:
                f.write("%d\n" % pid)
            return pid
        subprocess.call(["tmux", "-L", "fabjupyter", "kill-session", "-t", "=" + self.tmux_session],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # the command line goes in a file, not on tmux's (whose server keeps its first client's)
        write_atomic(self.path("serve.sh"), "# Jupyter's command line, for run.sh (written at each start)\nset -- %s\n" % " ".join(
            sh_quote(a) for a in argv))
        p = subprocess.Popen(["tmux", "-L", "fabjupyter", "new-session", "-d", "-s", self.tmux_session, "sh", self.path("run.sh"), "serve"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.home, close_fds=True)
        err = p.communicate()[0].decode("utf-8", "replace").strip()
        if p.returncode != 0:
            raise Fail("launch_failed", "tmux: " + err)
        # run.sh writes its own pid just before it execs Jupyter
        deadline = time.time() + 10
        while time.time() < deadline:
            text = read_text(self.path("pid"))
            if text and text.strip().isdigit():
                return int(text.strip())
            time.sleep(0.05)
        raise Fail("launch_failed", "the launcher did not start (see %s)" % log)

    def ready_module(self, **values):
        """ready.py's functions, run in this process with its globals set to VALUES."""
        ns = {"__name__": "fabjupyter_ready"}
        exec(compile(self.req["ready_py"], "ready.py", "exec"), ns)
        ns.update(values)
        return ns

    def wait_ready(self, pid, port, sock_path, ip, tls):
        """ready.py, in this process: until it answers, then that the server answering is the one
        started and runs with our settings (Jupyter's runtime file and what it answers)."""
        ns = self.ready_module(port=port or 0, pid=pid, timeout=float(self.req.get("timeout") or 60), tls=tls, sock=sock_path,
                               ip=ip, runtime_dir=runtime_dir(os.environ))
        if tls:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # a real handshake: a key that does not fit fails
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            ns["wrap"] = context.wrap_socket
        child, real_alive = self.child, ns["alive"]

        def started_alive(p):
            if child is not None and p == child.pid:
                return child.poll() is None  # our own child: a zombie is dead
            return real_alive(p)

        ns["alive"] = started_alive
        return ns["main"]()

    def idle_shutdown(self):
        """How long Jupyter had been idle when it shut itself down for idle_timeout (its log
        says so: "No kernels for N seconds; shutting down."), else None."""
        found = IDLE_LINE.findall(read_tail(self.path("jupyter.log")))
        return int(found[-1]) if found else None

    def jupyter_log(self):
        """jupyter.log's lines (None without one), less the ones this tool causes: notebook_shim's
        warnings that a key "has moved from NotebookApp to ServerApp" (or from LabApp, from
        JupyterNotebookApp) for each key our settings pin on those classes (the user's own such
        keys are overridden, so the value moved is ours), and our note about them. A moved key
        that only the user's config sets still shows."""
        text = read_text(self.path("jupyter.log"))
        if text is None:
            return None
        ours = set()
        for path in self._json_files("config") + self._json_files("password"):
            data = read_json(path)
            for name in SHIMMED_CLASSES:
                section = data.get(name) if isinstance(data, dict) else None
                ours.update((name, key) for key in (section if isinstance(section, dict) else ()))
        note = MOVED_NOTE.rstrip("\n")

        def own(line):
            found = MOVED_LINE.search(line)
            return line == note or bool(found and (found.group(2), found.group(1)) in ours)

        return [line for line in text.splitlines() if not own(line)]

    def log_tail(self):
        # Jupyter's own lines (not this tool's)
        lines = [line for line in self.jupyter_log() or [] if not line.startswith("fabjupyter: ")]
        return lines[-int(self.req.get("lines") or 20):]


# --- the actions -----------------------------------------------------------------------------

LOCKED = ("config", "password", "start", "stop", "restart", "setup", "install")


def requested_port(run, settings):
    return None if settings.get("sock") == "1" else int(run.req.get("port") or 8888)


def act_status(run):
    run.known()
    return {"status": run.status()}


def act_setup(run):
    req = run.req
    if run.boot_code:  # no Jupyter there, and install: true
        return setup_reply(run, ask="install", install=install_facts(run))
    state = run.state()
    run.stop_unrecorded(state)
    stored = run.stored_hash()
    new = req.get("password_hash")
    if not new and not stored:
        new = run.inherited_hash()
        if new:
            run.password_from = "the default instance's"
    if not new and not stored and not run.dry:
        return setup_reply(run, ask="password")
    if new and stored and not req.get("salted"):
        # the salt of the stored hash (up to SALT in argon2:$argon2id$v=..$m=..,t=..,p=..$SALT$DIGEST):
        # the client hashes the password given with it, so that the same password is seen as such;
        # the digest never leaves the host
        parts = stored.split("$")
        return setup_reply(run, ask="salt", salt="$".join(parts[:5]) if len(parts) == 6 else "")
    if new and new == stored:
        new = None
    if req.get("install") and run.command and not run.command[0].startswith(venv_path(run) + os.sep):
        run.note = "install: true, but Jupyter was found there (%s): it is used, and nothing was installed" % run.command[0]
    settings_sh = req["settings_sh"]
    settings = settings_from_sh(settings_sh)
    launcher = req.get("launcher") or "nohup"
    run.check_launcher(launcher)
    run.check_root(settings)
    kind, version = run.probe()
    k = KINDS[kind]
    h = new or stored
    want_fp = fingerprint(settings, kind, config_for(kind, settings), k.password(h) if h else None, run.tls_digests(settings))
    requested = requested_port(run, settings)
    upgraded = req.get("upgraded") and state.get("version") != version  # setup --install --upgrade changed it
    if (run.server_alive(state) and not upgraded and state.get("fingerprint") == want_fp and state.get("launcher") == launcher
            and state.get("requested_port") == requested
            and (launcher not in SCHEDULERS or state.get("sbatch") == list(req.get("sbatch") or []))):
        run.refresh_tool_files()
        return setup_reply(run, unchanged=True)
    run.write_config(kind, settings_sh)
    if h:
        run.write_password(kind, h, new=bool(new))
    else:
        run.change("password", "asked for then")  # a dry run on a host without one
    run.stop_server(state)
    run.launch(kind, version, settings, launcher, requested)
    return setup_reply(run)


def setup_reply(run, ask=None, salt=None, unchanged=False, install=None):
    return {"ask": ask, "salt": salt, "unchanged": unchanged, "changes": run.changes, "status": run.status(), "note": run.note,
            "install": install}


def restart_needed(run):
    state = run.state()
    return run.server_alive(state) and state.get("fingerprint") != run.disk_fingerprint(state.get("kind") or "server2")


def act_config(run):
    settings = settings_from_sh(run.req["settings_sh"])
    run.check_root(settings)
    kind, _ = run.probe()  # the kind of Jupyter decides the file (nothing is written if this fails)
    run.write_config(kind, run.req["settings_sh"])
    return {"changes": run.changes, "restart_needed": not run.dry and restart_needed(run)}


def act_password(run):
    state = run.state()
    kind = state.get("kind")
    if not kind:  # never started: the kind its settings file is for
        kind = "nb6" if os.path.isfile(run.config_path("nb6")) and not os.path.isfile(run.config_path("server2")) else "server2"
    if run.req.get("password_hash") is None and run.dry:  # asked for nothing: it would be set, or replace one
        run.change("password", "replace" if run.stored_hash() else "set")
    else:
        run.write_password(kind, run.req["password_hash"], new=True)
    return {"changes": run.changes, "restart_needed": not run.dry and restart_needed(run)}


def act_start(run):
    run.known()
    state = run.state()
    run.stop_unrecorded(state)
    if not run.server_alive(state):
        settings = run.disk_settings()
        kind, version = run.probe()
        run.refresh_tool_files()
        run.launch(kind, version, settings, run.req.get("launcher") or "nohup", requested_port(run, settings or {}))
    return {"changes": run.changes, "status": run.status(), "note": run.note}


def act_restart(run):
    run.known()
    state = run.state()
    if run.stored_hash() is None:
        raise Fail("no_password")
    launcher = run.req.get("launcher") or state.get("launcher") or "nohup"
    run.check_launcher(launcher)
    settings = run.disk_settings()
    kind, version = run.probe()
    run.stop_unrecorded(state)
    run.stop_server(state)
    run.refresh_tool_files()
    run.launch(kind, version, settings, launcher, requested_port(run, settings or {}))
    return {"changes": run.changes, "status": run.status(), "note": run.note}


def act_stop(run):
    run.known()
    state = run.state()
    run.stop_unrecorded(state)
    run.stop_server(state)
    return {"changes": run.changes}


WATCH_EVERY = 0.05  # seconds between looks at a forwarded port (a batch job's: JOB_WATCH_EVERY)
JOB_WATCH_EVERY = 2.0


def act_watch(run):
    """Answer (gone: why) the moment the server a tunnel's TCP forward was confirmed for is no
    longer there: stopped, restarted, moved, or its port no longer held by it. The tunnel closes
    the forward on that answer, before another user's program can take the port and receive a
    request. Meanwhile a line every second: a client that went away ends this at once."""
    run.known()
    want = (run.req.get("port"), run.req.get("address"))
    first = run.status()
    if not first["running"]:
        return {"gone": "stopped"}
    if first["socket"] or (first["port"], first["address"]) != want:
        return {"gone": "moved"}
    job = first["job_id"] is not None
    state = run.state()
    mine = None  # the inodes of the listening sockets that Jupyter holds, where /proc tells
    if not job:
        ns = run.ready_module(port=want[0], pid=state["pid"], sock="")
        listening = ns["listening_inodes"]()
        if listening is not None:
            mine = set(i for p in ns["family"](state["pid"]) for i in ns["socket_inodes"](p) if i in listening)
            if not mine:
                return {"gone": "taken"}
    beat = time.time()
    while True:
        time.sleep(JOB_WATCH_EVERY if job else WATCH_EVERY)
        if job:
            run.jobs.clear()  # ask the scheduler again
            now = run.status()
            if not now["running"]:
                return {"gone": "stopped"}
            if (now["job_id"], now["port"], now["address"]) != (first["job_id"], first["port"], first["address"]):
                return {"gone": "restarted"}
        else:
            now = run.state()
            if (now.get("pid"), now.get("port"), now.get("socket")) != (state.get("pid"), want[0], None):
                return {"gone": "restarted"}
            if mine is not None:
                if not mine & (ns["listening_inodes"]() or set()):
                    return {"gone": "stopped"}
            elif not alive(state["pid"]):
                return {"gone": "stopped"}
        if time.time() - beat >= 1:
            beat = time.time()
            run.event("watching")
            if run.gone:
                return {"gone": "client"}


def act_logs(run):
    run.known()
    lines = run.jupyter_log()
    if lines is None:
        return {"exists": False, "lines": []}
    return {"exists": True, "lines": lines[-int(run.req.get("lines") or 50):]}


def act_cert(run):
    """Facts for the certificate's names; whether the host has exactly the pair the client has
    (compared by digest: the key never travels for that); with push, install it (0600)."""
    if not run.req.get("new_instance"):
        run.known()
    fqdn = command_output(["hostname", "-f"]) or socket.gethostname()
    ips = command_output(["hostname", "-I"])
    if ips is None:
        ips = " ".join(line.split()[3].split("/")[0] for line in (command_output(["ip", "-o", "addr", "show"]) or "").splitlines()
                       if len(line.split()) > 3)
    req = run.req
    same = bool(req.get("cert_digest")) and digest(run.path("tls", "cert.pem")) == req["cert_digest"] and \
        digest(run.path("tls", "key.pem")) == req.get("key_digest")
    if req.get("push") and not same:
        def push():
            make_dir(run.d)
            make_dir(run.path("tls"))
            write_atomic(run.path("tls", "key.pem"), req["key"])
            write_atomic(run.path("tls", "cert.pem"), req["cert"])

        run.change("cert", act=push)
    has_password = run.stored_hash() is not None or run.inherited_hash() is not None
    return {"fqdn": fqdn.strip(), "ips": ips.split(), "has_password": has_password, "same": same,
            "changes": run.changes}


def act_list(run):
    """Every instance of this tool here, and the Jupyter servers of this user that it did not
    start (from Jupyter's own runtime files: what `jupyter server list` reads)."""
    instances, ours = [], set()
    for name in instance_names(run.home):
        one = Run(dict(run.req, instance=name), run.out, {})
        state = one.state()
        instances.append({"name": name, "status": one.status(state)})
        ours.update([state.get("pid")] + one.unrecorded(None))
    return {"instances": instances, "others": other_servers(ours), "now": int(time.time())}


def other_servers(ours):
    """Live servers in the runtime directories (the environment's, and Jupyter's default) whose
    pid is not one of OURS. Only what locates them: a runtime file's token stays here."""
    found = []
    dirs = []
    for d in (runtime_dir(os.environ), runtime_dir({})):
        if d not in dirs:
            dirs.append(d)
    for d in dirs:
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for n in names:
            if not (n.endswith(".json") and (n.startswith("jpserver-") or n.startswith("nbserver-"))):
                continue
            info = read_json(os.path.join(d, n))
            pid = info.get("pid") if isinstance(info, dict) else None
            if not isinstance(pid, int) or pid in ours or not alive(pid) or any(f["pid"] == pid for f in found):
                continue
            url = info.get("url") if isinstance(info.get("url"), str) else None
            port = info.get("port") if isinstance(info.get("port"), int) and info.get("port") else None
            found.append({
                "pid": pid, "port": port, "socket": info.get("sock") or None,
                "url": url.split("?")[0] if url else None,
                "version": info.get("version") if isinstance(info.get("version"), str) else None,
                "root_dir": info.get("root_dir") or info.get("notebook_dir") or None,
                "kind": "nb6" if n.startswith("nbserver-") else "server",
            })
    return found


# --- this tool's own Jupyter environment (setup --install) -------------------------------------

def may_install(run):
    """No Jupyter was found, install: true was asked, and the command (if one was set) is the
    one in this tool's environment: that environment may be made."""
    detail = run.boot_detail
    ours = os.path.join(run.top, "venv") + os.sep
    return run.boot_code == "no_jupyter" and bool(run.req.get("install")) and (
        not detail or os.path.expanduser(detail).startswith(ours) or detail.startswith("~/.fabjupyter/venv/"))


def venv_path(run):
    return os.path.join(run.top, "venv")


def install_facts(run):
    """What the client needs to fetch wheels for this host: its Python, its platform tags, and
    whether it reaches the package index itself."""
    import platform

    machine = platform.machine()
    platforms = []
    libc = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None
    if libc and libc.startswith("glibc "):
        major, minor = (int(x) for x in libc.split()[1].split(".")[:2])
        platforms += ["manylinux_%d_%d_%s" % (major, m, machine) for m in range(minor, 16, -1)]
        platforms += ["manylinux2014_%s" % machine, "manylinux2010_%s" % machine, "manylinux1_%s" % machine]
    platforms.append("linux_%s" % machine)
    index = os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple/"
    online = False
    try:
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(index, method="HEAD"), timeout=3).close()
        online = True
    except Exception:  # any failure to reach it: this host is offline for us
        online = False
    import importlib.util

    has_venv = importlib.util.find_spec("ensurepip") is not None  # Debian's python3 lacks it without python3-venv
    info = read_json(os.path.join(venv_path(run), "fabjupyter.json")) or {}
    return {
        "python": "%d.%d" % sys.version_info[:2], "implementation": sys.implementation.name,
        "platforms": platforms, "index": index, "online": online, "has_venv": has_venv,
        "venv": venv_path(run), "exists": os.path.isdir(venv_path(run)), "versions": info.get("versions") or {},
    }


VERSIONS_PY = """
import json, os, sys
names = ("jupyterlab", "jupyter_server", "notebook", "ipykernel")
found = {}
try:
    from importlib import metadata
except ImportError:  # before Python 3.8: the distributions' directory names along sys.path
    for entry in sys.path:
        try:
            listing = os.listdir(entry or ".")
        except OSError:
            continue
        for item in listing:
            stem, _, ext = item.rpartition(".")
            if ext in ("dist-info", "egg-info") and stem.count("-") >= 1:
                dist, version = stem.split("-")[:2]
                if dist.lower().replace(".", "_") in names:
                    found.setdefault(dist.lower().replace(".", "_"), version)
else:
    for name in names:
        try:
            found[name] = metadata.version(name)
        except Exception:
            pass
print(json.dumps(found))
"""


def venv_versions(python):
    """The versions of Jupyter's parts in an environment (what --upgrade compares)."""
    out, _, code = run_command([python, "-c", VERSIONS_PY], timeout=60)
    try:
        return json.loads(out) if code == 0 else {}
    except ValueError:
        return {}


def unpack_wheels(tar_path, folder):
    """The wheels the client sent, from their tar into FOLDER: plain files named *.whl only."""
    import tarfile

    shutil.rmtree(folder, ignore_errors=True)
    make_dir(folder)
    try:
        with tarfile.open(tar_path) as tar:
            for member in tar.getmembers():
                name = member.name
                if not member.isfile() or "/" in name or name.startswith(".") or not name.endswith(".whl"):
                    raise Fail("install_failed", "the wheels sent", log=["unexpected member %r" % name])
                with tar.extractfile(member) as src, open(os.path.join(folder, name), "wb") as dst:
                    shutil.copyfileobj(src, dst)
    except (OSError, tarfile.TarError) as e:
        raise Fail("install_failed", "the wheels sent", log=[str(e)])


def act_install(run):
    """Make this tool's environment (~/.fabjupyter/venv) and install the spec into it, from the
    index (the host's own pip) or from the wheels the client sent (--no-index). A failure
    removes an environment this run made: none is left half-made."""
    req = run.req
    facts = install_facts(run)
    if req.get("probe"):
        return {"facts": facts, "changes": [], "before": {}, "after": {}, "seconds": 0.0}
    if not facts["has_venv"]:
        raise Fail("no_venv", "python%s" % facts["python"])
    venv = venv_path(run)
    python = os.path.join(venv, "bin", "python")
    spec = [str(s) for s in req.get("spec") or ["jupyterlab"]]
    wheels = os.path.join(run.top, "install", "wheels")
    here = req.get("source") == "here"
    started = time.time()
    made = not os.path.isdir(venv)
    before = {} if made else venv_versions(python)
    run.change("install", " ".join(spec))
    if run.dry:
        return {"facts": facts, "changes": run.changes, "before": before, "after": {}, "seconds": 0.0}
    try:  # whatever happens, the wheels sent (~/.fabjupyter/install) go
        if here:
            unpack_wheels(os.path.join(run.top, "install", "wheels.tar"), wheels)
        if made:
            run.event("install", step="venv", detail=venv)
            out, err, code = run_command([sys.executable, "-m", "venv", venv], timeout=600)
            if code != 0:
                raise Fail("install_failed", "python%s -m venv" % facts["python"], log=(out + err).splitlines()[-15:])
        argv = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
        if here:
            argv += ["--no-index", "--find-links", wheels]
        if req.get("upgrade"):
            argv.append("--upgrade")
        run.event("install", step="pip", detail="from the wheels sent" if here else "from %s" % facts["index"])
        out, err, code = run_command(argv + spec, timeout=3600)
        if code != 0:
            raise Fail("install_failed", "pip install", log=[line for line in (out + err).splitlines() if line.strip()][-15:])
    except Fail:
        if made:
            shutil.rmtree(venv, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(os.path.join(run.top, "install"), ignore_errors=True)
    after = venv_versions(python)
    write_atomic(os.path.join(venv, "fabjupyter.json"), json_text({
        "spec": spec, "source": "here" if here else facts["index"], "installed": int(time.time()), "versions": after}))
    return {"facts": facts, "changes": run.changes, "before": before, "after": after, "seconds": round(time.time() - started, 3)}


def command_output(argv):
    """A command's output, or None if it failed (or is not there)."""
    out, _, code = run_command(argv, timeout=10)
    return out.strip() if code == 0 else None


ACTIONS = {
    "status": act_status, "setup": act_setup, "config": act_config, "password": act_password, "start": act_start,
    "restart": act_restart, "stop": act_stop, "logs": act_logs, "cert": act_cert, "list": act_list,
    "install": act_install, "watch": act_watch,
}


def main(request, argv=None, out=None):
    """Run one request; argv is what the bootstrap found: (fabjupyter-agent, error code, detail,
    plain, note, Jupyter's command...)."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # finish even if the client hangs up
    argv = sys.argv[1:] if argv is None else argv
    if out is None:
        try:
            out = os.fdopen(3, "w")
        except OSError:
            out = sys.stdout
    boot = {"code": argv[1], "detail": argv[2], "plain": argv[3] == "1", "note": argv[4], "command": argv[5:]} if len(argv) >= 5 \
        else {"code": "", "detail": "", "plain": False, "note": "", "command": []}
    os.umask(0o077)
    run = Run(request, out, boot)
    try:
        if request.get("v") != PROTOCOL:
            raise Fail("protocol", "the client speaks version %r, this agent %d" % (request.get("v"), PROTOCOL))
        action = ACTIONS.get(request.get("action"))
        if action is None:
            raise Fail("bad_action", str(request.get("action")))
        if not good_name(request.get("instance") or "default"):
            raise Fail("bad_name", repr(request.get("instance")))
        if boot["code"] and request["action"] in ("start", "restart"):
            run.known()  # a mistyped name is said as such, not as "not configured"
        if boot["code"] and not (request["action"] in ("setup", "install") and may_install(run)):
            raise Fail(boot["code"], boot["detail"])
        if request["action"] in LOCKED and not run.dry:
            run.lock()
            run.migrate()
        reply = action(run)
        run.tidy_fresh()
        run.send({"reply": reply})
    except Fail as e:
        run.tidy_fresh()
        run.send({"error": {"code": e.code, "detail": e.detail, "log": e.log}})
    return 0
