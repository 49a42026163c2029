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
from collections.abc import Iterator
from typing import Any

import trio

from .base import StateStoreError
from .blocking import CREATE, BlockingStateStore

__all__ = ["SqliteStateStore"]


class SqliteStateStore(BlockingStateStore):
    """A store in the SQLite file ``path``."""

    placeholder = "?"

    @classmethod
    async def open(cls, path: str) -> SqliteStateStore:
        """Return the store in ``path``, created if missing.

        Raises ``StateStoreError`` when the file cannot be opened or is not a
        SQLite database.
        """
        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            try:
                conn.execute("PRAGMA busy_timeout = 5000")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
                conn.execute(CREATE.replace("BYTEA", "BLOB").replace(
                    "DOUBLE PRECISION", "REAL"))
            except BaseException:
                conn.close()
                raise
            return conn
        try:
            conn = await trio.to_thread.run_sync(connect)
        except sqlite3.Error as exc:
            raise StateStoreError(f"state store sqlite:{path}: {exc}") from exc
        return cls(conn)

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
