"""Instructions per churn event and per routed request, counted by valgrind.

Usage: python -m benchmarks.instructions [--only churn|hub|direct] [--requests N]
                                         [--size BYTES] [--inflight K] [--ws ours|websockets]

Wall time on this VM drifts by 2x from one hour to the next; instruction
counts do not (the same binary, inputs and environment give the same total).
This is the method docs/performance.md quotes:

- churn: cachegrind's total for the 120 s ``scenarios/churn.toml`` minus the
  total for a 1 s run of it (interpreter start, imports and scenario set-up
  cancel out), divided by the difference in core events;
- requests: ``benchmarks/cpu_per_request.py --one PATH`` with N requests
  minus the same with 0, divided by N (``--size``, ``--inflight`` and ``--ws``
  are passed on: the echoed string's length, the calls in flight, and the
  WebSocket framing, ours or ``websockets``' for the A/B of issue 13).

Prints one table row per path. Needs ``valgrind`` on PATH (Debian's package).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHURN = ROOT / "scenarios" / "churn.toml"

_CHURN_SNIPPET = """
import sys, attrs
from hulytrio.sim.report import run_scenario
from hulytrio.sim.scenario import Seconds, load_scenario
s = load_scenario(sys.argv[1])
if sys.argv[2] != "full":
    s = attrs.evolve(s, duration=Seconds(float(sys.argv[2])))
result, _ = run_scenario(s)
print("EVENTS", result.events)
"""


def _cachegrind(argv: list[str]) -> tuple[int, str]:
    """Run ``argv`` under cachegrind; returns (instructions, the program's stdout)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            ["valgrind", "--tool=cachegrind", "--cache-sim=no",
             f"--cachegrind-out-file={tmp}/cg.out", *argv],
            capture_output=True, text=True, check=True, cwd=ROOT,
        )
    match = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{out.stderr[-2000:]}")
    return int(match.group(1).replace(",", "")), out.stdout


def churn_per_event() -> tuple[float, int]:
    """Returns (instructions per core event, core events) for the churn scenario."""
    runs = []
    for duration in ("full", "1"):
        total, stdout = _cachegrind([sys.executable, "-c", _CHURN_SNIPPET, str(CHURN), duration])
        events = int(stdout.split("EVENTS", 1)[1].split()[0])
        runs.append((total, events))
    (big, big_events), (small, small_events) = runs
    return (big - small) / (big_events - small_events), big_events - small_events


def request_cost(path: str, requests: int, extra: tuple[str, ...] = ()) -> float:
    """Returns instructions per echo request on ``path`` ("hub" or "direct").

    ``extra`` is passed on to ``benchmarks.cpu_per_request`` (``--size`` etc.).
    """
    argv = [sys.executable, "-m", "benchmarks.cpu_per_request", "--one", path, *extra,
            "--requests"]
    big, _ = _cachegrind([*argv, str(requests)])
    small, _ = _cachegrind([*argv, "0"])
    return (big - small) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("churn", "hub", "direct"))
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--size", type=int, help="echoed string's length (default 100)")
    parser.add_argument("--inflight", type=int, help="calls in flight (default 64)")
    parser.add_argument("--ws", choices=("ours", "websockets"), default="ours")
    args = parser.parse_args()
    extra = ("--ws", args.ws)
    if args.size is not None:
        extra += ("--size", str(args.size))
    if args.inflight is not None:
        extra += ("--inflight", str(args.inflight))
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    print("| path | instructions |")
    print("|---|---:|")
    if args.only in (None, "churn"):
        per_event, events = churn_per_event()
        print(f"| churn, per core event ({events:,} events) | {per_event:,.0f} |", flush=True)
    for path in ("hub", "direct"):
        if args.only in (None, path):
            cost = request_cost(path, args.requests, extra)
            print(f"| request {path}, per request ({' '.join(extra)}) | {cost:,.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
