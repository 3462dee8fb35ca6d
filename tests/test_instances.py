"""Several Jupyter servers on one host, by name (`--name`, `instances:` in hosts.yaml), and
`list`: on the real sshd, with JupyterLab 4 and classic Notebook 6.5 side by side."""

import json
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from .conftest import ROOT
from .jupyter_http import login_and_list
from .sshhost import JUPYTER_VENV, free_port, jupyter_servers

NB6 = JUPYTER_VENV.parent / "nb6"
PASSWORD = "correct horse"
CLASSIC_PASSWORD = "classic horse"  # the second instance's own: a swapped forward is seen


def jupyters(fab):
    """pids of the test user's Jupyter servers."""
    return jupyter_servers(fab.sshhost.processes(fab.user))


def records(fab, *args):
    return [json.loads(line) for line in fab("list", "--json", *args).stdout.splitlines()]


def api_version(local_port):
    """The version a Jupyter server says at /api (no login needed): jupyter_server's or Notebook's."""
    with urllib.request.urlopen(f"http://localhost:{local_port}/api", timeout=30) as r:
        return json.loads(r.read())["version"]


def tunnel_table(fab, *args):
    """`fab tunnel --all` until its table is printed: (process, {label: url or error})."""
    proc = subprocess.Popen(fab.args("tunnel", "--all", *args), cwd=ROOT, env=fab.env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    fab.children.append(proc)
    table, deadline = {}, time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line or line.startswith("Ctrl-C"):
            break
        words = line.split()
        if words and words[0].startswith(fab.user):
            table[words[0]] = " ".join(words[1:])
    return proc, table


def test_two_kinds_side_by_side_each_reached_and_stopped_alone(fab):
    lab_local, nb_local = free_port(), free_port()
    fab.hosts(
        f"hosts:\n  {fab.user}:\n    instances:\n"
        f"      lab:\n        launcher: tmux\n        local_port: {lab_local}\n"
        f"      classic:\n        jupyter: {NB6}/bin/jupyter notebook\n        local_port: {nb_local}\n"
    )
    r = fab.setup("--name", "lab")
    assert f"{fab.user}[lab]: Jupyter started (JupyterLab 4." in r.stdout, r.stdout
    assert f"Next: fab -S {fab.sshhost.ssh_config} -H {fab.user} tunnel --name lab" in r.stdout, r.stdout
    r = fab.setup("--name", "classic", password=CLASSIC_PASSWORD)  # no default instance: its own password
    assert f"{fab.user}[classic]: Jupyter started (Notebook 6.5" in r.stdout, r.stdout
    # each in its own directory, with its own settings file for its kind; nothing of the default
    base = fab.home / ".fabjupyter"
    assert [p.name for p in (base / "instances" / "classic" / "config").iterdir()] == ["jupyter_notebook_config.json"]
    assert [p.name for p in (base / "instances" / "lab" / "config").iterdir()] == ["jupyter_server_config.json"]
    assert not (base / "state").exists() and not (base / "settings.sh").exists()

    # both run (both were asked for the same port: the second took the next free one)
    found = {r["name"]: r for r in records(fab)}
    assert set(found) == {"lab", "classic"}, found
    lab, classic = found["lab"], found["classic"]
    assert lab["running"] and classic["running"] and lab["ours"] and classic["ours"]
    # (the next free one, which is fab.port + 1 unless another run on this machine holds it)
    assert lab["port"] == fab.port and classic["port"] > fab.port, found
    assert lab["launcher"] == "tmux" and classic["launcher"] == "nohup"
    assert lab["kind"] == "server2" and classic["kind"] == "nb6"
    assert lab["version"].startswith("JupyterLab 4.") and classic["version"].startswith("Notebook 6.5"), found
    assert lab["url"] == f"http://127.0.0.1:{lab['port']}/" and lab["uptime"] >= 0
    sessions = fab.as_user("tmux -L fabjupyter ls -F '#{session_name}'").stdout.split()
    assert sessions == ["jupyter-lab"], sessions
    status = json.loads(fab("status", "--json", "--name", "classic").stdout)
    assert status["pid"] == classic["pid"] and status["name"] == "classic" and status["host"] == fab.user

    # each logged into through its own forward, both opened together: each forward reaches its
    # own server (its version, its password and not the other's), not the other nor one for both
    proc, table = tunnel_table(fab)
    assert table == {f"{fab.user}[lab]": f"http://localhost:{lab_local}/", f"{fab.user}[classic]": f"http://localhost:{nb_local}/"}, table
    assert api_version(lab_local).startswith("2.") and api_version(nb_local).startswith("6.5."), (api_version(lab_local), api_version(nb_local))
    assert login_and_list(f"http://localhost:{lab_local}/", PASSWORD)[1] == 200
    assert login_and_list(f"http://localhost:{lab_local}/", CLASSIC_PASSWORD)[1] == 403
    assert login_and_list(f"http://localhost:{nb_local}/", CLASSIC_PASSWORD)[1] == 200
    assert login_and_list(f"http://localhost:{nb_local}/", PASSWORD)[1] == 403
    fab.cleanup()

    # setup again changes nothing, for each
    assert "nothing changed" in fab.setup("--name", "lab").stdout
    assert "nothing changed" in fab.setup("--name", "classic", password=CLASSIC_PASSWORD).stdout
    # stopping one leaves the other running
    r = fab("stop", "--name", "classic")
    assert f"{fab.user}[classic]: Jupyter stopped (pid {classic['pid']})" in r.stdout, r.stdout
    found = {r["name"]: r for r in records(fab)}
    assert not found["classic"]["running"] and found["lab"]["running"] and found["lab"]["pid"] == lab["pid"]
    assert jupyters(fab) == [lab["pid"]]
    # stop --all: every running one
    fab.setup("--name", "classic", password=CLASSIC_PASSWORD)
    r = fab("stop", "--all")
    assert r.stdout.count("Jupyter stopped") == 2 and f"{fab.user}[lab]: Jupyter stopped" in r.stdout, r.stdout
    assert fab.sshhost.processes(fab.user) == []
    assert fab.as_user("tmux -L fabjupyter ls", check=False).returncode != 0


def test_a_new_instance_starts_with_the_default_instances_password(fab, local_port):
    fab.setup()
    r = fab("setup", "--name", "second", "--port", str(fab.port + 10))  # no password given, none asked for
    assert "password: the same as the default instance's" in r.stdout, r.stdout
    proc, url, out = fab.tunnel("--name", "second", "--local-port", str(local_port))
    assert url and login_and_list(url, PASSWORD)[1] == 200, out
    fab.cleanup()
    # set apart: only that instance's changes
    fab("password", "--name", "second", "--password-stdin", input="another horse\n")
    fab("restart", "--name", "second")
    proc, url, out = fab.tunnel("--name", "second", "--local-port", str(local_port))
    assert login_and_list(url, "another horse")[1] == 200 and login_and_list(url, PASSWORD)[1] == 403
    fab.cleanup()
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert login_and_list(url, PASSWORD)[1] == 200
    fab.cleanup()
    fab("stop", "--all")


def records_with_another_server(fab, timeout=60):
    """list's records once a server this tool did not start is among them (or at TIMEOUT)."""
    deadline = time.monotonic() + timeout
    while True:
        found = records(fab)
        if any(not r["ours"] for r in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)

def test_list_shows_a_server_this_tool_did_not_start(fab):
    fab.setup()
    mine = fab.status()
    port = free_port()
    fab.as_user(
        f"nohup {JUPYTER_VENV}/bin/jupyter lab --no-browser --port {port} --ServerApp.token=s3cret-token-xyz "
        "> hand.log 2>&1 < /dev/null &"
    )
    found = records_with_another_server(fab)
    others = [r for r in found if not r["ours"]]
    assert len(others) == 1, found
    other = others[0]
    assert other["name"] is None and other["port"] == port and other["running"] and other["version"].startswith("2.")
    assert other["url"].startswith("http://") and f":{port}/" in other["url"]
    ours = [r for r in found if r["ours"]]
    assert [(r["name"], r["pid"]) for r in ours] == [("default", mine["pid"])]
    for key in ("host", "name", "ours", "running", "pid", "port", "socket", "url", "launcher", "version"):
        assert all(key in r for r in found), key
    r = fab("list")
    assert "(not ours)" in r.stdout and "s3cret-token-xyz" not in r.stdout + json.dumps(found), r.stdout
    fab.sshhost.kill_user_processes(fab.user)


def test_unknown_and_unsafe_names(fab):
    fab.setup()
    fab.setup("--name", "lab", "--port", str(fab.port + 10))
    r = fab("status", "--name", "nope", check=False)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        f"{fab.user}[nope]: no instance 'nope' there (instances there: default, lab); `fab -H {fab.user} setup --name nope` makes it"
    ], r.stderr
    # a mistyped name stops, starts or restarts nothing, and says which instances there are
    running = {r["name"]: r["pid"] for r in records(fab)}
    for task in ("stop", "start", "restart", "logs", "tunnel", "cert"):
        r = fab(task, "--name", "nope", check=False)
        assert r.returncode == 1 and r.stderr.strip().splitlines() == [
            f"{fab.user}[nope]: no instance 'nope' there (instances there: default, lab); `fab -H {fab.user} setup --name nope` makes it"
        ], (task, r.stdout, r.stderr)
    assert {r["name"]: r["pid"] for r in records(fab)} == running and all(running.values()), running
    assert sorted(p.name for p in (fab.home / ".fabjupyter" / "instances").iterdir()) == ["lab"]
    assert not fab.config_home.exists() or list(fab.config_home.rglob("*.pem")) == []  # cert made no certificate
    # config and password, like setup, make the instance they name
    assert "configuration written to ~/.fabjupyter/instances/made" in fab("config", "--name", "made").stdout
    fab("password", "--name", "given", "--password-stdin", input=PASSWORD + "\n")
    assert sorted(r["name"] for r in records(fab)) == ["default", "given", "lab", "made"]
    for made in ("made", "given"):
        fab.as_user(f"rm -r .fabjupyter/instances/{made}")
    for bad in ("../x", ".hidden", "a b", "-x", "x" * 41):
        r = fab("setup", "--name", bad, "--password-stdin", input=PASSWORD + "\n", check=False)
        assert r.returncode == 1 and "is not an instance name" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert sorted(p.name for p in (fab.home / ".fabjupyter" / "instances").iterdir()) == ["lab"]
    assert not (fab.home / "x").exists()
    # two instances asking for one port in hosts.yaml: refused before any host is contacted
    fab.hosts(f"hosts:\n  {fab.user}:\n    instances:\n      a: {{port: 9001}}\n      b: {{port: 9001}}\n")
    r = fab("status", check=False)
    assert r.returncode == 1 and "instances.b.port: 9001 is also a's; give each instance its own" in r.stderr, r.stderr
    fab.hosts("")
    fab("stop", "--all")
    assert fab.sshhost.processes(fab.user) == []


def test_two_new_instances_set_up_at_once_take_different_ports(fab):
    """Both ask for the same port on a fresh host, at the same moment: each ends with its own."""
    results = {}

    def one(name):
        results[name] = fab.setup("--name", name, check=False)

    threads = [threading.Thread(target=one, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, r in results.items():
        assert r.returncode == 0, (name, r.stdout, r.stderr)
    found = {r["name"]: r for r in records(fab)}
    assert found["a"]["running"] and found["b"]["running"] and found["a"]["port"] != found["b"]["port"], found
    assert sorted(jupyters(fab)) == sorted([found["a"]["pid"], found["b"]["pid"]])
    fab("stop", "--all")
    assert fab.sshhost.processes(fab.user) == []


def hold_lock(fab, path):
    """A process of the test user holding an flock on PATH (as a run of this tool holds its
    locks), returned once it holds it; closing its stdin lets go (release_lock)."""
    user = fab.sshhost.users[fab.user]
    holder = subprocess.Popen(
        ["setpriv", f"--reuid={user.uid}", f"--regid={user.uid}", "--init-groups", "/usr/bin/python3", "-c",
         "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600); "
         "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    fab.children.append(holder)
    assert holder.stdout.readline() == "held\n"
    return holder


def release_lock(holder):
    holder.stdin.close()
    holder.wait(10)


def test_no_instance_chooses_a_port_while_another_holds_the_ports_lock(fab):
    """What ports.lock guarantees: from choosing a port until its Jupyter listens, one instance
    holds it, and no other instance chooses a port or starts its Jupyter meanwhile. Held here by
    hand: setup of a new instance gets to its start (its cookie secret written, the last step
    before the lock), then starts nothing until the lock is let go, and then starts."""
    fab.as_user("mkdir -m 700 .fabjupyter")
    holder = hold_lock(fab, fab.home / ".fabjupyter" / "ports.lock")
    proc = subprocess.Popen(fab.args("setup", "--name", "a", "--password-stdin"), cwd=ROOT, env=fab.env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    fab.children.append(proc)
    proc.stdin.write(PASSWORD + "\n")
    proc.stdin.close()
    proc.stdin = None  # written and closed: communicate() must not flush it
    a = fab.home / ".fabjupyter" / "instances" / "a"
    deadline = time.monotonic() + 90
    while not (a / "cookie_secret").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (a / "cookie_secret").exists(), proc.communicate()
    time.sleep(4)  # without the lock, Jupyter would have been launched by now
    assert proc.poll() is None and not (a / "pid").exists() and jupyters(fab) == [], proc.poll()
    release_lock(holder)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and f"{fab.user}[a]: Jupyter started" in out, (out, err)
    assert (a / "pid").exists() and len(jupyters(fab)) == 1
    fab("stop", "--all")
    assert fab.sshhost.processes(fab.user) == []


def test_each_instance_has_its_own_run_lock(fab):
    """Setting up one instance never waits for another: with the run locks of the default
    instance and of `a` held (as a long run of each would hold them), setup of `b` goes through
    at once and says no wait; status of `a` meanwhile names the run it waits for."""
    fab.setup()
    fab.setup("--name", "a", "--port", str(fab.port + 10))
    fab.as_user("echo 'restart (pid 4242, since 10:00:00)' > .fabjupyter/instances/a/lock.owner")
    holders = [hold_lock(fab, fab.home / ".fabjupyter" / "lock"), hold_lock(fab, fab.home / ".fabjupyter" / "instances" / "a" / "lock")]
    try:
        status = json.loads(fab("status", "--json", "--name", "a").stdout)
        assert status["busy"] == "restart (pid 4242, since 10:00:00)", status  # a real lock the agent sees
        started = time.monotonic()
        r = fab.setup("--name", "b", "--port", str(fab.port + 20))
        took = time.monotonic() - started
    finally:
        for holder in holders:
            release_lock(holder)
    assert "waiting for another fabjupyter run" not in r.stderr and f"{fab.user}[b]: Jupyter started" in r.stdout, (r.stdout, r.stderr)
    assert took < 60, took  # a wait for the others' locks lasts up to 120 s
    assert {r["name"]: r["running"] for r in records(fab)} == {"default": True, "a": True, "b": True}
    fab("stop", "--all")
    assert fab.sshhost.processes(fab.user) == []


def test_a_later_change_of_the_defaults_password_leaves_the_others(fab, local_port):
    """An instance that took the default's password keeps it when the default's is changed later."""
    fab.setup()
    fab.setup("--name", "other", "--port", str(fab.port + 10))  # the default's password, not asked
    files = fab.home / ".fabjupyter" / "instances" / "other" / "password"
    before = {p.name: p.read_bytes() for p in files.iterdir()}
    fab("password", "--password-stdin", input="another horse\n")
    fab("restart")
    fab("restart", "--name", "other")  # reads its password file again
    assert {p.name: p.read_bytes() for p in files.iterdir()} == before
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert login_and_list(url, "another horse")[1] == 200 and login_and_list(url, PASSWORD)[1] == 403, out
    fab.cleanup()
    proc, url, out = fab.tunnel("--name", "other", "--local-port", str(local_port))
    assert login_and_list(url, PASSWORD)[1] == 200 and login_and_list(url, "another horse")[1] == 403, out
    fab.cleanup()
    fab("stop", "--all")


def test_list_shows_a_classic_notebook_not_ours_and_each_records_keys(fab):
    """A Notebook 6 started by hand (runtime file nbserver-PID.json) is in `list`, with its root
    directory; our instances carry `current` and `configured`, which say what they claim."""
    fab.setup()
    fab.setup("--name", "changed", "--port", str(fab.port + 10))
    fab("password", "--name", "bare", "--password-stdin", input=PASSWORD + "\n")  # no configuration yet
    # changed: a new root directory written by config and not yet applied (no restart)
    fab.hosts(f"hosts:\n  {fab.user}:\n    instances:\n      changed: {{port: {fab.port + 10}, root_dir: ~/elsewhere}}\n")
    fab("config", "--name", "changed")
    port = free_port()
    fab.as_user(
        f"mkdir -p 'hand dir' && nohup {NB6}/bin/jupyter notebook --no-browser --port {port} --NotebookApp.token=s3cret-token-nb6 "
        "--notebook-dir=\"$HOME/hand dir\" > hand.log 2>&1 < /dev/null &"
    )
    found = records_with_another_server(fab)
    runtime = Path(fab.as_user(f"{NB6}/bin/jupyter --runtime-dir").stdout.strip())
    assert list(runtime.glob("nbserver-*.json")), runtime  # what it is found by: Notebook 6's runtime file
    others = [r for r in found if not r["ours"]]
    assert len(others) == 1, found
    other = others[0]
    # Notebook 6's runtime file names no version (Jupyter Server's does): kind says what it is
    assert other["name"] is None and other["port"] == port and other["kind"] == "nb6" and other["version"] is None, other
    assert other["running"] and other["url"] == f"http://localhost:{port}/", other
    assert other["root_dir"] == str(fab.home / "hand dir"), other
    ours = {r["name"]: r for r in found if r["ours"]}
    assert ours["default"]["current"] is True and ours["default"]["configured"] is True, ours
    assert ours["changed"]["current"] is False and ours["changed"]["configured"] is True, ours
    assert ours["bare"]["configured"] is False and ours["bare"]["running"] is False, ours
    r = fab("list")
    assert "(not ours)" in r.stdout and "s3cret-token-nb6" not in r.stdout + json.dumps(found), r.stdout
    fab.sshhost.kill_user_processes(fab.user)


def test_tunnel_all_reuses_last_times_local_ports(fab):
    """Instances without local_port: a second `tunnel --all` puts each on the local port it had
    the first time, though lower ones are free by then."""
    fab.setup()
    fab.setup("--name", "two", "--port", str(fab.port + 10))
    blockers, port = [], 8888
    while len(blockers) < 2:  # the first two free ports from 8888 (the first choice) held now
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the tunnel's own check binds
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
            blockers.append(s)
        except OSError:
            s.close()
        port += 1
    lowest = min(s.getsockname()[1] for s in blockers)
    proc, first = tunnel_table(fab)
    fab.cleanup()
    for s in blockers:
        s.close()
    firsts = {label: int(url.rsplit(":", 1)[1].strip("/")) for label, url in first.items()}
    assert set(firsts) == {fab.user, f"{fab.user}[two]"} and min(firsts.values()) > lowest, first
    proc, second = tunnel_table(fab)
    assert second == first, (first, second)
    fab.cleanup()
    fab("stop", "--all")
