"""Starting Jupyter (through a launcher of launchers.LAUNCHERS) and waiting until it answers as
ours; stopping it, and the servers of this instance that no record names."""

import base64
import fcntl
import os
import sys
import time

from . import containers, launchers, net, own, procs
from .configure import check_root, root_dir, write_password
from .fail import PROTOCOL, Fail
from .files import json_text, make_dir, read_text, remove, write_atomic
from .kinds import KINDS, MOVED_NOTE, runtime_dir


def launch(run, kind, version, settings, launcher, requested):
    """Start Jupyter detached and wait until it answers as ours; record it."""
    inst = run.inst
    if inst.stored_hash() is None and not run.dry:
        raise Fail("no_password")
    if settings is None:
        raise Fail("not_configured")
    entry = launchers.launcher(launcher)
    check_root(inst, settings)
    root = root_dir(inst, settings)
    if not os.path.exists(root):
        run.change("root_dir", root, act=lambda: make_dir(root))
    tls, sock = settings.get("tls") == "1", settings.get("sock") == "1"
    if not run.dry:
        fresh_cookie_secret(inst)
    if entry.batch:
        from .batch import launch_job  # here: most starts are no batch job

        argv = jupyter_argv(run, kind, root, None, "", False)
        if run.container:
            argv, _ = containers.prepare(run, argv, root)
        return launch_job(run, entry.scheduler(), kind, version, root, requested, argv)
    where = "socket" if sock else "port %s or the next free one" % requested
    run.change("start", "%s, %s" % (launcher, where))
    if run.dry:
        return
    if not os.path.isfile(inst.config_path(kind)):
        raise Fail("not_configured")  # configured for another kind of Jupyter
    if not os.path.isfile(inst.password_path(kind)):
        write_password(run, kind, inst.stored_hash(), new=False)
    if tls and not (os.path.isfile(inst.path("tls", "cert.pem")) and os.path.isfile(inst.path("tls", "key.pem"))):
        raise Fail("no_cert")
    ip = settings.get("ip") or "127.0.0.1"
    sock_path = inst.path("run", "jupyter.sock") if sock else ""
    if sock:
        make_dir(inst.path("run"))
        remove(sock_path)
    want = requested or 8888
    lock = ports_lock(run)  # until it listens: another instance starting now never takes the same port
    for attempt in range(3):
        port = None
        if not sock:
            port = net.first_free_port(want, ip)
            if port is None:
                raise Fail("no_free_port", str(want))
        pid, mark = start_process(run, entry, kind, root, port, sock_path, tls)
        result = wait_ready(run, pid, port, sock_path, ip, tls, mark)
        if result.startswith("ready "):
            break
        if result.startswith("unsafe "):
            stop_started(run, pid)
            raise Fail("unsafe", result[len("unsafe "):])
        if result == "died":
            # a port taken between our check and Jupyter's bind: the next one. (A socket in use
            # is no race to retry: another process listens at our path, and the log says so.)
            if port and attempt < 2 and "already in use" in (read_text(inst.path("jupyter.log")) or ""):
                want = port + 1
                continue
            raise Fail("died", log=run.log_tail())
        if result == "timeout":
            stop_started(run, pid)
            raise Fail("timeout", str(run.timeout), log=run.log_tail())
        raise Fail("launch_failed", result)
    if run.container:  # the runtime's process started it: the server is Jupyter's own
        client, pid = pid, int(result.split()[1])
    state = {
        "v": PROTOCOL, "pid": pid, "port": port, "socket": sock_path or None, "requested_port": requested,
        "launcher": launcher, "mode": "public" if tls else "ssh", "started": int(time.time()), "kind": kind,
        "version": version, "fast_start": run.fast_start_used, "python": sys.executable,
        "command": run.command, "fingerprint": inst.disk_fingerprint(kind),
    }
    if run.container:
        state.update(containers.record(run), client_pid=client)
    write_atomic(inst.path("state"), json_text(state))
    write_atomic(inst.path("python"), sys.executable + "\n")
    os.close(lock)


def stop_started(run, pid):
    """A start that is not kept (not ours, or too slow): the process started, and its container."""
    procs.kill(pid)
    if run.container:
        containers.remove_stopped(containers.record(run))


def fresh_cookie_secret(inst):
    """New random bytes for the key Jupyter signs its login cookies with (Jupyter's own file in
    its runtime directory outlives restarts, and is shared by all of a user's servers)."""
    make_dir(inst.d)
    write_atomic(inst.path("cookie_secret"), base64.b64encode(os.urandom(32)).decode() + "\n")


def ports_lock(run):
    """Held from choosing a port until Jupyter listens on it (instances of one user choose
    ports one at a time); released when this process ends, whatever happens."""
    path = os.path.join(run.inst.top, "ports.lock")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    except OSError as e:
        raise Fail("cannot_write", "%s: %s" % (path, e.strerror))
    deadline = time.time() + run.timeout + 60
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError:
            if time.time() > deadline:
                os.close(fd)
                raise Fail("locked", "another instance's start")
            time.sleep(0.05)


def jupyter_argv(run, kind, root, port, sock_path, tls):
    """Jupyter's command line (a batch job adds the port it finds free on its node)."""
    inst, k = run.inst, KINDS[kind]
    argv = list(run.command)
    if tls:
        argv += ["--%s.certfile=%s" % (k.app, inst.path("tls", "cert.pem")), "--%s.keyfile=%s" % (k.app, inst.path("tls", "key.pem"))]
    if sock_path:
        # a Unix socket instead of a port (Jupyter aborts on --sock with any port option)
        argv += ["--%s.sock=%s" % (k.app, sock_path), "--%s.sock_mode=0600" % k.app]
    elif port:
        argv += ["--%s.port=%d" % (k.app, port)]
    argv.append("--%s.%s=%s" % (k.app, k.root_key, root))
    # a key of its own, new at every start (fresh_cookie_secret): a login cookie dies with the
    # server that issued it, and a captured one is worthless after a restart or a new password
    argv.append("--%s.cookie_secret_file=%s" % (k.app, inst.path("cookie_secret")))
    if os.getuid() == 0:
        argv.append("--allow-root")
    return argv


def start_process(run, entry, kind, root, port, sock_path, tls):
    """Jupyter started by the launcher ENTRY: (its pid, the mark in its environment that tells
    a container's Jupyter apart, or None)."""
    inst = run.inst
    argv, mark = jupyter_argv(run, kind, root, port, sock_path, tls), None
    # fast_start (opt-in): through boot.py, when Jupyter is a Python script run by its own
    # Python as its first line says
    run.fast_start_used = bool(run.req.get("fast_start") and run.plain and read_text(inst.path("boot.py")) == own.text("boot.py"))
    if run.fast_start_used:
        argv = [sys.executable, inst.path("boot.py")] + argv
    if run.container:
        argv, mark = containers.prepare(run, argv, root)
        make_dir(inst.path("runtime"))
    log = inst.path("jupyter.log")
    if os.path.exists(log):
        os.replace(log, log + ".1")
    with open(log, "w") as f:
        if kind != "nb6":
            f.write(MOVED_NOTE)
    inst.remove("pid")
    return entry.start(run, argv, log), mark


def wait_ready(run, pid, port, sock_path, ip, tls, mark=None):
    """ready.check, here: until it answers, then that the server answering is the one started and
    runs with our settings (Jupyter's runtime file and what it answers)."""
    from . import ready  # here: only a start asks

    child = run.child

    def started_alive(p):
        if child is not None and p == child.pid:
            return child.poll() is None  # our own child: a zombie is dead
        return net.alive(p)

    env = dict(os.environ, **run.extra_env)
    return ready.check(ready.Target(pid, port=port, sock=sock_path, ip=ip, tls=tls, timeout=float(run.timeout),
                                    runtime_dir=runtime_dir(env), alive=started_alive, mark=mark))


def stop_unrecorded(run, state):
    inst = run.inst
    pids = inst.unrecorded(state.get("pid"), state.get("client_pid"))
    if pids:
        run.change("stop_unrecorded", " ".join(map(str, pids)), act=lambda: [procs.end(p) for p in pids])
    recorded = launchers.recorded(state)
    entry = recorded if recorded.batch else launchers.LAUNCHERS.get(run.req.get("launcher"))
    if entry is not None and entry.batch:
        for job_id in entry.unrecorded(run, state):
            run.change("stop_unrecorded", "job " + job_id, act=lambda j=job_id: launchers.cancel_job(run, entry.scheduler(), j))
    if not run.dry:
        if not procs.alive(state.get("pid")):
            inst.remove("launched")
        elif (read_text(inst.path("launched")) or "").split() != [str(state["pid"])]:
            write_atomic(inst.path("launched"), "%d\n" % state["pid"])


def stop_server(run, state, what="stop"):
    launchers.recorded(state).stop(run, state, what)
    if not run.dry:
        containers.remove_stopped(state)
        if launchers.Tmux.usable():
            launchers.Tmux.kill_session(run.inst)
        run.inst.remove("state")
        run.inst.remove("pid")
