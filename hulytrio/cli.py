"""The ``hulytrio`` command: one sub-command per module that registers it.

Each sub-command lives with the code it drives (``transport.commands`` for
``serve``/``agent``, ``sim.commands`` for ``simulate``); this module only
collects them, so ``hulytrio --help`` lists all.  The benchmarks are not a
sub-command: they live in the source checkout (``python -m
benchmarks.harness``, docs/performance.md), not in the installed package.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

#: each sub-command -> the module whose ``register(subparsers)`` adds it (and
#: sets ``func`` on its parser)
COMMANDS = {
    "serve": "hulytrio.transport.commands",
    "config": "hulytrio.transport.commands",
    "agent": "hulytrio.transport.commands",
    "simulate": "hulytrio.sim.commands",
    "health": "hulytrio.ops.commands",
    "agents": "hulytrio.ops.commands",
    "list": "hulytrio.ops.commands",
    "request": "hulytrio.ops.commands",
    "watch": "hulytrio.ops.commands",
    "top": "hulytrio.ops.commands",
    "clients": "hulytrio.ops.commands",
    "terminate": "hulytrio.ops.commands",
    "state": "hulytrio.state.commands",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Return the argument parser: every sub-command, or only ``command``'s module's.

    Importing a module costs start-up time (the simulator's alone is ~0.15 s
    here), and a restarted hub is waited for by every client: ``hulytrio
    serve`` imports only what serving needs.
    """
    parser = argparse.ArgumentParser(
        prog="hulytrio",
        description="The Huly Virtual Network on Trio, with a deterministic simulator.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = dict.fromkeys(COMMANDS.values()) if command is None else [COMMANDS[command]]
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    command = args_list[0] if args_list and args_list[0] in COMMANDS else None
    parser = build_parser(command)
    args = parser.parse_args(args_list)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
