"""Failover figures (``hulytrio.bench.failover``): agent kill / hang / clean close, hub restarts.

Usage::

    .venv/bin/python benchmarks/failover.py               # 5 rounds, ~1 min
    .venv/bin/python benchmarks/failover.py --rounds 10 --alive 3 --json out.jsonl

The same figures are ``hulytrio bench --scenario failover``.
"""

from __future__ import annotations

import sys

from hulytrio.bench.failover import main

if __name__ == "__main__":
    sys.exit(main())
