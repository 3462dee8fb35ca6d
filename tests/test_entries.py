"""This tool's own ssh_config file, without a host: the entries written for a plain host, a named
instance, a socket, a batch job (and its login node), an ended job, hosts gone from hosts.yaml,
and values refused before they could become directives. OpenSSH's own parser (`ssh -G`, which
connects to nothing) reads every file written here."""

import json
import os
import subprocess
import stat

import pytest
from fabric import Config, Connection

from tasks.hosts import inventory
from tasks.hosts.targets import _make_target
from tasks.ops.ssh_entry import Seen, write
from tasks.protocol.where import Where
from tasks.ssh import entries

SOCKET = "/home/ana/.fabjupyter/default/run/jupyter.sock"


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A machine with an ssh_config given with -S (gpu, a host with a key and known_hosts of its
    own) and a hosts.yaml; targets(name, **settings) makes a Target as -H NAME would."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    ssh_config = tmp_path / "ssh config"  # a space in the path: Include quotes it
    ssh_config.write_text(
        "Host gpu\n  HostName 10.9.8.7\n  Port 2200\n  User ana\n  IdentityFile \"/keys/id gpu\"\n"
        "  UserKnownHostsFile /keys/known_hosts\n  StrictHostKeyChecking yes\n  HostKeyAlias gpu-key\n"
        "Host *\n  User nobody\n"
    )
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text("hosts:\n  login1:\n    host: 10.1.1.1\n    user: bob\n    launcher: slurm\n  other:\n    host: 10.2.2.2\n")

    class Site:
        path = tmp_path / "xdg" / "fabjupyter" / "ssh_config"
        hosts_file = hosts

        @staticmethod
        def target(host, **overrides):
            config = Config(overrides={"timeouts": {"connect": 7}})
            config.set_runtime_ssh_path(str(ssh_config))
            config.load_ssh_config()
            return _make_target(Connection(host, config=config), host, inventory.load(str(hosts)), overrides)

        @staticmethod
        def ssh_G(alias):
            r = subprocess.run(["ssh", "-G", "-F", str(Site.path), alias], capture_output=True, text=True, check=True)
            options = {}
            for line in r.stdout.splitlines():
                key, _, value = line.partition(" ")
                options.setdefault(key, []).append(value)
            return options

        ssh_config_path = ssh_config

    return Site


def test_a_plain_host_on_a_socket_is_reached_as_fab_reaches_it(site):
    path, changed, made, _ = write([(site.target("gpu"), Seen(Where(SOCKET)), None)])
    assert changed and path == site.path and made["gpu"].alias == "fabjupyter-gpu"
    g = site.ssh_G("fabjupyter-gpu")
    assert g["hostname"] == ["10.9.8.7"] and g["port"] == ["2200"] and g["user"] == ["ana"]
    assert g["identityfile"][0] == "/keys/id gpu"  # a path with a space, quoted and read back whole
    assert g["userknownhostsfile"] == ["/keys/known_hosts"] and g["hostkeyalias"] == ["gpu-key"]
    assert g["localforward"] == [f"[127.0.0.1]:8888 {SOCKET}"]
    text = site.path.read_text()
    assert f'Match originalhost fabjupyter-gpu\n    Include "{site.ssh_config_path}"' in text
    # the -S file comes after the entry: its `Host *` User does not win over the entry's own
    assert text.index("Host fabjupyter-gpu") < text.index("Include \"")


def test_the_file_is_private_and_a_second_write_changes_nothing(site):
    t = site.target("gpu")
    write([(t, Seen(Where(SOCKET)), None)])
    assert stat.S_IMODE(os.stat(site.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(site.path.parent).st_mode) == 0o700
    before = site.path.read_text()
    assert write([(t, Seen(Where(SOCKET)), None)])[1] is False
    assert site.path.read_text() == before
    assert f"#   Include {site.path}" in before or "#   Include ~/" in before  # the line for ~/.ssh/config


def test_a_named_instance_has_its_own_entry_and_its_own_local_port(site):
    write([(site.target("gpu"), Seen(Where(SOCKET)), None)])
    write([(site.target("gpu", name="lab"), Seen(Where(8890)), None)])
    assert site.ssh_G("fabjupyter-gpu")["localforward"] == [f"[127.0.0.1]:8888 {SOCKET}"]
    assert site.ssh_G("fabjupyter-gpu-lab")["localforward"] == ["[127.0.0.1]:8889 [127.0.0.1]:8890"]
    # stable: the default instance's next write keeps 8888, the instance keeps 8889
    write([(site.target("gpu", name="lab"), Seen(Where(8890)), None)])
    assert site.ssh_G("fabjupyter-gpu-lab")["localforward"] == ["[127.0.0.1]:8889 [127.0.0.1]:8890"]


def test_a_tunnels_own_port_is_the_entrys(site):
    write([(site.target("gpu"), Seen(Where(SOCKET)), 9123)])
    assert site.ssh_G("fabjupyter-gpu")["localforward"] == [f"[127.0.0.1]:9123 {SOCKET}"]


def test_a_batch_job_is_reached_on_its_node_through_the_login_node(site):
    t = site.target("login1")
    write([(t, Seen(Where(8888, "ssh", "10.5.0.3"), batch=True, job_id="42"), None)])
    node = site.ssh_G("fabjupyter-login1")
    assert node["hostname"] == ["10.5.0.3"] and node["port"] == ["22"] and node["user"] == ["bob"]
    assert node["proxyjump"] == ["fabjupyter-login1-login"]
    assert node["localforward"] == ["[127.0.0.1]:8888 [10.5.0.3]:8888"]
    login = site.ssh_G("fabjupyter-login1-login")
    assert login["hostname"] == ["10.1.1.1"] and login["user"] == ["bob"] and "localforward" not in login
    assert "job 42" in site.path.read_text()
    # the job moved: the entry follows it
    write([(t, Seen(Where(8891, "ssh", "10.5.0.9"), batch=True, job_id="43"), None)])
    node = site.ssh_G("fabjupyter-login1")
    assert node["hostname"] == ["10.5.0.9"] and node["localforward"] == ["[127.0.0.1]:8888 [10.5.0.9]:8891"]


def test_an_ended_job_keeps_its_entry_marked_without_a_forward(site):
    t = site.target("login1")
    write([(t, Seen(Where(8888, "ssh", "10.5.0.3"), batch=True, job_id="42"), None)])
    write([(t, Seen(None, batch=True, job_id="42", job_state="TIMEOUT", ended="TIMEOUT"), None)])
    node = site.ssh_G("fabjupyter-login1")
    assert node["hostname"] == ["10.5.0.3"] and "localforward" not in node
    assert "job 42 ended (TIMEOUT)" in site.path.read_text()


def test_a_pending_job_with_no_node_yet_has_no_host_block(site):
    write([(site.target("login1"), Seen(None, batch=True, job_id="7", job_state="PENDING"), None)])
    text = site.path.read_text()
    assert "job 7 is PENDING" in text and "Host fabjupyter-login1" not in text


def test_a_host_not_running_jupyter_has_no_forward(site):
    write([(site.target("gpu"), Seen(None), None)])
    g = site.ssh_G("fabjupyter-gpu")
    assert g["hostname"] == ["10.9.8.7"] and "localforward" not in g


def test_hosts_gone_from_hosts_yaml_lose_their_entries(site):
    write([(site.target("login1"), Seen(Where(8888, "ssh", "10.5.0.3"), batch=True), None)])
    write([(site.target("other"), Seen(Where(SOCKET)), None)])
    write([(site.target("gpu"), Seen(Where(SOCKET)), None)])  # -H gpu: not in hosts.yaml
    site.hosts_file.write_text("hosts:\n  other:\n    host: 10.2.2.2\n")
    write([(site.target("other"), Seen(Where(SOCKET)), None)])
    aliases = [e.alias for e in entries.parse(site.path.read_text())]
    assert aliases == ["fabjupyter-gpu", "fabjupyter-other"]  # login1 and its login node gone


@pytest.mark.parametrize("field, value, said", [
    ("host", "10.9.8.7 ProxyCommand=touch /tmp/pwned", "HostName '10.9.8.7 ProxyCommand=touch /tmp/pwned'"),
    ("host", "10.9.8.7\tProxyCommand=touch /tmp/pwned", "control character"),  # hosts.yaml takes a tab
    ("identity", '/keys/a" ProxyCommand "touch /tmp/pwned', "a quote or a backslash"),
    ("user", "-oProxyCommand=x", "User '-oProxyCommand=x'"),
])
def test_a_hosts_yaml_value_that_would_inject_a_directive_is_refused_and_the_file_is_unchanged(site, field, value, said):
    write([(site.target("gpu"), Seen(Where(SOCKET)), None)])
    before = site.path.read_bytes()
    hosts = {"host": "10.3.3.3", "user": "eve", "identity": "/keys/e", field: value}
    entry = "".join(f"    {k}: {json.dumps(v)}\n" for k, v in hosts.items())  # JSON strings are YAML strings
    site.hosts_file.write_text(f"hosts:\n  evil:\n{entry}")
    with pytest.raises(entries.Refused) as e:
        write([(site.target("evil"), Seen(Where(SOCKET)), None)])
    assert said in str(e.value) and str(e.value).startswith("evil: ") and "\n" not in str(e.value)
    assert site.path.read_bytes() == before


def test_a_line_break_from_the_command_line_is_refused(site):
    """hosts.yaml refuses line breaks itself; `fab -i` and -H values do not pass through it."""
    write([(site.target("gpu"), Seen(Where(SOCKET)), None)])
    before = site.path.read_bytes()
    t = site.target("gpu")
    t.conn.connect_kwargs = {"key_filename": ["/keys/a\nProxyCommand touch /tmp/pwned"]}
    with pytest.raises(entries.Refused, match="line break"):
        write([(t, Seen(Where(SOCKET)), None)])
    t = site.target("gpu")
    t.conn.user = "ana\nProxyCommand touch /tmp/pwned"
    with pytest.raises(entries.Refused, match="line break"):
        write([(t, Seen(Where(SOCKET)), None)])
    assert site.path.read_bytes() == before


def test_a_group_write_skips_only_the_refused_host(site):
    good, bad = site.target("gpu"), site.target("other")
    bad.conn.user = "eve\nProxyCommand x"
    _, _, made, refused = write([(bad, Seen(Where(SOCKET)), None), (good, Seen(Where(SOCKET)), None)], skip_refused=True)
    assert list(made) == ["gpu"] and len(refused) == 1 and refused[0].startswith("other: User ")
    assert [e.alias for e in entries.parse(site.path.read_text())] == ["fabjupyter-gpu"]


def test_checked_words_and_quoting():
    assert entries.quote("/a/b") == "/a/b" and entries.quote("/a b/c") == '"/a b/c"'
    assert entries.quote("/a/#b") == '"/a/#b"'  # unquoted, a word starting with # would end the line
    for bad in ("a\nb", "a\rb", 'a"b', "a'b", "a\\b", ""):
        with pytest.raises(entries.Refused):
            entries.check("IdentityFile", bad, "path")
    for bad in ("gpu 1", "-gpu", "gpu*", "gpu@x"):
        with pytest.raises(entries.Refused):
            entries.check("Host", bad, "alias")
    assert entries.check("ProxyJump", "ana@bastion:2201,[fe80::1]:22", "name")


def test_one_name_one_owner(site):
    """Host gpu's instance login and a batch host gpu's login node would both be fabjupyter-gpu-login."""
    write([(site.target("gpu", name="login"), Seen(Where(SOCKET)), None)])
    with pytest.raises(entries.Refused, match="already the entry of gpu's instance login"):
        write([(site.target("gpu", launcher="slurm", socket=False), Seen(Where(8888, "ssh", "10.5.0.3"), batch=True), None)])


def test_a_tunnel_to_the_same_job_leaves_the_entry_as_setup_wrote_it(site):
    """The tunnel knows the node and port, not the job's id: the entry keeps the id (and the
    file its text, so a tunnel after setup writes nothing)."""
    t = site.target("login1")
    write([(t, Seen(Where(8888, "ssh", "10.5.0.3"), batch=True, job_id="42"), None)])
    assert write([(t, Seen.at(Where(8888, "ssh", "10.5.0.3")), None)])[1] is False
    assert "job 42" in site.path.read_text()


def test_a_batch_host_not_started_yet_has_no_host_block(site):
    write([(site.target("login1"), Seen(None), None)])
    text = site.path.read_text()
    assert "no job runs, no node to reach yet" in text and "Host fabjupyter-login1" not in text


def test_the_entrys_port_stays_unless_a_tunnel_was_told_another(site):
    """A saved IDE URL keeps working: a later write keeps the entry's port even where the
    default changed (not a pinned port); a port given to the tunnel (or pinned) wins."""
    write([(site.target("gpu"), Seen(Where(SOCKET)), None)])
    site.hosts_file.write_text("defaults:\n  local_port: 9000\n")
    write([(site.target("gpu"), Seen(Where(SOCKET)), None)])
    assert site.ssh_G("fabjupyter-gpu")["localforward"] == [f"[127.0.0.1]:8888 {SOCKET}"]
    write([(site.target("gpu"), Seen(Where(SOCKET)), 9100)])
    assert site.ssh_G("fabjupyter-gpu")["localforward"] == [f"[127.0.0.1]:9100 {SOCKET}"]
