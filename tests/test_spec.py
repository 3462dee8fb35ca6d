"""The action table (tasks/remote/spec.py): requests checked against it (tables of request ->
request with defaults, or error), the client's tables drawn from it, what agent_script sends
passing it, and every error code the remote side can raise worded on the client."""

import ast
import json
import re
import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks import protocol
from tasks.ops.config import wanted
from tasks.hosts.inventory import Settings
from tasks.remote import actions, spec
from tasks.remote.spec import BadRequest, check_request
from tasks.ops.server import launch_request

from .oldpython import problems

REMOTE = Path(spec.__file__).parent


def sent(action, **fields):
    """A request as the agent receives it: the envelope agent_script adds, and FIELDS."""
    return dict({"v": 1, "action": action}, **fields)


@pytest.mark.parametrize("action, request_, expected", [
    ("status", sent("status"), {"instance": "default", "dry_run": False}),
    ("list", sent("list", instance="lab"), {"instance": "lab", "dry_run": False}),
    ("logs", sent("logs"), {"instance": "default", "dry_run": False, "lines": 50}),
    ("logs", sent("logs", lines=5), {"instance": "default", "dry_run": False, "lines": 5}),
    ("stop", sent("stop"), {"instance": "default", "dry_run": False, "timeout": 60}),
    ("stop", sent("stop", timeout=None), {"instance": "default", "dry_run": False, "timeout": 60}),  # null: the default
    ("password", sent("password", password_hash=None, dry_run=True),
     {"instance": "default", "dry_run": True, "timeout": 60, "password_hash": None}),
    ("watch", sent("watch", port=8890),
     {"instance": "default", "dry_run": False, "port": 8890, "address": None}),
    ("start", sent("start"),
     {"instance": "default", "dry_run": False, "fast_start": False, "timeout": 60, "launcher": "nohup", "port": 8888, "job_options": [], "queue_timeout": 0}),
    ("restart", sent("restart", launcher="", job_options=["--time=1:00:00"]),
     {"instance": "default", "dry_run": False, "fast_start": False, "timeout": 60, "launcher": "", "port": 8888, "job_options": ["--time=1:00:00"],
      "queue_timeout": 0}),
    ("restart", sent("restart"), {"launcher": ""}),  # absent: the launcher it runs with
    ("install", sent("install", probe=True, install=True),
     {"instance": "default", "dry_run": False, "fast_start": False, "timeout": 60,
      "settings_sh": None, "install": True, "probe": True, "spec": ["jupyterlab"], "source": "index", "upgrade": False}),
    ("cert", sent("cert", cert_digest=None, key_digest=None, cert="C", key="K", push=True),
     {"instance": "default", "dry_run": False, "cert_digest": None, "key_digest": None, "new_instance": False,
      "push": True, "cert": "C", "key": "K"}),
    ("setup", sent("setup", settings_sh="FJ_ROOT='~'\n"),
     {"settings_sh": "FJ_ROOT='~'\n", "password_hash": None, "install": False, "salted": False, "upgraded": False}),
])
def test_a_request_gets_its_defaults(action, request_, expected):
    checked = check_request(action, request_)
    assert {k: checked[k] for k in expected} == expected
    assert set(checked) == set(spec.ACTIONS[action].fields)  # every field, given or its default
    assert checked["v"] == 1 and checked["action"] == action


@pytest.mark.parametrize("action, request_, code, detail", [
    ("serve", sent("status"), "bad_action", "serve"),
    (None, {}, "bad_action", "None"),
    ("status", [], "bad_request", "expected an object, got []"),
    ("status", sent("status", x="$(boom)"), "bad_request", "unknown field 'x' for status"),
    ("password", sent("password", launcher="nohup"), "bad_request", "unknown field 'launcher' for password"),
    ("status", {"action": "status"}, "bad_request", "field 'v': missing"),
    ("status", sent("stop", timeout=60), "bad_request", "unknown field 'timeout' for status"),
    ("status", dict(sent("status"), action="stop"), "bad_request", "field 'action': 'stop', not 'status'"),
    ("start", sent("start", run_sh="#!/bin/sh"), "bad_request", "unknown field 'run_sh' for start"),
    ("setup", sent("setup"), "bad_request", "field 'settings_sh': missing"),
    ("watch", sent("watch", address="node1"), "bad_request", "field 'port': missing"),
    ("start", sent("start", port="8888"), "bad_request", "field 'port': expected a number, got '8888'"),
    ("start", sent("start", port=True), "bad_request", "field 'port': expected a number, got True"),
    ("start", sent("start", timeout=1.5), "bad_request", "field 'timeout': expected a number, got 1.5"),
    ("stop", sent("stop", dry_run=1), "bad_request", "field 'dry_run': expected true or false, got 1"),
    ("start", sent("start", job_options="--time=1:00"), "bad_request", "field 'job_options': expected a list of strings, got '--time=1:00'"),
    ("start", sent("start", job_options=[1]), "bad_request", "field 'job_options': expected a list of strings, got [1]"),
    ("status", sent("status", instance=7), "bad_request", "field 'instance': expected a string, got 7"),
    ("install", sent("install", source="there"), "bad_request", "field 'source': expected one of index, here, got 'there'"),
    ("password", sent("password", password_hash=5), "bad_request", "field 'password_hash': expected a string, got 5"),
])
def test_a_bad_request_is_an_error_with_a_code(action, request_, code, detail):
    with pytest.raises(BadRequest) as refused:
        check_request(action, request_)
    assert (refused.value.code, refused.value.detail) == (code, detail)


def test_the_callers_part_alone():
    """added=False (the client, before agent_script adds the envelope): the envelope is neither
    needed nor allowed, and is not in the result."""
    assert check_request("start", {"port": 9000}, added=False)["port"] == 9000
    assert "v" not in check_request("start", {}, added=False)
    for field in ("v", "action"):
        with pytest.raises(BadRequest) as refused:
            check_request("start", {field: "x"}, added=False)
        assert refused.value.detail == f"unknown field {field!r} for start"


def test_a_default_list_is_not_shared():
    first = check_request("install", sent("install"))
    first["spec"].append("numpy")
    assert check_request("install", sent("install"))["spec"] == ["jupyterlab"]
    given = ["--time=1:00"]
    assert check_request("start", sent("start", job_options=given))["job_options"] is not given


def test_the_client_reads_the_table():
    """The client's tables are the action table's, unchanged in content."""
    assert protocol.NEEDS_JUPYTER == ("setup", "config", "start", "restart", "install")
    assert protocol.LAUNCHING == ("setup", "start", "restart")
    assert {name: kind.__name__ for name, kind in protocol.REPLIES.items()} == {
        "setup": "SetupReply", "config": "WriteReply", "password": "WriteReply", "start": "StartReply",
        "restart": "StartReply", "stop": "StopReply", "status": "StatusReply", "logs": "LogsReply", "cert": "CertReply",
        "list": "ListReply", "install": "InstallReply", "watch": "WatchReply"}


def test_the_agent_agrees_with_the_table():
    """The agent has a function for each action of the table and no other, and every field it
    reads from a request is one the table knows."""
    assert set(actions.ACTIONS) == set(spec.ACTIONS)
    known = {name for a in spec.ACTION_LIST for name in a.fields}
    read = set()
    for path in REMOTE.glob("*.py"):
        read |= set(re.findall(r"""\breq(?:uest)?(?:\.get\(|\[)["'](\w+)["']""", path.read_text()))
    assert "timeout" in read and "cert_digest" in read  # the scan finds them
    assert read <= known, read - known


def requests_the_client_sends():
    """(action, request, settings_sh) as the client's tasks call run_agent: the same builders."""
    s = Settings(launcher="slurm", job_options=("--time=1:00:00",), queue_timeout=300, fast_start=True)
    t = SimpleNamespace(settings=s)
    setup = dict(wanted(s), dry_run=False, password_hash="sha256:x", salted=True, upgraded=True)
    settings_sh = wanted(s)["settings_sh"]
    return [
        ("setup", setup, None), ("config", dict(wanted(s), dry_run=True), None),
        ("install", {"probe": True, "install": True}, settings_sh),
        ("install", {"spec": ["jupyterlab"], "source": "here", "upgrade": False, "install": True}, settings_sh),
        ("password", {"password_hash": None, "dry_run": True}, None), ("password", {"password_hash": "sha256:x"}, None),
        ("start", launch_request(t, True), None), ("restart", dict(launch_request(t), launcher=""), None),
        ("stop", {"dry_run": False}, None), ("stop", {"timeout": 60}, None), ("status", {}, None), ("list", {}, None),
        ("logs", {"lines": 50}, None), ("watch", {"port": 8888, "address": None}, None),
        ("cert", {"cert_digest": "a", "key_digest": "b", "new_instance": False}, None),
        ("cert", {"cert_digest": "a", "key_digest": "b", "cert": "C", "key": "K", "push": True, "new_instance": True}, None),
    ]


def received(script):
    """The request inside an agent script, as the agent's json.loads gets it."""
    assignments = shlex.split(script.split(protocol.BOOTSTRAP)[0])
    payload = next(a for a in assignments if a.startswith("FJ_AGENT_PY=")).split("=", 1)[1]
    call = ast.parse(payload.rstrip().splitlines()[-1]).body[0].value  # sys.exit(main(json.loads('...')))
    return json.loads(ast.literal_eval(call.args[0].args[0].args[0]))


@pytest.mark.parametrize("action, request_, settings_sh", requests_the_client_sends())
def test_what_the_client_sends_passes_the_table(action, request_, settings_sh):
    """Each request as the client builds it passes its own check, and the whole request that
    agent_script puts in the script (the envelope added) passes the agent's."""
    caller = dict(request_, instance="lab")
    check_request(action, dict(caller, settings_sh=settings_sh) if settings_sh else caller, added=False)
    got = received(protocol.agent_script(action, caller, settings_sh))
    assert got["action"] == action and got["instance"] == "lab"
    check_request(action, got)


def remote_codes():
    """Every error code the remote side can raise: Fail(...)/BadRequest(...) with a literal code
    in its Python, the bootstrap's `fj_agent CODE` and the JSON errors it writes itself."""
    codes = set()
    for path in REMOTE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                    and getattr(node.func, "id", getattr(node.func, "attr", None)) in ("Fail", "BadRequest") \
                    and isinstance(node.args[0].value, str):
                codes.add(node.args[0].value)
    bootstrap = (REMOTE / "bootstrap.sh").read_text()
    codes |= set(re.findall(r"\bfj_agent\s+([a-z_]+)", bootstrap))
    codes |= set(re.findall(r'"code":\s*"([a-z_]+)"', bootstrap))
    return codes


def test_every_error_code_has_its_wording():
    codes = remote_codes()
    # the scan finds each kind of source: the agent's Fail, the table's, the bootstrap's two forms
    assert {"no_free_port", "bad_action", "bad_request", "not_configured", "no_python", "no_python_agent"} <= codes
    assert len(codes) >= 30, sorted(codes)
    assert sorted(codes - set(protocol.ERRORS)) == []


def test_the_table_is_python_3_6():
    assert problems((REMOTE / "spec.py").read_text(), (3, 6)) == []


def test_run_agent_refuses_a_bad_request_before_connecting():
    """A request the table refuses is the client's bug: an exception, and nothing sent (this
    target has no connection at all)."""
    t = SimpleNamespace(name="default")
    for action, request_, detail in [("status", {"bogus": 1}, "unknown field 'bogus' for status"),
                                     ("start", {"port": "8888"}, "field 'port': expected a number, got '8888'"),
                                     ("config", {}, "field 'settings_sh': missing")]:
        with pytest.raises(BadRequest) as refused:
            protocol.run_agent(t, action, **request_)
        assert refused.value.detail == detail


@pytest.mark.parametrize("code", sorted(protocol.ERRORS))
def test_every_wording_renders(code):
    """Each sentence formats with what RemoteError gives it (a stray {name} would fail only on
    the host that hits it)."""
    t = SimpleNamespace(host="example", named=" --name lab", label="example")
    error = protocol.RemoteError(t, protocol.ErrorReply(code, "300 42 PENDING", ("a log line",)), "stderr line\n")
    assert error.message and "{" not in error.message
