"""Throughput, latency, fan-out and memory: ``hulytrio bench`` from ``python -m benchmarks``.

Every scenario starts its own hub, agent and load processes on loopback (see
``hulytrio.bench``).  With no argument this runs the quick default set (a few
minutes, 1 s warm-up + 3 s measured per echo scenario).  ``--table`` runs the
issue's table the way the reference was measured: echo of ~100 bytes through
the hub and direct, 1/16/64 in flight, one client, 2 s warm-up + 10 s
measured, our figures beside the reference's::

    .venv/bin/python benchmarks/throughput.py                 # quick set
    .venv/bin/python benchmarks/throughput.py --table         # ~2 min
    .venv/bin/python benchmarks/throughput.py --table --runs 3 --json out.jsonl
"""

from __future__ import annotations

import argparse
import sys

from hulytrio.bench.commands import main as bench_main

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
    if args.json:
        command += ["--json", args.json]
    code = 0
    for _ in range(args.runs):
        code |= bench_main(command)
    return code


if __name__ == "__main__":
    sys.exit(main())
