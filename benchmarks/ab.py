"""Interleaved A/B of ``benchmarks.harness`` scenarios: a git revision against the working tree.

This VM's speed drifts by tens of percent within minutes, so two benchmark
runs taken at different times compare the machine, not the code.  This
script alternates the two versions round by round and reports the median
and every run of each, which is how every change in docs/performance.md was
judged.

The base revision's ``hulytrio`` package is exported with ``git archive``
into a temporary directory; the harness and its processes (``python -m
...``) are started with that directory as their working directory, so they
import its ``hulytrio`` (the current directory comes first on ``sys.path``
under ``-m``).  The harness itself is always the working tree's
(``benchmarks/`` is found after it on ``PYTHONPATH``): both versions are
measured by the same yardstick.

``--variant websockets`` compares the working tree with itself instead: the
B side's processes run on the ``websockets`` framing (``benchmarks/ws_websockets.py``,
installed by ``benchmarks/wsvariant/sitecustomize.py``), the A side on ours.

Usage::

    .venv/bin/python benchmarks/ab.py --base HEAD~1 --rounds 4 hub-16,direct-64
    .venv/bin/python benchmarks/ab.py --metric p50_ms cold-get
    .venv/bin/python benchmarks/ab.py --variant websockets hub-1,hub-16-64k
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: ``--variant`` name -> the directory put first on the B side's ``PYTHONPATH``
VARIANTS = {"websockets": ROOT / "benchmarks" / "wsvariant"}


def export(rev: str, into: Path) -> None:
    """Write the ``hulytrio`` package of git revision ``rev`` under ``into``."""
    archive = subprocess.run(["git", "archive", rev, "hulytrio"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)


def bench(cwd: Path, scenarios: str, duration: float, metric: str,
          first: Path | None = None) -> dict[str, float]:
    """Run the scenarios once with the processes started in ``cwd``; returns metric per scenario.

    ``first``, when given, goes first on the processes' ``PYTHONPATH`` (a variant).
    """
    path = [str(cwd), str(ROOT)] if first is None else [str(first), str(cwd), str(ROOT)]
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as f:
        out = Path(f.name)
    try:
        subprocess.run([sys.executable, "-m", "benchmarks.harness", "--scenario",
                        scenarios, "--duration", str(duration), "--json", str(out)],
                       cwd=cwd, check=False, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(path)})
        results = {}
        for line in out.read_text().splitlines():
            row = json.loads(line)
            value = row["metrics"].get(metric)
            if value is not None:
                results[row["scenario"]] = float(value)
        return results
    finally:
        out.unlink(missing_ok=True)


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", help="comma-separated scenarios of benchmarks.harness")
    parser.add_argument("--base", default="HEAD", help="git revision to compare against")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=2.0, help="seconds measured per run")
    parser.add_argument("--metric", default="req_per_s", help="metric of the JSON line")
    parser.add_argument("--variant", choices=sorted(VARIANTS),
                        help="compare the working tree with itself run on this variant")
    args = parser.parse_args(argv)
    runs: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        versions: dict[str, tuple[Path, Path | None]]
        if args.variant:
            versions = {"ours": (ROOT, None), args.variant: (ROOT, VARIANTS[args.variant])}
        else:
            base = Path(tmp)
            export(args.base, base)
            versions = {args.base: (base, None), "working tree": (ROOT, None)}
        for n in range(args.rounds):
            for label, (cwd, first) in versions.items():
                for scenario, value in bench(cwd, args.scenarios, args.duration,
                                             args.metric, first).items():
                    runs.setdefault((scenario, label), []).append(value)
            print(f"round {n + 1}/{args.rounds} done", file=sys.stderr)
    print(f"{'scenario':<14} {'version':<14} {'median ' + args.metric:>18}  runs")
    for (scenario, label), values in sorted(runs.items()):
        print(f"{scenario:<14} {label:<14} {statistics.median(values):>18,.3f}  "
              f"{[round(v, 3) for v in values]}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
