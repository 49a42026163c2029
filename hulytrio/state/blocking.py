"""Stores whose database driver blocks: one worker thread call at a time.

Both backends (sqlite3, psycopg) block, so each store call runs on a trio
worker thread while trio's loop goes on serving requests.  One call at a time
per store: neither connection may be used by two threads at once, and a
checkpoint is one transaction anyway.  The SQL is the same for both but for
the placeholder: a fenced upsert that replaces a row only when the new epoch
is not older (run for a whole batch with one ``executemany``), and the
epochs read back in the same transaction say which writes were refused; a
claim raises the epoch and returns the row in one statement, inserting a row
with an empty state (``NO_STATE``) when there was none.

**Decision:** "claimed, nothing saved" is a zero-length state, not NULL: the
table's ``state`` column is ``NOT NULL`` in every deployment made so far, and
SQLite cannot drop that constraint without rebuilding the table under agents
that share the file.  The agent never writes an empty state (it stores
msgpack, and ``None`` as msgpack's nil), and ``put``/``put_many`` refuse one,
so zero bytes cannot be mistaken for a saved state (docs/state.md, "Epochs").
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import trio

from .base import Claim, StaleEpoch, StateInfo, StateStore, StoredState

__all__ = ["NO_STATE", "BlockingStateStore", "empty_state"]

T = TypeVar("T")

TABLE = "hulytrio_container_state"

CREATE = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    uuid TEXT PRIMARY KEY,
    state BYTEA NOT NULL,
    epoch BIGINT NOT NULL,
    written_at DOUBLE PRECISION NOT NULL
)"""

#: {p} is the backend's placeholder.
UPSERT = f"""
INSERT INTO {TABLE} (uuid, state, epoch, written_at) VALUES ({{p}}, {{p}}, {{p}}, {{p}})
ON CONFLICT (uuid) DO UPDATE
    SET state = excluded.state, epoch = excluded.epoch, written_at = excluded.written_at
    WHERE excluded.epoch >= {TABLE}.epoch"""

#: The stored epochs of a batch's uuids, read back in the same transaction.
EPOCHS_CHUNK = 500

#: The state of a row that a claim made: the uuid is owned, nothing is saved.
NO_STATE = b""

#: The new owner's take-over: raise the epoch above every earlier owner's,
#: or, when nothing is stored, store the claimed epoch with ``NO_STATE``.  One
#: statement: two agents claiming at once get two epochs (the database
#: orders the insert and the update), never the same one.
CLAIM = f"""
INSERT INTO {TABLE} (uuid, state, epoch, written_at) VALUES ({{p}}, {{p}}, {{p}}, {{p}})
ON CONFLICT (uuid) DO UPDATE
    SET epoch = CASE WHEN {TABLE}.epoch + 1 > excluded.epoch THEN {TABLE}.epoch + 1
                     ELSE excluded.epoch END
RETURNING state, epoch, written_at"""

# A claim's row with nothing saved is no state to read, list or back up.
SELECT = (f"SELECT state, epoch, written_at FROM {TABLE} "
          f"WHERE uuid = {{p}} AND length(state) > 0")
DELETE = f"DELETE FROM {TABLE} WHERE uuid = {{p}} RETURNING length(state)"
LIST = (f"SELECT uuid, epoch, length(state), written_at FROM {TABLE} "
        f"WHERE length(state) > 0 ORDER BY uuid")


def empty_state(uuid: str) -> ValueError:
    """Return the error that refuses an empty state for ``uuid``."""
    return ValueError(f"state of {uuid}: an empty state cannot be stored (zero bytes "
                      f"mark a uuid claimed with nothing saved)")


class BlockingStateStore(StateStore):
    """A ``StateStore`` over a blocking DB-API connection ``conn``."""

    #: the DB-API placeholder of the backend's driver
    placeholder = "?"

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._lock = trio.Lock()
        p = self.placeholder
        self._sql = {name: sql.format(p=p) for name, sql in
                     (("upsert", UPSERT), ("claim", CLAIM), ("select", SELECT),
                      ("delete", DELETE))}

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        async with self._lock:
            return await trio.to_thread.run_sync(fn, *args)

    @abc.abstractmethod
    def _transaction(self) -> Any:
        """Return a context manager around one transaction; yields a cursor."""

    # -- the blocking halves, run on the worker thread -----------------------

    def _get(self, uuid: str) -> StoredState | None:
        with self._transaction() as cur:
            cur.execute(self._sql["select"], (uuid,))
            row = cur.fetchone()
        if row is None:
            return None
        return StoredState(uuid, bytes(row[0]), int(row[1]), float(row[2]))

    def _claim(self, uuid: str, epoch: int) -> Claim:
        with self._transaction() as cur:
            cur.execute(self._sql["claim"], (uuid, NO_STATE, epoch, time.time()))
            state, claimed, written_at = cur.fetchone()
        state = bytes(state)
        if state == NO_STATE:
            return Claim(uuid, int(claimed), None)
        return Claim(uuid, int(claimed),
                     StoredState(uuid, state, int(claimed), float(written_at)))

    def _put_many(self, items: Sequence[tuple[str, bytes, int]]) -> list[StaleEpoch]:
        # The rows are written by ``_upsert`` (the backend's fastest way),
        # then, unless it could tell that every row was written, the epochs
        # are read back: a write whose uuid now holds a newer epoch was
        # refused (or already replaced by a newer owner's).  Nothing the
        # garbage collector tracks is kept per item (``items`` may make its
        # tuples only as they are read: the agent's ``_Items``), so a big
        # batch triggers no collection (transport/checkpoints.py).
        p = self.placeholder
        refused: list[StaleEpoch] = []
        with self._transaction() as cur:
            uuids, epochs, all_written = self._upsert(cur, items, time.time())
            if all_written:
                return refused
            for i in range(0, len(uuids), EPOCHS_CHUNK):
                chunk = uuids[i:i + EPOCHS_CHUNK]
                mine = dict(zip(chunk, epochs[i:i + EPOCHS_CHUNK], strict=True))
                cur.execute(f"SELECT uuid, epoch FROM {TABLE} WHERE uuid IN "
                            f"({', '.join([p] * len(chunk))})", chunk)
                for uuid, stored in cur:
                    epoch = mine[str(uuid)]
                    if int(stored) > epoch:
                        refused.append(StaleEpoch(str(uuid), epoch, int(stored)))
        return refused

    def _upsert(self, cur: Any, items: Sequence[tuple[str, bytes, int]], now: float
                ) -> tuple[list[str], list[int], bool]:
        """Run the fenced upsert of every item; return their uuids and epochs, and
        True when every row is known to be written (no read-back needed).

        This one is one ``executemany`` (the driver loops in C: the worker
        thread holds the GIL far less than a Python loop of executes), rows
        made as the driver reads them; it cannot tell what was written.
        """
        uuids: list[str] = []
        epochs: list[int] = []

        def rows() -> Iterator[tuple[str, bytes, int, float]]:
            for uuid, state, epoch in items:
                if not state:
                    raise empty_state(uuid)
                uuids.append(uuid)
                epochs.append(epoch)
                yield uuid, state, epoch, now

        cur.executemany(self._sql["upsert"], rows())
        return uuids, epochs, False

    def _delete(self, uuid: str) -> bool:
        with self._transaction() as cur:
            cur.execute(self._sql["delete"], (uuid,))
            row = cur.fetchone()
        return row is not None and int(row[0]) > 0

    def _list(self) -> list[StateInfo]:
        with self._transaction() as cur:
            cur.execute(LIST)
            rows = cur.fetchall()
        return [StateInfo(str(u), int(e), int(n), float(w)) for u, e, n, w in rows]

    # -- the StateStore interface ---------------------------------------------

    async def get(self, uuid: str) -> StoredState | None:
        return await self._call(self._get, uuid)

    async def claim(self, uuid: str, epoch: int) -> Claim:
        return await self._call(self._claim, uuid, epoch)

    async def put(self, uuid: str, state: bytes, epoch: int) -> None:
        refused = await self._call(self._put_many, [(uuid, state, epoch)])
        if refused:
            raise refused[0]

    async def put_many(self, items: Sequence[tuple[str, bytes, int]]) -> list[StaleEpoch]:
        return await self._call(self._put_many, items)

    async def delete(self, uuid: str) -> bool:
        return await self._call(self._delete, uuid)

    async def list(self) -> list[StateInfo]:
        return await self._call(self._list)

    async def aclose(self) -> None:
        await self._call(self._conn.close)
