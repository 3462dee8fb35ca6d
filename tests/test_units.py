"""Pure logic: quoting, the password hash, settings precedence, the ssh command line."""

import itertools
import re
import subprocess
import sys

import pytest
from fabric import Config, Connection

from tasks.hosts import inventory
from tasks.errors import UserError
from tasks.ops.password import hash_password
from tasks.protocol import agent_script, sh_assign, sh_quote
from tasks.forwards.plain import ssh_command

from .conftest import ROOT
from .sshhost import JUPYTER_VENV

NASTY = [
    "",
    "plain",
    "two words",
    "it's",
    'say "hi"',
    "$(touch /tmp/fabjupyter-quoting) `id` ${HOME}",
    "back\\slash\\\\",
    "new\nline",
    "tab\there",
    "ünïcødé ✓",
    "-n",
    "*",
    "; rm -rf / #",
]


@pytest.mark.parametrize("value", NASTY)
def test_sh_quote_round_trips_through_a_real_shell(value):
    for shell in ("dash", "bash"):
        out = subprocess.run(
            [shell, "-c", f"{sh_assign('V', value)}; printf '%s' \"$V\""], capture_output=True, text=True, check=True
        ).stdout
        assert out == value
        out = subprocess.run([shell, "-c", "printf '%s' " + sh_quote(value)], capture_output=True, text=True).stdout
        assert out == value


def test_sh_quote_refuses_nul():
    with pytest.raises(UserError):
        sh_quote("a\0b")


def test_agent_script_is_definitions_then_one_call():
    script = agent_script("config", {"x": "$(boom)"}, settings_sh="FJ_ROOT='$(boom)'\n")
    assert script.rstrip().endswith("\nfj_boot agent")
    assert sh_assign("FJ_SETTINGS", "FJ_ROOT='$(boom)'\n") in script


@pytest.mark.parametrize("password", ["correct horse", "ünï $(x) '\"\\", "x" * 200])
def test_hash_is_accepted_by_jupyter_server(password):
    hashed = hash_password(password)
    assert hashed.startswith("argon2:$argon2id$v=19$m=10240,t=10,p=8$")
    check = (
        "import sys; from jupyter_server.auth.security import passwd_check; "
        "h, p = sys.stdin.read().split('\\0'); print(passwd_check(h, p), passwd_check(h, p + 'x'))"
    )
    out = subprocess.run(
        [str(JUPYTER_VENV / "bin" / "python"), "-c", check], input=f"{hashed}\0{password}", capture_output=True, text=True
    )
    assert out.stdout.split() == ["True", "False"], out.stderr


def test_hash_with_stored_salt_is_reproducible():
    first = hash_password("pw")
    salted = first.rsplit("$", 1)[0]
    assert hash_password("pw", salted=salted) == first
    assert hash_password("other", salted=salted) != first
    assert hash_password("pw") != first  # a fresh salt each time otherwise


def test_settings_precedence(tmp_path):
    path = tmp_path / "hosts.yaml"
    path.write_text(
        "defaults:\n  launcher: tmux\n  port: 9000\n  local_port: 9100\n"
        "hosts:\n  gpu:\n    port: 9001\n    host: 10.1.2.3\n    ssh_port: 2222\n    jupyter: ~/venv/bin/jupyter lab\n"
    )
    inv = inventory.load(str(path))
    s = inv.settings_for("gpu", {"local_port": 9200})
    assert (s.launcher, s.port, s.local_port) == ("tmux", 9001, 9200)
    assert s.jupyter == ("~/venv/bin/jupyter", "lab")
    assert inv.entry("gpu").ssh_port == 2222 and inv.entry("gpu").host == "10.1.2.3"
    other = inv.settings_for("elsewhere")
    assert (other.launcher, other.port, other.root_dir) == ("tmux", 9000, "~")
    assert inventory.Settings().port == 8888


def test_instance_settings_precedence_and_names(tmp_path):
    """defaults < host < the instance's entry < options; `name:` picks the instance a host's
    tasks use without --name."""
    from tasks.hosts.targets import Target

    path = tmp_path / "hosts.yaml"
    path.write_text(
        "defaults:\n  port: 9000\n  launcher: tmux\n"
        "hosts:\n  gpu:\n    name: torch\n    local_port: 9100\n    activate: source ~/base/bin/activate\n"
        "    instances:\n      torch: {activate: source ~/torch/bin/activate, port: 9001}\n      jax: {port: 9002, local_port: 9102}\n"
    )
    inv = inventory.load(str(path))
    s = inv.settings_for("gpu")
    assert (s.name, s.activate, s.port, s.launcher) == ("torch", "source ~/torch/bin/activate", 9001, "tmux")
    s = inv.settings_for("gpu", {"name": "jax", "port": 9500})
    assert (s.name, s.activate, s.port, s.local_port) == ("jax", "source ~/base/bin/activate", 9500, 9102)
    s = inv.settings_for("gpu", {"name": "default"})
    assert (s.name, s.port) == ("default", 9000)
    assert inv.settings_for("elsewhere").name == "default"
    t = Target("gpu", Connection("gpu"), inv.settings_for("gpu"), inv)
    assert (t.label, t.named, t.remote_dir, t.fab("restart")) == (
        "gpu[torch]", " --name torch", "~/.fabjupyter/instances/torch", "fab -H gpu restart --name torch")
    # the host's own local_port is the instance's it names; another instance's own is its own
    assert t.pinned_local_port() == 9100 and t.instance("jax").pinned_local_port() == 9102
    assert t.instance("default").pinned_local_port() is None and t.instance("default").label == "gpu"
    for bad, message in [
        ("hosts:\n  gpu:\n    instances:\n      a/b: {}\n", "'a/b' is not an instance name"),
        ("hosts:\n  gpu:\n    name: ../x\n", "hosts.gpu.name: '../x' is not an instance name"),
        ("hosts:\n  gpu:\n    instances:\n      a: {name: b}\n", "hosts.gpu.instances.a: unknown key 'name'"),
        ("hosts:\n  gpu:\n    instances:\n      a: {local_port: 9}\n      b: {local_port: 9}\n", "b.local_port: 9 is also a's"),
    ]:
        path.write_text(bad)
        with pytest.raises(UserError, match=re.escape(message)):
            inventory.load(str(path))


def test_job_options_under_either_name(tmp_path):
    """job_options: is the one name for every scheduler; sbatch: (SLURM's) is the same setting,
    wherever a setting may be written; both at one place is refused, naming both. On the command
    line --job-option and --sbatch add up."""
    from tasks.hosts.options import job_options

    path = tmp_path / "hosts.yaml"
    path.write_text(
        "defaults:\n  sbatch: [--time=01:00:00]\n"
        "hosts:\n  a: {launcher: slurm, job_options: [--partition=gpu]}\n  b: {launcher: slurm}\n"
        "  c:\n    launcher: slurm\n    instances:\n      big: {sbatch: --mem=64G}\n"
    )
    inv = inventory.load(str(path))
    assert inv.settings_for("a").job_options == ("--partition=gpu",)
    assert inv.settings_for("b").job_options == ("--time=01:00:00",)
    assert inv.settings_for("c", {"name": "big"}).job_options == ("--mem=64G",)
    assert inv.settings_for("a", {"job_options": job_options(["-A", "x"], ["--qos=y"])}).job_options == ("-A", "x", "--qos=y")
    assert job_options(None, []) is None  # neither given: hosts.yaml decides
    for bad, message in [
        ("hosts:\n  a: {sbatch: [-p, x], job_options: [-p, y]}\n", "hosts.a: give sbatch: or job_options: (the same setting), not both"),
        ("hosts:\n  a: {sbatch: partition=gpu}\n", "hosts.a.sbatch: 'partition=gpu' is not an option"),
        ("hosts:\n  a: {sbtach: [-p, x]}\n", "unknown key 'sbtach' (did you mean sbatch?)"),
    ]:
        path.write_text(bad)
        with pytest.raises(UserError, match=re.escape(message)):
            inventory.load(str(path))


def test_empty_and_missing_inventory(tmp_path):
    path = tmp_path / "hosts.yaml"
    path.write_text("# nothing yet\n")
    assert inventory.load(str(path)).settings_for("x") == inventory.Settings(socket=True)


def test_socket_by_default_where_one_can_work(tmp_path):
    """socket: unset means a Unix socket in ssh mode (no other user can bind or reach it); a port
    where it must be: public mode, a batch job, or socket: false."""
    path = tmp_path / "hosts.yaml"
    path.write_text("hosts:\n  a: {}\n  b: {mode: public}\n  c: {launcher: slurm}\n  d: {socket: false}\n  e: {socket: true}\n")
    inv = inventory.load(str(path))
    assert [inv.settings_for(h).socket for h in "abcde"] == [True, False, False, False, True]
    assert inv.settings_for("d", {"socket": True}).socket is True  # --socket over hosts.yaml
    assert inv.settings_for("a", {"socket": False}).socket is False  # --tcp over the default
    with pytest.raises(UserError, match="cannot use a Unix socket"):
        inv.settings_for("b", {"socket": True})
    assert inventory.load(str(tmp_path / "absent.yaml")).hosts == {}
    with pytest.raises(UserError, match="no such file"):
        inventory.load(str(tmp_path / "absent.yaml"), required=True)


def test_groups_must_name_known_hosts(tmp_path):
    path = tmp_path / "hosts.yaml"
    path.write_text("hosts:\n  a: {}\ngroups:\n  lab: [a, b]\n")
    with pytest.raises(UserError, match=r"groups.lab: 'b' is not a host"):
        inventory.load(str(path))


def test_ssh_command_reaches_the_host_as_fabric_does(tmp_path):
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text("Host gpu\n  HostName 10.9.8.7\n  Port 2200\n  User ana\n  ProxyJump jumpuser@bastion:2201\n")
    config = Config(overrides={"connect_kwargs": {"key_filename": ["/keys/id_a"]}, "timeouts": {"connect": 7}})
    config.set_runtime_ssh_path(str(ssh_config))
    config.load_ssh_config()
    conn = Connection("gpu", config=config)
    args = ssh_command(conn, "127.0.0.1:8888:127.0.0.1:8890")
    joined = " ".join(args)
    assert args[0] == "ssh" and args[-1] == "gpu"
    assert f"-F {ssh_config}" in joined
    assert "-l ana -p 2200" in joined
    assert "-i /keys/id_a" in joined
    assert "ConnectTimeout=7" in joined
    assert "-J jumpuser@bastion:2201" in joined
    assert "HostName=10.9.8.7" in joined
    assert "ExitOnForwardFailure=yes" in joined and "ServerAliveInterval=15" in joined
    assert "-N -L 127.0.0.1:8888:127.0.0.1:8890" in joined


def test_a_group_is_asked_all_at_once_up_to_the_cap_unless_told_fewer():
    from tasks.hosts.fleet import MAX_WORKERS, pool_size

    assert pool_size(32) == 32  # network-bound work: not 8 at a time (issue 20: 3.4x one host's time)
    assert pool_size(1) == 1
    assert pool_size(10 * MAX_WORKERS) == MAX_WORKERS
    assert pool_size(32, 4) == 4 and pool_size(3, 8) == 3
    with pytest.raises(UserError, match="--workers: must be at least 1"):
        pool_size(32, 0)


def test_the_open_files_limit_is_raised_or_named():
    """A group needs a file descriptor per forward: the soft limit is raised up to the hard one,
    and past the hard one the error says what to raise (in a child, whose limits are its own)."""
    code = (
        "import resource\n"
        "from tasks.errors import UserError\n"
        "from tasks.hosts.fleet import room_for_files\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, 512))\n"
        "room_for_files(400)\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
        "try:\n"
        "    room_for_files(5000)\n"
        "except UserError as e:\n"
        "    print(e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert r.stdout.splitlines() == [
        "512",
        "this needs about 5000 open files here and the limit is 512; raise it (`ulimit -n 5000`, or the hard limit in "
        "/etc/security/limits.conf), or use fewer --workers",
    ]


def test_a_group_salted_hash_is_derived_once(monkeypatch):
    """Hosts set up together share a salt: a group's setup --password-stdin derives it once."""
    from tasks.ops import password

    calls = []
    real = password._derive
    monkeypatch.setattr(password, "_derive", lambda pw, salted: calls.append(salted) or real(pw, salted))
    first = password.fresh_hash("fleet horse")
    salted = first.rsplit("$", 1)[0]
    assert {password.hash_password("fleet horse", salted) for _ in range(5)} == {first}
    assert calls.count(salted) == 1


def _route(tmp_path):
    from tasks.ssh import master

    (tmp_path / "ssh_config").write_text("")
    conn = Connection("login.example", user="ana", config=Config(runtime_ssh_path=str(tmp_path / "ssh_config")))
    return master.Route(conn, str(tmp_path / "sock"), 600)


@pytest.mark.parametrize("said, prompted, expected", [
    ("ana@login: Permission denied (keyboard-interactive).", True, "the server did not accept the answer to its prompt"),
    ("ana@login: Permission denied (publickey,password).", True, "the server did not accept the answer to its prompt"),
    ("ana@login: Permission denied (keyboard-interactive).", False, "the host asks for interactive authentication"),
    ("ana@login: Permission denied (publickey,password).", False, "authentication failed for login.example"),
    ("ana@login: Permission denied (publickey).", True, "authentication failed for login.example"),
    ("Host key verification failed.", True, "unknown host key for login.example"),
    ("@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nThe fingerprint for the ED25519 key sent by the remote "
     "host is\nSHA256:abcDEF+/123.\nOffending ED25519 key in /home/ana/.ssh/known_hosts:7\n  remove with:\n"
     "Host key for login.example has changed and you have requested strict checking.\nHost key verification failed.",
     True, "the host key of login.example has CHANGED (SHA256:abcDEF+/123; known_hosts says otherwise at "
           "/home/ana/.ssh/known_hosts:7); this may be an impostor. Check the new key with the host's administrator; "
           "if the change is expected, remove the old line: ssh-keygen -f /home/ana/.ssh/known_hosts -R login.example"),
    ("ssh: Could not resolve hostname login.example: Name or service not known", True, "cannot resolve host name"),
    ("ssh: connect to host login.example port 22: Connection refused", True, "connection refused by login.example"),
])
def test_a_master_that_failed_says_why_in_one_line(tmp_path, said, prompted, expected):
    from tasks.errors import AuthError

    route = _route(tmp_path)
    error = route._failure("login", [said], prompted)
    assert error.message.startswith(expected) and "\n" not in error.message
    # a refused login is not asked again in this run; a network failure may be retried
    assert isinstance(error, AuthError) == ("Permission denied" in said)
    assert bool(route.refused) == ("Permission denied" in said and prompted)


def test_ssh_config_includes_are_followed_to_find_a_controlpath(tmp_path):
    """A ControlPath in an Included file (Debian's ssh_config includes ssh_config.d/*.conf) counts;
    without one anywhere, no `ssh -G` is run for the hosts."""
    from tasks.ssh import sshconfig

    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "mux.conf").write_text("Host *\n  ControlPath ~/.ssh/cm-%C\n")
    main = tmp_path / "config"
    main.write_text(f"Include {tmp_path}/conf.d/*.conf\nHost x\n  User ana\n")
    conn = Connection("x", config=Config(runtime_ssh_path=str(main)))
    assert sshconfig._config_files(conn) == [str(main), str(tmp_path / "conf.d" / "mux.conf")]
    assert sshconfig._config_mentions_controlpath(conn)
    plain = tmp_path / "plain"
    plain.write_text("Host x\n  User ana\n")
    assert not sshconfig._config_mentions_controlpath(Connection("x", config=Config(runtime_ssh_path=str(plain))))


def test_control_sockets_go_to_a_private_directory_short_enough(monkeypatch):
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from tasks.ssh import master

    short = Path(tempfile.mkdtemp(prefix="fj"))  # pytest's tmp_path is too long for a socket's
    try:
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(short / "run"))
        assert master.control_dir() == str(short / "run" / "fabjupyter" / "ssh")
        assert (short / "run" / "fabjupyter" / "ssh").stat().st_mode & 0o777 == 0o700
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(short / ("x" * 90)))
        monkeypatch.setenv("XDG_CACHE_HOME", str(short / ("y" * 90)))
        assert master.control_dir() == f"/tmp/fabjupyter-ssh-{os.getuid()}"
    finally:
        shutil.rmtree(short)


def test_an_ssh_that_did_not_become_a_master_is_ended():
    """ssh -N -f that could not become a master goes to the background as a plain session that
    nothing would end: it is found by its exact command line and ended (and nothing else is)."""
    from tasks.ssh.master import _end_strays

    argv = ["sh", "-c", "sleep 1000", "fj-stray-test"]
    stray = subprocess.Popen(argv)
    other = subprocess.Popen(["sh", "-c", "sleep 1000", "fj-stray-other"])
    try:
        _end_strays(argv)
        assert stray.wait(5) == -15
        assert other.poll() is None
    finally:
        for p in (stray, other):
            p.kill()
            p.wait()


def test_records_updated_by_many_runs_at_once_keep_every_update(tmp_path):
    """Runs at the same time (a group's tunnels, cron) update one record, each its own keys: the
    read-merge-write is locked, so none loses another's update, and a reader never sees half a file."""
    record = tmp_path / "fabjupyter" / "last-seen.json"
    script = ("import sys\nfrom tasks.localfiles import update_record\n"
              "for i in range(25):\n    update_record(sys.argv[1], {f'{sys.argv[2]}-{i}': i})\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(record), f"run{n}"], cwd=ROOT) for n in range(8)]
    for proc in procs:
        assert proc.wait(120) == 0
    from tasks.localfiles import read_record

    got = read_record(record)
    assert set(got) == {f"run{n}-{i}" for n in range(8) for i in range(25)}, sorted(set(got))[:5]
    assert sorted(p.name for p in record.parent.iterdir()) == ["last-seen.json", "last-seen.json.lock"]


def test_every_list_of_launchers_names_every_launcher():
    """The launcher table is the one source: the agent's schedulers are in it, and each message
    and help text that lists launchers names all of them (a "nohup or tmux" left behind fails)."""
    from tasks.remote import schedulers
    from tasks.hosts.inventory import LAUNCHERS, check_setting, launcher_words
    from tasks.hosts.options import LAUNCHER_HELP, RESTART_LAUNCHER_HELP
    from tasks.protocol import ERRORS

    assert {"nohup", "tmux"} | set(schedulers.SCHEDULERS) == set(LAUNCHERS)
    texts = {
        "bad_launcher": ERRORS["bad_launcher"].format(detail="screen"),
        "LAUNCHER_HELP": LAUNCHER_HELP,
        "RESTART_LAUNCHER_HELP": RESTART_LAUNCHER_HELP,
        "launcher_words": launcher_words(),
    }
    with pytest.raises(UserError) as refused:
        check_setting("launcher", "screen", "--launcher")
    texts["a wrong --launcher"] = str(refused.value)
    # and the docs (generated by docs/generate.py): the example hosts.yaml's entry for it (its
    # line and the lines that continue it), the tasks reference's setup row, the settings reference
    lines = (ROOT / "hosts.yaml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#   launcher:"))
    entry = [lines[start]] + [line for line in itertools.takewhile(lambda line: line.startswith("#    "), lines[start + 1:])]
    texts["hosts.yaml"] = " ".join(entry)
    tasks_md = (ROOT / "docs/reference/tasks.md").read_text().split("\n## ")
    setup_md = next(section for section in tasks_md if section.startswith("setup\n"))
    texts["tasks.md setup row"] = next(line for line in setup_md.splitlines() if "--launcher=" in line)
    settings_md = (ROOT / "docs/reference/settings.md").read_text()
    texts["settings.md launcher row"] = next(line for line in settings_md.splitlines() if line.startswith("| [`launcher`]"))
    texts["settings.md launcher"] = settings_md.split("\n## launcher\n", 1)[1].split("\n## ", 1)[0]
    for what, text in texts.items():
        missing = [name for name in LAUNCHERS if not re.search(rf"\b{name}\b", text)]
        assert not missing, f"{what} does not name {missing}: {text}"
    assert launcher_words() == "nohup, tmux, slurm, sge or pbs"


def test_start_up_loads_no_certificate_code_and_leaves_the_collector_on():
    """A run that makes no certificate does not pay for cryptography's x509 (cert.py imports it
    where it is used), and the collection's import leaves the garbage collector as it found it,
    with the import-time objects frozen (tasks/__init__.py)."""
    probe = ("import gc, sys; import tasks.cli; "
             "print('cryptography.x509' in sys.modules, 'urllib.request' in sys.modules, 'tarfile' in sys.modules, "
             "gc.isenabled(), gc.get_freeze_count() > 10000)")
    r = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["False", "False", "False", "True", "True"], r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-c", "import gc; gc.disable(); import tasks; print(gc.isenabled())"], cwd=ROOT,
                       capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["False"], "importing the collection turned on a collector its importer had turned off"
    from tasks.ops import cert

    pem, _key = cert.generate(["example.org"], 1)  # and the certificate code still finds what it imports
    assert cert.fingerprint(cert.load_pair(pem, _key, "test")).startswith("SHA256:")


def test_the_version_is_looked_up_when_printed():
    from tasks.cli import program

    r = subprocess.run([sys.executable, "-c", "from tasks.cli import main; main()", "--version"], cwd=ROOT, capture_output=True,
                       text=True, check=True)
    assert r.stdout.splitlines()[0] == f"fabjupyter {program.version}"
    assert program.version not in ("", "unknown")


@pytest.mark.parametrize("record, words, spec, url", [
    ({"where": "/home/ana/.fabjupyter/jupyter.sock", "mode": "ssh", "address": None},
     "the Unix socket /home/ana/.fabjupyter/jupyter.sock on the host",
     "127.0.0.1:9000:/home/ana/.fabjupyter/jupyter.sock", "http://localhost:9000/"),
    ({"where": 8890, "mode": "ssh", "address": None}, "port 8890 on the host", "127.0.0.1:9000:127.0.0.1:8890",
     "http://localhost:9000/"),
    ({"where": 8890, "mode": "public", "address": None}, "port 8890 on the host (public mode, HTTPS)",
     "127.0.0.1:9000:127.0.0.1:8890", "https://localhost:9000/"),
    ({"where": 8890, "mode": "ssh", "address": "node1"}, "node1:8890 (a new job)", "127.0.0.1:9000:node1:8890",
     "http://localhost:9000/"),
])
def test_where_a_server_listens_says_itself(record, words, spec, url):
    from tasks.protocol.where import Where

    where = Where.from_record(record)
    assert (where.words, where.forward_spec(9000), where.url(9000)) == (words, spec, url)
    assert where.record() == record and where.socket == isinstance(record["where"], str)


@pytest.mark.parametrize("entry", [None, {}, {"where": True, "mode": "ssh", "address": None},
                                   {"where": 8890, "mode": "other", "address": None},
                                   {"where": 8890, "mode": "ssh", "address": 3}, {"where": [1], "mode": "ssh", "address": None}])
def test_a_last_seen_entry_that_is_not_one_is_ignored(entry):
    from tasks.protocol.where import Where

    assert Where.from_record(entry) is None


def test_a_forward_points_to_the_same_place_whatever_the_mode_is_called():
    from types import SimpleNamespace

    from tasks.forwards.forward import Tunnel
    from tasks.protocol.where import Where

    tun = Tunnel(9000, Where(8890, "ssh", None), lambda spec, heard: SimpleNamespace(spec=spec, close=lambda: None))
    try:
        assert tun.carrier.spec == "127.0.0.1:9000:127.0.0.1:8890"
        assert tun.points_to(Where(8890, None, None)) and not tun.points_to(Where(8890, "public", None))
        assert not tun.points_to(Where(8891)) and not tun.points_to(Where(8890, address="node1"))
    finally:
        tun.close()


@pytest.mark.parametrize("rows, lines", [
    ([("host", "outcome", "URL or error"), ("a", "ok", ""), ("bbbb", "FAILED", "refused")],
     ["host  outcome  URL or error", "a     ok", "bbbb  FAILED   refused"]),
    ([("host", "URL"), ("web1", "http://localhost:8888/")], ["host  URL", "web1  http://localhost:8888/"]),
    ([("name", "state", "pid"), ("default", "running", "12"), ("x", "stopped", "")],
     ["name     state    pid", "default  running  12", "x        stopped"]),
])
def test_one_table_for_every_summary(rows, lines):
    from tasks.report import table

    assert table(rows) == lines


def test_the_pool_driver_hands_back_every_result_and_user_error():
    from tasks.hosts.fleet import in_parallel

    def work(n):
        if n % 3 == 0:
            raise UserError(f"no {n}")
        return n * n

    got = {n: (result, str(error) if error else None) for n, result, error in in_parallel(range(7), work, 3)}
    assert got == {0: (None, "no 0"), 1: (1, None), 2: (4, None), 3: (None, "no 3"), 4: (16, None), 5: (25, None),
                   6: (None, "no 6")}
    with pytest.raises(ZeroDivisionError):  # a bug is not a host's failure
        list(in_parallel([1, 0], lambda n: 1 // n, 2))


def test_one_context_per_run_is_what_the_modules_share(monkeypatch):
    from types import SimpleNamespace

    from tasks import context
    from tasks.ops import server
    from tasks.protocol.where import Where

    monkeypatch.setattr(context, "_run", context.RunContext())
    t = SimpleNamespace(conn=SimpleNamespace(user="ana", host="login", port=22), name="default")
    assert server.seen_running(t) is None
    server.remember(t, SimpleNamespace(where="/s.sock", mode=None, address=None))
    assert server.seen_running(t) == Where("/s.sock", "ssh", None) == context.run().seen[("ana", "login", 22, "default")]


@pytest.mark.parametrize("text, expected", [
    ("control_master: no", "no"),  # YAML reads a bare no as false: the same word
    ("control_master: 'no'", "no"),
    ("control_master: auto", "auto"),
    ("control_master: yes", "auto"),
    ("{}", "auto"),
])
def test_control_master_reads_yaml_booleans_as_its_words(tmp_path, text, expected):
    path = tmp_path / "hosts.yaml"
    path.write_text(f"defaults:\n  {text}\n" if text != "{}" else "defaults: {}\n")
    assert inventory.load(str(path)).settings_for("h").control_master == expected


def test_control_master_refuses_other_words(tmp_path):
    path = tmp_path / "hosts.yaml"
    path.write_text("defaults:\n  control_master: sometimes\n")
    with pytest.raises(UserError) as e:
        inventory.load(str(path))
    assert "control_master: must be one of auto, no (got 'sometimes')" in str(e.value)
