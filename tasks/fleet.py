"""Many hosts at once: `fab TASK --group NAME` runs a task on every host of a hosts.yaml group,
in parallel (a bounded pool), one line per host as it finishes, then a summary table."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from invoke import Exit

from .errors import UserError
from .remote import group_targets, target

GROUP_HELP = "run on every host of this hosts.yaml group, in parallel (instead of -H)"
WORKERS_HELP = "how many hosts at once with --group (default 8)"
DRY_RUN_HELP = "show what would change (a diff for the configuration) and change nothing, not even an upload"


@dataclass
class Outcome:
    """What a task did on one host: the lines to print for a single host, a short word for the
    group table, and where Jupyter is (if it runs)."""

    lines: list = field(default_factory=list)
    summary: str = "ok"
    url: str = ""
    record: dict = None  # for --json


_print_lock = threading.Lock()


def say(*lines):
    with _print_lock:
        for line in lines:
            print(line, flush=True)


def run(c, core, group=None, workers=8, as_json=False, **overrides):
    """Run core(target) -> Outcome on -H's host, or on every host of the group in parallel."""
    if group is None:
        t = target(c, **overrides)
        outcome = core(t)
        say(json.dumps(outcome.record) if as_json else "\n".join(outcome.lines))
        return
    if workers < 1:
        raise UserError("--workers: must be at least 1")
    targets = group_targets(c, group, **overrides)
    results = {}
    with ThreadPoolExecutor(max_workers=min(workers, len(targets)) or 1) as pool:
        futures = {pool.submit(core, t): t for t in targets}
        try:
            for future in as_completed(futures):
                t = futures[future]
                try:
                    outcome = future.result()
                    results[t.label] = (True, outcome.summary, outcome.url)
                    say(json.dumps(outcome.record) if as_json else f"{t.label}: {outcome.summary}  {outcome.url}".rstrip())
                except UserError as e:
                    reason = str(e).removeprefix(f"{t.label}: ")
                    results[t.label] = (False, "FAILED", reason)
                    say(json.dumps({"host": t.label, "error": reason}) if as_json else f"{t.label}: FAILED  {reason}")
        except KeyboardInterrupt:
            for future in futures:
                future.cancel()
            raise
    failed = [t.label for t in targets if not results[t.label][0]]
    if not as_json:
        say("", *summary_table(targets, results))
    if failed:
        raise Exit(f"{len(failed)} of {len(targets)} hosts failed: {', '.join(failed)}", code=1)


def summary_table(targets, results):
    rows = [("host", "outcome", "URL or error")] + [(t.label, *results[t.label][1:]) for t in targets]
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    return [f"{r[0]:<{width[0]}}  {r[1]:<{width[1]}}  {r[2]}".rstrip() for r in rows]
