"""A real, small Grid Engine cluster for tests: a login node and one compute node, each in its own
network namespace, with Debian's sge_qmaster, sge_execd and client commands (8.1.9, .ci/setup).

    login node    namespace LOGIN_NS, address 10.23x.LOGIN.2 (a veth pair to this namespace):
                  the SSHHost's sshd (port 22) and sge_qmaster (with the scheduler thread); the
                  client commands (qsub, qstat, qdel, qacct, qconf) come from the shared /usr/bin.
                  Its name is this machine's hostname (sshd's sessions have it).
    compute node  namespace COMPUTE_NS, address 10.23x.COMPUTE.2 (a veth pair to the login
                  namespace only): sge_execd, and so every job's sge_shepherd and processes.
                  Its own UTS and mount namespace: `hostname` in a job is the node's name.

Grid Engine knows hosts by name and checks the client end of every connection: the name its
address resolves to must be the name the client gives for itself (else qstat says "commlib
error: access denied (client IP resolved to host name "vm". This is not identical to clients host
name "fjgnode45")"). So each node has an /etc/hosts of its own, written here, in which
both names resolve to the same addresses as on the other node: the login node's name to its
address (not to 127.0.0.1, as this machine's /etc/hosts may have it), the node's to its own.
The login node's is /etc/netns/LOGIN_NS/hosts, which `ip netns exec` puts over /etc/hosts for
sshd's sessions and qmaster; the compute node's is bind-mounted in execd's mount namespace.
(qmaster answers execd on the connection execd opened: the address of the login node's end of
the compute link needs no name.)

The cell is the cluster's own: SGE_ROOT is a directory under /tmp (symbolic links to Debian's
util, bin, lib and utilbin, and the cell `default` with its bootstrap, act_qmaster, classic flat
file spooling and accounting file). sshd sets SGE_ROOT and SGE_CELL in every session of every
account (SSHHost(env=...)), as a site's login environment would. Nothing under /var/lib/gridengine
or /etc is written but /etc/netns/LOGIN_NS and the test accounts, so runs in two slots, or two
clusters with other indexes, do not meet. The daemons run as root (bootstrap admin_user none).

Queues: all.q (SLOTS slots on the node) and down.q (disabled: a job sent there stays pending,
with qstat -j's "scheduling info" saying why). The scheduler runs every second, and qstat -j
shows its reasons (schedd_job_info true). A finished job leaves qstat at once (qstat -s z lists
it among the finished); qacct -j reads it from the accounting file. stop_qmaster() and
start_qmaster() take the controller away for a moment; running jobs go on meanwhile.

Needs root. Everything started is stopped by close(), which also removes what a crashed run in
the same slot (and indexes) left behind before a new cluster starts."""

import json
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from .slurmcluster import TwoNodes, cmdline_of, netns_pids, uid_of
from .sshhost import SSHHost, in_slot, kill_pids, subnet

SGE_LIB = Path("/usr/lib/gridengine")  # the programs (/usr/bin/qsub is Debian's wrapper script for them)
DEBIAN_ROOT = Path("/var/lib/gridengine")  # its bin, lib, utilbin: links to SGE_LIB per architecture
SGE_SHARE = Path("/usr/share/gridengine")
CELL = "default"

# name, login shell, Jupyter on the PATH sshd gives, uid 0: as SSHHost's users
USERS = (("fjsge", "/bin/bash", True, False), ("fjsgesh", "/bin/sh", False, False))

# qconf -e... runs $EDITOR on a template: this one sets the keys given in FJ_SGE_EDIT (JSON)
EDITOR = """#!/usr/bin/python3
import json, os, sys
changes = json.loads(os.environ["FJ_SGE_EDIT"])
with open(sys.argv[1]) as f:
    lines = f.read().splitlines()
out = []
for line in lines:
    key = line.split(None, 1)[0] if line.strip() else ""
    if key in changes:
        line = key + " " + changes.pop(key)
    out.append(line)
out += [key + " " + value for key, value in changes.items()]
with open(sys.argv[1], "w") as f:
    f.write("\\n".join(out) + "\\n")
"""

# the global configuration: Debian's (/usr/share/gridengine/default-configuration) with these
CONFIG = {
    "mailer": "/bin/true",
    "load_report_time": "00:00:05",
    "max_unheard": "00:01:00",
    "loglevel": "log_info",
    "reporting_params": "accounting=true reporting=false flush_time=00:00:01 joblog=false sharelog=00:00:00",
}

SCHEDULER = {  # a scheduling pass every second, and the reasons a job waits in qstat -j
    "schedule_interval": "0:0:1",
    "flush_submit_sec": "1",
    "flush_finish_sec": "1",
    "schedd_job_info": "true",
}


class SgeCluster(TwoNodes):
    VETH = ("fjgl", "fjgc")

    def __init__(self, users=USERS, login_index=44, compute_index=45, slots=4):
        """users: the test accounts (as SSHHost's `users`), present on both nodes.
        login_index/compute_index: the subnet() indexes of the two veth pairs; every name
        (namespaces, node, directory) carries them, so clusters with other indexes can run at once.
        slots: all.q's slots on the node."""
        if os.geteuid() != 0:
            raise RuntimeError("the Grid Engine test cluster needs root")
        missing = [str(p) for p in (SGE_LIB / "sge_qmaster", SGE_LIB / "sge_execd", SGE_LIB / "qsub", DEBIAN_ROOT / "bin")
                   if not p.exists()]
        if missing:
            raise RuntimeError(f"Grid Engine is not installed ({', '.join(missing)} missing): run .ci/setup first")
        started = time.monotonic()
        self.base = Path(f"/tmp/{in_slot('fabjupyter-sge')}-{login_index}")  # a crash's is found again
        self.root = self.base / "root"
        self.cell = self.root / CELL
        self.spool = self.base / "spool"
        self.login_ns = in_slot(f"fjglogin{login_index}")
        self.compute_ns = in_slot(f"fjgcompute{compute_index}")
        self.node = in_slot(f"fjgnode{compute_index}")  # the compute node's hostname
        self.login_host = socket.gethostname()
        self.login_addr = f"{subnet(login_index)}.2"
        self.node_addr = f"{subnet(compute_index)}.2"
        self.link_addr = f"{subnet(compute_index)}.1"  # the login node's end of the compute link
        self.netns_hosts = Path("/etc/netns") / self.login_ns / "hosts"
        self.login_prefix = f"{in_slot('fabjupyter-sge-login')}-{login_index}-"
        self.sge_env = {"SGE_ROOT": str(self.root), "SGE_CELL": CELL, "SGE_QMASTER_PORT": "6444", "SGE_EXECD_PORT": "6445"}
        self.procs = {}
        self.login = None
        try:
            self._remove_stale()
            self.base.mkdir(mode=0o755)
            self.base.chmod(0o755)
            self.login = SSHHost(users=users, prefix=self.login_prefix, netns=(f"fjglogin{login_index}", login_index),
                                 start=False, env=self.sge_env)
            self._make_compute_ns(compute_index)
            self._hosts_files()
            self._make_cell()
            self._start_qmaster()
            self._configure(slots)
            self._start_execd()
            self.login.start()
        except BaseException:
            self.close()
            raise
        self.startup_seconds = time.monotonic() - started

    # --- set-up -------------------------------------------------------------------------
    def _remove_stale(self):
        """What a crashed run left: every process in its namespaces or naming its directory, the
        namespaces, the directory, the hosts file, the login host's directories."""
        for ns in (self.compute_ns, self.login_ns):
            kill_pids(lambda: netns_pids(ns))
        kill_pids(lambda: [pid for pid in _pids() if str(self.base) + "/" in cmdline_of(pid)])
        for ns in (self.compute_ns, self.login_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)
        shutil.rmtree(self.netns_hosts.parent, ignore_errors=True)
        for stale in Path(tempfile.gettempdir()).glob(f"{self.login_prefix}*"):
            if not (self.login and stale == self.login.base):
                shutil.rmtree(stale, ignore_errors=True)

    def _hosts_files(self):
        local = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        short = self.login_host.split(".")[0]
        login = f"{self.login_host} {short}" if short != self.login_host else self.login_host
        self.netns_hosts.parent.mkdir(parents=True, exist_ok=True)
        self.netns_hosts.write_text(f"{local}{self.login_addr}\t{login}\n{self.node_addr}\t{self.node}\n")
        self.compute_hosts = self.base / "compute-hosts"
        self.compute_hosts.write_text(f"{local}{self.login_addr}\t{login}\n{self.node_addr}\t{self.node}\n")
        self.compute_hosts.chmod(0o644)

    def _make_cell(self):
        """SGE_ROOT with Debian's programs and the cell's common directory, and the qmaster's
        spool initialised as Debian's init_cluster does (with classic flat file spooling)."""
        for sub in (self.cell / "common", self.spool / "qmaster" / "job_scripts"):
            sub.mkdir(mode=0o755, parents=True)
        for path in (self.root, self.cell, self.cell / "common", self.spool, self.spool / "qmaster"):
            path.chmod(0o755)
        (self.root / "util").symlink_to(SGE_SHARE / "util")
        for sub in ("bin", "lib", "utilbin"):
            (self.root / sub).symlink_to(DEBIAN_ROOT / sub)
        common = self.cell / "common"
        qmaster_spool = self.spool / "qmaster"
        (common / "bootstrap").write_text("\n".join([
            "admin_user none",
            "default_domain none",
            "ignore_fqdn true",
            "spooling_method classic",
            "spooling_lib libspoolc",
            f"spooling_params {common};{qmaster_spool}",
            "binary_path /usr/sbin",
            f"qmaster_spool_dir {qmaster_spool}",
            "security_mode none",
            "listener_threads 2",
            "worker_threads 2",
            "scheduler_threads 1",
        ]) + "\n")
        (common / "act_qmaster").write_text(self.login_host + "\n")
        (common / "cluster_name").write_text(in_slot("fjsgecluster") + "\n")
        config = dict(CONFIG, execd_spool_dir=str(self.spool))
        lines = []
        for line in (SGE_SHARE / "default-configuration").read_text().splitlines():
            key = line.split(None, 1)[0] if line.strip() else ""
            lines.append(f"{key} {config.pop(key)}" if key in config else line)
        (self.base / "configuration").write_text("\n".join(lines) + "\n")
        editor = self.base / "edit"
        editor.write_text(EDITOR)
        editor.chmod(0o755)
        resources = SGE_SHARE / "util" / "resources"
        for cmd in (
            ["spoolinit", "classic", "libspoolc", f"{common};{qmaster_spool}", "init"],
            ["spooldefaults", "configuration", str(self.base / "configuration")],
            ["spooldefaults", "complexes", str(resources / "centry")],
            ["spooldefaults", "usersets", str(resources / "usersets")],
            ["spooldefaults", "managers", "root"],
        ):
            r = subprocess.run([str(SGE_LIB / cmd[0]), *cmd[1:]], env=self.env(), capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stdout}{r.stderr}")

    def _spawn(self, name, cmd):
        log = open(self.base / f"{name}.out", "ab")
        env = dict(self.env(), SGE_ND="true")  # in the foreground: a child of ours, stopped by close()
        self.procs[name] = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True)
        log.close()

    def _wait(self, what, test, proc, timeout=30.0):
        deadline = time.monotonic() + timeout
        while not test():
            if self.procs[proc].poll() is not None:
                raise RuntimeError(f"{proc} exited ({self.procs[proc].returncode}) while waiting for {what}:\n{self.logs(proc)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {what} after {timeout} s:\n{self.logs(proc)}")
            time.sleep(0.2)

    def logs(self, name):
        """A daemon's output and its messages file, for error messages."""
        paths = {"qmaster": [self.base / "qmaster.out", self.spool / "qmaster" / "messages"],
                 "execd": [self.base / "execd.out", self.spool / self.node / "messages"]}[name]
        return "".join(f"--- {p}\n{p.read_text(errors='replace')[-4000:]}" for p in paths if p.exists())

    def _start_qmaster(self):
        """sge_qmaster in the login namespace, seeing its /etc/hosts (`ip netns exec`)."""
        self._spawn("qmaster", ["ip", "netns", "exec", self.login_ns, str(SGE_LIB / "sge_qmaster")])
        self._wait("qmaster answering", lambda: self.sge("qconf", "-sh").returncode == 0, "qmaster")

    def stop_qmaster(self):
        """Kill sge_qmaster (the client commands fail until start_qmaster()): a controller that
        goes away for a moment, as in a restart or fail-over."""
        proc = self.procs["qmaster"]
        proc.kill()
        proc.wait()

    def start_qmaster(self):
        """Start sge_qmaster again (after stop_qmaster()): it reads its spool, jobs and all."""
        self._start_qmaster()

    def _configure(self, slots):
        """The login node a submit host, the compute node an admin and execution host, the
        scheduler's settings, and the two queues."""
        for args in (["-as", self.login_host], ["-ah", self.node]):
            self.sge("qconf", *args, check=True)
        self.qconf_edit(["-ae"], hostname=self.node)
        self.qconf_edit(["-msconf"], **SCHEDULER)
        queue = {"hostlist": self.node, "shell": "/bin/sh", "shell_start_mode": "unix_behavior", "load_thresholds": "NONE",
                 "pe_list": "NONE", "tmpdir": "/tmp"}
        self.qconf_edit(["-aq", "all.q"], slots=str(slots), **queue)
        self.qconf_edit(["-aq", "down.q"], slots="1", initial_state="disabled", **queue)

    def _start_execd(self):
        """sge_execd in the compute node's network namespace, with the node's hostname and
        /etc/hosts (an own UTS and mount namespace, as SlurmCluster's slurmd)."""
        inner = (f"mount --bind {shlex.quote(str(self.compute_hosts))} /etc/hosts && hostname {self.node} && "
                 f"exec nsenter --net=/run/netns/{self.compute_ns} {SGE_LIB / 'sge_execd'}")
        self._spawn("execd", ["unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c", inner])
        self._wait(f"all.q on {self.node}", lambda: self.queue_state("all.q") == "", "execd")

    # --- use ----------------------------------------------------------------------------
    def env(self):
        return dict(os.environ, **self.sge_env)

    def in_login(self, *cmd, check=False, timeout=60, input=None):
        """Run a command as root on the login node (its network namespace and /etc/hosts)."""
        return subprocess.run(["ip", "netns", "exec", self.login_ns, *cmd], env=self.env(), capture_output=True, text=True,
                              check=check, timeout=timeout, input=input)

    def sge(self, *cmd, check=False, timeout=60, env=None):
        """A client command (qconf, qstat, qsub...) as root on the login node."""
        r = subprocess.run(["ip", "netns", "exec", self.login_ns, str(SGE_LIB / cmd[0]), *cmd[1:]], env=dict(self.env(), **(env or {})),
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stdout}{r.stderr}")
        return r

    def qconf_edit(self, args, **changes):
        """`qconf ARGS` (-ae, -aq NAME, -msconf, -mq NAME...) with its template's keys set to CHANGES."""
        return self.sge("qconf", *args, check=True, env={"EDITOR": str(self.base / "edit"), "FJ_SGE_EDIT": json.dumps(changes)})

    def run_in_login(self, user, command, check=False, timeout=60, input=None):
        """COMMAND in USER's login shell on the login node, through ssh as the tool does."""
        return subprocess.run(["ssh", "-F", str(self.login.ssh_config), "-o", "BatchMode=yes", user, command],
                              capture_output=True, text=True, check=check, timeout=timeout, input=input)

    def qsub(self, user, args, check=True):
        """`qsub -terse ARGS` as USER over ssh: the job id (or the CompletedProcess if check is False)."""
        r = self.run_in_login(user, f"qsub -terse {args}")
        if not check:
            return r
        if r.returncode != 0:
            raise AssertionError(f"qsub {args} failed ({r.returncode}): {r.stdout}{r.stderr}")
        return int(r.stdout.strip())

    def queue_state(self, queue):
        """The state letters of QUEUE's instance on the node ("" when it takes jobs; "u" while its
        execd is unknown, "d" disabled...), or None if qstat does not show it."""
        r = self.sge("qstat", "-f", "-q", f"{queue}@{self.node}", "-xml")
        if r.returncode != 0:
            return None
        for q in ET.fromstring(r.stdout).iter("Queue-List"):
            return q.findtext("state") or ""
        return None

    def jobs(self, user="*"):
        """Jobs as `qstat -xml -u USER` shows them: [{id, state, name, owner, queue, slots}]
        (state: qw, r, t, dr, hqw, Eqw...; queue: QUEUE@HOST while running, "" while pending)."""
        r = self.sge("qstat", "-xml", "-u", self.login.users[user].name if user in self.login.users else user, check=True)
        found = []
        for job in ET.fromstring(r.stdout).iter("job_list"):
            found.append({"id": int(job.findtext("JB_job_number")), "state": job.findtext("state"), "name": job.findtext("JB_name"),
                          "owner": job.findtext("JB_owner"), "queue": job.findtext("queue_name") or "",
                          "slots": int(job.findtext("slots") or 0)})
        return found

    def job_state(self, job_id):
        """The job's qstat state (qw, r, dr...), or None once qstat no longer shows it."""
        return next((j["state"] for j in self.jobs() if j["id"] == job_id), None)

    def wait_state(self, job_id, states, timeout=60.0):
        """Wait until the job's state is one of STATES (a state, None for gone, or a list): the state."""
        states = set(states) if isinstance(states, (list, tuple, set)) else {states}
        deadline = time.monotonic() + timeout
        while True:
            state = self.job_state(job_id)
            if state in states:
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} is {state}, not {states}, after {timeout} s")
            time.sleep(0.2)

    def daemon_pids(self):
        """pids of this cluster's sge_qmaster, sge_execd and sge_shepherd processes."""
        return [pid for pid in self.login_pids() + self.compute_pids() if cmdline_of(pid).startswith(str(SGE_LIB / "sge_"))]

    def reset(self):
        """Between tests: no jobs, the test users' homes empty."""
        self.delete_all()
        for alias in self.login.users:
            self.login.reset_user(alias)

    def delete_all(self, timeout=30.0):
        """No job left: qdel every job of the test users, wait until qstat shows none, kill what
        they still run on the compute node."""
        for u in self.login.users.values():
            self.sge("qdel", "-f", "-u", u.name)
        deadline = time.monotonic() + timeout
        while self.jobs() and time.monotonic() < deadline:
            time.sleep(0.2)
        uids = {u.uid for u in self.login.users.values()}
        kill_pids(lambda: [pid for pid in netns_pids(self.compute_ns) if uid_of(pid) in uids])

    def close(self):
        """Stop everything: jobs and execd (every process in the compute namespace), qmaster,
        sshd and the users' processes; remove namespaces, accounts, files."""
        try:
            kill_pids(lambda: netns_pids(self.compute_ns))
            # qmaster takes 9 s to end on SIGTERM, and nothing it would write is kept
            for proc in self.procs.values():
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
            kill_pids(lambda: netns_pids(self.login_ns))
        finally:
            if self.login:
                self.login.close()
            self._remove_stale()


def _pids():
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit() and int(entry) != os.getpid()]
