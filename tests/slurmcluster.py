"""A real, small SLURM cluster for tests: a login node and one compute node, each in its own
network namespace, with Debian's slurmctld, slurmd, client commands and munged (.ci/setup).

    login node    namespace LOGIN_NS, address 10.23x.LOGIN.2 (a veth pair to this namespace):
                  the SSHHost's sshd (port 22), munged, slurmctld; the client commands (sbatch,
                  squeue, scancel, scontrol, sinfo, sacct) come from the shared /usr/bin.
    compute node  namespace COMPUTE_NS, address 10.23x.COMPUTE.2 (a veth pair to the login
                  namespace only): slurmd, and so every job's processes.
                  Its own UTS and mount namespace: `hostname` in a job is the node's name, and
                  its /etc/hosts (a bind mount in that mount namespace only) resolves it.

Like a real cluster, both nodes share the file system (homes, /opt, /usr) and the accounts:
a test user's job runs as that user, in its home, on the compute node. Nothing in the compute
namespace listens on the login node's loopback: Jupyter in a job is reached from the login node
at the compute node's address (or name: the login node's /etc/hosts, through `ip netns exec`'s
/etc/netns/LOGIN_NS/hosts, has it), never at 127.0.0.1.

What a job can read to learn the address the login node reaches it on (all give the same):
    hostname                          the node's name (SLURMD_NODENAME, squeue's %N) ...
    getent hosts "$(hostname)"        ... which resolves to its address, here and on the login node
    hostname -I                       the compute namespace's only non-loopback address
    scontrol show node "$SLURMD_NODENAME"   NodeAddr=...

How the client commands find the configuration: sshd on the login node sets SLURM_CONF in every
session of every account (SSHHost(env=...), sshd's SetEnv), as a site's login environment would;
jobs inherit it (sbatch exports the submitter's environment). Nothing is written to /etc/slurm,
so runs in two slots at once use their own configurations, namespaces, ports and munged.

No slurmdbd: AccountingStorageType=accounting_storage/none, so `sacct` fails ("Slurm accounting
storage is disabled", exit 1); job completions are logged by jobcomp/filetxt to `jobcomp_log`,
which root's `sacct --completion` reads (a user's fails: "sacct: fatal: open ...: Permission
denied"). A finished job stays in `scontrol show job`
for MinJobAge seconds (then, at slurmctld's next purge, it is unknown). Time limits are checked
by slurmctld every 30 s (a constant, PERIODIC_TIMEOUT), so a --time=1 job ends 60 to 90 s after
it starts, as TIMEOUT.

Needs root. Everything started is stopped by close(), which also removes what a crashed run in
the same slot left behind before a new cluster starts."""

import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .sshhost import JUPYTER_VENV, STANDARD_PATH, SSHHost, in_slot, kill_pids, run_slot, subnet

SLURM_BIN = Path("/usr/bin")
SLURMCTLD = "/usr/sbin/slurmctld"
SLURMD = "/usr/sbin/slurmd"
MUNGED = "/usr/sbin/munged"

# name, login shell, Jupyter on the PATH sshd gives, uid 0: as SSHHost's users
USERS = (("fjslurm", "/bin/bash", True, False), ("fjslurmsh", "/bin/sh", False, False))

# Torque's qsub, qstat, qdel... over SLURM (Debian's slurm-wlm-torque): .ci/setup unpacks them
# here, since the package conflicts with gridengine-client (both are /usr/bin/qsub)
TORQUE_BIN = Path("/opt/fabjupyter-test/torque/bin")


def torque_users(users=USERS):
    """USERS with Torque's commands first on the PATH sshd gives them, as on a PBS cluster's login
    node: SlurmCluster(users=torque_users())."""
    if not (TORQUE_BIN / "qsub").exists():
        raise RuntimeError(f"Torque's commands over SLURM are not installed ({TORQUE_BIN}/qsub missing): run .ci/setup first")
    return tuple((name, shell, on_path, uid0, f"{TORQUE_BIN}:" + (f"{JUPYTER_VENV}/bin:" if on_path else "") + STANDARD_PATH)
                 for name, shell, on_path, uid0, *_ in users)


# slurmctld tests time limits every PERIODIC_TIMEOUT = 30 s of its own clock, counted from its
# start (measured here: 30.05-30.08 s apart, the loop sleeps 1 s between looks)
TIMELIMIT_PERIOD = 30.06


def netns_id(path):
    """(device, inode) of a network namespace file (/run/netns/NAME, /proc/PID/ns/net)."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def netns_pids(name):
    """pids of every process in network namespace NAME (none if it does not exist)."""
    try:
        target = netns_id(f"/run/netns/{name}")
    except OSError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            if netns_id(f"/proc/{entry}/ns/net") == target:
                found.append(int(entry))
        except OSError:
            continue
    return found


def uid_of(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except OSError:
        return None


def cmdline_of(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def parse_scontrol(text):
    """`scontrol -o show ...` (one record a line) → {Key: value}; values may hold spaces."""
    fields = {}
    parts = re.split(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/.]*)=", text.strip())
    for key, value in zip(parts[1::2], parts[2::2]):
        fields[key] = value.strip()
    return fields


SQUEUE_FIELDS = [  # (key, squeue -o field)
    ("id", "%i"),
    ("state", "%T"),  # long form: PENDING, RUNNING, COMPLETING, TIMEOUT, ...
    ("reason", "%r"),  # PartitionDown, Resources, None, ...
    ("nodes", "%N"),  # node names (empty while pending)
    ("partition", "%P"),
    ("time_left", "%L"),  # UNLIMITED, INVALID, or [days-]hours:minutes:seconds
    ("time_limit", "%l"),
    ("user", "%u"),
    ("name", "%j"),
]


class TwoNodes:
    """What a test cluster of two network namespaces has, whatever its scheduler: a login node
    (LOGIN_NS, with LOGIN_ADDR and the SSH test host LOGIN) and a compute node (COMPUTE_NS)
    linked to it alone; VETH: the prefixes of the link's two ends, the cluster's own."""

    VETH = ("fjsl", "fjsc")

    def _make_compute_ns(self, index):
        """The compute namespace and a veth pair from it to the login namespace (no other link:
        its traffic can only go to the login node)."""
        in_login, in_compute = (in_slot(f"{prefix}{index}") for prefix in self.VETH)
        net = subnet(index)
        cmds = [
            ["ip", "netns", "add", self.compute_ns],
            ["ip", "link", "add", in_login, "netns", self.login_ns, "type", "veth", "peer", "name", in_compute, "netns", self.compute_ns],
            ["ip", "-n", self.login_ns, "addr", "add", f"{net}.1/30", "dev", in_login],
            ["ip", "-n", self.login_ns, "link", "set", in_login, "up"],
            ["ip", "-n", self.compute_ns, "addr", "add", f"{net}.2/30", "dev", in_compute],
            ["ip", "-n", self.compute_ns, "link", "set", in_compute, "up"],
            ["ip", "-n", self.compute_ns, "link", "set", "lo", "up"],
            # the login node's main address (slurmctld's, sshd's) is reached through the link; no
            # default route: a DNS query fails at once (unreachable) instead of timing out
            ["ip", "-n", self.compute_ns, "route", "add", f"{self.login_addr}/32", "via", f"{net}.1"],
        ]
        for cmd in cmds:
            subprocess.run(cmd, check=True, capture_output=True, text=True)

    def in_compute(self, *cmd, check=False, timeout=60):
        """Run a command as root in the compute node's network namespace."""
        return subprocess.run(["nsenter", f"--net=/run/netns/{self.compute_ns}", *cmd], env=self.env(), capture_output=True,
                              text=True, check=check, timeout=timeout)

    def compute_pids(self, user=None):
        """pids of processes running on the compute node (its network namespace): USER's only
        (an alias of the test users), or every one (the scheduler's daemons too)."""
        return self._ns_pids(self.compute_ns, user)

    def login_pids(self, user=None):
        return self._ns_pids(self.login_ns, user)

    def _ns_pids(self, ns, user):
        pids = netns_pids(ns)
        if user is None:
            return pids
        uid = self.login.users[user].uid
        return [pid for pid in pids if uid_of(pid) == uid]


class SlurmCluster(TwoNodes):
    def __init__(self, users=USERS, login_index=40, compute_index=41, min_job_age=300, kill_wait=2, extra_conf="",
                 node_sshd=False):
        """users: the test accounts (as SSHHost's `users`), present on both nodes.
        login_index/compute_index: the subnet() indexes of the two veth pairs (fleet tests use 1-4).
        min_job_age: seconds a finished job stays in `scontrol show job` (MinJobAge).
        kill_wait: seconds between SIGTERM and SIGKILL at a time limit or scancel (KillWait).
        extra_conf: lines appended to slurm.conf.
        node_sshd: an sshd on the compute node too (port 22 of its address, reached from the login
        node only), as clusters let a user ssh to a node where a job of theirs runs: see
        _start_node_sshd."""
        if os.geteuid() != 0:
            raise RuntimeError("the SLURM test cluster needs root")
        missing = [path for path in (SLURMCTLD, SLURMD, MUNGED, str(SLURM_BIN / "sbatch")) if not os.path.exists(path)]
        if missing:
            raise RuntimeError(f"SLURM or MUNGE is not installed ({', '.join(missing)} missing): run .ci/setup first")
        started = time.monotonic()
        k = run_slot()
        self.base = Path(f"/tmp/{in_slot('fabjupyter-slurm')}")  # one per slot: a crash's is found again
        self.login_ns = in_slot("fjslogin")
        self.compute_ns = in_slot("fjscompute")
        self.node = in_slot("fjcompute")  # the compute node's NodeName, and its hostname
        self.login_host = socket.gethostname().split(".")[0]  # slurmctld insists on its host's name
        self.login_addr = f"{subnet(login_index)}.2"
        self.node_addr = f"{subnet(compute_index)}.2"
        self.link_addr = f"{subnet(compute_index)}.1"  # the login node's end of the compute link
        self.ctld_port = 6817 + 10 * k
        self.slurmd_port = 6818 + 10 * k
        self.conf = self.base / "slurm.conf"
        self.munge_socket = self.base / "munge" / "munge.socket"
        self.jobcomp_log = self.base / "jobcomp.log"
        self.netns_hosts = Path("/etc/netns") / self.login_ns / "hosts"
        self.login_prefix = f"{in_slot('fabjupyter-slurm-login')}-"  # the login SSHHost's directory
        self.min_job_age = min_job_age
        self.kill_wait = kill_wait
        self.procs = {}
        self.login = None
        try:
            self._remove_stale()
            for sub in ("", "munge", "state", "spool", "log"):
                (self.base / sub).mkdir(mode=0o755, exist_ok=True)
                (self.base / sub).chmod(0o755)
            self.login = SSHHost(users=users, prefix=self.login_prefix, netns=("fjslogin", login_index),
                                 start=False, env={"SLURM_CONF": self.conf})
            self._make_compute_ns(compute_index)
            self._hosts_files()
            self._write_conf(extra_conf)
            self._start_munged()
            self._start_slurmctld()
            self._start_slurmd()
            self.login.start()
            self.node_sshd_log = self.base / "log" / "node-sshd.out"
            if node_sshd:
                self._start_node_sshd()
        except BaseException:
            self.close()
            raise
        self.startup_seconds = time.monotonic() - started

    # --- set-up -------------------------------------------------------------------------
    def _remove_stale(self):
        """What a crashed run in this slot left: its daemons and jobs (every process in its
        namespaces, or naming its directory), the namespaces, the directory, the hosts file."""
        for ns in (self.compute_ns, self.login_ns):
            kill_pids(lambda: netns_pids(ns))
        kill_pids(lambda: [pid for pid, cmd in self._all_cmdlines() if str(self.base) + "/" in cmd])
        for ns in (self.compute_ns, self.login_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)
        shutil.rmtree(self.netns_hosts.parent, ignore_errors=True)
        for stale in Path(tempfile.gettempdir()).glob(f"{self.login_prefix}*"):
            if not (self.login and stale == self.login.base):
                shutil.rmtree(stale, ignore_errors=True)

    @staticmethod
    def _all_cmdlines():
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                yield int(entry), cmdline_of(entry)

    def _hosts_files(self):
        """/etc/hosts of each node: the login node's is this machine's plus the compute node
        (ip netns exec mounts /etc/netns/NS/hosts over /etc/hosts for sshd and its sessions);
        the compute node's names itself and the login node."""
        names = f"{self.node_addr}\t{self.node}\n"
        self.netns_hosts.parent.mkdir(parents=True, exist_ok=True)
        self.netns_hosts.write_text(Path("/etc/hosts").read_text().rstrip("\n") + "\n" + names)
        self.compute_hosts = self.base / "compute-hosts"
        self.compute_hosts.write_text(f"127.0.0.1\tlocalhost\n::1\tlocalhost\n{self.login_addr}\t{self.login_host}\n" + names)
        self.compute_hosts.chmod(0o644)

    def _write_conf(self, extra):
        b = self.base
        lines = [
            f"ClusterName={in_slot('fjcluster')}",
            f"SlurmctldHost={self.login_host}({self.login_addr})",
            f"SlurmctldPort={self.ctld_port}",
            f"SlurmdPort={self.slurmd_port}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={b}/state",
            f"SlurmdSpoolDir={b}/spool",
            f"SlurmctldPidFile={b}/slurmctld.pid",
            f"SlurmdPidFile={b}/slurmd.pid",
            f"SlurmctldLogFile={b}/log/slurmctld.log",
            f"SlurmdLogFile={b}/log/slurmd.log",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            # no cgroups here: processes are tracked by parent pid, tasks not confined
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={self.jobcomp_log}",
            "MpiDefault=none",
            "SchedulerType=sched/builtin",
            # a batch job starts ~0.6 s after sbatch instead of up to 3 s (the first one after
            # slurmctld's start still waits for its first scheduling pass, ~2.5 s)
            "SchedulerParameters=batch_sched_delay=0",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core",
            "ReturnToService=2",
            # the node has the CPUs slurm.conf says, whatever this machine has
            "SlurmdParameters=config_overrides",
            f"MinJobAge={self.min_job_age}",
            f"KillWait={self.kill_wait}",
            "OverTimeLimit=0",
            "InactiveLimit=0",
            "MailProg=/bin/true",
            f"NodeName={self.node} NodeAddr={self.node_addr} NodeHostname={self.node} CPUs=8 RealMemory=4000 State=UNKNOWN",
            f"PartitionName=debug Nodes={self.node} Default=YES State=UP MaxTime=INFINITE",
            f"PartitionName=down Nodes={self.node} State=DOWN MaxTime=INFINITE",
        ]
        self.conf.write_text("\n".join(lines) + "\n" + extra)
        self.conf.chmod(0o644)

    def _spawn(self, name, cmd):
        log = open(self.base / "log" / f"{name}.out", "ab")
        self.procs[name] = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()

    def _wait(self, what, test, timeout=30.0, proc=None):
        deadline = time.monotonic() + timeout
        while not test():
            if proc is not None and self.procs[proc].poll() is not None:
                raise RuntimeError(f"{proc} exited ({self.procs[proc].returncode}) while waiting for {what}:\n{self.logs(proc)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {what} after {timeout} s:\n{self.logs(proc)}" if proc else f"no {what} after {timeout} s")
            time.sleep(0.1)

    def logs(self, name):
        """A daemon's output and log file, for error messages."""
        text = ""
        for path in (self.base / "log" / f"{name}.out", self.base / "log" / f"{name}.log", self.base / "munge" / "munged.log"):
            if path.exists() and (name in path.name):
                text += f"--- {path}\n" + path.read_text(errors="replace")[-4000:]
        return text

    def _start_munged(self):
        """munged with a key of the cluster's; its socket is a path, so both namespaces use it."""
        key = self.base / "munge" / "munge.key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, os.urandom(1024))
        os.close(fd)
        m = self.base / "munge"
        self._spawn("munged", ["nsenter", f"--net=/run/netns/{self.login_ns}", MUNGED, "--foreground", "--force",
                               f"--socket={self.munge_socket}", f"--key-file={key}", f"--pid-file={m}/munged.pid",
                               f"--log-file={m}/munged.log", f"--seed-file={m}/munged.seed"])
        self._wait("munged socket", self.munge_socket.exists, proc="munged")

    def _start_slurmctld(self):
        self.ctld_started = time.time()
        self._spawn("slurmctld", ["nsenter", f"--net=/run/netns/{self.login_ns}", SLURMCTLD, "-D", "-i", "-f", str(self.conf)])
        self._wait("slurmctld answering", lambda: "is UP" in self.slurm("scontrol", "ping").stdout, proc="slurmctld")

    def _start_slurmd(self):
        """slurmd in the compute node's network namespace, with the node's hostname and /etc/hosts
        (an own UTS and mount namespace; `ip netns exec` would remount /sys, and slurmd refuses to
        start without /sys/fs/cgroup)."""
        inner = (f"mount --bind {shlex.quote(str(self.compute_hosts))} /etc/hosts && hostname {self.node} && "
                 f"exec nsenter --net=/run/netns/{self.compute_ns} {SLURMD} -D -N {self.node} -f {shlex.quote(str(self.conf))}")
        self._spawn("slurmd", ["unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c", inner])
        self._wait(f"idle node {self.node}", lambda: self.node_state() == "idle", proc="slurmd")

    def _start_node_sshd(self):
        """sshd on the compute node: the login node's configuration (the same accounts, keys and
        session environment) on the node's address, port 22, with a host key of the node's own,
        listed in the login host's known_hosts (as a site lists its nodes' keys). It runs in
        slurmd's namespaces (network, hostname, /etc/hosts), so a session there is on the node:
        `hostname` prints its name. Its log (VERBOSE) says where each connection came from: the
        login node's end of the compute link, link_addr."""
        key = self.base / "node_ssh_host_ed25519_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fabjupyter-test-node", "-f", str(key)],
                       check=True, capture_output=True)
        lines = []
        for line in self.login.sshd_config.read_text().splitlines():
            word = line.split(" ", 1)[0]
            lines.append({"Port": "Port 22", "ListenAddress": f"ListenAddress {self.node_addr}", "HostKey": f"HostKey {key}",
                          "PidFile": f"PidFile {self.base / 'node-sshd.pid'}"}.get(word, line))
        config = self.base / "node_sshd_config"
        config.write_text("\n".join(lines) + "\n")
        public = Path(f"{key}.pub").read_text().split()
        with open(self.login.known_hosts, "a") as f:
            f.write(f"{self.node_addr} {public[0]} {public[1]}\n")
        slurmd = next(pid for pid in netns_pids(self.compute_ns) if cmdline_of(pid).startswith(SLURMD))
        self._spawn("node-sshd", ["nsenter", f"--target={slurmd}", "--uts", "--mount", "--net", self.login.sshd, "-D", "-e",
                                  "-f", str(config)])  # its log: _spawn's node-sshd.out
        self._wait("the node's sshd listening", lambda: self.node_sshd_log.exists() and "Server listening" in
                   self.node_sshd_log.read_text(errors="replace"), proc="node-sshd")

    # --- use ----------------------------------------------------------------------------
    def env(self):
        return dict(os.environ, SLURM_CONF=str(self.conf))

    def in_login(self, *cmd, check=False, timeout=60, input=None):
        """Run a command as root on the login node (its network namespace)."""
        return subprocess.run(["nsenter", f"--net=/run/netns/{self.login_ns}", *cmd], env=self.env(), capture_output=True,
                              text=True, check=check, timeout=timeout, input=input)

    def slurm(self, *cmd, check=False, timeout=60):
        """A client command (sbatch, squeue, scontrol...) as root on the login node."""
        return self.in_login(str(SLURM_BIN / cmd[0]), *cmd[1:], check=check, timeout=timeout)

    def run_in_login(self, user, command, check=False, timeout=60, input=None):
        """COMMAND in USER's login shell on the login node, through ssh as the tool does."""
        return subprocess.run(["ssh", "-F", str(self.login.ssh_config), "-o", "BatchMode=yes", user, command],
                              capture_output=True, text=True, check=check, timeout=timeout, input=input)

    def sbatch(self, user, args, check=True):
        """`sbatch --parsable ARGS` as USER over ssh: the job id (or the CompletedProcess if
        check is False)."""
        r = self.run_in_login(user, f"sbatch --parsable {args}")
        if not check:
            return r
        if r.returncode != 0:
            raise AssertionError(f"sbatch {args} failed ({r.returncode}): {r.stdout}{r.stderr}")
        return int(r.stdout.strip().split(";")[0])

    def node_state(self):
        return self.slurm("sinfo", "-h", "-p", "debug", "-n", self.node, "-o", "%t").stdout.strip()

    def squeue(self, user=None, states=None, jobs=None):
        """Jobs as squeue shows them: [{id, state, reason, nodes, partition, time_left,
        time_limit, user, name}], of USER (an alias of the test users, or an account name),
        in STATES ("all", "PD,R"; squeue's default: pending, running, completing...), JOBS (ids)."""
        fmt = "\x1f".join(f for _, f in SQUEUE_FIELDS)
        cmd = ["squeue", "-h", "-o", fmt]
        if user:
            cmd += ["-u", self.login.users[user].name if user in self.login.users else user]
        if states:
            cmd += ["-t", states]
        if jobs:
            cmd += ["-j", ",".join(map(str, jobs))]
        r = self.slurm(*cmd, check=True)
        jobs = []
        for line in r.stdout.splitlines():
            values = line.split("\x1f")
            job = dict(zip((k for k, _ in SQUEUE_FIELDS), values))
            job["id"] = int(job["id"])
            jobs.append(job)
        return jobs

    def job(self, job_id):
        """`scontrol show job` as {Key: value} (JobState, Reason, NodeList, BatchHost, TimeLimit,
        RunTime, ExitCode, StdOut...), or None once slurmctld has forgotten the job."""
        r = self.slurm("scontrol", "-o", "show", "job", str(job_id))
        if r.returncode != 0:
            if "Invalid job id" in r.stderr:
                return None
            raise RuntimeError(f"scontrol show job {job_id}: {r.stderr}")
        return parse_scontrol(r.stdout.splitlines()[0])

    def wait_state(self, job_id, states, timeout=60.0):
        """Wait until the job's JobState is one of STATES (a name or a list): its scontrol record."""
        states = {states} if isinstance(states, str) else set(states)
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            state = job["JobState"] if job else None
            if state in states:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} is {state}, not {states}, after {timeout} s: {job}")
            time.sleep(0.2)


    def next_timelimit_check(self, after=None):
        """When (time.time()) slurmctld will next look for jobs over their time limit, after
        AFTER (now): an estimate good to about a second. A job with --time=1 that starts a few
        seconds before a check ends at the check two periods later (~60 s plus those seconds);
        started just after one, it runs ~90 s."""
        after = time.time() if after is None else after
        periods = int((after - self.ctld_started) // TIMELIMIT_PERIOD) + 1
        return self.ctld_started + periods * TIMELIMIT_PERIOD

    def reconfigure(self, **settings):
        """Change slurm.conf settings (MinJobAge=2, KillWait=5...) and `scontrol reconfigure`."""
        lines = self.conf.read_text().splitlines()
        for key, value in settings.items():
            line = f"{key}={value}"
            for i, old in enumerate(lines):
                if old.startswith(f"{key}="):
                    lines[i] = line
                    break
            else:
                lines.append(line)
        self.conf.write_text("\n".join(lines) + "\n")
        self.slurm("scontrol", "reconfigure", check=True)

    def reset(self):
        """Between tests: no jobs, the test users' homes empty."""
        self.cancel_all()
        for alias in self.login.users:
            self.login.reset_user(alias)

    def cancel_all(self, timeout=30.0):
        """No job left: scancel every job, wait until slurmctld has none running, kill what the
        test users still run on the compute node (a process that left its job's process tree)."""
        for u in self.login.users.values():
            self.slurm("scancel", f"--user={u.name}")
        deadline = time.monotonic() + timeout
        while self.squeue(states="PD,R,CG,S,CF,RS,SI,SO,ST") and time.monotonic() < deadline:
            time.sleep(0.2)
        uids = {u.uid for u in self.login.users.values()}
        kill_pids(lambda: [pid for pid in netns_pids(self.compute_ns) if uid_of(pid) in uids])

    def close(self):
        """Stop everything: jobs and slurmd (every process in the compute namespace), slurmctld,
        munged, sshd and the users' processes; remove namespaces, accounts, files."""
        try:
            kill_pids(lambda: netns_pids(self.compute_ns))
            for name in ("slurmctld", "munged"):
                proc = self.procs.get(name)
                if proc and proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
            for proc in self.procs.values():
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
            # sshd and its sessions: one still open (a tunnel) would outlive sshd in a deleted namespace
            kill_pids(lambda: netns_pids(self.login_ns))
        finally:
            if self.login:
                self.login.close()
            self._remove_stale()
