"""The container runtimes' command lines, built from one table (tasks/remote/containers.py), and
the container settings from hosts.yaml to the host's settings.sh and back. Pure: no host. Podman
and Charliecloud also run for real (tests/test_containers.py); Apptainer and Singularity are not
packaged for Debian 12, so this file is what checks their command line."""

import os

import pytest

from tasks.errors import UserError
from tasks.hosts.inventory import load
from tasks.ops.config import settings_sh
from tasks.remote import containers
from tasks.remote.fail import Fail
from tasks.remote.legacy import settings_from_sh

LAB = ["/opt/venv/bin/jupyter", "lab", "--no-browser"]
CALL = containers.Call("/srv/images/lab.sif", ["/home/ana", "/data/ana"], False, ["--bind", "/scratch"],
                       "fabjupyter-default", LAB)


def argv(runtime, exe, **changes):
    call = containers.Call(**dict(vars(CALL), **changes))
    return containers.RUNTIMES[runtime].argv(exe, call)


def test_apptainer_and_singularity_share_the_home_and_pass_options_before_the_image():
    for name, exe in (("apptainer", "/usr/bin/apptainer"), ("singularity", "/opt/sing/bin/singularity")):
        assert argv(name, exe) == [exe, "exec", "--pwd", "/home/ana", "--bind", "/home/ana", "--bind", "/data/ana",
                                   "--bind", "/scratch", "/srv/images/lab.sif"] + LAB
        # GPUs: --nv, before the user's options and the image
        assert argv(name, exe, gpus=True)[:9] == [exe, "exec", "--pwd", "/home/ana", "--bind", "/home/ana", "--bind",
                                                  "/data/ana", "--nv"]


def test_podman_runs_jupyters_command_in_the_hosts_network_and_pids_as_the_user():
    got = argv("podman", "/usr/bin/podman", gpus=True)
    image = got.index("/srv/images/lab.sif")
    assert got[:2] == ["/usr/bin/podman", "run"] and got[image + 1:] == LAB[1:]
    before = got[:image]
    for flag in ("--rm", "--replace", "--network=host", "--pid=host", "--userns=keep-id"):
        assert flag in before
    assert before[before.index("--name") + 1] == "fabjupyter-default"
    assert before[before.index("--workdir") + 1] == "/home/ana"
    volumes = [before[i + 1] for i, w in enumerate(before) if w == "--volume"]
    assert volumes == ["/home/ana:/home/ana", "/data/ana:/data/ana"]
    passed = [before[i + 1] for i, w in enumerate(before) if w == "--env"]
    assert passed == ["HOME", "JUPYTER_CONFIG_PATH", "JUPYTER_RUNTIME_DIR", "FABJUPYTER_START"]  # names: values from here
    assert before[before.index("--device") + 1] == "nvidia.com/gpu=all"
    # the image's entrypoint is replaced by Jupyter's own first word (JSON: a path with spaces stays one)
    assert before[-2:] == ["--entrypoint", '["/opt/venv/bin/jupyter"]']
    assert before.index("--bind") < before.index("--entrypoint")  # the user's options, before the image
    assert "--device" not in argv("podman", "/usr/bin/podman")


def test_charliecloud_binds_each_directory_at_its_own_path_and_takes_no_gpu_option():
    assert argv("charliecloud", "/usr/bin/ch-run") == [
        "/usr/bin/ch-run", "--bind", "/home/ana:/home/ana", "--bind", "/data/ana:/data/ana", "--cd", "/home/ana",
        "--bind", "/scratch", "/srv/images/lab.sif", "--"] + LAB
    assert containers.RUNTIMES["charliecloud"].gpu == ()


def test_the_runtime_is_the_first_found_in_order_or_the_one_named():
    on_path = {"podman": "/usr/bin/podman", "ch-run": "/usr/bin/ch-run", "singularity": "/usr/local/bin/singularity"}
    which = on_path.get
    runtime, exe = containers.find_runtime("auto", which)
    assert (runtime.name, exe) == ("singularity", "/usr/local/bin/singularity")
    assert containers.find_runtime("", which)[0].name == "singularity"
    assert containers.find_runtime("charliecloud", which) == (containers.RUNTIMES["charliecloud"], "/usr/bin/ch-run")
    with pytest.raises(Fail) as e:
        containers.find_runtime("apptainer", which)
    assert (e.value.code, e.value.detail) == ("no_container_runtime", "apptainer")
    with pytest.raises(Fail) as e:
        containers.find_runtime("auto", {}.get)
    assert e.value.detail == "auto: apptainer, singularity, podman, ch-run"


def test_an_image_at_the_same_path_is_another_image_when_the_file_was_replaced(tmp_path):
    image = tmp_path / "lab.sif"
    image.write_bytes(b"one")
    first = containers.path_identity(str(image))
    assert containers.path_identity(str(image)) == first  # unchanged: the same
    os.utime(image, ns=(1, 1))
    assert containers.path_identity(str(image)) != first  # touched
    new = tmp_path / "new.sif"
    new.write_bytes(b"one")
    os.utime(new, ns=(1, 1))
    before = containers.path_identity(str(image))
    new.replace(image)  # what building or pulling again does: another file under the name
    assert containers.path_identity(str(image)) != before
    # a link names its target: the identity follows the file, not the link's name
    link = tmp_path / "current"
    link.symlink_to(image)
    assert containers.path_identity(str(link)).split(":")[2:] == containers.path_identity(str(image)).split(":")[2:]
    assert containers.path_identity("docker://ghcr.io/x/lab:1", uri=True) == "uri:docker://ghcr.io/x/lab:1"
    with pytest.raises(Fail) as e:
        containers.path_identity(str(tmp_path / "missing.sif"))
    assert e.value.code == "no_image" and "missing.sif (No such file or directory)" in e.value.detail


def test_binds_share_the_root_directory_only_when_it_is_outside_the_home():
    assert containers.binds("/home/ana", "") == ["/home/ana"]
    assert containers.binds("/home/ana", "/home/ana/work") == ["/home/ana"]
    assert containers.binds("/home/ana", "/home/anabel") == ["/home/ana", "/home/anabel"]
    assert containers.image_path("~/images/lab.sif", "/home/ana") == "/home/ana/images/lab.sif"
    assert containers.image_path("localhost/lab:1", "/home/ana") == "localhost/lab:1"


def inventory(tmp_path, text):
    path = tmp_path / "hosts.yaml"
    path.write_text(text)
    return load(str(path))


def test_container_settings_reach_settings_sh_and_come_back_as_the_agent_reads_them(tmp_path):
    inv = inventory(tmp_path, """hosts:
  gpu1:
    container: ~/images/lab one.sif
    container_runtime: apptainer
    container_options: ["--bind", "/scratch/ana dir", "--env", "A=1"]
    gpus: true
  plain: {}
""")
    text = settings_sh(inv.settings_for("gpu1"))
    back = containers.settings_of(settings_from_sh(text))
    assert back == {"image": "~/images/lab one.sif", "runtime": "apptainer", "options": ["--bind", "/scratch/ana dir", "--env", "A=1"],
                    "gpus": True}
    # without a container, settings.sh is what it was before containers existed (an upgrade restarts nothing)
    plain = settings_sh(inv.settings_for("plain"))
    assert "CONTAINER" not in plain and "GPUS" not in plain
    assert containers.settings_of(settings_from_sh(plain)) is None


@pytest.mark.parametrize("text, said", [
    ("    container_runtime: docker\n", "must be one of auto, apptainer, singularity, podman, charliecloud (got 'docker')"),
    ("    gpus: yes please\n", "must be true or false"),
    ("    gpus: true\n", "gpus: true is for a container; give container: IMAGE too"),
    ("    container_options: --bind /x\n", "container_options: is for a container"),
    ("    container: [a, b]\n", "must be a string"),
])
def test_wrong_container_settings_are_one_line(tmp_path, text, said):
    with pytest.raises(UserError) as e:
        inventory(tmp_path, "hosts:\n  gpu1:\n" + text).settings_for("gpu1")
    assert said in str(e.value) and "\n" not in str(e.value)
