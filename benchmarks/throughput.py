"""The issue's throughput table, measured the way the reference was.

Echo of a ~100-byte payload through the hub and direct to the agent's
endpoint, at 1, 16 and 64 in flight, one client; hub, agent and client are
three processes on loopback; 2 s warm-up, 10 s measured.  Prints our figures
beside the reference's (ratios) and one JSON line per scenario::

    .venv/bin/python benchmarks/throughput.py            # the table (~2 min)
    .venv/bin/python benchmarks/throughput.py --runs 3   # repeat, to see the spread
    .venv/bin/python benchmarks/throughput.py --quick    # 1 s + 3 s per scenario
"""

from __future__ import annotations

import argparse
import sys

from hulytrio.bench.commands import main as bench_main

TABLE = ("hub-1", "hub-16", "hub-64", "direct-1", "direct-16", "direct-64")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="repeat the table N times")
    parser.add_argument("--quick", action="store_true", help="1 s warm-up, 3 s measured")
    parser.add_argument("--json", metavar="PATH", help="append the JSON lines to PATH")
    args = parser.parse_args(argv)
    timing = ["--warmup", "1", "--duration", "3"] if args.quick else ["--warmup", "2",
                                                                       "--duration", "10"]
    extra = ["--json", args.json] if args.json else []
    code = 0
    for _ in range(args.runs):
        code |= bench_main(["--scenario", ",".join(TABLE), *timing, *extra])
    return code


if __name__ == "__main__":
    sys.exit(main())
