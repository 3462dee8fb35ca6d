"""What this machine's operating system decides, in one place: every Linux- or POSIX-only path of
the client (not the remote side, tasks/remote/, which runs on the hosts). Each function says what
it does on Linux (exactly what the code did before this module: the same calls, the same paths),
and what it does on macOS and Windows instead. .ci/typecheck checks this package for all three.

The `sys.platform` tests are written out in each function (not kept in a constant): that is how
mypy knows which branch a platform takes, and so checks each branch against that platform's
standard library."""

import os
import signal
import socket
import subprocess
import sys
import time
import typing

from .remote import net


# --- child processes ----------------------------------------------------------------------------


def new_session():
    """Popen options for a child that Ctrl-C at our terminal must not reach (we end it ourselves),
    and that a closed terminal does not end. Linux, macOS: a new session (setsid). Windows: a new
    process group (CREATE_NEW_PROCESS_GROUP: Ctrl-C is not delivered to it)."""
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


if sys.platform == "linux":
    import ctypes

    try:
        # looked up here, not in the child: a dlopen between fork and exec can deadlock when other
        # threads (a group's) held the loader's lock at the fork
        _prctl: typing.Callable[..., int] | None = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        _prctl = None

    def _die_with_parent():
        """In the child, before exec: get SIGTERM if its parent dies, even by SIGKILL."""
        if _prctl is not None:
            _prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def dies_with_parent():
    """Popen options for a child that must end when we do, however we end (a forward's ssh).
    Linux: prctl(PR_SET_PDEATHSIG, SIGTERM) in the child (preexec_fn). macOS and Windows have no
    such thing: nothing is added, and the child ends when we end it (`finally:` blocks, SIGTERM
    turned into KeyboardInterrupt by on_termination); a SIGKILL'd client leaves it running."""
    if sys.platform == "linux":
        return {"preexec_fn": _die_with_parent}
    return {}


def terminate(pid):
    """Ask process PID to end. Linux, macOS: SIGTERM (it can clean up). Windows: os.kill with
    SIGTERM is TerminateProcess: it ends at once, without cleaning up."""
    os.kill(pid, signal.SIGTERM)


def kill(pid):
    """End process PID, no questions. Linux, macOS: SIGKILL. Windows has no SIGKILL: SIGTERM,
    which os.kill maps to TerminateProcess, as final as SIGKILL."""
    if sys.platform == "win32":
        os.kill(pid, signal.SIGTERM)
    else:
        os.kill(pid, signal.SIGKILL)


def on_termination(handler):
    """Call HANDLER(signum, frame) when this process is asked to end. Linux, macOS: SIGTERM.
    Windows: SIGTERM is never sent by another process there (terminate() is TerminateProcess),
    so Ctrl-Break (SIGBREAK, also what a CTRL_BREAK_EVENT to our process group delivers) too."""
    signal.signal(signal.SIGTERM, handler)
    if sys.platform == "win32":
        signal.signal(signal.SIGBREAK, handler)


def process_alive(pid, command=None):
    """Whether PID is a live process of this user's (not a zombie) and, given COMMAND, one whose
    command line contains it. Linux: signal 0 and /proc/PID/{stat,cmdline} (tasks/remote/net.py:
    alive). macOS: signal 0, and `ps -ww` for the command line (net.py's own fallback, `ps`
    without -ww, cuts it at 80 columns). Windows: OpenProcess and its exit code, and the command
    line from Win32_Process through PowerShell (os.kill(pid, 0) there would send Ctrl-C)."""
    if sys.platform == "win32":
        return _windows_alive(pid, command)
    if sys.platform == "linux":
        return net.alive(pid, command)
    return net.alive(pid) and (command is None or command in _command_by_ps(pid))


def _command_by_ps(pid):
    """PID's command line, its arguments joined by spaces, from `ps -ww` ("" if gone)."""
    try:
        return subprocess.run(["ps", "-ww", "-p", str(pid), "-o", "command="], capture_output=True, text=True,
                              timeout=30).stdout.strip() + " "
    except (OSError, subprocess.TimeoutExpired):
        return ""


if sys.platform == "win32":
    import ctypes

    def _windows_alive(pid, command):
        if not isinstance(pid, int) or pid <= 0:
            return False
        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        try:
            code = ctypes.c_ulong()
            if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)) or code.value != 259:  # STILL_ACTIVE
                return False
        finally:
            kernel32.CloseHandle(handle)
        if command is None:
            return True
        query = f"(Get-CimInstance Win32_Process -Filter 'ProcessId={pid}').CommandLine"
        try:
            line = subprocess.run(["powershell", "-NoProfile", "-Command", query], capture_output=True,
                                  text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired):
            return False
        # CommandLine quotes arguments with spaces; COMMAND is matched on its words
        return " ".join(command.split()) in " ".join(line.replace('"', "").split())


def pids_of(argv):
    """This user's processes whose command line is exactly ARGV. Linux: /proc/PID/cmdline (the
    arguments, NUL-separated, compared whole). macOS, and Linux where /proc is not mounted: `ps`,
    whose command column joins the arguments with spaces (compared whole too). Windows: none (only
    OpenSSH masters are looked for this way, and Windows' OpenSSH has none)."""
    if sys.platform == "win32":
        return []
    found: list[int] = []
    if sys.platform == "linux" and os.path.isdir("/proc/self"):
        wanted = "\0".join(argv).encode() + b"\0"
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.stat(f"/proc/{entry}").st_uid == os.getuid() and _read(f"/proc/{entry}/cmdline") == wanted:
                    found.append(int(entry))
            except OSError:
                continue
        return found
    return _pids_by_ps(argv)


def _pids_by_ps(argv):
    """pids_of without /proc: `ps` (-ww: whole lines, not cut at 80 columns; the same on Linux
    and macOS)."""
    found: list[int] = []
    if sys.platform == "win32":
        return found
    try:
        out = subprocess.run(["ps", "-ww", "-U", str(os.getuid()), "-o", "pid=", "-o", "command="], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return found
    wanted_line = " ".join(argv)
    for row in out.splitlines():
        pid, _, line = row.strip().partition(" ")
        if pid.isdigit() and line.strip() == wanted_line:
            found.append(int(pid))
    return found


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def hold_for_life(path):
    """Lock the file PATH until this process ends, however it ends, with our pid written in it:
    whoever cannot read our command line (no /proc, and ps reads /proc too) can still tell that
    we live (life_lock_holder). Returns the open file: keep a reference to it. Linux, macOS:
    flock, which the kernel releases with the last descriptor (the file is not inherited by
    children: Python opens it close-on-exec). Windows: None, nothing held (its only user, a
    background tunnel's keeper, does not run there yet)."""
    if sys.platform == "win32":
        return None
    import fcntl

    held = open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w")
    deadline = time.monotonic() + 5
    while True:
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:  # a look by life_lock_holder lasts a moment; a holder, for ever
            if time.monotonic() > deadline:
                held.close()
                raise OSError(f"{path} is held by another process") from None
            time.sleep(0.01)
    held.truncate(0)
    held.write(f"{os.getpid()}\n")
    held.flush()
    return held


def life_lock_holder(path):
    """The pid written in PATH by the living process that holds it (hold_for_life), else None.
    Linux, macOS: a shared flock that fails while the holder lives (looks do not block each
    other). Windows: None."""
    if sys.platform == "win32":
        return None
    import fcntl

    try:
        f = open(path)
    except OSError:
        return None  # nobody ever held it
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return None  # nobody holds it (our shared lock goes with the file)
        except BlockingIOError:
            pass
        try:
            return int(f.read())
        except ValueError:
            return None


# --- local listening sockets --------------------------------------------------------------------


def loopback_listeners():
    """{port: socket inodes} listening on 127.0.0.1, or None where that cannot be read. Linux:
    /proc/net/tcp; None when /proc is not mounted (a container, a sandbox). macOS, Windows: None
    (the callers then trust an HTTP answer on the port, as before the /proc check existed)."""
    if sys.platform != "linux" or not os.path.exists("/proc/net/tcp"):
        return None
    read = net.listening_inodes(loopback_only=True)
    if read is None:
        return None
    found: dict[int, set[str]] = {}
    for port, inode in read:
        found.setdefault(port, set()).add(inode)
    return found


def holds_socket(pid, inodes):
    """Whether process PID holds one of the sockets INODES (from loopback_listeners), None where
    that cannot be read. Linux: /proc/PID/fd. macOS, Windows: None."""
    if sys.platform != "linux":
        return None
    try:
        return net.holds_socket(pid, inodes)
    except (OSError, TypeError):
        return None


# --- users, files, sockets ----------------------------------------------------------------------


def user_id():
    """This user's uid (Linux, macOS); None on Windows, which has none (an SID instead)."""
    if sys.platform == "win32":
        return None
    return os.getuid()


def owned_by_me(info):
    """Whether a file whose os.stat/lstat result is INFO belongs to this user. Linux, macOS: its
    uid. Windows: True without a check: st_uid is always 0 there, and the folders this is asked
    about are under the user's own profile (platformdirs), which its ACL keeps to that user."""
    if sys.platform == "win32":
        return True
    return info.st_uid == os.getuid()


def unix_socket():
    """A new Unix-domain stream socket (an OpenSSH control socket's client end). Linux, macOS:
    socket(AF_UNIX). Windows: OSError: Python there has no AF_UNIX, and Windows' OpenSSH has no
    ControlMaster (Win32-OpenSSH #405) whose socket it would reach."""
    if sys.platform == "win32":
        raise OSError("no Unix-domain sockets on Windows")
    return socket.socket(socket.AF_UNIX)


def raise_open_files(needed):
    """Let this process open NEEDED file descriptors: the soft limit raised up to the hard one
    (any user may). Returns None when done, else the hard limit that is too low. Linux, macOS:
    getrlimit/setrlimit(RLIMIT_NOFILE). Windows: None, nothing done: sockets there are handles,
    with no per-process limit of this kind."""
    if sys.platform == "win32":
        return None
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if needed <= soft:
        return None
    if hard == resource.RLIM_INFINITY or needed <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed if hard == resource.RLIM_INFINITY else hard, hard))
        return None
    return hard
