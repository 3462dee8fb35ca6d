"""What a task did on one host, and the one place where lines about a host are printed (the
host's label is added there, never baked into the text)."""

import json
import threading
from dataclasses import dataclass, field


class Plain(str):
    """A line printed as it is, without the host's label (a diff line, a hint to run next)."""


@dataclass
class Outcome:
    """What a task did on one host: the lines to print for a single host, a short word for the
    group table, where Jupyter is (if it runs), and the record for --json."""

    lines: list = field(default_factory=list)
    summary: str = "ok"
    url: str = ""
    record: object = None  # a dict, or a list of them (one JSON line each)


_print_lock = threading.Lock()


def say(*lines):
    with _print_lock:
        for line in lines:
            print(line, flush=True)


def labelled(label, lines):
    return [line if isinstance(line, Plain) else f"{label}: {line}" for line in lines]


def json_lines(record):
    return [json.dumps(r) for r in (record if isinstance(record, list) else [record])]


def show(label, outcome, as_json=False):
    if as_json:
        say(*json_lines(outcome.record))
    else:
        say("\n".join(labelled(label, outcome.lines)))


def table(rows):
    """ROWS (a header, then one tuple of strings each) as lines: columns left-aligned, two spaces
    apart, the last one as it is (the group summaries, the tunnels' URLs, `list`)."""
    width = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([*(f"{cell:<{w}}" for cell, w in zip(row, width)), row[-1]]).rstrip() for row in rows]
