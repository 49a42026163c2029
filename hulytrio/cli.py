"""The ``hulytrio`` command: one sub-command per module that registers it.

Each sub-command lives with the code it drives (``transport.commands`` for
``serve``/``agent``, ``sim.commands`` for ``simulate``, ``benchmarks`` for
``bench``); this module only collects them, so ``hulytrio --help`` lists all.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

#: modules that provide ``register(subparsers)``; each sets ``func`` on its parser
COMMAND_MODULES = (
    "hulytrio.transport.commands",
    "hulytrio.sim.commands",
    "hulytrio.bench.commands",
)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="hulytrio",
        description="The Huly Virtual Network on Trio, with a deterministic simulator.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
