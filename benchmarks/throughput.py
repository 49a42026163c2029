"""Throughput, latency, fan-out and memory: the harness's scenarios from ``python -m benchmarks``.

Every scenario starts its own hub, agent and load processes on loopback (see
``benchmarks.harness``).  With no argument this runs the quick default set (a few
minutes, 1 s warm-up + 3 s measured per echo scenario).  ``--table`` runs the
issue's table the way the reference was measured: echo of ~100 bytes through
the hub and direct, 1/16/64 in flight, one client, 2 s warm-up + 10 s
measured, our figures beside the reference's::

    .venv/bin/python -m benchmarks.throughput                # quick set
    .venv/bin/python -m benchmarks.throughput --table        # ~2 min
    .venv/bin/python -m benchmarks.throughput --table --runs 3 --json out.jsonl

With ``--runs N`` (N > 1) a last table gives, per scenario, the median over
the runs and their range, next to the reference's figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from typing import Any

from benchmarks.harness.commands import main as bench_main
from benchmarks.harness.reference import REFERENCE

TABLE = ("raw-ws-1", "raw-ws-16", "hub-1", "hub-16", "hub-64", "direct-1", "direct-16",
         "direct-64")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", action="store_true",
                        help="the issue's table, 2 s warm-up + 10 s measured")
    parser.add_argument("--runs", type=int, default=1, help="repeat N times (spread)")
    parser.add_argument("--json", metavar="PATH", help="append the JSON lines to PATH")
    args = parser.parse_args(argv)
    command = (["--scenario", ",".join(TABLE), "--warmup", "2", "--duration", "10"]
               if args.table else [])
    fd, path = tempfile.mkstemp(suffix=".jsonl")
    os.close(fd)
    try:
        code = 0
        for _ in range(args.runs):
            code |= bench_main([*command, "--json", path])
        with open(path, encoding="utf-8") as f:
            lines = f.read()
    finally:
        os.unlink(path)
    if args.json:
        with open(args.json, "a", encoding="utf-8") as f:
            f.write(lines)
    if args.runs > 1:
        print()
        print(summary([json.loads(line) for line in lines.splitlines() if line]))
    return code


def summary(results: list[dict[str, Any]]) -> str:
    """Return a table of the median and range over runs of each echo scenario's figures."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        if result["kind"] == "echo":
            runs.setdefault(result["scenario"], []).append(result["metrics"])
    lines = [f"{'scenario':<12} {'runs':>4} {'req/s median':>13} {'range':>17} "
             f"{'ref req/s':>9} {'ratio':>12} {'p99 ms':>7} {'ref p99':>7}"]
    for name, metrics in runs.items():
        rates = sorted(float(m["req_per_s"]) for m in metrics)
        p99 = statistics.median(float(m["p99_ms"]) for m in metrics)
        ref = REFERENCE.get(name)
        ref_rate = ref.req_per_s if ref is not None else None
        ref_p99 = ref.p99_ms if ref is not None else None
        ratio = (f"{rates[0] / ref_rate:.2f}-{rates[-1] / ref_rate:.2f}x"
                 if ref_rate else "-")
        lines.append(
            f"{name:<12} {len(rates):>4} {statistics.median(rates):>13,.0f} "
            f"{f'{rates[0]:,.0f}-{rates[-1]:,.0f}':>17} "
            f"{'-' if ref_rate is None else f'{ref_rate:,.0f}':>9} {ratio:>12} "
            f"{p99:>7.2f} {'-' if ref_p99 is None else f'{ref_p99:.2f}':>7}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
