"""An agent's checkpoints of container state to a state store (docs/state.md).

Theory of operation
-------------------
Only containers with state (``has_state``: they override ``export_state``)
are tracked, from the moment they serve here with their saved state
restored (``restore``) until they leave (``forget``).  Each tracked
container remembers its write epoch and the ``state_version`` it had at
its last write; a checkpoint (``checkpoint``, every ``interval`` seconds in
``run``) exports only the containers whose version moved, encodes them as
msgpack and writes them all in one ``put_many`` (one transaction, on the
store's worker thread), so idle containers cost one attribute read and no
write.  Exports run on the trio thread; the loop gets a scheduling point
at least every ``SLICE`` seconds of them, so requests keep being served.

Epochs (the fencing token of every write): ``restore`` *claims* the uuid
(``StateStore.claim``): in one transaction the stored epoch is raised to
``max(stored + 1, ownership epoch)`` and the state read, so every write of
an earlier owner (a paused agent waking up) is refused from then on.  The
ownership epoch is the hub's: the one in ``SetServing``/``Activate`` for a
stateless uuid, 0 for an ordinary container (its ``Start`` carries none; the
claim's ``stored + 1`` orders its owners).  A write refused as stale means
a newer owner exists: the container is forgotten and ``on_stale`` stops it.

One checkpoint at a time (a lock): two exports of one container can never
be written in the opposite order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import overload

import trio

from hulytrio.core.errors import LocalProtocolError
from hulytrio.state import StaleEpoch, StateStore, StateStoreError

from ..wire.codec import WireError, decode_payload, encode_payload
from .container import Container

__all__ = ["SLICE", "Checkpoints", "RestoreFailed"]

log = logging.getLogger("hulytrio.agent")

#: The longest stretch of exports run without letting other tasks in (seconds).
SLICE = 0.002


class RestoreFailed(Exception):
    """The saved state could not be read or imported; the message says which and why."""


class _Tracked:
    """One container with state serving here."""

    __slots__ = ("container", "epoch", "saved")

    def __init__(self, container: Container, epoch: int, saved: int) -> None:
        self.container = container
        #: the epoch its writes carry
        self.epoch = epoch
        #: its ``state_version`` when last written (or restored)
        self.saved = saved


class _Batch(Sequence[tuple[str, bytes, int]]):
    """The writes of one checkpoint, in columns; reads as ``put_many``'s items.

    Why columns: a tuple per container, alive for the whole checkpoint, made
    the garbage collector run (a checkpoint of 10,000 containers: 45
    young-generation passes, and a full collection every third checkpoint,
    which held the trio thread 12-55 ms on this VM: docs/performance.md).
    Here nothing the collector tracks is kept per container: the items
    ``put_many`` reads are made one at a time and freed at once.
    """

    __slots__ = ("epochs", "states", "tracked", "uuids", "versions")

    def __init__(self) -> None:
        self.uuids: list[str] = []
        self.tracked: list[_Tracked] = []
        self.versions: list[int] = []
        self.states: list[bytes] = []
        self.epochs: list[int] = []

    def add(self, uuid: str, tracked: _Tracked, version: int, state: bytes) -> None:
        """Write ``state`` of ``uuid`` (its ``state_version`` ``version``) at its epoch."""
        self.uuids.append(uuid)
        self.tracked.append(tracked)
        self.versions.append(version)
        self.states.append(state)
        self.epochs.append(tracked.epoch)

    def __len__(self) -> int:
        return len(self.uuids)

    @overload
    def __getitem__(self, index: int) -> tuple[str, bytes, int]: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[tuple[str, bytes, int]]: ...

    def __getitem__(self, index: int | slice
                    ) -> tuple[str, bytes, int] | Sequence[tuple[str, bytes, int]]:
        if isinstance(index, slice):
            return list(zip(self.uuids[index], self.states[index], self.epochs[index],
                            strict=True))
        return self.uuids[index], self.states[index], self.epochs[index]

    def __iter__(self) -> Iterator[tuple[str, bytes, int]]:
        return zip(self.uuids, self.states, self.epochs, strict=True)


class Checkpoints:
    """The checkpoints of one agent's containers (see module docstring).

    ``on_stale(uuid)`` is called when the store refused a write of ``uuid``
    as stale (the container is no longer tracked by then).
    """

    def __init__(self, store: StateStore, interval: float, agent_id: str,
                 on_stale: Callable[[str], None]) -> None:
        self.store = store
        self.interval = interval
        self.agent_id = agent_id
        self._on_stale = on_stale
        self._tracked: dict[str, _Tracked] = {}
        self._lock = trio.Lock()
        #: states written since the start (for tests and logs)
        self.written = 0

    def tracks(self, uuid: str) -> bool:
        """Return whether ``uuid`` is tracked (restored here and serving)."""
        return uuid in self._tracked

    def epoch(self, uuid: str) -> int | None:
        """Return the epoch the writes of ``uuid`` carry, None if untracked."""
        tracked = self._tracked.get(uuid)
        return None if tracked is None else tracked.epoch

    def dirty(self) -> list[str]:
        """Return the tracked uuids whose state changed since their last write."""
        return [u for u, t in self._tracked.items() if t.container.state_version != t.saved]

    async def restore(self, uuid: str, container: Container, epoch: int) -> None:
        """Claim ``uuid`` at ownership ``epoch``, import its saved state, track it.

        Raises ``RestoreFailed`` (nothing tracked) when the store fails, the
        saved state cannot be decoded, or ``import_state`` raises.
        """
        try:
            stored = await self.store.claim(uuid, epoch)
        except StateStoreError as exc:
            raise RestoreFailed(f"reading the saved state of {uuid} failed: {exc}") from exc
        if stored is not None:
            try:
                value = decode_payload(stored.state)
            except WireError as exc:
                raise RestoreFailed(f"the saved state of {uuid} (epoch {stored.epoch}) "
                                    f"cannot be decoded: {exc}") from exc
            try:
                await container.import_state(value)
            except Exception as exc:
                raise RestoreFailed(f"import_state of {uuid} raised "
                                    f"{type(exc).__name__}: {exc}") from exc
            epoch = stored.epoch
            log.info("agent %s: %s restored (%d bytes, epoch %d)", self.agent_id, uuid,
                     len(stored.state), epoch)
        self._tracked[uuid] = _Tracked(container, epoch, container.state_version)

    def resume(self, uuid: str, epoch: int) -> None:
        """``uuid`` serves on here after a pause: its writes carry at least ``epoch``."""
        tracked = self._tracked.get(uuid)
        if tracked is not None:
            tracked.epoch = max(tracked.epoch, epoch)

    def forget(self, uuid: str) -> _Tracked | None:
        """Stop tracking ``uuid``; returns what ``final`` needs for its last write."""
        return self._tracked.pop(uuid, None)

    async def checkpoint(self) -> int:
        """Write every changed container in one transaction; returns how many were written.

        A store failure is logged (the next checkpoint tries again); a stale
        write stops that container (``on_stale``).
        """
        async with self._lock:
            batch = _Batch()
            started = time.perf_counter()
            # The uuids, not the items: no tuple per container (see _Batch).
            for uuid in list(self._tracked):
                tracked = self._tracked.get(uuid)  # None: it left meanwhile
                if tracked is None:
                    continue
                version = tracked.container.state_version
                if version == tracked.saved:
                    continue
                data = await self._export(uuid, tracked.container)
                if data is not None:
                    batch.add(uuid, tracked, version, data)
                if time.perf_counter() - started > SLICE:
                    await trio.lowlevel.checkpoint()
                    started = time.perf_counter()
            return await self._write(batch)

    async def final(self, uuid: str, tracked: _Tracked | None) -> None:
        """The last write of a container leaving (``tracked`` from ``forget``), if it changed."""
        if tracked is None:
            return
        async with self._lock:
            version = tracked.container.state_version
            if version == tracked.saved:
                return
            data = await self._export(uuid, tracked.container)
            if data is not None:
                batch = _Batch()
                batch.add(uuid, tracked, version, data)
                await self._write(batch)

    async def run(self) -> None:
        """Checkpoint every ``interval`` seconds, for ever (cancel to stop)."""
        while True:
            await trio.sleep(self.interval)
            await self.checkpoint()

    async def _export(self, uuid: str, container: Container) -> bytes | None:
        try:
            return encode_payload(await container.export_state())
        except LocalProtocolError as exc:
            log.error("agent %s: the state of %s cannot be saved: export_state returned %s",
                      self.agent_id, uuid, exc)
        except Exception as exc:
            log.error("agent %s: export_state of %s raised %s: %s", self.agent_id, uuid,
                      type(exc).__name__, exc)
        return None

    async def _write(self, batch: _Batch) -> int:
        if not batch:
            return 0
        try:
            refused = await self.store.put_many(batch)
        except StateStoreError as exc:
            log.error("agent %s: checkpoint of %d containers failed: %s", self.agent_id,
                      len(batch), exc)
            return 0
        stale: dict[str, StaleEpoch] = {r.uuid: r for r in refused}
        for uuid, tracked, version in zip(batch.uuids, batch.tracked, batch.versions,
                                          strict=True):
            if uuid not in stale:
                tracked.saved = version
                continue
            log.warning("agent %s: %s; another owner took %s over, it stops serving here",
                        self.agent_id, stale[uuid], uuid)
            if self._tracked.get(uuid) is tracked:
                del self._tracked[uuid]
                self._on_stale(uuid)
        self.written += len(batch) - len(stale)
        return len(batch) - len(stale)
