"""The core, end to end: real `fab`, real sshd, real JupyterLab, real `ssh -L`."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

import http.server
import threading
from types import SimpleNamespace

import pytest
from fabric import Config, Connection

from tasks.hosts.inventory import Settings
from tasks.forwards.confirmed import open_forward
from tasks.forwards.forward import plain_tunnel
from tasks.protocol.where import Where
from tasks.remote.net import port_is_free

from .jupyter_http import Session, login_and_list
from .sshhost import JUPYTER_VENV, proc_files
from .userenv import own_env

PASSWORD = "correct horse"


def ssh_forwarders(local_port):
    """pids of ssh clients forwarding this local port."""
    found = []
    for pid, cmdline in proc_files("cmdline"):
        args = cmdline.split(b"\0")
        if args[0].endswith(b"ssh") and any(f"127.0.0.1:{local_port}:".encode() in a for a in args):
            found.append(pid)
    return found


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def listening(port):
    """Local addresses listening on this TCP port, from /proc/net/tcp (hex addr:port, state 0A)."""
    found = []
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if state == "0A" and int(p, 16) == port:
                found.append(socket.inet_ntoa(bytes.fromhex(addr)[::-1]))
    return found


def tcp_listening_inodes():
    """Inodes of every listening TCP socket, IPv4 and IPv6."""
    found = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(name) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":
                    found.add(fields[9])
    return found


def unix_socket_inodes(path):
    with open("/proc/net/unix") as f:
        return {fields[6] for fields in (line.split() for line in f.readlines()[1:]) if len(fields) > 7 and fields[7] == path}


def server_socket_inodes(pid):
    """Inodes of the sockets a process holds open."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(target[8:-1])
    return found


def stop_tunnel(proc):
    proc.stdin = None  # already closed, if it was a pipe
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=15)
    return proc.returncode, out, err


def test_setup_then_password_login_through_tunnel(fab, local_port):
    r = fab.setup()
    assert "Jupyter started" in r.stdout
    assert f"fab -S {fab.sshhost.ssh_config} -H fjtest tunnel" in r.stdout
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert url == f"http://localhost:{local_port}/", out
    login, api, body = login_and_list(url, PASSWORD)
    assert login == 200
    assert api == 200 and json.loads(body)["type"] == "directory"
    # a wrong password is refused, and so is the API without a login
    wrong_login, wrong_api, _ = login_and_list(url, "wrong horse")
    assert wrong_api == 403
    assert Session(url).get("api/contents")[0] == 403
    code, _, err = stop_tunnel(proc)
    assert code == 0, err
    assert ssh_forwarders(local_port) == []
    assert port_is_free(local_port)


def test_second_setup_changes_nothing(fab):
    fab.setup()
    before = fab.status()
    # every file but the lock's record of who holds it (written by each changing run)
    mtimes = lambda: {p: p.stat().st_mtime_ns for p in (fab.home / ".fabjupyter").rglob("*") if p.name != "lock.owner"}  # noqa: E731
    files = mtimes()
    r = fab.setup()
    assert "nothing changed" in r.stdout
    assert fab.status()["pid"] == before["pid"]
    assert mtimes() == files
    # without --password-stdin too: a password is set, so nobody is asked
    r = fab("setup", input="")
    assert "nothing changed" in r.stdout and fab.status()["pid"] == before["pid"]


def test_new_password_restarts_and_old_one_stops_working(fab, local_port):
    fab.setup()
    pid = fab.status()["pid"]
    r = fab.setup(password="new horse")
    assert "password set" in r.stdout and "stopped the running Jupyter" in r.stdout
    assert fab.status()["pid"] != pid
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert url, out
    assert login_and_list(url, "new horse")[1] == 200
    assert login_and_list(url, PASSWORD)[1] == 403


@pytest.mark.parametrize("launcher", ["nohup", "tmux"])
def test_survives_disconnect_and_stop_leaves_nothing(fab, launcher):
    fab.setup("--launcher", launcher)
    record = fab.status()
    assert record["running"] and record["launcher"] == launcher
    # every SSH session is over once fab has exited: no sshd session process is left for the user
    deadline = time.monotonic() + 10
    while fab.sshhost.session_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fab.sshhost.session_pids() == []
    assert alive(record["pid"])
    assert Session(f"http://127.0.0.1:{record['port']}/").get("api")[0] == 200
    tmux = fab.as_user("tmux -L fabjupyter has-session -t jupyter", check=False)
    assert (tmux.returncode == 0) == (launcher == "tmux")
    r = fab("stop")
    assert f"stopped (pid {record['pid']})" in r.stdout
    assert fab.sshhost.processes("fjtest") == []  # no Jupyter, no kernel, no tmux server
    assert fab.as_user("tmux -L fabjupyter has-session -t jupyter", check=False).returncode != 0
    assert not fab.status()["running"]
    assert "was not running" in fab("stop").stdout


def test_kill_9_is_detected_and_start_works_again(fab):
    fab.setup()
    pid = fab.status()["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    record = fab.status()
    assert record["running"] is False and record["stale_pid"] == pid
    assert "killed or crashed" in fab("status").stdout
    r = fab("start")
    assert "Jupyter started" in r.stdout
    record = fab.status()
    assert record["running"] and record["pid"] != pid
    assert "nothing to do" in fab("start").stdout


def test_busy_remote_port_moves_to_a_free_one_and_tunnel_follows(fab, local_port):
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        blocker.bind(("127.0.0.1", fab.port))
    except OSError:
        pass  # already taken by something else: just as good
    blocker.listen()
    try:
        r = fab.setup()
        record = fab.status()
        assert record["port"] != fab.port
        assert f"port {fab.port} is taken on the host; Jupyter uses {record['port']}" in r.stdout
        # a second setup keeps the server where it is
        assert "nothing changed" in fab.setup().stdout
        proc, url, out = fab.tunnel("--local-port", str(local_port))
        assert url, out
        assert login_and_list(url, PASSWORD)[1] == 200
    finally:
        blocker.close()


def test_settings_win_over_users_own_config_which_survives(fab, local_port):
    """The user's ~/.jupyter files and a venv's etc/jupyter try to set ip, port, TLS, a token, a
    base_url: ours still rule, and their files are unchanged."""
    jupyter_dir = fab.home / ".jupyter"
    own_json = json.dumps(
        {
            "ServerApp": {"ip": "0.0.0.0", "port": 9999, "port_retries": 50, "base_url": "/elsewhere/", "certfile": "/nope.pem"},
            "IdentityProvider": {"token": "their-token"},
        }
    )
    own_py = "c.ServerApp.open_browser = True\nc.ServerApp.ip = '0.0.0.0'\nc.PasswordIdentityProvider.password_required = False\n"
    fab.as_user(f"mkdir -p .jupyter && printf '%s' '{own_json}' > .jupyter/jupyter_server_config.json")
    (jupyter_dir / "jupyter_server_config.py").write_text(own_py)
    env = own_env(fab, JUPYTER_VENV, "jupyter-lab")  # the user's own: its etc/jupyter is theirs to write
    venv_json = json.dumps({"ServerApp": {"ip": "0.0.0.0", "port": 9998}})
    fab.as_user(f"mkdir -p env/etc/jupyter && printf '%s' '{venv_json}' > env/etc/jupyter/jupyter_server_config.json")
    fab.hosts(f"hosts:\n  fjtest:\n    jupyter: {env}/bin/jupyter-lab\n")
    fab.setup()
    record = fab.status()
    assert record["port"] == fab.port
    assert listening(fab.port) == ["127.0.0.1"]
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert url, out
    assert Session(url).get("api/contents?token=their-token")[0] == 403
    assert login_and_list(url, PASSWORD)[1] == 200
    assert (env / "etc/jupyter/jupyter_server_config.json").read_text() == venv_json
    assert (jupyter_dir / "jupyter_server_config.json").read_text() == own_json
    assert (jupyter_dir / "jupyter_server_config.py").read_text() == own_py


@pytest.mark.parametrize(
    "password",
    [
        "two words  and spaces",
        "quotes ' and \" and `backticks`",
        "$(touch /tmp/fabjupyter-pwned) ; rm -rf / #",
        "back\\slash\\\\ and \\n",
        "ünïcødé ✓ пароль 密码",
    ],
)
def test_passwords_with_shell_characters_work_and_run_nothing(fab, local_port, password):
    fab.setup(password=password)
    assert not os.path.exists("/tmp/fabjupyter-pwned")
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert url, out
    assert login_and_list(url, password)[1] == 200
    assert login_and_list(url, password + "x")[1] == 403


def test_root_dir_with_a_space(fab, local_port):
    r = fab.setup("--root-dir", "~/my notebooks")
    root = fab.home / "my notebooks"
    assert f"created root directory {root}" in r.stdout
    assert oct(root.stat().st_mode & 0o777) == "0o700"
    fab.as_user("echo hi > 'my notebooks/hello.txt'")
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    s = Session(url)
    s.login(PASSWORD)
    status, body = s.get("api/contents")
    assert status == 200
    assert [item["name"] for item in json.loads(body)["content"]] == ["hello.txt"]


def test_tmux_launcher_and_restart(fab):
    fab.setup("--launcher", "tmux")
    first = fab.status()
    r = fab("restart")
    assert f"stopped (pid {first['pid']})" in r.stdout and "Jupyter started" in r.stdout
    second = fab.status()
    assert second["running"] and second["pid"] != first["pid"] and second["launcher"] == "tmux"
    # switching the launcher is a change: setup restarts it under nohup, and the tmux session goes
    r = fab.setup("--launcher", "nohup")
    assert "stopped the running Jupyter" in r.stdout
    assert fab.status()["launcher"] == "nohup"
    assert fab.as_user("tmux -L fabjupyter has-session -t jupyter", check=False).returncode != 0


def test_remote_files_are_private(fab):
    fab.setup()
    base = fab.home / ".fabjupyter"
    for path in [base, *base.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        if path.is_dir():
            assert mode == 0o700, path
        else:
            assert mode & 0o077 == 0, (path, oct(mode))
    pw = base / "password" / "jupyter_server_config.json"
    hashed = json.loads(pw.read_text())["PasswordIdentityProvider"]["hashed_password"]
    assert hashed.startswith("argon2:$argon2id$")
    assert oct(pw.stat().st_mode & 0o777) == "0o600"


def test_logs_show_jupyter_output(fab):
    fab.setup()
    r = fab("logs", "--lines", "200")
    assert "Jupyter Server" in r.stdout and "is running at" in r.stdout


def test_jupyter_that_dies_at_start_fails_setup_with_its_log(fab):
    fab.hosts("hosts:\n  fjtest:\n    jupyter: sh -c 'echo this jupyter is broken >&2; exit 1'\n")
    r = fab.setup(check=False)
    assert r.returncode == 1
    assert "Jupyter exited while starting" in r.stderr
    assert "this jupyter is broken" in r.stderr
    assert "Traceback" not in r.stderr
    assert not fab.status()["running"]


def test_tunnel_when_jupyter_is_not_running(fab):
    r = fab("tunnel", check=False)
    assert r.returncode == 1
    assert r.stderr.strip() == "fjtest: Jupyter is not running there; start it with `fab -H fjtest setup` (or `start`)"


def test_setup_and_tunnel_chain_in_one_call(fab, local_port):
    proc, url, out = fab.tunnel(
        cmd=fab.args("setup", "--password-stdin", "tunnel", "--local-port", str(local_port)), 
    )
    # stdin is closed by tunnel(): the chained setup needs a password from somewhere
    assert url is None and "standard input gave no password" in out
    env = fab.env()
    proc = subprocess.Popen(
        fab.args("setup", "--password-stdin", "tunnel", "--local-port", str(local_port)),
        cwd=os.path.dirname(os.path.dirname(__file__)),
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    fab.children.append(proc)
    proc.stdin.write(PASSWORD + "\n")
    proc.stdin.close()
    lines = []
    while True:
        line = proc.stdout.readline()
        assert line, "".join(lines) + proc.stderr.read()
        lines.append(line)
        if "Jupyter is at" in line:
            break
    assert any("Jupyter started" in line for line in lines)
    assert login_and_list(f"http://localhost:{local_port}/", PASSWORD)[1] == 200
    code, _, err = stop_tunnel(proc)
    assert code == 0, err
    assert ssh_forwarders(local_port) == [] and port_is_free(local_port)


def test_busy_local_port(fab):
    fab.setup()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    busy = blocker.getsockname()[1]
    try:
        r = fab("tunnel", "--local-port", str(busy), check=False)
        assert r.returncode == 1
        assert r.stderr.strip() == f"fjtest: local port {busy} is busy; choose another with --local-port"
        # a default local port (hosts.yaml) that is busy moves to the next free one, and says so
        fab.hosts(f"defaults:\n  local_port: {busy}\n")
        proc, url, out = fab.tunnel()
        assert f"local port {busy} is busy; using" in out
        assert url and url != f"http://localhost:{busy}/"
        assert login_and_list(url, PASSWORD)[1] == 200
    finally:
        blocker.close()


class _Other(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"another program")

    def log_message(self, *args):
        pass


def test_a_port_taken_between_check_and_bind_is_not_mistaken_for_the_forward(fab):
    """Two runs pick the same free default port; the one whose ssh loses the bind must not take
    the winner's answer for its own forward (it did: its readiness check got the other's reply)."""
    fab.setup()
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Other)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    taken = other.server_address[1]
    conn = Connection(fab.user, config=Config(runtime_ssh_path=str(fab.sshhost.ssh_config)))
    t = SimpleNamespace(label=fab.user, conn=conn, settings=Settings())
    opened = []
    try:
        # the port was free when checked; now another program answers on it
        tun, error = open_forward(t, plain_tunnel(conn, taken, Where(fab.port)), pinned=False)
        assert error is None and tun.local_port != taken
        opened.append(tun)
        assert login_and_list(tun.url, PASSWORD)[1] == 200  # our Jupyter, through our forward
        # a port the user named is not moved: an error that says so
        tun, error = open_forward(t, plain_tunnel(conn, taken, Where(fab.port)), pinned=True)
        assert tun is None and error == f"tunnel failed: local port {taken} is busy; choose another with --local-port"
    finally:
        for tun in opened:
            tun.close()
        other.shutdown()
        other.server_close()
        conn.close()


def test_root_user_works(fab_root, local_port):
    """A remote user with uid 0 (containers): Jupyter needs --allow-root."""
    r = fab_root.setup()
    assert "Jupyter started" in r.stdout
    proc, url, out = fab_root.tunnel("--local-port", str(local_port))
    assert url, out
    assert login_and_list(url, PASSWORD)[1] == 200
    fab_root("stop")
    assert fab_root.sshhost.processes("fjroot") == []


def test_tunnel_open_starts_the_browser_on_the_url(fab, local_port, tmp_path):
    fab.setup()
    opened = tmp_path / "opened"
    browser = tmp_path / "browser.sh"
    # written whole, then renamed: the test may look while it is being written
    browser.write_text(f"#!/bin/sh\nprintf '%s' \"$1\" > {opened}.tmp && mv {opened}.tmp {opened}\n")
    browser.chmod(0o755)
    os.environ["BROWSER"] = str(browser)
    try:
        proc, url, out = fab.tunnel("--local-port", str(local_port), "--open")
    finally:
        del os.environ["BROWSER"]
    assert url, out
    deadline = time.monotonic() + 10
    while not opened.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert opened.read_text() == url


def test_tunnel_heals_after_sshd_restart_and_follows_a_moved_jupyter(fab, local_port):
    fab.setup()
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert url, out
    assert login_and_list(url, PASSWORD)[1] == 200
    lines = proc.output_lines

    # sshd goes away completely (listener and every session), then comes back
    h = fab.sshhost
    h.drop_everything()
    deadline = time.monotonic() + 30
    while not any("connection lost" in line for line in lines) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any("connection lost" in line for line in lines), "".join(lines)
    h.start()
    healed = False
    while not healed and time.monotonic() < deadline:
        try:
            healed = login_and_list(url, PASSWORD)[1] == 200
        except (OSError, AssertionError):
            time.sleep(0.2)
    assert healed, "".join(lines)
    while not any("reconnected" in line for line in lines) and time.monotonic() < deadline:
        time.sleep(0.05)  # the tunnel prints its line just after the forward answers
    assert any("reconnected" in line for line in lines), "".join(lines)

    # Jupyter restarts on another port: the tunnel follows it
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    fab("stop")
    blocker.bind(("127.0.0.1", fab.port))
    blocker.listen()
    try:
        fab("start")
        assert fab.status()["port"] != fab.port
        blocker.close()  # nothing on the old port now: the forward is refused there
        deadline = time.monotonic() + 20
        ok = False
        while time.monotonic() < deadline and not ok:
            try:
                ok = login_and_list(url, PASSWORD)[1] == 200
            except (OSError, AssertionError):
                time.sleep(0.3)
        assert ok, "".join(lines)
        # the forward closed when Jupyter stopped, and was made again once the host said where
        assert any("Jupyter stopped; the forward to it is closed" in line for line in lines), "".join(lines)
        assert sum("reconnected" in line for line in lines) == 2, "".join(lines)
    finally:
        blocker.close()
    code, _, err = stop_tunnel(proc)
    assert code == 0, err
    assert ssh_forwarders(local_port) == []


def test_unix_socket_mode(fab, local_port):
    """Jupyter on a Unix socket (0600 in a 0700 directory): no TCP port at all; the tunnel
    forwards to the socket. A JUPYTER_PORT set by the activation line does not break it."""
    fab.hosts("hosts:\n  fjtest:\n    activate: export JUPYTER_PORT=9999\n", tcp=False)
    r = fab.setup()  # the default in ssh mode
    sock = fab.home / ".fabjupyter" / "run" / "jupyter.sock"
    assert f"at the Unix socket {sock} on the host" in r.stdout
    record = fab.status()
    assert record["socket"] == str(sock) and record["port"] is None and record["url"] == f"unix:{sock}"
    assert oct(sock.stat().st_mode & 0o777) == "0o600"
    assert oct(sock.parent.stat().st_mode & 0o777) == "0o700"
    # the server's own sockets: the Unix one, and no TCP listener at all (IPv4 or IPv6)
    own = server_socket_inodes(record["pid"])
    assert own & unix_socket_inodes(str(sock)), "the server does not hold its socket"
    assert own & tcp_listening_inodes() == set()
    assert "nothing changed" in fab.setup("--socket").stdout
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert url == f"http://localhost:{local_port}/", out
    assert login_and_list(url, PASSWORD)[1] == 200
    code, _, _ = stop_tunnel(proc)
    assert code == 0
    # back to a TCP port
    fab.setup("--tcp")
    assert fab.status()["port"] == fab.port and fab.status()["socket"] is None


def test_tunnel_heals_after_the_network_goes_silent(fab, local_port):
    """The connection stays open but nothing comes back (a laptop asleep, a dead link): the
    tunnel's keepalives notice (ServerAliveInterval 15 s x 3), it reconnects, and the same URL
    works again. Silence is made by stopping the tunnel's sshd session (SIGSTOP)."""
    fab.setup()
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert url, out
    lines = proc.output_lines
    h = fab.sshhost
    deadline = time.monotonic() + 10
    while not h.session_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    silent = h.session_pids()
    assert silent
    for pid in silent:
        os.kill(pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 120
        while not any("reconnected" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert any("connection lost" in line for line in lines), "".join(lines)
        assert any("reconnected" in line for line in lines), "".join(lines)
        assert login_and_list(url, PASSWORD)[1] == 200
    finally:
        for pid in silent:
            try:
                os.kill(pid, signal.SIGKILL)
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    code, _, err = stop_tunnel(proc)
    assert code == 0, err
    assert ssh_forwarders(local_port) == []


def test_tunnel_never_answers_with_a_remembered_port_that_another_server_took(fab, local_port):
    """The tunnel starts its forward towards where Jupyter was seen last, while it asks the host
    where it runs now. When ours moved and another server took the old port (another user's
    Jupyter, say), the URL printed must still lead to ours: the guess is dropped, never shown."""
    fab.setup()
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert url, out
    stop_tunnel(proc)
    seen = json.loads((fab.config_home / "fabjupyter" / "last-seen.json").read_text())
    assert [entry["where"] for entry in seen.values()] == [fab.port]
    fab("stop")
    other = http.server.ThreadingHTTPServer(("127.0.0.1", fab.port), _Other)  # the old port, someone else's now
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        r = fab.setup()
        moved = fab.status()["port"]
        assert moved != fab.port, r.stdout
        proc, url, out = fab.tunnel("--local-port", str(local_port))
        assert url == f"http://localhost:{local_port}/", out
        assert b"another program" not in urllib.request.urlopen(url).read()
        assert login_and_list(url, PASSWORD)[1] == 200
        seen = json.loads((fab.config_home / "fabjupyter" / "last-seen.json").read_text())
        assert [entry["where"] for entry in seen.values()] == [moved]
        code, _, err = stop_tunnel(proc)
        assert code == 0, err
        assert ssh_forwarders(local_port) == []  # the wrong forward is gone too
    finally:
        other.shutdown()
        other.server_close()
