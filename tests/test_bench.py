"""The bench's pure logic: a floor's start moved from the tool's server, sshd's log read, the
goals tally. No host: the figures themselves are `python -m bench.run`'s."""

import pytest

from bench.harness import Table, sshd_requests, verdict
from bench.jupyter import relocated

HOME = "/tmp/b/home/fjbench"


@pytest.mark.parametrize("argv, new_home, port, root, expected", [
    # the default: a Unix socket, which a floor's start replaces by a port of its own
    (["/venv/bin/python", "/venv/bin/jupyter-lab", f"--ServerApp.sock={HOME}/.fabjupyter/run/jupyter.sock",
      "--ServerApp.sock_mode=0600", f"--ServerApp.root_dir={HOME}", f"--ServerApp.cookie_secret_file={HOME}/.fabjupyter/cookie_secret"],
     "/tmp/h0", 9000, False,
     ["/venv/bin/python", "/venv/bin/jupyter-lab", "--ServerApp.root_dir=/tmp/h0",
      "--ServerApp.cookie_secret_file=/tmp/h0/.fabjupyter/cookie_secret", "--ServerApp.port=9000"]),
    # a port, in its own home, through boot.py, as root: the app's name is kept
    (["/py", "/copy/boot.py", "/venv/bin/jupyter-notebook", "--NotebookApp.port=8888", f"--NotebookApp.notebook_dir={HOME}"],
     HOME, 9001, True,
     ["/py", "/copy/boot.py", "/venv/bin/jupyter-notebook", f"--NotebookApp.notebook_dir={HOME}", "--NotebookApp.port=9001",
      "--allow-root"]),
    # a home that is a prefix of another path's name is not moved there
    ([f"--ServerApp.root_dir={HOME}2", f"--ServerApp.root_dir={HOME}"], "/h", 1, False,
     [f"--ServerApp.root_dir={HOME}2", "--ServerApp.root_dir=/h", "--ServerApp.port=1"]),
])
def test_relocated_argv(argv, new_home, port, root, expected):
    assert relocated(argv, {}, HOME, new_home, port, root)[0] == expected


def test_relocated_env():
    env = {"HOME": HOME, "JUPYTER_CONFIG_PATH": f"{HOME}/.fabjupyter/password:{HOME}/.fabjupyter/config", "PATH": "/usr/bin:/bin"}
    assert relocated([], env, HOME, "/tmp/h1", 1)[1] == {
        "HOME": "/tmp/h1", "JUPYTER_CONFIG_PATH": "/tmp/h1/.fabjupyter/password:/tmp/h1/.fabjupyter/config", "PATH": "/usr/bin:/bin"}


def test_sshd_requests():
    log = "\n".join([
        "Connection from 127.0.0.1 port 5000 on 127.0.0.1 port 22",
        "debug1: userauth-request for user fjbench service ssh-connection method none [preauth]",
        "debug1: userauth-request for user fjbench service ssh-connection method publickey [preauth]",
        "debug1: server_input_channel_open: ctype session rchan 0 win 2097152 max 32768",
        "debug1: server_input_channel_req: channel 0 request exec reply 1",
        "debug1: server_input_channel_req: channel 0 request env reply 0",
        "debug1: server_input_global_request: rtype no-more-sessions@openssh.com want_reply 0",
        "debug1: server_input_channel_open: ctype direct-tcpip rchan 1 win 2097152 max 32768",
    ])
    seen = sshd_requests(log)
    assert (seen["connections"], seen["auth"], seen["opens"], seen["open session"], seen["open direct-tcpip"], seen["awaited"],
            seen["req exec"], seen["req env"]) == (1, 2, 2, 1, 1, 1, 1, 1)


@pytest.mark.parametrize("goal, ok, expected", [
    ("<= 1.2x", True, "<= 1.2x: met"),
    ("<= 1.2x", False, "<= 1.2x: **missed**"),
    ("(context)", False, "(context)"),
    ("(context, >= 0.9x)", True, "(context, >= 0.9x)"),
])
def test_verdict(goal, ok, expected):
    assert verdict(goal, ok) == expected


def test_goals_tally_leaves_out_context_rows(capsys):
    t = Table()
    t.row("a", 1.0, 1.0, "base", "<= 1.2x", True)
    t.row("b", 2.0, 1.0, "base", "<= 1.2x", False)
    t.row("c", 3.0, 1.0, "base", "(context)", True)
    t.print_table()
    out = capsys.readouterr().out
    assert "| b | 2.000 s | base: 1.000 s | 2.00x | <= 1.2x: **missed** |" in out
    assert out.rstrip().endswith("Goals met: 1 of 2 (context rows have no goal and are not counted)")
