"""Benchmarks: each figure against a baseline measured in the same run, on throwaway hosts.

    sudo .venv/bin/python -m bench.run [--rtt-ms 100] [--runs 5]   (or --plot PNG)

Starts its own SSH host (tests/sshhost.py) and a delaying TCP proxy in front of its sshd
(bench/delayproxy.py) for the latency figures; prints the machine and a table of medians and
ratios. Not part of the pass/fail tests. Every figure and its floor are measured in turns in one
run; a floor does the same work as ours, timed the same way; a "(context)" row has no goal.
Other modes: --inproc, --containers, --batch, --slurm, --install, --mux, --fleet32, --extras, --startup (see --help).

This file is the command line; the harness (turns, rows, the table, the proxy, a raw ssh -L)
is bench/harness.py, the bench's host bench/host.py, and each family of figures a file of its own.
"""

import argparse
import signal
import sys

from .extras import footprint_figures, ready_figure
from .fleet import fleet32_figures, fleet_figure
from .harness import Table, intro, leftovers, machine, turns
from .host import Bench
from .install import install_figure, print_install
from .jupyter import parallel_jupyter_floor
from .latency import latency_figures, rtt_curve
from .mux import mux_figures
from .roundtrips import round_trip_figures
from .batch import batch_figures, print_batch
from .containers import container_figures
from .inproc import inproc_figures
from .startup import print_startup, startup_figures
from .throughput import forward_figures, forward_local_figure


def main(argv=None):
    # started in the background (`... &`), this process ignores SIGINT and every child would
    # inherit that: fab's Ctrl-C path (the SLURM figure ends its tunnel so) would never run
    signal.signal(signal.SIGINT, signal.default_int_handler)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rtt-ms", type=float, default=100.0, help="the delaying proxy's RTT for the latency figures (default 100, where their goals are set)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--plot", metavar="PNG", help="instead: setup time vs RTT (0-200 ms) against its floor, drawn to PNG (needs matplotlib)")
    ap.add_argument("--batch", action="store_true", help="instead: the batch-job figures, on test SLURM, Grid Engine and PBS clusters")
    ap.add_argument("--slurm", action="store_true", help="instead: the batch-job figure on the test SLURM cluster alone")
    ap.add_argument("--install", action="store_true", help="instead: setup --install on an offline host, from a warm cache")
    ap.add_argument("--mux", action="store_true", help="instead: multiplex: true (this tool's own OpenSSH master) at --rtt-ms: status "
                    "against ssh -S MASTER true, the tunnel's forward on the master against raw ssh -N -L")
    ap.add_argument("--fleet32", action="store_true", help="instead: the group figures on 32 hosts at --rtt-ms (about 10 minutes)")
    ap.add_argument("--extras", action="store_true", help="instead: the figures the README quotes from no other mode: the "
                    "check after a start (ready.py), Fabric's forward_local against ssh -N -L, and this side's CPU, memory, "
                    "threads and open files per host and per forward (on --hosts aliases of one sshd)")
    ap.add_argument("--hosts", type=int, default=50, help="with --extras: how many host aliases (default 50)")
    ap.add_argument("--startup", action="store_true", help="instead: the client's own start-up: fabjupyter --version, start to first "
                    "byte, status through a master against ssh -S MASTER sh -s, tunnel alone against raw ssh -L")
    ap.add_argument("--containers", action="store_true", help="instead: setup with a podman and a ch-run image at --rtt-ms, "
                    "against the same Jupyter started in the same image over one ssh login")
    ap.add_argument("--inproc", action="store_true", help="instead: the forward this process carries for a host that asks for "
                    "a code where no ControlMaster can be made (Windows), against raw ssh -N -L, at 0 ms and --rtt-ms")
    args = ap.parse_args(argv)
    for flag, mode in (("inproc", inproc), ("containers", containers), ("extras", extras), ("startup", startup), ("mux", mux), ("fleet32", fleet32), ("install", install),
                       ("batch", batch), ("slurm", slurm), ("plot", plot)):
        if getattr(args, flag):
            return mode(args)
    return default(args)


def default(args):
    """The default mode: the forward, round trips and setup at a distance on one host, then setup
    on 8 hosts at once against one, at 0 ms and at --rtt-ms."""
    intro(args.runs, " unless noted")
    b = Bench(args.rtt_ms, args.runs)
    try:
        forward_figures(b)
        round_trip_figures(b)  # first: the latency goals take the round trips fab saves on its floor
        latency_figures(b)
    finally:
        b.close()
    runs = min(args.runs, 3)
    plain, booted = b.started[False], b.started[True]  # what the tool started on that host (latency_figures)
    try:
        fleet = {}
        for rtt in (0, args.rtt_ms):
            # at 0 ms, the machine's floor (8 plain starts at once) in the same turns as the setups
            floor = (lambda: parallel_jupyter_floor(8, runs, plain)) if rtt == 0 else None
            one, many, one_again, many_again, _ = fleet[rtt] = fleet_figure(runs, rtt_ms=rtt, floor=floor)
            b.row(f"setup on 8 hosts in parallel (--group), {rtt:.0f} ms RTT", many, one, "setup on 1 host", "<= 1.5x", many <= 1.5 * one)
            b.row(f"setup again on 8 hosts in parallel, {rtt:.0f} ms RTT", many_again, one_again, "setup again on 1 host", "<= 1.5x",
                  many_again <= 1.5 * one_again)
        plain8, plain1, boot8, boot1 = turns(
            runs, *(lambda n=n, s=s: parallel_jupyter_floor(n, runs, s) for s in (plain, booted) for n in (8, 1))
        )
    finally:
        b.close_starts()
    # the fleet's setup is the default one: its floor is 8 plain starts, on the cores the 8 "hosts" share
    b.row("setup on 8 hosts in parallel (--group), 0 ms RTT, vs this machine's floor", fleet[0][1], fleet[0][4],
          "floor (8 plain Jupyter starts at once, no SSH, in the same turns)", "<= 1.2x", fleet[0][1] <= 1.2 * fleet[0][4])
    b.row("  (context) this machine: 8 plain Jupyter starts at once, no SSH", plain8, plain1, "1 start", "(context)", True)
    b.row("  (context) the same through boot.py (fast_start)", boot8, boot1, "1 start", "(context)", True)
    print()
    b.print_table()
    return 0


def startup(args):
    intro(args.runs)
    rows = startup_figures(args.rtt_ms, args.runs)
    print()
    print_startup(rows)
    return 0


def mux(args):
    intro(args.runs, " unless noted, each figure and its baseline in turns")
    b = Bench(args.rtt_ms, args.runs)
    try:
        mux_figures(b)
    finally:
        b.close()
        runtime = getattr(b, "mux_runtime", None)
        needles = [str(b.host.base)] + ([str(runtime)] if runtime else [])
        left = leftovers(*needles)
        print(f"Left running after the end (processes naming {', '.join(needles)}): {'; '.join(left) or 'none'}", flush=True)
    print()
    b.print_table()
    return 0


def fleet32(args):
    intro(args.runs)
    table = Table()  # only its rows: no throwaway host of its own
    fleet32_figures(table, args.runs, rtt_ms=args.rtt_ms)
    print()
    table.print_table()
    return 0


def install(args):
    print(f"Machine: {machine()}")
    print_install(*install_figure(args.runs))
    return 0


def batch(args, kinds=("slurm", "sge", "pbs")):
    print(f"Machine: {machine()}")
    print_batch(batch_figures(kinds, args.runs))
    return 0


def slurm(args):
    return batch(args, ("slurm",))


def plot(args):
    print(f"Machine: {machine()}")
    rtt_curve([0, 50, 100, 200], min(args.runs, 3), args.plot)
    return 0


def on_one_host(args, *figures, note=" unless noted, each figure and its baseline in turns"):
    """A mode whose FIGURES (each called with the Bench) share one throwaway host: the table, and
    what was left running after the end."""
    intro(args.runs, note)
    b = Bench(args.rtt_ms, args.runs)
    try:
        for figure in figures:
            figure(b)
    finally:
        b.close()
        left = leftovers(str(b.host.base))
        print(f"Left running after the end (processes naming {b.host.base}): {'; '.join(left) or 'none'}", flush=True)
    print()
    b.print_table()
    return 0


def inproc(args):
    return on_one_host(args, inproc_figures, note=", each figure and its baseline in turns, both open at once")


def containers(args):
    return on_one_host(args, container_figures)


def extras(args):
    """--extras: the figures of ready_figure, forward_local_figure and footprint_figures, each
    against its baseline in turns, in one run."""
    return on_one_host(args, lambda b: ready_figure(b, max(args.runs, 15)), lambda b: forward_local_figure(b, args.runs),
                       lambda b: footprint_figures(b, args.runs, args.hosts))


if __name__ == "__main__":
    sys.exit(main())
