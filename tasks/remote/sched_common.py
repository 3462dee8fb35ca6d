"""What every batch scheduler class shares (sched_slurm.py, sched_sge.py, sched_pbs.py): the
state words the rest of the agent reads, a query asked again while the scheduler cannot be
asked, the job's options as directive lines, and small pure helpers for their parsers."""

import os
import shlex
import time

from .fail import Fail
from .shell import run_command

# The scheduler could not be asked (its command timed out, or failed while its controller
# restarts): the job is neither queued, running nor ended as far as we know. Nothing treats it
# as ended, and nothing is cancelled for it (batchspawner #179 cancelled live jobs so).
UNKNOWN = "UNKNOWN"
TRIES, PAUSE = 3, 1.0  # a query that cannot be asked is asked again, this many times, this far apart
BUDGET = 15.0  # ... while less than this many seconds went by: a controller that hangs (each try waits
# out the client's timeout, SLURM's MessageTimeout) is not waited for three times over


def unknown(words):
    """A query's answer when the scheduler could not be asked; WORDS: what its command said."""
    return {"state": UNKNOWN, "reason": words, "node": None, "time_left": None}


def is_unknown(job):
    return isinstance(job, dict) and job.get("state") == UNKNOWN


def said(out, err, code, keep=2):
    """A failed command's last words, one line (stderr, else stdout, else its exit status)."""
    lines = [line.strip() for line in (err or out or "").splitlines() if line.strip()]
    return "; ".join(lines[-keep:]) or "exit status %d" % code


def clock(seconds):
    """SECONDS as SLURM writes a time (squeue's %L): 0:42, 3:59:12, 1-00:00:00; None for None."""
    if seconds is None:
        return None
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return "%d-%02d:%02d:%02d" % (days, hours, minutes, secs)
    if hours:
        return "%d:%02d:%02d" % (hours, minutes, secs)
    return "%d:%02d" % (minutes, secs)


def seconds_of(text):
    """A duration as schedulers write it ([[[D-]HH:]MM:]SS, or plain seconds) in seconds;
    None when it is no duration (unset, "Infinite", "UNLIMITED")."""
    text = (text or "").strip()
    days = 0
    if "-" in text:
        head, _, text = text.partition("-")
        if not head.isdigit():
            return None
        days = int(head)
    parts = text.split(":")
    if not text or len(parts) > 3 or not all(p.replace(".", "", 1).isdigit() for p in parts):
        return None
    total = 0
    for part in parts:
        total = total * 60 + int(float(part))
    return days * 86400 + total


def user_name():
    """This user's name, as the schedulers' -u options take it."""
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return os.environ.get("USER") or str(os.getuid())


def option_words(options, prefix):
    """The job's options as the words of its directive lines: each option is a line's words as
    a shell would split them ("-l walltime=1:00:00", "--partition=gpu"); an option that does
    not start with - goes on the line before it (["-A", "abc"] is `-A abc`)."""
    lines = []
    for option in options:
        try:
            words = shlex.split(str(option))
        except ValueError as e:
            raise Fail("launch_failed", "%r cannot be a %s option (%s)" % (option, prefix, e))
        if not words:
            continue
        if lines and not words[0].startswith("-"):
            lines[-1].extend(words)
        else:
            lines.append(words)
    return lines


def plain_or_quoted(word, prefix, refused="\"'\\"):
    """One word of a #$ or #PBS line: as it is when nothing in it is special, else in double
    quotes (Grid Engine's and PBS's directive parsers group a quoted word and drop the quotes;
    they have no escape that all read alike, so a word holding one of REFUSED is refused)."""
    text = str(word)
    if text and all(c.isalnum() or c in "-_=/.,:+@%*[]" for c in text):
        return text
    if any(c in refused or ord(c) < 32 for c in text):
        raise Fail("launch_failed", "%r cannot be a %s option (it holds one of %s or a line break)" % (text, prefix, " ".join(refused)))
    return '"%s"' % text


class Scheduler:
    """The commands this tool runs for one scheduler. A subclass says its directive PREFIX, its
    commands, which of its states are ACTIVE (queued or running) and which are STUCK (listed,
    but never to run on its own: cancelled when found), and how to read each answer."""

    name = family = ""
    PREFIX = "#"
    submit_command = query_command = ""
    ACTIVE = ("PENDING", "CONFIGURING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED", "COMPLETING")
    STUCK = ()

    def quote(self, word):
        return plain_or_quoted(word, self.PREFIX)

    def option_lines(self, options):
        return [" ".join([self.PREFIX] + [self.quote(w) for w in words]) for words in option_words(options, self.PREFIX)]

    def script_body(self, log):
        """Lines of the job script before it runs the job (where its output goes, if the
        scheduler does not write it to LOG itself)."""
        return []

    def ask(self, argv, verdict, timeout=20, tries=TRIES, pause=PAUSE, budget=BUDGET, runner=run_command, sleep=time.sleep,
            clock=time.monotonic):
        """VERDICT(out, err, code) on ARGV's answer, asked again while that is unknown (a
        controller restarting, a timeout), TRIES times, PAUSE seconds apart, while the tries so
        far took less than BUDGET seconds."""
        started = clock()
        for attempt in range(tries):
            out, err, code = runner(argv, timeout=timeout)
            result = verdict(out, err, code)
            if not is_unknown(result) or attempt == tries - 1 or code == 127:  # 127: no such command, for good
                return result
            if clock() - started >= budget:
                return result
            sleep(pause)
        return None

    def verdict(self, job):
        """What waiting for a job makes of a query's answer: "unknown" (the scheduler could not
        be asked: no news of the job), "ended" (it left the queue, or is in a state that is no
        longer active), "running" or "queued"."""
        if is_unknown(job):
            return "unknown"
        if job is None or job["state"] not in self.ACTIVE:
            return "ended"
        return "running" if job["state"] == "RUNNING" else "queued"

    def listed(self, job):
        """Is the job still where the scheduler runs it or will (active, or not known now)?"""
        return bool(job) and (job["state"] in self.ACTIVE or job["state"] == UNKNOWN)

    def cancel(self, job):
        """Ask the scheduler to cancel the job; whether it took the request."""
        _, _, code = run_command([self.cancel_command, job], timeout=30)
        return code == 0

    cancel_command = ""
