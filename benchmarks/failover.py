"""Failover figures (``benchmarks.harness.failover``): agent kill, hang, clean close, hub restart.

Usage::

    .venv/bin/python -m benchmarks.failover               # 5 rounds, ~1 min
    .venv/bin/python -m benchmarks.failover --rounds 10 --alive 3 --json out.jsonl

The same figures are ``python -m benchmarks.harness --scenario failover``.
"""

from __future__ import annotations

import sys

from benchmarks.harness.failover import main

if __name__ == "__main__":
    sys.exit(main())
