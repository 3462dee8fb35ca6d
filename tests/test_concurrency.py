"""At most one server per host, and always the one we track: setups cut off at several moments
and run again at once, two and three setups started together, on fresh and on running hosts, and a
run killed on the host itself between the start and its record. Afterwards exactly one Jupyter
runs, it is the one status reports, and stop leaves none."""

import json
import os
import signal
import subprocess
import threading
import time

import pytest

from .conftest import ROOT
from .sshhost import free_port, jupyter_servers


def servers(fab):
    """pids of the user's Jupyter servers."""
    return jupyter_servers(fab.sshhost.processes(fab.user))


def exactly_one_tracked(fab, context):
    pids = servers(fab)
    assert len(pids) == 1, (context, pids)
    record = fab.status()
    assert record["running"] and record["pid"] == pids[0], (context, record, pids)
    assert record["unrecorded"] == [] and record["busy"] is None, (context, record)
    return pids[0]


def start_setup(fab, *args, new_session=False):
    proc = subprocess.Popen(
        fab.args("setup", "--password-stdin", *args), cwd=ROOT, env=fab.env(),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=new_session,
    )
    proc.stdin.write(b"pw\n")
    proc.stdin.close()
    return proc


def finish(proc):
    proc.stdin = None  # written and closed by start_setup
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err.decode()
    return out.decode() + err.decode()


def agent_pids(fab):
    """pids of this user's agents (the Python this tool runs on the host for a task)."""
    found = []
    for pid in fab.sshhost.processes(fab.user):
        try:
            if b"\0fabjupyter-agent\0" in open(f"/proc/{pid}/cmdline", "rb").read():
                found.append(pid)
        except OSError:
            pass
    return found


def lock_holder(fab):
    """pid of the process holding the default instance's run lock (~/.fabjupyter/lock), or None:
    read from /proc/locks, so looking never takes the lock itself."""
    try:
        inode = (fab.home / ".fabjupyter" / "lock").stat().st_ino
    except OSError:
        return None
    for line in open("/proc/locks"):
        words = line.split()
        if "FLOCK" in words and "WRITE" in words and words[-3].split(":")[-1] == str(inode):
            return int(words[-4])
    return None


def pid_file_text(fab):
    try:
        return (fab.home / ".fabjupyter" / "pid").read_text()
    except OSError:
        return None


def pause_lock_holder(fab):
    """SIGSTOP the process holding the run lock, and return its pid if it still holds it then."""
    pid = lock_holder(fab)
    if not pid:
        return None
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        return None
    if lock_holder(fab) == pid:
        return pid
    os.kill(pid, signal.SIGCONT)
    return None


def wait_for(what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.01)
    return None


# moments of a setup that reach the host, each seen there, not guessed from a delay (fab alone
# takes 0.24-0.34 s to start): its agent runs; its agent holds the run lock; it launched Jupyter.
# Where the agent holds the lock, the test pauses it (SIGSTOP) at that moment.
CUTS = {
    "agent running": lambda fab, before: agent_pids(fab),
    "lock held": lambda fab, before: pause_lock_holder(fab),
    "Jupyter launched": lambda fab, before: pid_file_text(fab) not in (None, before) and pause_lock_holder(fab),
}


@pytest.mark.parametrize("host", ["fresh", "running"])
def test_setup_cut_off_then_run_again_at_once(fab, host):
    """fab killed (Ctrl-C, lid, link) at several moments of a setup that starts or restarts
    Jupyter, each seen on the host, and another setup at once: while the first one's agent goes
    on and holds the lock, the second says it waits for that agent and starts nothing, then does
    its work; the host ends with one server, the tracked one. (The first agent is paused with
    SIGSTOP while the second is seen waiting, so that waiting is certain, not a race won.)"""
    for cut, seen in CUTS.items():
        fab.sshhost.reset_user(fab.user)
        extra = []
        if host == "running":
            fab.setup(password="pw")
            extra = ["--port", str(free_port())]  # a change: the cut-off run restarts Jupyter
        before = pid_file_text(fab)
        proc = start_setup(fab, *extra, new_session=True)
        fab.children.append(proc)
        first = wait_for(lambda: seen(fab, before))
        assert first, (host, cut, finish(proc))
        os.killpg(proc.pid, signal.SIGKILL)  # fab and any ssh it started, as a closed terminal does
        proc.wait()
        if cut == "agent running":
            first = pause_lock_holder(fab)  # if its agent got as far as the lock
        else:
            assert first in agent_pids(fab), (host, cut, first)  # the first one's agent, paused
        try:
            second = subprocess.Popen(
                fab.args("setup", *extra, "--password-stdin"), cwd=ROOT, env=fab.env(), stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            fab.children.append(second)
            second.stdin.write("pw\n")
            second.stdin.close()
            said = {"out": [], "err": []}
            readers = [threading.Thread(target=lambda k, f: said[k].extend(f), args=(k, f), daemon=True)
                       for k, f in (("out", second.stdout), ("err", second.stderr))]
            for t in readers:
                t.start()
            if first:
                waiting = f"{fab.user}: waiting for another fabjupyter run there to finish: setup (pid {first},"
                assert wait_for(lambda: any(waiting in line for line in said["err"]), 60), (host, cut, said)
                time.sleep(1)
                assert second.poll() is None and lock_holder(fab) == first, (host, cut)  # still waiting
                assert len(servers(fab)) <= 1, (host, cut, servers(fab))  # and started nothing
        finally:
            if first:
                os.kill(first, signal.SIGCONT)
        second.wait(240)
        for t in readers:
            t.join(10)
        out, err = "".join(said["out"]), "".join(said["err"])
        assert second.returncode == 0 and "Traceback" not in err, (host, cut, out, err)
        exactly_one_tracked(fab, (host, cut, out, err))
        # the first one's agent did the work and the second found it done: on a fresh host its
        # one round does it all; on a running one the round that holds the lock first only gives
        # the stored salt back (to tell the same password from a new one), so only a cut after
        # the launch leaves the work done
        if first and (host == "fresh" or cut == "Jupyter launched"):
            assert "nothing changed" in out, (host, cut, out, err)
        if cut == "Jupyter launched":
            assert exactly_one_tracked(fab, cut) == int(pid_file_text(fab).split()[0])
        fab("stop")
        assert servers(fab) == [] and agent_pids(fab) == []


@pytest.mark.parametrize("host", ["fresh", "running"])
@pytest.mark.parametrize("count", [2, 3])
def test_setups_started_together(fab, host, count):
    for attempt in range(2):
        fab.sshhost.reset_user(fab.user)
        if host == "running":
            fab.setup(password="pw", check=True)
        procs = [start_setup(fab) for _ in range(count)]
        outputs = [finish(p) for p in procs]
        assert not any("cannot write there" in o for o in outputs), outputs
        exactly_one_tracked(fab, (host, count, attempt, outputs))
        fab("stop")
        assert servers(fab) == []


def test_a_run_killed_on_the_host_leaves_a_server_that_is_found_and_stopped(fab):
    """The agent itself killed (kill -9 on the host) after it launched Jupyter and before it
    recorded it: status reports that server, and the next setup stops it and starts its own."""
    proc = start_setup(fab)
    pid_file = fab.home / ".fabjupyter" / "pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    launched = int(pid_file.read_text().split()[0])
    for pid in fab.sshhost.processes(fab.user):  # the agent (Python) and its bootstrap (`sh -s`)
        try:
            args = open(f"/proc/{pid}/cmdline", "rb").read()
            if args == b"sh\0-s\0" or b"\0fabjupyter-agent\0" in args:
                os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    proc.wait(60)
    assert not (fab.home / ".fabjupyter" / "state").exists()
    deadline = time.monotonic() + 30
    while launched not in servers(fab) and time.monotonic() < deadline:
        time.sleep(0.1)
    record = fab.status()
    assert record["running"] is False and record["unrecorded"] == [launched], record
    assert f"also running: Jupyter (pid {launched})" in fab("status").stdout
    r = fab.setup(password="pw")
    assert f"stopped Jupyter (pid {launched}), started by a run of this tool that was killed" in r.stdout, r.stdout
    assert exactly_one_tracked(fab, r.stdout) != launched
    r = fab("stop")
    assert servers(fab) == []


def test_a_second_run_waits_and_says_for_whom(fab):
    """While another run holds the host's lock (here a `flock` on it for 3 s, with its record),
    setup says on stderr that it waits and for whom, then does its work."""
    fab.as_user("mkdir -m 700 .fabjupyter && echo 'restart (pid 4242, since 10:00:00)' > .fabjupyter/lock.owner")
    user = fab.sshhost.users[fab.user]
    holder = subprocess.Popen(
        ["setpriv", f"--reuid={user.uid}", f"--regid={user.uid}", "--init-groups",
         "flock", str(fab.home / ".fabjupyter" / "lock"), "sleep", "3"]
    )
    try:
        deadline = time.monotonic() + 10
        while fab.as_user("flock -n .fabjupyter/lock true", check=False).returncode == 0 and time.monotonic() < deadline:
            time.sleep(0.02)  # until the holder has it
        started = time.monotonic()
        r = fab.setup(password="pw")
        waited = time.monotonic() - started
    finally:
        holder.wait(10)
    assert "fjtest: waiting for another fabjupyter run there to finish: restart (pid 4242, since 10:00:00) (up to 120 s)" in r.stderr, r.stderr
    assert waited > 2, waited  # it did wait for the holder
    exactly_one_tracked(fab, r.stdout)


@pytest.mark.parametrize("launcher", ["nohup", "tmux"])
def test_a_setup_whose_client_hangs_up_still_finishes_on_the_host(fab, launcher):
    """The client killed once the agent has launched Jupyter (the lid closes, the link drops):
    with no second run, the agent goes on, waits for Jupyter and records it: the state file
    names a live server, and status reports it."""
    proc = start_setup(fab, "--launcher", launcher)
    pid_file = fab.home / ".fabjupyter" / "pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pid_file.exists()
    proc.kill()
    proc.wait()
    launched = int(pid_file.read_text().split()[0])
    state = fab.home / ".fabjupyter" / "state"
    deadline = time.monotonic() + 60
    while not state.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert json.loads(state.read_text())["pid"] == launched
    assert exactly_one_tracked(fab, launcher) == launched
    assert fab.status()["launcher"] == launcher
    fab("stop")
    assert servers(fab) == []
