"""Running an action on a host: one SSH session, the script on stdin, its JSON lines read as
events (shown as they come) and one typed reply or error."""

import json
import sys

from ..errors import HostError, UserError
from ..remote.spec import check_request
from ..ssh.connection import close_sessions, session
from . import script  # by its module: a test may replace agent_script
from .replies import REPLIES, ErrorReply, ProtocolError, parse
from .wording import RemoteError


def read_line(raw, on_event):
    """One line of the agent's output: an event (passed on) or its reply or error (returned)."""
    try:
        message = json.loads(raw)
    except ValueError:
        raise ProtocolError(f"not a JSON line: {raw[:200]!r}") from None
    if not isinstance(message, dict) or len(message) != 1 and "event" not in message:
        raise ProtocolError(f"not a message: {raw[:200]!r}")
    if "event" in message:
        on_event(message)
        return None
    if "error" in message:
        return parse(ErrorReply, message["error"], "error")
    if "reply" in message:
        return message["reply"]
    raise ProtocolError(f"unknown message: {raw[:200]!r}")


def run_agent(t, action, settings_sh=None, **request):
    """Run one agent action on the host: one SSH session, the script on stdin, one typed reply."""
    request = dict(request, instance=request.get("instance", t.name))
    # a request the action table refuses is this client's bug: said before anything is sent
    check_request(action, dict(request, settings_sh=settings_sh) if settings_sh is not None else request, added=False)
    text = script.agent_script(action, request, settings_sh).encode()
    reply = error = None
    jobs = []  # batch jobs it submitted (cancelled if we are interrupted meanwhile)

    def on_event(message):
        if message["event"] == "job" and message["state"] == "SUBMITTED":
            jobs.append(message["job_id"])
        show_event(t, message)

    try:
        # closed on the way out, an interruption included: the interrupted agent notices at once
        with session(t, "sh -s", f"the SSH connection failed during {action}: {{e}}") as s:
            s.stdin.write(text)
            s.close_stdin()
            for raw in s.stdout:
                answer = read_line(raw, on_event)
                if isinstance(answer, ErrorReply):
                    error = answer
                elif answer is not None:
                    reply = answer
            stderr = s.stderr_text()
            status = s.exit_status()
            lost = s.lost(status)
    except ProtocolError as e:
        raise HostError(t.label, f"{action}: the agent's reply was not understood ({e}); is this tool installed twice, in two versions?") from None
    except KeyboardInterrupt:
        if jobs:
            cancel_jobs(t, jobs)
        raise
    if error is not None:
        raise RemoteError(t, error, stderr)
    if reply is None:
        lines = [line for line in stderr.splitlines() if line.strip()]
        if lost:
            raise HostError(t.label, f"the SSH connection failed during {action}: {lines[-1] if lines else 'ssh exited 255'}")
        raise HostError(t.label, f"{action} failed on the remote: {lines[-1] if lines else f'exit status {status}'}")
    try:
        return parse(REPLIES[action], reply)
    except ProtocolError as e:
        raise HostError(t.label, f"{action}: the agent's reply was not understood ({e})") from None


def cancel_jobs(t, jobs):
    """Ctrl-C while a job we submitted waits: it is nobody's now. The agent cancels it when it
    sees us gone; `stop` waits for that (it takes the same lock) and makes sure."""
    print(f"{t.label}: interrupted; cancelling job {', '.join(jobs)}", file=sys.stderr, flush=True)
    try:
        close_sessions(t)  # the interrupted session's agent notices at once
        run_agent(t, "stop", timeout=60)
        print(f"{t.label}: job {', '.join(jobs)} cancelled", file=sys.stderr, flush=True)
    except (UserError, KeyboardInterrupt):
        print(f"{t.label}: could not make sure job {', '.join(jobs)} was cancelled; check with `{t.fab('status')}`",
              file=sys.stderr, flush=True)


def show_event(t, message):
    if message["event"] == "waiting":
        # as it happens, not at the end: another run holds the host's lock
        print(f"{t.label}: waiting for another fabjupyter run there to finish: {message['owner']} (up to {message['seconds']} s)",
              file=sys.stderr, flush=True)
    elif message["event"] == "install":
        words = {"venv": "creating this tool's environment", "pip": "installing with pip"}
        print(f"{t.label}: {words.get(message['step'], message['step'])} ({message['detail']})", flush=True)
    elif message["event"] == "job":
        # a batch job's progress, one line per change: submitted, PENDING (reason), RUNNING on NODE
        state, reason, node = message["state"], message.get("reason"), message.get("node")
        detail = f" on {node}" if state == "RUNNING" and node else f" ({reason})" if reason else ""
        print(f"{t.label}: job {message['job_id']} {state.lower() if state == 'SUBMITTED' else state}{detail}", flush=True)
