"""``python -m benchmarks.harness``: run benchmark scenarios, print a table and JSON lines.

With no argument it runs the quick default set (a few minutes);
``--scenario NAME`` (repeatable, or comma-separated) picks scenarios,
``--all`` runs every one, ``--list`` lists them.  ``--warmup`` and
``--duration`` set the echo scenarios' warm-up and measured seconds.
"""

from __future__ import annotations

import argparse
import sys

from .procs import BenchError
from .profile import summarize
from .report import format_results, json_line
from .scenarios import QUICK, SCENARIOS, Result, run

__all__ = ["main"]


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", action="append", default=[], metavar="NAME",
                        help="scenario to run (repeatable or comma-separated; "
                             "default: the quick set)")
    parser.add_argument("--all", action="store_true", help="run every scenario")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds of warm-up before measuring (default 1)")
    parser.add_argument("--duration", type=float, default=3.0,
                        help="seconds measured (default 3; the reference used 10)")
    parser.add_argument("--json", metavar="PATH",
                        help="also append each result's JSON line to PATH")
    parser.add_argument("--profile", metavar="DIR",
                        help="record each process of echo scenarios with py-spy into DIR "
                             "and print where the time goes")


def _selected(args: argparse.Namespace) -> list[str]:
    if args.all:
        return list(SCENARIOS)
    names = [n.strip() for s in args.scenario for n in s.split(",") if n.strip()]
    return names or list(QUICK)


def _command(args: argparse.Namespace) -> int:
    if args.list:
        for name, sc in SCENARIOS.items():
            mark = "*" if name in QUICK else " "
            print(f"{mark} {name:16} {sc.description}")
        print("(* = in the default quick set)")
        return 0
    names = _selected(args)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)} (see --list)", file=sys.stderr)
        return 2
    if args.duration <= 0 or args.warmup < 0:
        print("--duration must be > 0 and --warmup >= 0", file=sys.stderr)
        return 2
    results: list[Result] = []
    failed = 0
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            result = run(SCENARIOS[name], warmup=args.warmup, duration=args.duration,
                         profile=args.profile)
        except BenchError as exc:
            failed += 1
            print(f"{name} FAILED: {exc}", file=sys.stderr, flush=True)
            continue
        results.append(result)
        line = json_line(result)
        print(line, flush=True)
        if args.json:
            with open(args.json, "a", encoding="utf-8") as f:
                f.write(line + "\n")
    for result in results:
        for path in result.profiles:
            print()
            print(summarize(path))
    print()
    print(format_results(results))
    if failed:
        print(f"\n{failed} scenario(s) failed", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios ``argv`` names (see module docstring); returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.harness",
        description="Each scenario starts its own hub, agent and load processes on "
                    "127.0.0.1, measures, and kills them all.")
    _arguments(parser)
    return _command(parser.parse_args(argv))
