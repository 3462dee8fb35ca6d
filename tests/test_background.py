"""Background tunnels, end to end: real `fab`, real sshd, real JupyterLab, real `ssh -L`. The
tunnel outlives the call that opened it and the terminal it was opened on, is found again by a
second call (the same URL, no second ssh), heals after sshd restarts, and `tunnel --stop` or
`stop` of the server leave no ssh behind; `url` prints the URL an IDE is given, and VS Code's
password login and a cell run work through it."""

import json
import os
import socket
import threading
import time
from pathlib import Path

from tasks.remote.net import port_is_free

from .conftest import ROOT
from .jupyter_http import login_and_list, run_code
from .sshhost import proc_files
from .terminal import Terminal
from .test_core import ssh_forwarders

PASSWORD = "correct horse"


def opened(r):
    """The URL a `tunnel --background` call printed."""
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [line for line in r.stdout.splitlines() if "Jupyter is at " in line]
    assert len(lines) == 1, r.stdout
    return lines[0].split("Jupyter is at ", 1)[1].split()[0]


def port_of(url):
    return int(url.rsplit(":", 1)[1].strip("/"))


def ssh_children(pid):
    """pids of the ssh processes whose parent is PID."""
    found = []
    for child, stat in proc_files("stat"):
        text = stat.decode(errors="replace")
        if text[text.index("(") + 1:text.rindex(")")] == "ssh" and int(text.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(child)
    return found


def record(fab):
    """The record of fjtest's default instance's background tunnel (there must be one)."""
    [path] = (fab.state_home / "fabjupyter" / "tunnels").glob("*.json")
    return json.loads(path.read_text())


def log_text(fab):
    [path] = (fab.state_home / "fabjupyter" / "tunnels").glob("*.log")
    return path.read_text()


def wait_for(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what()
        time.sleep(0.1)


def test_survives_its_caller_is_reused_and_stop_leaves_no_ssh(fab):
    fab.setup()
    r = fab("tunnel", "--background", timeout=120)  # returns: the call has exited
    url = opened(r)
    port = port_of(url)
    login, api, body = login_and_list(url, PASSWORD)
    assert (login, api) == (200, 200) and json.loads(body)["type"] == "directory"

    # one keeper: a session of its own, no terminal, its output in its log
    [keeper] = fab.keepers()
    rec = record(fab)
    assert rec["pid"] == keeper and rec["local_port"] == port and rec["url"] == url
    assert (rec["host"], rec["name"]) == ("fjtest", "default")
    assert os.getsid(keeper) == keeper
    assert os.readlink(f"/proc/{keeper}/fd/0") == os.devnull
    assert os.readlink(f"/proc/{keeper}/fd/1") == os.readlink(f"/proc/{keeper}/fd/2") == rec["log"]
    [ssh] = ssh_children(keeper)
    assert ssh_forwarders(port) == [ssh]
    # nothing secret in a command line or the log
    for pid in (keeper, ssh):
        assert PASSWORD.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert f"Jupyter is at {url}" in log_text(fab) and PASSWORD not in log_text(fab)

    # a second call: the same tunnel, said again; no second keeper, no second ssh
    again = fab("tunnel", "--background", timeout=120)
    assert opened(again) == url and "the background tunnel open since" in again.stdout
    assert fab.keepers() == [keeper] and ssh_children(keeper) == [ssh] and ssh_forwarders(port) == [ssh]

    # url, and url --json: what an IDE is given
    assert fab("url").stdout == url + "\n"
    assert json.loads(fab("url", "--json").stdout) == {"url": url, "local_port": port, "host": "fjtest", "name": "default",
                                                       "tunnel_pid": keeper}
    # the host's ssh_config entry forwards the same local port: `ssh fabjupyter-fjtest` gives the same URL
    entry = (fab.config_home / "fabjupyter" / "ssh_config").read_text()
    assert f"LocalForward 127.0.0.1:{port} " in entry, entry
    assert f"background tunnel to default: {url} (pid {keeper})" in fab("list").stdout
    [listed] = [json.loads(line) for line in fab("list", "--json").stdout.splitlines() if '"ours": true' in line]
    assert listed["tunnel"] == {"url": url, "local_port": port, "pid": keeper}

    # --stop: no keeper, no ssh, the port free, no record; url says there is none, and how to open one
    stopped = fab("tunnel", "--stop")
    assert f"fjtest: background tunnel at {url} closed (pid {keeper})" in stopped.stdout
    assert fab.keepers() == [] and ssh_forwarders(port) == [] and port_is_free(port)
    assert list((fab.state_home / "fabjupyter" / "tunnels").glob("*.json")) == []
    none = fab("url", check=False)
    assert none.returncode == 1
    assert none.stderr.strip() == ("fjtest: no background tunnel is open; open one with "
                                   "`fab -H fjtest tunnel --background`")
    assert "no background tunnel is open" in fab("tunnel", "--stop").stdout  # stopping twice is fine

    # next time: the same local port (a saved IDE URL keeps working) ...
    assert opened(fab("tunnel", "--background", timeout=120)) == url
    fab("tunnel", "--stop")
    # ... unless another program took it meanwhile: another one, said
    blocker = socket.socket()
    # SO_REUSEADDR as ssh sets it: our own connections above may leave the port in TIME_WAIT
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", port))
    blocker.listen()
    try:
        moved = fab("tunnel", "--background", timeout=120)
        assert f"local port {port} (this tunnel's port last time) is taken by another program" in moved.stdout
        assert port_of(opened(moved)) != port
        assert login_and_list(opened(moved), PASSWORD)[1] == 200
        moved_to = port_of(opened(moved))  # and the entry with it: one URL for the host, whichever is open
        assert f"LocalForward 127.0.0.1:{moved_to} " in (fab.config_home / "fabjupyter" / "ssh_config").read_text()
    finally:
        blocker.close()
        fab("tunnel", "--stop")
    assert fab.keepers() == []


def test_survives_the_terminal_it_was_opened_on(fab):
    """Opened at a terminal, which then closes (its session is ended, SIGHUP): the tunnel is in no
    session of that terminal's, and still answers."""
    fab.setup()
    term = Terminal(fab.args("tunnel", "--background"), env=fab.env(), cwd=ROOT)
    try:
        url = term.expect(r"Jupyter is at (\S+)", timeout=120).group(1)
        assert term.wait(30) == 0, term.output
        [keeper] = fab.keepers()
        assert keeper not in term.session()
    finally:
        term.close()  # ends everything left in the terminal's session
    assert fab.keepers() == [keeper]
    assert login_and_list(url, PASSWORD)[1] == 200


def test_two_calls_at_once_end_with_one_tunnel(fab):
    fab.setup()
    results = [None, None]

    def call(i):
        results[i] = fab("tunnel", "--background", timeout=180, check=False)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    urls = {opened(r) for r in results}
    assert len(urls) == 1, [r.stdout for r in results]
    [keeper] = fab.keepers()
    assert len(ssh_children(keeper)) == 1 and len(ssh_forwarders(port_of(urls.pop()))) == 1
    assert sum("the background tunnel open since" in r.stdout for r in results) == 1


def test_heals_after_sshd_restarts(fab):
    fab.setup()
    url = opened(fab("tunnel", "--background", timeout=120))
    [keeper] = fab.keepers()
    assert login_and_list(url, PASSWORD)[1] == 200

    # sshd goes away completely (listener and every session), then comes back
    h = fab.sshhost
    h.drop_everything()
    wait_for(lambda: "connection lost" in log_text(fab), 30, lambda: log_text(fab))
    h.start()

    def healed():
        try:
            return login_and_list(url, PASSWORD)[1] == 200
        except (OSError, AssertionError):
            return False

    wait_for(healed, 60, lambda: log_text(fab))
    wait_for(lambda: "reconnected" in log_text(fab), 10, lambda: log_text(fab))
    # the same keeper, on the same port, with one ssh again; url still says it
    assert fab.keepers() == [keeper] and len(ssh_children(keeper)) == 1
    assert fab("url").stdout == url + "\n"


def test_stop_of_the_server_ends_its_background_tunnel(fab):
    fab.setup()
    url = opened(fab("tunnel", "--background", timeout=120))
    [keeper] = fab.keepers()
    r = fab("stop")
    assert f"fjtest: background tunnel at {url} closed (pid {keeper})" in r.stdout
    assert fab.keepers() == [] and ssh_forwarders(port_of(url)) == []
    assert fab("url", check=False).returncode == 1


def test_vscode_password_login_and_a_cell_run_through_the_url(fab):
    """What VS Code's Existing Jupyter Server does with the URL `url` printed and the password:
    GET /login for the _xsrf cookie, POST /login with the password and _xsrf, POST /api/kernels,
    then an execute_request over the kernel's websocket, whose stream output is read."""
    fab.setup()
    fab("tunnel", "--background", timeout=120)
    url = fab("url").stdout.strip()
    assert url.startswith("http://localhost:") and url.endswith("/")
    assert run_code(url, PASSWORD, "print(6*7)") == "42\n"
    fab("tunnel", "--stop")
