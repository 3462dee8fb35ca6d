"""Many hosts at once: `fab TASK --group NAME` runs a task on every host of a hosts.yaml group,
in parallel (a bounded pool), one line per host as it finishes, then a summary table."""

import json
from concurrent.futures import ThreadPoolExecutor, as_completed

from invoke import Exit

from .errors import HostError, UserError
from .hosts import group_targets, target
from .report import json_lines, say, show


def run(c, core, group=None, workers=8, as_json=False, **overrides):
    """Run core(target) -> Outcome on -H's host, or on every host of the group in parallel."""
    if group is None:
        t = target(c, **overrides)
        show(t.label, core(t), as_json)
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
                    say(*json_lines(outcome.record)) if as_json else say(f"{t.label}: {outcome.summary}  {outcome.url}".rstrip())
                except UserError as e:
                    reason = e.message if isinstance(e, HostError) and e.label == t.label else str(e)
                    results[t.label] = (False, "FAILED", reason)
                    say(json.dumps({"host": t.host, "name": t.name, "error": reason}) if as_json else f"{t.label}: FAILED  {reason}")
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


def dry(task, core):
    """A dry run's core: a failure it finds is the failure the real run would meet, said so."""

    def checked(t):
        try:
            return core(t)
        except HostError as e:
            raise HostError(e.label, f"{e.message} (so {task} would stop before changing anything)", e.code) from None

    return checked
