"""The several-host store: a table in PostgreSQL, through psycopg.

psycopg's async mode needs asyncio, so the store runs its (blocking)
connection on a trio worker thread like the SQLite one.  The table is made on
first open; every write is the same fenced upsert, run in one transaction per
call, so agents on different hosts share one store safely.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import trio

from .base import StateStoreError
from .blocking import CREATE, BlockingStateStore

__all__ = ["PostgresStateStore"]


class PostgresStateStore(BlockingStateStore):
    """A store in the PostgreSQL database at ``url`` (a libpq URL)."""

    placeholder = "%s"

    @classmethod
    async def open(cls, url: str) -> PostgresStateStore:
        """Return the store at ``url``, its table created if missing.

        Raises ``StateStoreError`` when the driver is missing, or the server
        cannot be reached or refuses the connection (the message names the
        server, never the password).
        """
        return await trio.to_thread.run_sync(cls.open_blocking, url)

    @classmethod
    def open_blocking(cls, url: str) -> PostgresStateStore:
        """``open``, blocking the calling thread (the store's worker process uses it)."""
        try:
            import psycopg
        except ImportError:
            raise StateStoreError("state store postgresql: the driver is not installed; "
                                  "pip install 'hulytrio[postgresql]'") from None
        try:
            conn = psycopg.connect(url, connect_timeout=10)
        except psycopg.Error as exc:
            raise StateStoreError(f"state store {_redacted(url)}: {exc}".strip()) from exc
        try:
            with conn.transaction():
                conn.execute(CREATE)
        except psycopg.Error as exc:
            conn.close()
            raise StateStoreError(f"state store {_redacted(url)}: {exc}".strip()) from exc
        except BaseException:
            conn.close()
            raise
        return cls(conn)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        import psycopg
        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                yield cur
        except psycopg.Error as exc:
            raise StateStoreError(f"state store (postgresql): {exc}") from exc


def _redacted(url: str) -> str:
    """Return ``url`` without its password (for error messages and logs)."""
    from urllib.parse import urlsplit, urlunsplit
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
