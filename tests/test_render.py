"""The one renderer (tasks/ops/render.py): a reply's changes said in the future tense for a dry run
and in the past for a real run, from the same walk. Pure: no host, no SSH."""

import dataclasses

import pytest
from fabric import Connection

from tasks.hosts.inventory import Settings
from tasks.hosts.targets import Target
from tasks.ops.render import PHRASES, cert_lines, config_lines, job_words, said, setup_lines, start_lines, stopped_unrecorded
from tasks.protocol import Change, SetupReply, Status

STATUS = Status(running=True, pid=4242, port=8888, socket=None, launcher="nohup", mode="ssh", started=None, current=True,
                kind="lab", version="JupyterLab 4.6", fast_start=False, stale_pid=None, idle_shutdown=None, has_password=True,
                configured=True, unrecorded=(), busy=None, job_id=None, job_state=None, node=None, time_left=None, address=None,
                ended=None, own_env=False, container=None, container_runtime=None)


def target(name="default"):
    return Target("h", Connection("h"), Settings(name=name), None)


def reply(*changes, unchanged=False, status=STATUS, note=None):
    return SetupReply(ask=None, salt=None, unchanged=unchanged, changes=tuple(Change(w, d, tuple(diff)) for w, d, diff in changes),
                      status=status, note=note, install=None)


def test_every_change_has_a_future_and_a_past():
    for what, (future, past) in PHRASES.items():
        assert "would" in future, what
        assert "would " not in past, what


@pytest.mark.parametrize("what, fields, future, past", [
    ("stop", {"process": "job 7"}, "would stop Jupyter (job 7)", "Jupyter stopped (job 7)"),
    ("not_running", {}, "Jupyter is not running; stop would do nothing", "Jupyter was not running"),
    ("stopped_instances", {"n": 2, "s": "s"}, "would stop 2 instances", "stopped 2 instances"),
    ("password_task", {"verb": "replace", "dir": "~/.fabjupyter"}, "would replace the password (hash only, mode 0600)",
     "password set (Argon2id hash in ~/.fabjupyter/password, mode 0600)"),
])
def test_said(what, fields, future, past):
    assert (said(what, True, **fields), said(what, False, **fields)) == (future, past)


@pytest.mark.parametrize("changes, unchanged, dry, real", [
    ([], True, ["configuration unchanged"], []),
    ([("tool", "run.sh", ())], True,
     ["configuration unchanged", "would refresh this tool's own run.sh (not a reason to restart Jupyter)"],
     ["refreshed this tool's own run.sh (not a reason to restart Jupyter)"]),
    ([("settings", "", ("-FJ_IP=x", "+FJ_IP=y")), ("password", "", ()), ("stop", "17", ())], False,
     ["would write the configuration in ~/.fabjupyter:", "    -FJ_IP=x", "    +FJ_IP=y", "would replace the password",
      "would restart Jupyter (pid 17) with the new settings"],
     ["configuration written to ~/.fabjupyter", "password set (only its hash is stored, mode 0600)",
      "stopped the running Jupyter (pid 17) to apply the changes"]),
    ([("password", "the default instance's", ()), ("stop", "job 12", ())], False,
     ["configuration unchanged", "would set the password (the default instance's)",
      "would restart Jupyter (job 12) with the new settings"],
     ["password: the same as the default instance's (`fab -H h password --name lab` sets one of its own)",
      "stopped the running Jupyter (job 12) to apply the changes"]),
])
def test_setup_says_the_same_changes_in_either_tense(changes, unchanged, dry, real):
    t = target("lab") if any(w == "password" and d for w, d, _ in changes) else target()
    r = reply(*changes, unchanged=unchanged)
    assert [str(line) for line in setup_lines(t, r, True)] == dry
    assert [str(line) for line in setup_lines(t, r, False)] == real


def test_a_port_moved_to_a_socket_is_said_in_either_tense():
    r = reply(("settings", "", ("+FJ_SOCK=1",)))
    dry, real = config_lines(target(), r, True), config_lines(target(), r, False)
    assert dry[-1].startswith("would move Jupyter from a TCP port to a Unix socket in ~/.fabjupyter/run, the default now")
    assert real[-1] == "moved" + dry[-1][len("would move"):]


def test_start_and_unrecorded_servers_in_either_tense():
    r = reply(("stop_unrecorded", "5 6", ()), ("root_dir", "/srv/nb", ()), ("start", "nohup, port 8888", ()), note="a note")
    assert stopped_unrecorded(r, True) == ["would stop Jupyter (pid 5, 6), started by a run of this tool that was killed before "
                                           "it recorded it"]
    assert stopped_unrecorded(r, False)[0].startswith("stopped Jupyter (pid 5, 6), started by")
    assert start_lines(target(), r, True) == ["would create the root directory /srv/nb (mode 0700)",
                                              "would start Jupyter (nohup, port 8888) and wait until it answers"]
    assert start_lines(target(), r, False) == ["note: a note", "created root directory /srv/nb (mode 0700)",
                                               "Jupyter started (JupyterLab 4.6; pid 4242, nohup) at http://127.0.0.1:8888/ on the host"]
    moved = dataclasses.replace(STATUS, port=8889)
    assert start_lines(target(), reply(("start", "", ()), status=moved), False)[0] == (
        "port 8888 is taken on the host; Jupyter uses 8889 instead")


@dataclasses.dataclass
class Cert:
    generated: str = ""
    pushed: bool = False
    dry: bool = False
    fingerprint: str = "SHA256:AB"
    local_path: str = "/here/cert.pem"
    warnings: tuple = ()


@pytest.mark.parametrize("outcome, lines", [
    (Cert(), ["certificate unchanged (valid, covers the names)", "certificate fingerprint SHA256:AB"]),
    (Cert(dry=True), ["certificate unchanged (valid, covers the names); nothing would change"]),
    (Cert("created", True), ["certificate created; local copy /here/cert.pem (key beside it, 0600)",
                             "certificate and key installed in ~/.fabjupyter/tls (key 0600)", "certificate fingerprint SHA256:AB"]),
    (Cert("created", True, True), ["would make a new certificate (created) in /here/cert.pem",
                                   "would install the certificate and key in ~/.fabjupyter/tls"]),
])
def test_certificate_lines(outcome, lines):
    assert cert_lines(target(), outcome) == lines


def test_a_job_whose_state_is_unknown_says_so():
    """While the scheduler cannot be asked, status says the job's state is unknown (and kept),
    not a time left from before."""
    job = dataclasses.replace(STATUS, launcher="sge", job_id="7", job_state="RUNNING", node="node1", time_left="9:58")
    assert job_words(job) == "job 7 on node1, 9:58 left"
    unknown = dataclasses.replace(job, job_state="UNKNOWN", time_left=None)
    assert job_words(unknown) == "job 7 on node1, state UNKNOWN (the scheduler does not answer now; the job is kept)"
