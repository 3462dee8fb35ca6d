"""Many hosts at once: four isolated hosts, each in its own network namespace with its own sshd,
account and loopback (so every Jupyter can have 8888); one has no Jupyter, one is unreachable."""

import json
import os
import shutil
import tempfile
from pathlib import Path
import signal
import subprocess
import time

import pytest

from .conftest import FAB, ROOT
from .jupyter_http import login_and_list
from .sshhost import JUPYTER_VENV, SSHHost

PASSWORD = "fleet horse"
# name, network namespace index, Jupyter on its PATH
HOSTS = [("fjn1", 1, True), ("fjn2", 2, True), ("fjn3", 3, False), ("fjn4", 4, True)]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    hosts = {}
    try:
        for name, index, on_path in HOSTS:
            hosts[name] = SSHHost(users=[(name, "/bin/bash", on_path, False)], prefix=f"fabjupyter-{name}-", netns=(f"fjns{index}", index))
        yield hosts
    finally:
        for h in hosts.values():
            h.close()


class FleetRun:
    def __init__(self, hosts, tmp_path):
        self.hosts = hosts
        self.tmp = tmp_path
        known = tmp_path / "known_hosts"
        known.write_text("".join(h.known_hosts.read_text() for h in hosts.values()))
        self.ssh_config = tmp_path / "ssh_config"
        self.ssh_config.write_text(f"Host *\n  UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n")
        self.hosts_file = tmp_path / "hosts.yaml"
        self.write_hosts()
        self.cleanup = []  # directories to remove after the test

    def write_hosts(self, extra=None):
        lines = ["defaults:", "  launcher: nohup", "  socket: false", "hosts:"]  # TCP: the group forwards are watched
        for name, h in self.hosts.items():
            lines += [f"  {name}:", f"    host: {h.address}", f"    user: {h.users[name].name}", f"    identity: {h.client_key}"]
            if name == "fjn2":
                lines.append("    launcher: tmux")
            lines += [f"    {line}" for line in (extra or {}).get(name, [])]
        lines += ["groups:", f"  lab: [{', '.join(self.hosts)}]"]
        self.hosts_file.write_text("\n".join(lines) + "\n")

    def env(self):
        return dict(os.environ, FABRIC_JUPYTER_HOSTS_FILE=str(self.hosts_file), XDG_CONFIG_HOME=str(self.tmp / "xdg"))

    def __call__(self, *args, input=None):
        return subprocess.run(
            [*FAB, "-S", str(self.ssh_config), *args], cwd=ROOT, env=self.env(), input=input, capture_output=True, text=True, timeout=300
        )

    def tunnel(self):
        """`fab tunnel --group lab` until its table is printed: (process, {host: url or error})."""
        proc = subprocess.Popen(
            [*FAB, "-S", str(self.ssh_config), "tunnel", "--group", "lab"],
            cwd=ROOT, env=self.env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        table = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line or line.startswith("Ctrl-C"):
                break
            words = line.split()
            if words and words[0] in self.hosts:
                table[words[0]] = " ".join(words[1:])
        return proc, table


@pytest.fixture
def run(fleet, tmp_path):
    for h in fleet.values():
        for user in h.users:
            h.reset_user(user)
    fleet["fjn4"].stop()  # unreachable until a test fixes it
    r = FleetRun(fleet, tmp_path)
    yield r
    for path in r.cleanup:
        shutil.rmtree(path, ignore_errors=True)
    for h in fleet.values():
        for user in h.users:
            h.reset_user(user)
        if h.proc is None or h.proc.poll() is not None:
            h.start()


def test_group_setup_reports_each_host_and_fails_for_the_broken_ones(run, fleet):
    r = run("setup", "--group", "lab", "--password-stdin", input=PASSWORD + "\n")
    assert r.returncode == 1
    assert r.stderr.strip() == "2 of 4 hosts failed: fjn3, fjn4"
    out = r.stdout
    # one line per host as it finishes, then the table
    assert "fjn1: started  http://127.0.0.1:8888/" in out
    assert "fjn2: started  http://127.0.0.1:8888/" in out
    assert "fjn3: FAILED  no Jupyter found there" in out
    fjn4 = run.hosts["fjn4"]
    assert f"fjn4: FAILED  connection refused by {fjn4.users['fjn4'].name}@{fjn4.address}:22" in out
    table = out.split("\n\n", 1)[1].splitlines()
    assert table[0].split() == ["host", "outcome", "URL", "or", "error"]
    assert [row.split()[:2] for row in table[1:]] == [["fjn1", "started"], ["fjn2", "started"], ["fjn3", "FAILED"], ["fjn4", "FAILED"]]

    # status for all of them, one JSON object per host
    r = run("status", "--group", "lab", "--json")
    records = {rec["host"]: rec for rec in map(json.loads, r.stdout.strip().splitlines())}
    assert records["fjn1"]["running"] and records["fjn2"]["running"] and records["fjn2"]["launcher"] == "tmux"
    assert records["fjn3"]["running"] is False
    assert "connection refused" in records["fjn4"]["error"]
    assert r.returncode == 1

    # the working hosts are reachable through their own tunnels, each on its own local port
    proc, table = run.tunnel()
    try:
        assert table["fjn1"].startswith("http://localhost:") and table["fjn2"].startswith("http://localhost:")
        assert table["fjn1"] != table["fjn2"]
        assert table["fjn3"].startswith("FAILED") and table["fjn4"].startswith("FAILED")
        for name in ("fjn1", "fjn2"):
            assert login_and_list(table[name], PASSWORD)[1] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 1

    # fix the broken ones; a re-run completes only what is missing
    fleet["fjn4"].start()
    run.write_hosts({"fjn3": [f"jupyter: {JUPYTER_VENV}/bin/jupyter lab"]})
    pids = {name: records[name]["pid"] for name in ("fjn1", "fjn2")}
    r = run("setup", "--group", "lab", "--password-stdin", input=PASSWORD + "\n")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "fjn1: unchanged" in r.stdout and "fjn2: unchanged" in r.stdout
    assert "fjn3: started" in r.stdout and "fjn4: started" in r.stdout
    records = {rec["host"]: rec for rec in map(json.loads, run("status", "--group", "lab", "--json").stdout.splitlines())}
    assert all(rec["running"] for rec in records.values())
    assert {name: records[name]["pid"] for name in pids} == pids

    # all four through their tunnels; the local ports stay the same between runs
    proc, first = run.tunnel()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)
    assert proc.returncode == 0
    proc, table = run.tunnel()
    try:
        assert table == first
        for name in HOSTS:
            assert login_and_list(table[name[0]], PASSWORD)[1] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)

    r = run("stop", "--group", "lab")
    assert r.returncode == 0 and r.stdout.count(": stopped") == 4
    for h in fleet.values():
        assert h.processes() == []


def test_group_errors(run):
    r = run("status", "--group", "nope")
    assert r.returncode == 1 and r.stderr.strip() == f"{run.hosts_file}: no group 'nope' (groups: lab)"
    r = run("-H", "fjn1", "status", "--group", "lab")
    assert r.returncode == 1 and r.stderr.strip() == "give either -H HOST or --group NAME, not both"


@pytest.mark.parametrize("workers", [4, 1])
def test_workers_run_hosts_side_by_side_or_one_at_a_time(run, fleet, workers):
    """The three reachable hosts' activation lines note when they begin, wait, and count how many
    hosts have begun: with 4 workers the first to look sees the others (side by side); with
    --workers 1 none ever sees another (one at a time)."""
    fleet["fjn4"].start()
    marks = Path(tempfile.mkdtemp(prefix="fabjupyter-marks-"))  # where the test accounts can write
    marks.chmod(0o1777)
    run.cleanup.append(marks)
    line = f"mkdir -p {marks}/$(id -un); sleep 2; ls -d {marks}/*/ | wc -l >> {marks}/$(id -un).seen"
    run.write_hosts({name: [f"activate: {json.dumps(line)}"] for name in ("fjn1", "fjn2", "fjn4")})
    r = run("setup", "--group", "lab", "--password-stdin", "--workers", str(workers), input=PASSWORD + "\n")
    assert "fjn1: started" in r.stdout and "fjn2: started" in r.stdout and "fjn4: started" in r.stdout, r.stdout
    seen = {p.name: [int(n) for n in p.read_text().split()] for p in marks.glob("*.seen")}
    assert len(seen) == 3, seen
    first_looks = [counts[0] for counts in seen.values()]
    if workers == 1:
        assert sorted(first_looks) == [1, 2, 3], seen  # each host began after the one before had ended
    else:
        assert max(first_looks) == 3 and min(first_looks) >= 2, seen  # they began together
    run("stop", "--group", "lab")
