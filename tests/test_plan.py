"""The agent's decisions as pure functions (tasks/remote/plan.py): tables of (facts, wanted) ->
changes, with no host and no HOME."""

import pytest

from tasks.remote import plan
from tasks.remote.files import json_text

STORED = "argon2:$argon2id$v=19$m=10240,t=10,p=8$SALT$DIGEST"
SALT = "argon2:$argon2id$v=19$m=10240,t=10,p=8$SALT"  # up to the salt: the digest stays there


@pytest.mark.parametrize("stored, given, inherited, salted, dry, expected", [
    # a fresh host, no password given: asked for one (a dry run goes on without)
    (None, None, None, False, False, {"ask": "password", "salt": None, "new": None, "source": ""}),
    (None, None, None, False, True, {"ask": None, "salt": None, "new": None, "source": ""}),
    # a new instance takes the default instance's
    (None, None, "H0", False, False, {"ask": None, "salt": None, "new": "H0", "source": "the default instance's"}),
    # a password given where one is stored: hashed again with the stored salt first
    (STORED, "H1", None, False, False, {"ask": "salt", "salt": SALT, "new": None, "source": ""}),
    (STORED, "H1", None, False, True, {"ask": "salt", "salt": SALT, "new": None, "source": ""}),
    ("plain-hash", "H1", None, False, False, {"ask": "salt", "salt": "", "new": None, "source": ""}),
    # hashed with that salt: the same password is no change, another one is
    (STORED, STORED, None, True, False, {"ask": None, "salt": None, "new": None, "source": ""}),
    (STORED, "H2", None, True, False, {"ask": None, "salt": None, "new": "H2", "source": ""}),
    # none given, one stored: kept
    (STORED, None, None, False, False, {"ask": None, "salt": None, "new": None, "source": ""}),
    # given on a fresh host: written
    (None, "H3", None, False, False, {"ask": None, "salt": None, "new": "H3", "source": ""}),
])
def test_password_step(stored, given, inherited, salted, dry, expected):
    assert plan.password_step(stored, given, inherited, salted, dry) == expected


RECORD = {"fingerprint": "sha256:a", "launcher": "nohup", "requested_port": 8888, "version": "JupyterLab 4.2.0"}
WANTED = {"fingerprint": "sha256:a", "launcher": "nohup", "requested_port": 8888, "version": "JupyterLab 4.2.0",
          "upgraded": False, "job_options": None}


@pytest.mark.parametrize("recorded, alive, wanted, expected", [
    (RECORD, True, WANTED, "keep"),
    (RECORD, False, WANTED, "replace"),  # not running: started
    ({}, False, WANTED, "replace"),
    (RECORD, True, dict(WANTED, fingerprint="sha256:b"), "replace"),  # a setting Jupyter reads changed
    (RECORD, True, dict(WANTED, launcher="tmux"), "replace"),
    (RECORD, True, dict(WANTED, requested_port=9999), "replace"),
    (RECORD, True, dict(WANTED, upgraded=True), "keep"),  # --upgrade that changed nothing
    (RECORD, True, dict(WANTED, upgraded=True, version="JupyterLab 4.3.0"), "replace"),
    (RECORD, True, dict(WANTED, version="JupyterLab 4.3.0"), "keep"),  # another version, not by this tool's upgrade
    (dict(RECORD, launcher="slurm", job_options=["-p", "a"]), True, dict(WANTED, launcher="slurm", job_options=["-p", "a"]), "keep"),
    (dict(RECORD, launcher="slurm", job_options=["-p", "a"]), True, dict(WANTED, launcher="slurm", job_options=["-p", "b"]), "replace"),
    (dict(RECORD, launcher="slurm"), True, dict(WANTED, launcher="slurm", job_options=[]), "replace"),  # an older record without
])
def test_server_step(recorded, alive, wanted, expected):
    assert plan.server_step(recorded, alive, wanted) == expected


@pytest.mark.parametrize("recorded, expected", [
    # 0.1.0's record names the options "sbatch": the same options are no change (an upgrade of
    # this tool must not resubmit the job), other ones are
    (dict(RECORD, launcher="slurm", sbatch=["-p", "a"]), "keep"),
    (dict(RECORD, launcher="slurm", sbatch=[]), "replace"),
    (dict(RECORD, launcher="slurm", sbatch=["-p", "b"]), "replace"),
    # the new name wins where a record has both
    (dict(RECORD, launcher="slurm", job_options=["-p", "a"], sbatch=["-p", "b"]), "keep"),
    (dict(RECORD, launcher="slurm", job_options=["-p", "b"], sbatch=["-p", "a"]), "replace"),
])
def test_server_step_reads_the_options_of_a_record_from_before_their_rename(recorded, expected):
    wanted = dict(WANTED, launcher="slurm", job_options=["-p", "a"])
    assert plan.server_step(recorded, True, wanted) == expected


IMAGE = {"container": "/srv/lab.sif", "image_id": "path:/srv/lab.sif:1:2:3:4"}
IMAGE_WANTED = dict(WANTED, image="/srv/lab.sif", image_id="path:/srv/lab.sif:1:2:3:4")


@pytest.mark.parametrize("recorded, alive, wanted, expected, changed", [
    (dict(RECORD, **IMAGE), True, IMAGE_WANTED, "keep", False),  # the same image: setup again restarts nothing
    # the same name, another image (a new file there, a new podman image id): restarted, and why
    (dict(RECORD, **IMAGE), True, dict(IMAGE_WANTED, image_id="path:/srv/lab.sif:1:9:3:4"), "replace", True),
    (dict(RECORD, **IMAGE), False, dict(IMAGE_WANTED, image_id="path:/srv/lab.sif:1:9:3:4"), "replace", False),  # not running
    # another image named (the settings' fingerprint changes too): no "changed" for it
    (dict(RECORD, **IMAGE), True, dict(IMAGE_WANTED, image="/srv/b.sif", image_id="path:/srv/b.sif:1:5:3:4"), "replace", False),
    (RECORD, True, IMAGE_WANTED, "replace", False),  # into a container
    (dict(RECORD, **IMAGE), True, WANTED, "replace", False),  # out of one
    (RECORD, True, dict(WANTED, image=None, image_id=None), "keep", False),  # none before, none now: an upgrade restarts nothing
])
def test_server_step_for_a_container_image(recorded, alive, wanted, expected, changed):
    assert plan.server_step(recorded, alive, wanted) == expected
    assert plan.image_changed(recorded, alive, wanted) is changed


SETTINGS_SH = "FJ_ACTIVATE='' FJ_ROOT=''\n"
CONFIG = {"ServerApp": {"ip": "127.0.0.1"}}
NOW = {"settings_text": SETTINGS_SH, "legacy_text": None, "settings": {"activate": "", "root": ""},
       "config_text": json_text(CONFIG), "config": CONFIG, "others": []}
WANT = {"settings_text": SETTINGS_SH, "settings": {"activate": "", "root": ""}, "config": CONFIG,
        "config_name": "config/jupyter_server_config.json"}


def whats(steps):
    return [(s["what"], s["detail"], [name for name, _ in s["write"]], s["remove"]) for s in steps]


@pytest.mark.parametrize("now, wanted, expected", [
    (NOW, WANT, []),  # a second setup changes nothing
    # the same settings in another text (an earlier version's quoting): the tool's file, rewritten
    (dict(NOW, settings_text="# older\n" + SETTINGS_SH), WANT, [("tool", "settings.sh", ["settings.sh"], [])]),
    # other settings
    (NOW, dict(WANT, settings={"activate": "", "root": "work"}, settings_text="FJ_ACTIVATE='' FJ_ROOT=work\n"),
     [("settings", "", ["settings.sh"], [])]),
    # a fresh host: both
    (dict(NOW, settings_text=None, settings=None, config_text=None, config=None), WANT,
     [("settings", "", ["settings.sh"], []), ("config", "config/jupyter_server_config.json", ["config/jupyter_server_config.json"], [])]),
    # the settings of an older run.sh: the same settings, written as settings.sh
    (dict(NOW, settings_text=None, legacy_text=SETTINGS_SH), WANT, [("tool", "settings.sh", ["settings.sh"], [])]),
    # another kind's file left: removed (its keys would warn)
    (dict(NOW, others=["/h/.fabjupyter/config/jupyter_notebook_config.json"]), WANT,
     [("config", "config/jupyter_server_config.json", ["config/jupyter_server_config.json"],
       ["/h/.fabjupyter/config/jupyter_notebook_config.json"])]),
])
def test_config_steps(now, wanted, expected):
    assert whats(plan.config_steps(now, wanted)) == expected


def test_config_steps_show_the_difference():
    steps = plan.config_steps(dict(NOW, settings_text="FJ_ACTIVATE='' FJ_ROOT=old\n", settings={"activate": "", "root": "old"}), WANT)
    assert steps[0]["diff"] == ["--- settings.sh (now)", "+++ settings.sh (would be)", "@@ -1 +1 @@",
                                "-FJ_ACTIVATE='' FJ_ROOT=old", "+FJ_ACTIVATE='' FJ_ROOT=''"]


@pytest.mark.parametrize("now, expected", [
    ({"run.sh": "new", "boot.py": "boot"}, []),
    ({"run.sh": "old", "boot.py": "boot"}, [("tool", "run.sh")]),  # an earlier version's: said
    ({"run.sh": None, "boot.py": None}, [("tool_added", "run.sh"), ("tool_added", "boot.py")]),
    ({}, [("tool_added", "run.sh"), ("tool_added", "boot.py")]),
])
def test_tool_steps(now, expected):
    wanted = [("run.sh", "new", 0o700), ("boot.py", "boot", 0o600)]
    assert [(s["what"], s["detail"]) for s in plan.tool_steps(now, wanted)] == expected
