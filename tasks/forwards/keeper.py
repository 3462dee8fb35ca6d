"""`python -m PACKAGE.forwards.keeper KEY`: the process that holds a background tunnel
(background.py starts it). Its command line names this module and the key, which is how a
record's pid is known to be ours; what it runs comes on its standard input (the `fabjupyter`
arguments and the pipe on which to say "ready"), which is then /dev/null: nobody is there to
answer a prompt."""

import json
import os
import sys

from . import background


def main():
    spec = json.loads(sys.stdin.read())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdout = background.stamp_lines(sys.stdout)
    sys.stderr = background.stamp_lines(sys.stderr)
    background.holding.update(key=sys.argv[1], ready_fd=spec["ready_fd"])
    background.run_keeper(spec["argv"])


if __name__ == "__main__":
    main()
