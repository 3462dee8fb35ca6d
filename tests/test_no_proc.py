"""The client where /proc tells nothing, as on macOS and Windows: the real `fab` run in a mount
namespace of its own whose /proc is an empty tmpfs (no_proc() below), while the test hosts'
sshd and Jupyter, and this test process, see the real one. Everything the client reads from
/proc on Linux (which process listens on a local port, a background tunnel's keeper by its
command line, processes to end) takes its other path here, and `ps` fails as well. Proved end to
end: setup, the tunnel by socket and by port (the port only once the host confirmed it, and
watched), a password login through it, healing, Jupyter moved while a tab keeps asking (no
request reaches another user's server), `tunnel --group` on two hosts, and `tunnel --background`
and `--stop`, which trust and signal only their own keeper."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tasks.remote.net import port_is_free

from .conftest import FAB, ROOT, Fab
from .jupyter_http import login_and_list
from .sshhost import SSHHost
from .test_background import log_text, opened, port_of, record, ssh_children, wait_for
from .test_core import PASSWORD, ssh_forwarders, stop_tunnel
from .test_only_ours import stopped_taken_and_followed
from .test_only_ours import wait_for as wait_for_line

# the command that follows, in a mount namespace of its own with an empty /proc (a tmpfs); its
# children (ssh, a background tunnel's keeper) inherit it. Needs root, as the test hosts do.
NO_PROC = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", 'mount -t tmpfs none /proc && exec "$@"', "sh"]


def no_proc(cmd):
    """CMD (a list) run where /proc is empty, for its process and every child of it; `exec`s it,
    so the pid of what starts is CMD's own."""
    return [*NO_PROC, *cmd]


def proc_seen_by(pid):
    """What process PID (seen from here) finds in its own /proc: its root, in its mount namespace."""
    return os.listdir(f"/proc/{pid}/root/proc")


def without_proc(pid):
    """Whether PID sees an empty /proc, in a mount namespace that is not this process's."""
    return proc_seen_by(pid) == [] and os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")


class NoProcFab(Fab):
    """conftest's Fab, with every `fab` (and so its ssh and keepers) run without /proc."""

    def args(self, *args, host=None):
        return no_proc(super().args(*args, host=host))


@pytest.fixture
def fab(sshhost, tmp_path):
    """`fab` without /proc against the account `fjtest`, fresh for each test."""
    sshhost.reset_user("fjtest")
    f = NoProcFab(sshhost, "fjtest", tmp_path / "hosts.yaml")
    try:
        yield f
    finally:
        f.cleanup()
        sshhost.reset_user("fjtest")


def ended_cleanly(proc, port):
    """Stop a foreground tunnel with SIGTERM: it exits 0, and no ssh forwards PORT any more."""
    code, _, err = stop_tunnel(proc)
    assert code == 0, err
    assert ssh_forwarders(port) == [] and port_is_free(port)


# --- the namespace itself --------------------------------------------------------------------

PROBE = r"""
import json, os, subprocess
from tasks.remote import net
print(json.dumps({"proc": os.listdir("/proc"), "self": os.path.exists("/proc/self"),
                  "listening": net.listening_inodes(loopback_only=True), "cmdline": net.cmdline(os.getpid()),
                  "child": subprocess.run(["sh", "-c", "ls -A /proc; exit 3"], capture_output=True, text=True).stdout,
                  "ps": subprocess.run(["ps", "-p", str(os.getpid())], capture_output=True).returncode}))
"""


def test_the_client_sees_an_empty_proc_and_the_host_the_real_one(sshhost):
    r = subprocess.run(no_proc([sys.executable, "-c", PROBE]), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert seen["proc"] == [] and seen["self"] is False  # nothing at all, not even /proc/self
    assert seen["child"] == ""  # a child of it too (and subprocess works without /proc/self/fd)
    assert seen["listening"] is None  # "cannot tell", not "nothing listens"
    assert seen["cmdline"] == "" and seen["ps"] != 0  # ps reads /proc too: no command line at all
    # only the client: the host's sshd (and this process) keep the real /proc and namespace
    assert str(sshhost.proc.pid) in proc_seen_by(sshhost.proc.pid) and not without_proc(sshhost.proc.pid)
    assert os.path.exists("/proc/self/fd")


# --- setup, tunnel, login, healing -----------------------------------------------------------


def test_setup_and_a_login_through_the_socket_tunnel(fab, local_port):
    """The default: Jupyter on a Unix socket, the forward started towards the socket seen last
    while the host is asked, kept because the host's answer names it."""
    fab.hosts("", tcp=False)
    r = fab.setup()
    assert "Jupyter started" in r.stdout and "at the Unix socket" in r.stdout, r.stdout
    for _ in range(2):  # the second time the forward starts on the guess (last-seen.json), then confirmed
        proc, url, out = fab.tunnel("--local-port", str(local_port))
        assert url == f"http://localhost:{local_port}/", out
        [ssh] = ssh_children(proc.pid)
        assert without_proc(proc.pid) and without_proc(ssh)
        login, api, body = login_and_list(url, PASSWORD)
        assert (login, api) == (200, 200) and json.loads(body)["type"] == "directory"
        assert login_and_list(url, "wrong horse")[1] == 403
        ended_cleanly(proc, local_port)
    jupyter = fab.status()["pid"]
    assert str(jupyter) in proc_seen_by(jupyter)  # the host's Jupyter has its /proc


def test_tcp_tunnel_heals_after_sshd_restarts(fab, local_port):
    """By port: forwarded once the host confirmed that our server holds it, and watched (Guard);
    sshd goes away with every session and comes back: "connection lost", then "reconnected" on
    the same URL, and a login works again."""
    fab.setup()
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert url == f"http://localhost:{local_port}/", out
    assert without_proc(proc.pid)
    assert login_and_list(url, PASSWORD)[1] == 200
    h = fab.sshhost
    h.drop_everything()
    assert wait_for_line(proc, "connection lost", 30), "".join(proc.output_lines)
    h.start()
    assert wait_for_line(proc, "reconnected; Jupyter is at", 60), "".join(proc.output_lines)
    assert login_and_list(url, PASSWORD)[1] == 200
    ended_cleanly(proc, local_port)


def test_socket_tunnel_heals_when_its_ssh_is_killed(fab, local_port):
    fab.hosts("", tcp=False)
    fab.setup()
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert url, out
    [ssh] = ssh_children(proc.pid)
    os.kill(ssh, signal.SIGKILL)
    assert wait_for_line(proc, "reconnected; Jupyter is at", 60), "".join(proc.output_lines)
    assert "connection lost" in "".join(proc.output_lines)
    [again] = ssh_children(proc.pid)
    assert again != ssh and without_proc(again)
    assert login_and_list(url, PASSWORD)[1] == 200
    ended_cleanly(proc, local_port)


def test_tcp_tunnel_follows_jupyter_to_another_port_and_never_reaches_the_old_ones_new_owner(fab, local_port):
    """A logged-in tab keeps asking through the tunnel while Jupyter is stopped, another user's
    server takes its port, and setup starts Jupyter on the next one: the forward closes when
    Jupyter stops (the host's watch says so; nothing here needs /proc for it), follows it once
    the host confirms the new port, and not one request reaches the other server."""
    fab.setup()
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert url, out
    stopped_taken_and_followed(fab, proc, url)
    ended_cleanly(proc, local_port)


# --- tunnel --group ----------------------------------------------------------------------------

GROUP = [("fjq1", 61), ("fjq2", 62)]  # account and network namespace index (test_fleet.py has 1-4)
GROUP_PASSWORD = "group horse"


@pytest.fixture(scope="module")
def two_hosts():
    hosts = {}
    try:
        for name, index in GROUP:
            hosts[name] = SSHHost(users=[(name, "/bin/bash", True, False)], prefix=f"fabjupyter-{name}-", netns=(f"fjqns{index}", index))
        yield hosts
    finally:
        for h in hosts.values():
            h.close()


class GroupRun:
    """`fab` without /proc against the group `lab` of the two hosts (TCP: each forward watched)."""

    def __init__(self, hosts, tmp_path):
        self.hosts, self.tmp = hosts, tmp_path
        known = tmp_path / "known_hosts"
        known.write_text("".join(h.known_hosts.read_text() for h in hosts.values()))
        self.ssh_config = tmp_path / "ssh_config"
        self.ssh_config.write_text(f"Host *\n  UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n")
        lines = ["defaults:", "  socket: false", "hosts:"]
        for name, h in hosts.items():
            lines += [f"  {name}:", f"    host: {h.address}", f"    user: {h.users[name].name}", f"    identity: {h.client_key}"]
        lines += ["groups:", f"  lab: [{', '.join(hosts)}]"]
        self.hosts_file = tmp_path / "hosts.yaml"
        self.hosts_file.write_text("\n".join(lines) + "\n")

    def args(self, *args):
        return no_proc([*FAB, "-S", str(self.ssh_config), *args])

    def env(self):
        return dict(os.environ, FABRIC_JUPYTER_HOSTS_FILE=str(self.hosts_file), XDG_CONFIG_HOME=str(self.tmp / "xdg"),
                    XDG_STATE_HOME=str(self.tmp / "state"))

    def __call__(self, *args, input=None):
        return subprocess.run(self.args(*args), cwd=ROOT, env=self.env(), input=input, capture_output=True, text=True,
                              timeout=300)


@pytest.fixture
def group(two_hosts, tmp_path):
    for h in two_hosts.values():
        for user in h.users:
            h.reset_user(user)
    run = GroupRun(two_hosts, tmp_path)
    procs = []
    yield run, procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for h in two_hosts.values():
        for user in h.users:
            h.reset_user(user)


def test_group_tunnel_on_two_hosts(group):
    run, procs = group
    r = run("setup", "--group", "lab", "--password-stdin", input=GROUP_PASSWORD + "\n")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count(": started") >= 2, r.stdout
    proc = subprocess.Popen(run.args("tunnel", "--group", "lab"), cwd=ROOT, env=run.env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(proc)
    table, deadline = {}, time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line or line.startswith("Ctrl-C"):
            break
        words = line.split()
        if words and words[0] in run.hosts:
            table[words[0]] = " ".join(words[1:])
    assert set(table) == set(run.hosts) and all(url.startswith("http://localhost:") for url in table.values()), table
    assert len(set(table.values())) == 2
    sshs = ssh_children(proc.pid)
    assert len(sshs) == 2 and without_proc(proc.pid) and all(without_proc(pid) for pid in sshs)
    for url in table.values():
        assert login_and_list(url, GROUP_PASSWORD)[1] == 200
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, out + err
    for url in table.values():
        assert ssh_forwarders(port_of(url)) == [] and port_is_free(port_of(url))
    assert run("stop", "--group", "lab").returncode == 0


# --- tunnel --background and --stop: only their own keeper -----------------------------------


def test_background_tunnel_is_found_again_and_stopped(fab):
    fab.setup()
    url = opened(fab("tunnel", "--background", timeout=120))
    port = port_of(url)
    [keeper] = fab.keepers()
    assert without_proc(keeper) and record(fab)["pid"] == keeper
    [ssh] = ssh_children(keeper)
    assert login_and_list(url, PASSWORD)[1] == 200
    # found again, though its command line cannot be read: the same tunnel, no second keeper
    again = fab("tunnel", "--background", timeout=120)
    assert opened(again) == url and "the background tunnel open since" in again.stdout, again.stdout
    assert fab.keepers() == [keeper] and ssh_children(keeper) == [ssh]
    assert fab("url").stdout == url + "\n"
    stopped = fab("tunnel", "--stop")
    assert f"fjtest: background tunnel at {url} closed (pid {keeper})" in stopped.stdout, stopped.stdout
    assert fab.keepers() == [] and ssh_forwarders(port) == [] and port_is_free(port)
    assert list((fab.state_home / "fabjupyter" / "tunnels").glob("*.json")) == []
    assert "no background tunnel is open" in fab("tunnel", "--stop").stdout


def test_a_record_whose_pid_is_not_the_keeper_is_neither_trusted_nor_signalled(fab):
    """A keeper killed with SIGKILL leaves its record; its pid may since be another program's
    (here: a process of ours that is alive). Without /proc that pid's command line cannot be
    read: it is not trusted (url says none, --background opens a new tunnel), and --stop does
    not signal it."""
    fab.setup()
    url = opened(fab("tunnel", "--background", timeout=120))
    [keeper] = fab.keepers()
    old = record(fab)
    os.kill(keeper, signal.SIGKILL)
    wait_for(lambda: ssh_forwarders(port_of(url)) == [], 10, lambda: "its ssh outlived it")
    other = subprocess.Popen(["sleep", "300"])
    try:
        path = next((fab.state_home / "fabjupyter" / "tunnels").glob("*.json"))
        path.write_text(json.dumps(dict(old, pid=other.pid)))
        assert fab("url", check=False).returncode == 1
        assert "no background tunnel is open" in fab("tunnel", "--stop").stdout
        assert other.poll() is None
        path.write_text(json.dumps(dict(old, pid=other.pid)))
        fresh = fab("tunnel", "--background", timeout=120)
        assert opened(fresh) == url and "open since" not in fresh.stdout, fresh.stdout  # a new one, same port
        [new] = fab.keepers()
        assert new != other.pid and record(fab)["pid"] == new
        assert login_and_list(url, PASSWORD)[1] == 200
        assert f"closed (pid {new})" in fab("tunnel", "--stop").stdout
        assert other.poll() is None and fab.keepers() == []
        assert "Jupyter is at" in log_text(fab)
    finally:
        other.kill()
        other.wait()


# --- the local port: taken between the check and ssh's bind --------------------------------------

RACE = r"""
import http.server, json, sys, threading, urllib.request
from types import SimpleNamespace
from fabric import Config, Connection
from tasks.hosts.inventory import Settings
from tasks.forwards.confirmed import open_forward
from tasks.forwards.forward import plain_tunnel
from tasks.protocol.where import Where

class Other(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"another program")
    def log_message(self, *args):
        pass

other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Other)
threading.Thread(target=other.serve_forever, daemon=True).start()
taken = other.server_address[1]
user, ssh_config, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
conn = Connection(user, config=Config(runtime_ssh_path=ssh_config))
t = SimpleNamespace(label=user, conn=conn, settings=Settings())
tun, error = open_forward(t, plain_tunnel(conn, taken, Where(port)), pinned=False)
said = urllib.request.urlopen(tun.url).read().decode() if tun else None
print(json.dumps({"taken": taken, "port": tun and tun.local_port, "error": error, "said": said}), flush=True)
tun and tun.close()
conn.close()
"""


def test_a_port_taken_between_check_and_bind_is_not_mistaken_for_the_forward(fab):
    """test_core's test of the same name, where /proc cannot say which process listens: another
    program answers on the port before ssh could bind it. The forward waits for ssh's own word
    that it listens (its LocalCommand), so ssh's failure to bind is seen, and the forward moves
    to the next port; without that word, the other program's answer was taken for the forward's."""
    fab.setup()
    r = subprocess.run(no_proc([sys.executable, "-c", RACE, fab.user, str(fab.sshhost.ssh_config), str(fab.port)]),
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    *said, last = r.stdout.splitlines()
    seen = json.loads(last)
    assert seen["error"] is None and seen["port"] != seen["taken"], seen
    assert said == [f"fjtest: local port {seen['taken']} was taken meanwhile; using {seen['port']}"], r.stdout
    assert "another program" not in seen["said"] and "<title>Jupyter Server</title>" in seen["said"], seen["said"][:200]
