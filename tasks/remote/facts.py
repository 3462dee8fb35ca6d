"""One instance's facts on this host, read from its files: its record, settings, password, what
Jupyter reads (the fingerprint), its log. Read once per run: the fingerprint is kept until a
change of this run writes (forget), so a status asks for it once."""

import fcntl
import os
import re

from .fail import Fail
from .files import digest, fingerprint, json_files, read_json, read_tail, read_text, remove
from .instance import instance_dir, instance_names, job_name, tmux_session, top_dir
from .kinds import KINDS, MOVED_LINE, MOVED_NOTE, SHIMMED_CLASSES
from .legacy import legacy_block, parse_state, settings_from_sh
from .procs import alive

# jupyter_server 2's words (Server 1 and classic Notebook also say "or terminals")
IDLE_LINE = re.compile(r"No kernels (?:or terminals )?for (\d+) seconds; shutting down")


class Instance:
    """One instance of this tool on this host: its directory and what its files say."""

    def __init__(self, home, name):
        self.home, self.name = home, name
        self.top = top_dir(home)
        self.d = instance_dir(home, name)
        self.tmux_session = tmux_session(name)
        self.job_name = job_name(name)
        # the directories a run may make only to hold its lock (removed again if it changes nothing)
        self.fresh = [p for p in (self.top, os.path.join(self.top, "instances"), self.d) if not os.path.isdir(p)]
        self.fingerprints = {}  # kind -> the fingerprint of what Jupyter reads now

    def forget(self):
        """A change was made: what was read of the files may be out of date."""
        self.fingerprints.clear()

    # paths
    def path(self, *parts):
        return os.path.join(self.d, *parts)

    def config_path(self, kind):
        return self.path("config", KINDS[kind].config_name)

    def password_path(self, kind):
        return self.path("password", KINDS[kind].config_name)

    def remove(self, name):
        remove(self.path(name))

    def json_files(self, folder):
        return json_files(self.path(folder))

    # the lock
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

    # what is on disk
    def state(self):
        """The record of the server this tool started ({} without one)."""
        text = read_text(self.path("state"))
        return {} if text is None else parse_state(self, text)

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
        if kind not in self.fingerprints:
            settings = self.disk_settings()
            self.fingerprints[kind] = fingerprint(settings, kind, read_json(self.config_path(kind)),
                                                  read_json(self.password_path(kind)), self.tls_digests(settings or {}))
        return self.fingerprints[kind]

    def stored_hash(self):
        """The stored password hash, whichever kind's file holds it."""
        folder = self.path("password")
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            return None
        for name in names:
            for section in (read_json(os.path.join(folder, name)) or {}).values():
                if isinstance(section, dict):
                    h = section.get("hashed_password") or section.get("password")
                    if h:
                        return h
        return None

    def unrecorded(self, pid, client=None):
        """Jupyter servers this tool launched that still run but are not the recorded one (a run
        killed between the start and the record). CLIENT: the recorded one's container runtime
        process, which started it."""
        found = []
        for word in (read_text(self.path("launched")) or "").split():
            if word.isdigit() and int(word) not in (pid, client) and alive(int(word)) and int(word) not in found:
                found.append(int(word))
        return found

    def own_env(self, command):
        return bool(command) and command[0].startswith(os.path.join(self.top, "venv") + os.sep)

    # a batch job's own record
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

    # Jupyter's log
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
        for path in self.json_files("config") + self.json_files("password"):
            data = read_json(path)
            for name in SHIMMED_CLASSES:
                section = data.get(name) if isinstance(data, dict) else None
                ours.update((name, key) for key in (section if isinstance(section, dict) else ()))
        note = MOVED_NOTE.rstrip("\n")

        def own(line):
            found = MOVED_LINE.search(line)
            return line == note or bool(found and (found.group(2), found.group(1)) in ours)

        return [line for line in text.splitlines() if not own(line)]

    def log_tail(self, lines=20):
        # Jupyter's own lines (not this tool's)
        found = [line for line in self.jupyter_log() or [] if not line.startswith("fabjupyter: ")]
        return found[-lines:]
