"""``hulytrio state``: the seed's backup and recovery, from a shell.

- ``hulytrio state list`` — every saved state: uuid, epoch, size, when written;
- ``hulytrio state export UUID [-o FILE]`` — one state as a backup file;
- ``hulytrio state import UUID FILE`` — restore a backup file;
- ``hulytrio state delete UUID`` — forget a state.

All take ``--state URL`` (env ``STATE_STORE``) and ``--json``.  A backup file
is JSON (``format``, ``uuid``, ``epoch``, ``written_at``, ``state`` in
base64), readable and diffable by hand.  Exit codes: 0 done, 1 not found or
the store failed, 2 a bad argument (one line on stderr naming it).  A uuid
claimed by an owner that saved nothing yet has no state here: not listed,
not exported, and ``delete`` says so (it removes the claim's epoch all the
same).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .base import (
    StaleEpoch,
    StateStore,
    StateStoreError,
    StoredState,
    open_state_store,
    parse_state_url,
)

__all__ = ["BACKUP_FORMAT", "read_backup", "register"]

#: The ``format`` field of a backup file this version writes and reads.
BACKUP_FORMAT = "hulytrio-state/1"


def register(subparsers: Any) -> None:
    """Add ``state`` and its sub-commands to ``subparsers``."""
    state = subparsers.add_parser("state", help="list, back up, restore or delete container state")
    verbs = state.add_subparsers(dest="verb", required=True, metavar="VERB")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--state", metavar="URL",
                       help="the store: sqlite:PATH or postgresql://... (env STATE_STORE)")
        p.add_argument("--json", action="store_true", help="JSON output for scripts")

    p = verbs.add_parser("list", help="every saved state: uuid, epoch, size, when written")
    common(p)
    p.set_defaults(func=_command(_list))
    p = verbs.add_parser("export", help="write one state to a backup file")
    p.add_argument("uuid")
    p.add_argument("-o", "--output", metavar="FILE", help="the backup file (default: stdout)")
    common(p)
    p.set_defaults(func=_command(_export))
    p = verbs.add_parser("import", help="restore a state from a backup file")
    p.add_argument("uuid")
    p.add_argument("file", help="a backup file written by 'hulytrio state export'")
    p.add_argument("--epoch", type=int, help="write at this epoch (default: the file's, "
                                             "raised to the stored one so the restore is taken)")
    common(p)
    p.set_defaults(func=_command(_import))
    p = verbs.add_parser("delete", help="forget the state of one uuid")
    p.add_argument("uuid")
    common(p)
    p.set_defaults(func=_command(_delete))


class _Usage(Exception):
    """A bad argument: exit 2."""


class _Failed(Exception):
    """Not found or refused: exit 1."""


def _command(verb: Callable[[StateStore, argparse.Namespace], Awaitable[Any]]
             ) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        url = args.state or os.environ.get("STATE_STORE")
        try:
            if not url:
                raise _Usage("no state store: give --state URL or set STATE_STORE")
            try:
                parse_state_url(url)
            except StateStoreError as exc:
                raise _Usage(str(exc)) from None
            result = trio.run(_open_and_run, url, verb, args)
        except _Usage as exc:
            print(f"hulytrio state: {exc}", file=sys.stderr)
            return 2
        except (_Failed, StateStoreError) as exc:
            print(f"hulytrio state: {exc}", file=sys.stderr)
            return 1
        if result is not None:
            if args.json:
                print(json.dumps(result, indent=2))
            else:
                print(_human(result))
        return 0
    return run


async def _open_and_run(url: str, verb: Callable[[StateStore, argparse.Namespace],
                                                 Awaitable[Any]],
                        args: argparse.Namespace) -> Any:
    async with open_state_store(url) as store:
        return await verb(store, args)


def _when(written_at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(written_at))


def _human(result: Any) -> str:
    if isinstance(result, list):
        if not result:
            return "no stored states"
        rows = [("UUID", "EPOCH", "BYTES", "WRITTEN")] + [
            (r["uuid"], str(r["epoch"]), str(r["size"]), r["written"]) for r in result]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                         .rstrip() for row in rows)
    return str(result["message"])


async def _list(store: StateStore, args: argparse.Namespace) -> Any:
    return [{"uuid": i.uuid, "epoch": i.epoch, "size": i.size, "written": _when(i.written_at)}
            for i in await store.list()]


async def _export(store: StateStore, args: argparse.Namespace) -> Any:
    got = await store.get(args.uuid)
    if got is None:
        raise _Failed(f"no stored state for {args.uuid}")
    backup = json.dumps({"format": BACKUP_FORMAT, "uuid": got.uuid, "epoch": got.epoch,
                         "written_at": got.written_at,
                         "state": base64.b64encode(got.state).decode()}, indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(backup)
        return None
    try:
        await trio.Path(args.output).write_text(backup, encoding="utf-8")
    except OSError as exc:
        raise _Usage(f"--output {args.output}: {exc.strerror}") from None
    return {"message": f"exported {got.uuid} (epoch {got.epoch}, {len(got.state)} bytes) "
                       f"to {args.output}",
            "uuid": got.uuid, "epoch": got.epoch, "size": len(got.state), "file": args.output}


def read_backup(path: str) -> StoredState:
    """Return the state in the backup file at ``path``.

    Raises ``ValueError`` naming the file and what is wrong with it.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from None
    except ValueError as exc:
        raise ValueError(f"{path}: not a backup file (not JSON: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != BACKUP_FORMAT:
        raise ValueError(f"{path}: not a backup file (format is not {BACKUP_FORMAT!r})")
    try:
        return StoredState(str(data["uuid"]), base64.b64decode(data["state"], validate=True),
                           int(data["epoch"]), float(data["written_at"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: a damaged backup file ({type(exc).__name__}: {exc})") from None


async def _import(store: StateStore, args: argparse.Namespace) -> Any:
    try:
        backup = await trio.to_thread.run_sync(read_backup, args.file)
    except ValueError as exc:
        raise _Usage(str(exc)) from None
    if not backup.state:
        raise _Usage(f"{args.file}: the state in it is empty (0 bytes); the store refuses "
                     f"an empty state (it marks a uuid claimed with nothing saved)")
    epoch = backup.epoch if args.epoch is None else args.epoch
    try:
        await store.put(args.uuid, backup.state, epoch)
    except StaleEpoch as exc:
        if args.epoch is not None:
            raise
        # A restore is an operator's decision to go back: the file's epoch is
        # raised to the stored one (a saved state's, or an owner's claim with
        # nothing saved, which ``get`` does not show), so the fenced write is
        # accepted.  Refused again, a new owner claimed the uuid meanwhile.
        epoch = exc.stored
        await store.put(args.uuid, backup.state, epoch)
    note = "" if backup.uuid == args.uuid else f" (backed up as {backup.uuid})"
    return {"message": f"imported {args.file} into {args.uuid}{note} at epoch {epoch}, "
                       f"{len(backup.state)} bytes",
            "uuid": args.uuid, "epoch": epoch, "size": len(backup.state)}


async def _delete(store: StateStore, args: argparse.Namespace) -> Any:
    if not await store.delete(args.uuid):
        raise _Failed(f"no stored state for {args.uuid}")
    return {"message": f"deleted the state of {args.uuid}", "uuid": args.uuid}
