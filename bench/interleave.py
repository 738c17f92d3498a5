"""Interleaved measurement of one workload on several systems at once.

    python3 bench/interleave.py --slices K --unit us|rate [--aggregate] \\
        --round R NAME N 'COMMAND ...' [NAME N 'COMMAND ...' ...]

Why: on these shared VMs the speed of the machine drifts over seconds (raw
C's W2s request took 39 us in one measurement and 73 us in the next), so two
measurements taken one after the other compare the machine as much as the
systems. Here every system runs at once as a server process (its COMMAND ends
in `serve`; they wait on a pipe, so only one runs at a time) and the
measurement is cut into K slices of N iterations per system, taken in turn:
system A's slice 1, B's slice 1, ..., A's slice 2, ... with the order rotated
each slice. Each system's figure is the median of its K slices' figures
(a slice that met a hiccup of the host, 3x the others now and then, does
not move it), all taken within the same second or so as the others'.
With --aggregate it is all its slices' ops over all their time instead: for
a workload whose cost comes in periods longer than a slice (W3: a slice is
one fetch, and the Lua collector's big cycle comes every other fetch), where
a median would count the slow slices more or less often than they happen.

Protocol (bench/raw.c, scoped_bench.lua, luasql_bench.lua,
sqlalchemy_bench.py): the process prints READY once set up; for each line
"<n>" it runs n iterations, timed, and prints "SLICE <seconds> <ops>" (ops:
what the figure counts, rows for W3). A slice leaves no transaction open (the
W4 systems take turns on one table). EOF ends it. One untimed warm-up slice
per system comes first.

Prints "RESULT NAME FIGURE" per system (FIGURE: microseconds per op with
--unit us, ops per second with --unit rate), or "FAILED NAME why". Exit
status 1 when any system failed.
"""
import argparse
import os
import select
import shlex
import statistics
import subprocess
import sys

TIMEOUT = 300  # seconds one slice may take
FMT = {"us": "%.3f", "rate": "%.0f"}


class System:
    def __init__(self, name, n, cmd):
        self.name, self.n, self.cmd = name, n, cmd
        self.proc = None
        self.figures = []  # per slice, in the unit asked for
        self.total_s = 0.0  # all slices' time and ops, for --aggregate
        self.total_ops = 0
        self.failed = None

    def start(self, log):
        self.proc = subprocess.Popen(shlex.split(self.cmd), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1)

    def readline(self):
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT)
        if not ready:
            raise RuntimeError("no answer in %d s" % TIMEOUT)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("exited (status %s)" % self.proc.wait())
        return line.strip()

    def slice(self):
        self.proc.stdin.write("%d\n" % self.n)
        self.proc.stdin.flush()
        parts = self.readline().split()
        if len(parts) != 3 or parts[0] != "SLICE":
            raise RuntimeError("unexpected output %r" % " ".join(parts))
        return float(parts[1]), int(parts[2])

    def fail(self, why):
        self.failed = why
        if self.proc and self.proc.poll() is None:
            self.proc.kill()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()


def figure(unit, seconds, ops):
    return seconds * 1e6 / ops if unit == "us" else ops / seconds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--slices", type=int, required=True)
    ap.add_argument("--unit", choices=("us", "rate"), required=True)
    ap.add_argument("--aggregate", action="store_true",
                    help="figure from all slices' ops and time, not the median of slices")
    ap.add_argument("--round", type=int, default=1, help="rotates the starting system")
    ap.add_argument("spec", nargs="+", help="NAME N COMMAND triples")
    args = ap.parse_args()
    if len(args.spec) % 3 != 0 or args.slices < 1:
        ap.error("systems come as NAME N COMMAND triples; --slices >= 1")
    systems = [System(args.spec[i], int(args.spec[i + 1]), args.spec[i + 2])
               for i in range(0, len(args.spec), 3)]

    log = sys.stderr
    for s in systems:
        try:
            s.start(log)
            if s.readline() != "READY":
                raise RuntimeError("did not say READY")
            s.slice()  # warm-up, not counted
        except (OSError, RuntimeError, ValueError) as e:
            s.fail(str(e))

    for k in range(args.slices):
        first = (k + args.round) % len(systems)
        for s in systems[first:] + systems[:first]:
            if s.failed:
                continue
            try:
                dt, ops = s.slice()
                if ops <= 0 or dt <= 0:
                    raise RuntimeError("slice of %d ops in %g s" % (ops, dt))
                s.figures.append(figure(args.unit, dt, ops))
                s.total_s += dt
                s.total_ops += ops
            except (OSError, RuntimeError, ValueError) as e:
                s.fail(str(e))

    status = 0
    for s in systems:
        s.stop()
        if s.failed or not s.figures:
            print("FAILED %s %s" % (s.name, s.failed or "no slices"))
            status = 1
            continue
        if args.aggregate:
            fig = figure(args.unit, s.total_s, s.total_ops)
        else:
            fig = statistics.median(s.figures)
        print("RESULT %s %s" % (s.name, FMT[args.unit] % fig))
        if os.environ.get("INTERLEAVE_DEBUG"):
            print("slices %s %s" % (s.name, " ".join(FMT[args.unit] % f for f in s.figures)),
                  file=sys.stderr)
    sys.stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
