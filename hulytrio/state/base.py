"""The state store interface, its records, and the URL that picks a backend.

Theory of operation: a store maps a container uuid to the last state written
for it, with the *epoch* of the writer and the time of the write.  The epoch
is the writer's ownership epoch (for a stateless uuid, the one the hub gave
its owner; it only grows from owner to owner), so ``put`` is a fenced write:
an epoch older than the stored one is refused with ``StaleEpoch`` and changes
nothing, an equal or newer one replaces the record.  A new owner *claims* the
uuid before it serves (``claim``): the stored epoch is raised above every
earlier owner's, saved state or not, so a claim with nothing saved leaves a
row that holds only the epoch.  That row is not a state: ``get``, ``list``
and ``delete``'s answer ignore it.  It holds zero bytes of state (the table
predates it and says ``NOT NULL``), which is why an empty state cannot be
written (``put`` raises ``ValueError``).  Stores are reached from
trio code; the backends' drivers block, so they run on a worker thread
(``blocking.py``) or, for an agent, in a child process (``worker.py``), one
call at a time per store, so trio's loop is never blocked by the database.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import attrs

__all__ = [
    "Claim",
    "StaleEpoch",
    "StateInfo",
    "StateStore",
    "StateStoreError",
    "StoredState",
    "open_state_store",
    "parse_state_url",
]


class StateStoreError(Exception):
    """The store URL or the store itself is unusable; the message says which and why."""


class StaleEpoch(StateStoreError):
    """A write with an epoch older than the stored one was refused."""

    def __init__(self, uuid: str, epoch: int, stored: int) -> None:
        super().__init__(f"state of {uuid}: write with epoch {epoch} refused, "
                         f"the store holds epoch {stored}")
        self.uuid = uuid
        self.epoch = epoch
        self.stored = stored


@attrs.frozen
class StoredState:
    """The state last written for ``uuid``: its bytes, the writer's epoch, when."""

    uuid: str
    state: bytes
    epoch: int
    #: seconds since 1970 (the writer's wall clock)
    written_at: float


@attrs.frozen
class Claim:
    """What a new owner's ``claim`` of ``uuid`` got: the epoch it writes at, and the
    state saved for it (None when nothing was saved yet)."""

    uuid: str
    epoch: int
    #: the saved state, its ``epoch`` the claimed one; None: start afresh
    saved: StoredState | None


@attrs.frozen
class StateInfo:
    """What ``list()`` says of one stored state, without its bytes."""

    uuid: str
    epoch: int
    size: int
    written_at: float


@attrs.frozen
class StateUrl:
    """A parsed ``--state`` value: ``kind`` is "sqlite" or "postgresql"."""

    kind: str
    #: sqlite: the database file; postgresql: the libpq connection URL.
    target: str


def parse_state_url(url: str) -> StateUrl:
    """Return the parsed form of a ``--state`` URL.

    Accepted: ``sqlite:/abs/path.db``, ``sqlite:///abs/path.db``,
    ``sqlite:relative.db``, ``postgresql://...`` and ``postgres://...``
    (libpq URLs).  Raises ``StateStoreError`` naming the value and what is
    allowed.
    """
    allowed = "sqlite:PATH or postgresql://USER@HOST[:PORT]/DB"
    if url.startswith("sqlite:"):
        rest = url[len("sqlite:"):]
        if rest.startswith("//"):
            parts = urlsplit(url)
            if parts.netloc not in ("", "localhost"):
                raise StateStoreError(f"state store {url!r}: sqlite is a local file "
                                      f"(no host); use {allowed}")
            rest = parts.path
        if not rest:
            raise StateStoreError(f"state store {url!r}: no database file; use {allowed}")
        return StateUrl("sqlite", rest)
    scheme = urlsplit(url).scheme
    if scheme in ("postgresql", "postgres"):
        return StateUrl("postgresql", url)
    raise StateStoreError(f"state store {url!r}: unknown kind; use {allowed}")


class StateStore(abc.ABC):
    """Where container states are kept (see the module's theory of operation)."""

    @abc.abstractmethod
    async def get(self, uuid: str) -> StoredState | None:
        """Return the state saved for ``uuid``, or None when there is none
        (nothing stored, or only a claim's epoch)."""

    @abc.abstractmethod
    async def put(self, uuid: str, state: bytes, epoch: int) -> None:
        """Store ``state`` for ``uuid`` as written at ``epoch``.

        Raises ``StaleEpoch`` (and stores nothing) when the stored epoch is
        newer than ``epoch``, ``ValueError`` (and stores nothing) when
        ``state`` is empty.
        """

    @abc.abstractmethod
    async def put_many(self, items: Sequence[tuple[str, bytes, int]]) -> list[StaleEpoch]:
        """Store many ``(uuid, state, epoch)`` in one transaction (a checkpoint).

        Returns the writes refused as stale (the others are stored); raises
        ``StateStoreError`` when the store fails, or ``ValueError`` when a
        state is empty, in either case storing none of them.
        """

    @abc.abstractmethod
    async def claim(self, uuid: str, epoch: int) -> Claim:
        """Take ``uuid`` over as its new owner at ownership ``epoch``, in one transaction.

        Raises the stored epoch to ``max(stored + 1, epoch)`` (``epoch`` when
        nothing is stored: the claim then stores that epoch with no state),
        so every write of an earlier owner is refused from now on, whether
        it ever wrote or not.  Returns the ``Claim``: the epoch the new
        owner writes at and the saved state, if any.  Raises
        ``StateStoreError`` when the store fails.
        """

    @abc.abstractmethod
    async def delete(self, uuid: str) -> bool:
        """Remove what is stored for ``uuid`` (a claim's epoch too); return whether
        a state was saved."""

    @abc.abstractmethod
    async def list(self) -> list[StateInfo]:
        """Return the saved states, sorted by uuid, without their bytes (a claim
        with nothing saved is not listed)."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the store's connections."""


@asynccontextmanager
async def open_state_store(url: str, *, worker: bool = False) -> AsyncIterator[StateStore]:
    """Yield the store at ``url``, opened and ready; close it on exit.

    ``worker``: run the store in a child process (``worker.py``), as
    ``hulytrio agent`` does: an agent's requests then do not wait while a
    checkpoint is written (docs/state.md, "Where the store runs").  Without
    it the store runs on a worker thread of this process.

    Raises ``StateStoreError`` for a malformed URL or a store that cannot be
    opened (a missing directory, an unreachable server, refused credentials).
    """
    parsed = parse_state_url(url)
    store: StateStore
    if worker:
        from .worker import WorkerStateStore
        store = await WorkerStateStore.open(url)
    elif parsed.kind == "sqlite":
        from .sqlite import SqliteStateStore
        store = await SqliteStateStore.open(parsed.target)
    else:
        from .postgres import PostgresStateStore
        store = await PostgresStateStore.open(parsed.target)
    try:
        yield store
    finally:
        await store.aclose()
