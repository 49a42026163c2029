"""The one-host store: a SQLite file in WAL mode.

WAL lets several agents on the host read while one writes; ``busy_timeout``
makes a writer wait for another's transaction instead of failing at once.
``synchronous = FULL``: a checkpoint acknowledged is on disk, power loss
included (one fsync per transaction, so a checkpoint of many containers in
one ``put_many`` pays it once).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

import trio

from .base import StateStoreError
from .blocking import CREATE, TABLE, BlockingStateStore, empty_state

__all__ = ["ROWS_PER_STATEMENT", "SqliteStateStore"]

#: Rows written by one INSERT statement in a batch (4 parameters each; SQLite
#: takes up to 32,766 parameters).
ROWS_PER_STATEMENT = 250


def _upsert_rows(rows: int) -> str:
    """Return the fenced upsert of ``rows`` rows in one statement."""
    values = ", ".join(["(?, ?, ?, ?)"] * rows)
    return (f"INSERT INTO {TABLE} (uuid, state, epoch, written_at) VALUES {values} "
            f"ON CONFLICT (uuid) DO UPDATE SET state = excluded.state, "
            f"epoch = excluded.epoch, written_at = excluded.written_at "
            f"WHERE excluded.epoch >= {TABLE}.epoch")


class SqliteStateStore(BlockingStateStore):
    """A store in the SQLite file ``path``."""

    placeholder = "?"

    @classmethod
    async def open(cls, path: str) -> SqliteStateStore:
        """Return the store in ``path``, created if missing.

        Raises ``StateStoreError`` when the file cannot be opened or is not a
        SQLite database.
        """
        return await trio.to_thread.run_sync(cls.open_blocking, path)

    @classmethod
    def open_blocking(cls, path: str) -> SqliteStateStore:
        """``open``, blocking the calling thread (the store's worker process uses it)."""
        try:
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise StateStoreError(f"state store sqlite:{path}: {exc}") from exc
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute(CREATE.replace("BYTEA", "BLOB").replace("DOUBLE PRECISION", "REAL"))
        except sqlite3.Error as exc:
            conn.close()
            raise StateStoreError(f"state store sqlite:{path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return cls(conn)

    def _upsert(self, cur: Any, items: Sequence[tuple[str, bytes, int]], now: float
                ) -> tuple[list[str], list[int], bool]:
        # ``ROWS_PER_STATEMENT`` rows per statement rather than one
        # ``executemany``: the worker thread holds the GIL only while it binds
        # a statement's parameters, and SQLite then writes its rows without it.
        # Row by row, the GIL changed hands at every row, and trio's thread,
        # once it let the GIL go (at every poll for I/O), waited up to the
        # switch interval (5 ms) to get it back: a request crossing the loop
        # six times in one process waited behind it each time
        # (docs/performance.md, "Container state").  A statement's change
        # count says whether all its rows were written (a refused one is
        # neither inserted nor updated), so the read-back is skipped when
        # nothing was refused.
        uuids: list[str] = []
        epochs: list[int] = []
        written = 0
        params: list[Any] = []
        full = _upsert_rows(ROWS_PER_STATEMENT)
        for uuid, state, epoch in items:
            if not state:
                raise empty_state(uuid)
            uuids.append(uuid)
            epochs.append(epoch)
            params += (uuid, state, epoch, now)
            if len(params) == 4 * ROWS_PER_STATEMENT:
                cur.execute(full, params)
                written += cur.rowcount
                params = []
        if params:
            cur.execute(_upsert_rows(len(params) // 4), params)
            written += cur.rowcount
        return uuids, epochs, written == len(uuids)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        cur = self._conn.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StateStoreError(f"state store (sqlite): {exc}") from exc
        finally:
            cur.close()
