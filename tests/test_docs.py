"""The documentation the code carries: every task, option, setting and error code has its words,
the generated pages (docs/generate.py) are up to date, and what the settings reference says of
restarts is what the agent's plan does. Fast: no host, no sshd."""

import importlib.util
import subprocess
import sys
from dataclasses import fields, replace

import pytest

from tasks import protocol
from tasks.hosts.inventory import Inventory, check_setting
from tasks.hosts.settings import BATCH_LAUNCHERS, SETTING_KEYS, Settings, documented
from tasks.ops.config import settings_sh
from tasks.protocol.advice import ADVICE, CLIENT, DETAIL, NOTES
from tasks.remote.files import fingerprint
from tasks.remote.kinds import config_for
from tasks.remote.legacy import settings_from_sh
from tasks.remote.plan import server_step

from .conftest import ROOT
from .test_spec import remote_codes


def load_generate():
    spec = importlib.util.spec_from_file_location("generate", ROOT / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = load_generate()
NS = generate.collection()


def test_every_task_and_option_has_its_help():
    assert len(NS.task_names) >= 11
    for name in NS.task_names:
        task = NS[name]
        assert generate.docstring(task).strip(), f"task {name} has no docstring (fab --list shows its first line)"
        for argument in generate.arguments(task):
            assert (argument.help or "").strip(), f"{name} --{argument.name}: no help text"


REQUIRED = ("what", "kind", "example", "why")


@pytest.mark.parametrize("f", fields(Settings), ids=lambda f: f.name)
def test_every_setting_has_its_documentation(f):
    meta = f.metadata
    missing = [key for key in REQUIRED if not str(meta.get(key, "")).strip()]
    assert not missing, f"{f.name}: no {missing} in its metadata (settings.py, setting())"
    assert isinstance(meta.get("restarts"), bool), f"{f.name}: restarts must be True or False"
    assert not meta["what"].endswith("."), f"{f.name}: `what` ends help texts: no final period"
    # the example is a value hosts.yaml accepts
    import yaml

    check_setting(f.name, yaml.safe_load(f"{f.name}: {meta['example']}")[f.name], f"{f.name} example")


def test_the_options_a_setting_names_are_the_options_that_set_it():
    """The metadata names each flag that sets the setting, and no flag that does not exist."""
    flags = generate.option_tasks()
    named = {}
    for f in fields(Settings):
        for flag in filter(None, f.metadata["option"].split(", ")):
            assert flag in flags, f"{f.name}: option {flag} is no task's option"
            named[flag] = f.name
    for name in NS.task_names:
        for _, _, _, setting, argument in generate.task_options(NS[name]):
            if setting:
                flag = "--" + argument.name.replace("_", "-")
                assert named.get(flag) == setting, f"{name} {flag} sets {setting}, whose metadata does not name it"


# help written in its task rather than from the setting's words (restart's --launcher keeps the
# launcher it runs with)
OWN_HELP = {("restart", "launcher")}


def test_the_help_of_an_option_that_sets_a_setting_is_the_settings_words():
    for name in NS.task_names:
        for _, _, help_text, setting, argument in generate.task_options(NS[name]):
            if not setting or argument.name == "tcp" or (name, setting) in OWN_HELP:
                continue
            assert help_text.startswith(documented(setting)["what"]), f"{name} --{argument.name}: {help_text}"


def test_every_error_code_has_its_advice():
    assert sorted(set(protocol.ERRORS) - set(ADVICE)) == [], "ERRORS codes without an entry in advice.py ADVICE"
    assert sorted(set(ADVICE) - set(protocol.ERRORS)) == [], "ADVICE entries for codes ERRORS does not have"
    assert sorted(remote_codes() - set(ADVICE)) == [], "codes the host can send without advice"
    assert set(DETAIL) <= set(protocol.ERRORS)
    for code, text in ADVICE.items():
        assert text.strip().endswith("."), code


def test_every_placeholder_of_the_page_is_filled():
    for code in protocol.ERRORS:
        message = generate.error_message(code)
        assert "{" not in message and "}" not in message, message
        assert generate.title(message), code


def test_the_client_messages_are_the_codes_own_words():
    """Each entry keyed by a message this machine prints: that text is still in the code."""
    sources = "\n".join(path.read_text() for path in (ROOT / "tasks").rglob("*.py") if path.name != "advice.py")
    anchors = set()
    for entry in CLIENT:
        assert entry["find"] in entry["message"], entry["anchor"]
        assert entry["find"] in sources, f"{entry['find']!r} is no longer in the code: reword {entry['anchor']}"
        assert entry["title"] and entry["advice"]
        anchors.add(entry["anchor"])
    anchors |= {entry["anchor"] for entry in NOTES}
    assert len(anchors) == len(CLIENT) + len(NOTES)
    assert not anchors & set(protocol.ERRORS)


def test_the_generated_pages_are_up_to_date():
    r = subprocess.run([sys.executable, str(ROOT / "docs" / "generate.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, f"run `python docs/generate.py` and commit what it writes:\n{r.stdout}{r.stderr}"
    page = (ROOT / "docs" / "troubleshooting.md").read_text()
    assert all(f"{{#{code}}}" in page for code in protocol.ERRORS)
    settings = (ROOT / "docs" / "reference" / "settings.md").read_text()
    assert all(f"\n## {key}\n" in settings for key in SETTING_KEYS)


def test_check_names_a_stale_page_and_writes_nothing(tmp_path, monkeypatch, capsys):
    page = tmp_path / "page.md"
    page.write_text("old")
    monkeypatch.setattr(generate, "ROOT", tmp_path)
    monkeypatch.setattr(generate, "outputs", lambda: {page: "new"})
    assert generate.main(["--check"]) == 1
    assert page.read_text() == "old" and "page.md: out of date" in capsys.readouterr().out
    assert generate.main([]) == 0 and page.read_text() == "new"
    assert generate.main(["--check"]) == 0


def test_hosts_yaml_has_every_setting_in_its_block():
    text = (ROOT / "hosts.yaml").read_text()
    block = text[text.index(generate.BLOCK_START):text.index(generate.BLOCK_END)]
    assert all(f"\n#   {key}: " in block for key in SETTING_KEYS)


# --- "restarts": what setup's plan does when one setting changes ---

# a value other than each base's for every setting (a new setting needs one here)
OTHER = {
    "launcher": "tmux", "port": 9999, "local_port": 9999, "root_dir": "~/work", "jupyter": ("jupyter", "notebook"),
    "activate": "source ~/venv/bin/activate", "start_timeout": 120, "mode": "public", "cert_names": ("a.example.org",),
    "socket": None, "fast_start": True, "name": "lab", "idle_timeout": 3600, "job_options": ("--partition=gpu",),
    "queue_timeout": 600, "install": True, "install_spec": ("jupyterlab==4.*",), "install_from": "here", "multiplex": True, "control_master": "no",
    "container": "~/images/lab.sif", "container_runtime": "podman", "container_options": ("--bind", "/scratch"), "gpus": True,
}
# restarts that the plan does not show: cert_names makes a new certificate (whose files the
# fingerprint covers) only in public mode, when a name is missing from the current one
NOT_IN_THE_PLAN = {"cert_names"}


def server_wanted(s):
    """What actions.act_setup hands server_step for these settings (kind server2, no password, no TLS files)."""
    settings = settings_from_sh(settings_sh(s))
    return {
        "fingerprint": fingerprint(settings, "server2", config_for("server2", settings), None, None),
        "launcher": s.launcher, "requested_port": None if settings.get("sock") == "1" else s.port,
        "version": "2.0", "upgraded": False, "job_options": list(s.job_options) if s.launcher in BATCH_LAUNCHERS else None,
    }


def replaces(base, key):
    value = OTHER[key]
    if key == "socket":
        value = not base.socket
    recorded = server_wanted(base)
    return server_step(recorded, True, server_wanted(replace(base, **{key: value}))) == "replace"


def bases():
    """A socket in ssh mode (the default), a TCP port, a batch job, and a container."""
    inv = Inventory("hosts.yaml")
    return [inv.settings_for("h"), inv.settings_for("h", {"socket": False}),
            inv.settings_for("h", {"launcher": BATCH_LAUNCHERS[0]}), inv.settings_for("h", {"container": "/srv/lab.sif"})]


def test_every_setting_has_another_value_to_try():
    assert set(OTHER) == set(SETTING_KEYS)


@pytest.mark.parametrize("key", SETTING_KEYS)
def test_restarts_is_what_the_plan_does(key):
    """A setting marked restarts: setup replaces the running server for a new value, in at least
    one of the bases; one marked no: in none of them."""
    replaced = [base for base in bases() if replaces(base, key)]
    if documented(key)["restarts"] and key not in NOT_IN_THE_PLAN:
        assert replaced, f"{key} is marked restarts, but the plan keeps the server for a new value"
    if not documented(key)["restarts"]:
        assert not replaced, f"{key} is marked no restart, but the plan replaces the server for a new value"


def test_the_plan_check_can_tell():
    """The comparison above sees a change where there is one, and none where there is none."""
    base = bases()[0]
    assert server_step(server_wanted(base), True, server_wanted(base)) == "keep"
    assert replaces(base, "activate") and not replaces(base, "port")  # a socket has no port
    assert replaces(bases()[1], "port") and replaces(bases()[2], "job_options") and not replaces(bases()[1], "job_options")
