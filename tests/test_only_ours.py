"""No request of the user's reaches a server that is not confirmed to be theirs: another user on
the host takes the port Jupyter had, while a browser tab (a logged-in session, its cookie
included) keeps asking through the tunnel's local port. Every request that reaches the other
user's server is counted: there must be none. And a login cookie that leaked stops working when
the server restarts or the password changes."""

import subprocess
import sys
import threading
import time

from .jupyter_http import Session
from .test_core import PASSWORD, stop_tunnel

OTHER = "fjdash"  # another account on the same host: the one that takes the port

LISTENER = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def answer(self):
        print("REQUEST %s %s" % (self.path, self.headers.get("Cookie", "")), flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
    do_GET = do_POST = answer
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
print("LISTENING", flush=True)
server.serve_forever()
"""


class OtherServer:
    """An HTTP server of another user's on PORT of the host, which records every request."""

    def __init__(self, sshhost, port):
        user = sshhost.users[OTHER]
        self.proc = subprocess.Popen(
            ["setpriv", f"--reuid={user.uid}", f"--regid={user.uid}", "--init-groups", sys.executable, "-c", LISTENER, str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
        assert self.proc.stdout.readline().strip() == "LISTENING", self.proc.stderr.read()
        self.requests = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.requests.append(line.strip())

    def close(self):
        self.proc.kill()
        self.proc.wait(10)


class Tab:
    """A logged-in browser tab that keeps asking for the file list through the local port."""

    def __init__(self, url):
        self.session = Session(url)
        assert self.session.login(PASSWORD) == 200
        assert self.session.get("api/contents")[0] == 200
        self.answers = []
        self.running = True
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self):
        while self.running:
            try:
                self.answers.append(self.session.get("api/contents")[0])
            except OSError:
                self.answers.append("no answer")
                time.sleep(0.01)

    def stop(self):
        self.running = False
        self.thread.join(30)


def wait_for(proc, text, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(text in line for line in proc.output_lines):
            return True
        time.sleep(0.1)
    return False


def test_tunnel_started_again_never_reaches_a_server_that_took_the_old_port(fab, local_port):
    """TCP: the tunnel is closed, Jupyter stopped, another user binds its old port, setup moves
    Jupyter to the next one; a tab still polls the same local URL while `tunnel` starts again.
    Nothing reaches the other server (the forward is made only once the host confirmed where)."""
    fab.setup()
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert url, out
    tab = Tab(url)
    stop_tunnel(proc)
    fab("stop")
    other = OtherServer(fab.sshhost, fab.port)
    try:
        assert f"port {fab.port} is taken" in fab.setup().stdout
        for _ in range(3):  # as often as you like: each start is the same
            proc, url, out = fab.tunnel("--local-port", str(local_port))
            assert url, out
            time.sleep(1)
            stop_tunnel(proc)
        tab.stop()
        assert other.requests == [], other.requests
        assert 403 in tab.answers  # it did reach ours: its cookie died with the restart
    finally:
        tab.stop()
        other.close()


def stopped_taken_and_followed(fab, proc, url):
    """A logged-in tab keeps asking through the open tunnel PROC (at URL, to a TCP port) while
    Jupyter is stopped, another user's server takes its port, and setup starts Jupyter on the
    next one: the forward closes when Jupyter stops (nothing is forwarded while it is not
    running), follows it once the host confirms the new port, and not one request reaches the
    other server. Also run by a client without /proc (test_no_proc.py)."""
    tab = Tab(url)
    time.sleep(0.5)
    fab("stop")
    other = OtherServer(fab.sshhost, fab.port)
    try:
        assert wait_for(proc, "stopped; the forward to it is closed"), "".join(proc.output_lines)
        time.sleep(3)  # Jupyter not running: the tunnel keeps asking, forwarding nothing
        assert proc.poll() is None
        assert other.requests == [], other.requests
        fab.setup()
        assert fab.status()["port"] != fab.port
        assert wait_for(proc, "reconnected; Jupyter is at"), "".join(proc.output_lines)
        time.sleep(1)
        tab.stop()
        assert other.requests == [], other.requests
        assert tab.answers[-1] == 403  # ours again (a new start: the old cookie no longer opens it)
        assert tab.session.login(PASSWORD) == 200 and tab.session.get("api/contents")[0] == 200
    finally:
        tab.stop()
        other.close()


def test_open_tunnel_closes_its_forward_when_jupyter_stops_and_follows_it(fab, local_port):
    """TCP: a tunnel left open while Jupyter is stopped, another user binds its port, and setup
    starts Jupyter on the next one. The forward closes the moment Jupyter stops (nothing is
    forwarded while it is not running), then follows it to the new port, confirmed."""
    fab.setup()
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert url, out
    stopped_taken_and_followed(fab, proc, url)
    code, _, err = stop_tunnel(proc)
    assert code == 0, err


def test_socket_is_the_default_and_nobody_else_can_be_reached(fab, local_port):
    """By default Jupyter listens on a Unix socket in the user's 0700 directory: another user
    holding the configured port gets nothing, the tunnel started again (towards the socket seen
    last) reaches only ours, and a restart keeps the same socket, followed without a gap."""
    fab.hosts("", tcp=False)
    other = OtherServer(fab.sshhost, fab.port)
    try:
        r = fab.setup()
        sock = fab.home / ".fabjupyter" / "run" / "jupyter.sock"
        assert f"at the Unix socket {sock} on the host" in r.stdout, r.stdout
        assert fab.status()["port"] is None
        proc, url, out = fab.tunnel("--local-port", str(local_port))
        assert url, out
        tab = Tab(url)
        stop_tunnel(proc)
        fab("restart")
        proc, url, out = fab.tunnel("--local-port", str(local_port))
        assert url, out
        time.sleep(1)
        tab.stop()
        code, _, err = stop_tunnel(proc)
        assert code == 0, err
        assert other.requests == [], other.requests
        assert 403 in tab.answers
    finally:
        other.close()


def test_upgrade_from_a_port_moves_to_the_socket_once_and_says_why(fab):
    """A host that ran on a port (as every host did before the socket default) is moved to the
    socket at its next setup, with one line saying why; the setup after changes nothing."""
    fab.setup()
    assert fab.status()["port"] == fab.port
    fab.hosts("", tcp=False)
    r = fab.setup()
    assert "moved Jupyter from a TCP port to a Unix socket" in r.stdout, r.stdout
    assert "stopped the running Jupyter" in r.stdout
    assert fab.status()["socket"] and fab.status()["port"] is None
    r = fab.setup()
    assert "nothing changed" in r.stdout and "Unix socket in" not in r.stdout.split("nothing changed")[0]


def test_a_captured_cookie_stops_working_after_restart_and_new_password(fab, local_port):
    """Jupyter's own cookie key outlives restarts; ours is new at every start. A cookie that
    leaked opens nothing after a restart, nor after a new password."""
    fab.setup()
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert url, out
    try:
        victim = Session(url)
        assert victim.login(PASSWORD) == 200 and victim.get("api/contents")[0] == 200
        fab("restart")
        assert wait_for(proc, "reconnected; Jupyter is at"), "".join(proc.output_lines)
        assert victim.get("api/contents")[0] == 403  # the captured cookie no longer works
        assert victim.login(PASSWORD) == 200 and victim.get("api/contents")[0] == 200
        before = len(proc.output_lines)
        fab.setup(password="a new one")  # a new password restarts Jupyter
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any("reconnected" in line for line in proc.output_lines[before:]):
            time.sleep(0.1)
        assert victim.get("api/contents")[0] == 403
        assert victim.login("a new one") == 200 and victim.get("api/contents")[0] == 200
    finally:
        code, _, err = stop_tunnel(proc)
    assert code == 0, err
