"""``hulytrio simulate``: run a scenario file in the deterministic simulator."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable
from typing import Any, TextIO

from .campaign import run_campaign
from .report import RunResult, run_scenario
from .scenario import ScenarioError, load_scenario
from .timeline import render_timeline

__all__ = ["main", "register"]


def register(subparsers: Any) -> None:
    """Add the ``simulate`` sub-command to ``subparsers``."""
    p = subparsers.add_parser(
        "simulate",
        help="run a scenario in the deterministic simulator",
        description="Run SCENARIO (a TOML file) against the real core state machines on a "
                    "virtual clock, with faults, invariants and a readable summary.",
    )
    p.add_argument("scenario", metavar="SCENARIO", help="scenario file (TOML)")
    p.add_argument("--seed", type=int, default=None, help="seed (default: the scenario's)")
    p.add_argument("--seeds", metavar="A..B", default=None,
                   help="run seeds A to B (inclusive) in parallel processes")
    p.add_argument("--jobs", type=int, default=None, help="processes for --seeds (default: CPUs)")
    p.add_argument("--trace", metavar="OUT.jsonl", default=None,
                   help="write every event as a JSON line")
    p.add_argument("--timeline", metavar="OUT.svg", default=None,
                   help="draw agents, owners and faults over virtual time")
    p.add_argument("--check-determinism", action="store_true",
                   help="run twice and name the first event where the runs differ")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    p.set_defaults(func=main)


def _replay(args: argparse.Namespace, seed: int) -> str:
    return f"hulytrio simulate {shlex.quote(args.scenario)} --seed {seed}"


def _progress_bar(stream: TextIO) -> Callable[[float, float], None]:
    def show(t: float, end: float) -> None:
        frac = t / end if end > 0 else 1.0
        filled = int(frac * 40)
        stream.write(f"\r[{'#' * filled}{'.' * (40 - filled)}] {t:8.1f}s / {end:.1f}s")
        if frac >= 1.0:
            stream.write("\n")
        stream.flush()
    return show


def _unwritable(args: argparse.Namespace) -> str | None:
    """Return why an output file cannot be written, or None.

    Checked before the run: a run can take minutes, and a missing folder
    found after it would lose the run (and show a traceback).
    """
    for option, path in (("--trace", args.trace), ("--timeline", args.timeline)):
        if path is None:
            continue
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            return f"{option} {path}: the folder {folder} does not exist"
        if os.path.isdir(path):
            return f"{option} {path}: is a folder, not a file"
        if not os.access(folder, os.W_OK):
            return f"{option} {path}: the folder {folder} is not writable"
    return None


def _parse_seeds(text: str) -> list[int]:
    lo, sep, hi = text.partition("..")
    if not sep:
        raise ValueError(f"--seeds wants A..B, got {text!r}")
    a, b = int(lo), int(hi)
    if b < a:
        raise ValueError(f"--seeds {text!r}: B is below A")
    return list(range(a, b + 1))


def main(args: argparse.Namespace) -> int:
    """Run the command; returns 0 if every invariant held and every expectation was met."""
    out = sys.stdout
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problem = _unwritable(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.seeds is not None:
        try:
            seeds = _parse_seeds(args.seeds)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return _campaign(args, seeds, out)
    seed = scenario.seed if args.seed is None else args.seed
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    progress = _progress_bar(sys.stderr) if show else None
    if args.check_determinism:
        return _determinism(args, seed, out)
    trace = open(args.trace, "w", encoding="utf-8") if args.trace else None  # noqa: SIM115
    try:
        result, sim = run_scenario(scenario, seed, trace=trace, progress=progress)
    finally:
        if trace is not None:
            trace.close()
    print(result.summary, file=out)
    if args.timeline:
        with open(args.timeline, "w", encoding="utf-8") as f:
            f.write(render_timeline(sim))
        print(f"timeline written to {args.timeline}", file=out)
    if not result.ok:
        _failure(args, result, out)
        return 1
    return 0


def _failure(args: argparse.Namespace, result: RunResult, out: TextIO) -> None:
    print("", file=out)
    print(f"FAILED with seed {result.seed}; replay with:", file=out)
    print(f"  {_replay(args, result.seed)}", file=out)
    if result.context:
        print("the events leading to the first broken invariant:", file=out)
        for line in result.context[-20:]:
            print(f"  {line.rstrip()}", file=out)


def _determinism(args: argparse.Namespace, seed: int, out: TextIO) -> int:
    scenario = load_scenario(args.scenario)
    first, sim1 = run_scenario(scenario, seed, keep_trace=True)
    second, sim2 = run_scenario(scenario, seed, keep_trace=True)
    a, b = sim1.kept or [], sim2.kept or []
    print(f"run 1: {len(a)} events, trace sha256 {first.trace_hash}", file=out)
    print(f"run 2: {len(b)} events, trace sha256 {second.trace_hash}", file=out)
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            print(f"the runs diverge at event {i}:", file=out)
            print(f"  run 1: {x.rstrip()}", file=out)
            print(f"  run 2: {y.rstrip()}", file=out)
            return 1
    if len(a) != len(b):
        print(f"the runs diverge at event {min(len(a), len(b))}: one run ended early", file=out)
        return 1
    print("deterministic: both runs produced the same trace", file=out)
    return 0


def _campaign(args: argparse.Namespace, seeds: list[int], out: TextIO) -> int:
    done = [0]

    def on_result(r: RunResult) -> None:
        done[0] += 1
        mark = "ok" if r.ok else "FAILED"
        if not r.ok or sys.stderr.isatty():
            why = (r.violations[0].name if r.violations else (r.unmet[0] if r.unmet else ""))
            print(f"seed {r.seed}: {mark} {why}".rstrip(), file=sys.stderr)

    campaign = run_campaign(args.scenario, seeds, jobs=args.jobs, on_result=on_result)
    print(f"{len(seeds)} seeds of {args.scenario}: {len(seeds) - len(campaign.failing)} passed, "
          f"{len(campaign.failing)} failed", file=out)
    for r in campaign.results:
        if not r.ok:
            what = [f"{v.name} at {v.time:.3f}s: {v.text}" for v in r.violations[:2]]
            what += list(r.unmet[:2])
            print(f"  seed {r.seed}: " + "; ".join(what), file=out)
            print(f"    replay: {_replay(args, r.seed)}", file=out)
    print("probes reached: " + ", ".join(f"{k} x{n}" for k, n in campaign.probes.items()),
          file=out)
    print("probes never reached: " + (", ".join(campaign.never_hit) or "none"), file=out)
    if campaign.required_missing:
        print("required probes never reached: " + ", ".join(campaign.required_missing), file=out)
    return 0 if campaign.ok else 1
