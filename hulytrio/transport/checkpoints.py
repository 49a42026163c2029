"""An agent's checkpoints of container state to a state store (docs/state.md).

Theory of operation
-------------------
The decisions are the core's ``CheckpointPolicy`` (``core/checkpoints.py``,
shared with the simulator); this module performs them.  Only containers
with state (``has_state``: they override ``export_state``) are tracked,
from the moment their restore begins (``restore``) until they leave
(``forget``).  Each tracked
container remembers its write epoch and the ``state_version`` it had at
its last write; a checkpoint (``checkpoint``, every ``interval`` seconds in
``run``) exports only the containers whose version moved, encodes them as
msgpack and writes them all in one ``put_many`` (one transaction, on the
store's worker thread), so idle containers cost one attribute read and no
write.  Exports run on the trio thread; the loop gets a scheduling point
at least every ``SLICE`` seconds of them, so requests keep being served.

A checkpoint keeps no object per container alive on the way (the policy's
``WriteBatch`` columns, the encoded states in a list beside them, the
store's items made one at a time as its worker thread binds them): objects
the garbage collector tracks that outlive a checkpoint of 10,000 containers
would trigger its collections, a full one every few checkpoints, each
holding the loop for 40-50 ms (docs/performance.md, "Container state").
**Decision:** a state is encoded on the trio thread as soon as it is
exported, not on the store's thread: a value the container returns (its
own dict, say) is then not kept alive through the checkpoint, nor encoded
while the container goes on changing it; msgpack of 1 KB costs about a
microsecond, and the store's thread would hold the GIL for it anyway.

Epochs (the fencing token of every write): ``restore`` *claims* the uuid
(``StateStore.claim``): in one transaction the stored epoch is raised to
``max(stored + 1, ownership epoch)`` (with nothing stored, the ownership
epoch is stored) and the state read, so every write of an earlier owner (a
paused agent waking up) is refused from then on, whether it ever wrote or
not; the container's writes carry the epoch claimed.  The ownership epoch
is the hub's: the one in ``SetServing``/``Activate`` for a stateless uuid,
0 for an ordinary container (its ``Start`` carries none; the claim's
``stored + 1`` orders its owners).  A write refused as stale means a newer
owner exists: the container is forgotten and ``on_stale`` stops it.

One checkpoint at a time (a lock): two exports of one container can never
be written in the opposite order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import overload

import trio

from hulytrio.core.checkpoints import CheckpointPolicy, StateRecord, WriteBatch
from hulytrio.core.errors import LocalProtocolError
from hulytrio.state import StaleEpoch, StateStore, StateStoreError

from ..wire.codec import WireError, decode_payload, encode_payload
from .container import Container

__all__ = ["SLICE", "Checkpoints", "RestoreFailed"]

log = logging.getLogger("hulytrio.agent")

#: The longest stretch of exports run without letting other tasks in (seconds).
#: 0.1 ms, not 1 ms: a request waits behind up to a slice at each of its
#: steps in the agent; measured on a quiet VM (benchmarks/state_checkpoint.py,
#: the agent in its own process, checkpoints of 10,000 back to back), p99 of
#: routed requests 3.2 ms with 1 ms slices, 1.7-1.9 ms with 0.1 ms, and the
#: same number of checkpoints per second (a yield costs ~10 us; 10,000
#: exports take ~60 ms).
SLICE = 0.0001
#: Containers whose versions are compared in one go before the clock is read.
SCAN = 256
#: msgpack's nil: a state of None as it is saved.  ``encode_payload(None)`` is
#: the empty payload, and the store keeps zero bytes for "claimed, nothing
#: saved" (and refuses to write them); decoded, both are None.
NIL = b"\xc0"


class RestoreFailed(Exception):
    """The saved state could not be read or imported; the message says which and why."""


class Checkpoints:
    """The checkpoints of one agent's containers (see module docstring).

    The decisions (which containers are due, the epoch of each write, the
    final write, what a stale refusal forgets) are the core's
    ``CheckpointPolicy`` (``policy``); this class performs them: the claim,
    ``import_state``, the exports and the store's writes.  ``on_stale(uuid)``
    is called when the store refused a write of ``uuid`` as stale (the
    container is no longer tracked by then).
    """

    def __init__(self, store: StateStore, interval: float, agent_id: str,
                 on_stale: Callable[[str], None]) -> None:
        self.store = store
        self.interval = interval
        self.agent_id = agent_id
        self._on_stale = on_stale
        self.policy = CheckpointPolicy(interval)
        #: the containers with state restored here (or being restored), by uuid
        self._containers: dict[str, Container] = {}
        self._lock = trio.Lock()
        #: states written since the start (for tests and logs)
        self.written = 0

    def tracks(self, uuid: str) -> bool:
        """Return whether ``uuid`` is tracked (restored here and serving)."""
        return self.policy.tracks(uuid)

    def epoch(self, uuid: str) -> int | None:
        """Return the epoch the writes of ``uuid`` carry, None if untracked."""
        return self.policy.epoch(uuid)

    def dirty(self) -> list[str]:
        """Return the tracked uuids whose state changed since their last write."""
        return [w.uuid for w in self.policy.due(self._versions())]

    def _versions(self) -> list[tuple[str, int]]:
        containers = self._containers
        return [(u, containers[u].state_version) for u in self.policy.uuids()]

    async def restore(self, uuid: str, container: Container, epoch: int) -> None:
        """Claim ``uuid`` at ownership ``epoch``, import its saved state, track it.

        Raises ``RestoreFailed`` (nothing tracked) when the store fails, the
        saved state cannot be decoded, or ``import_state`` raises.
        """
        policy = self.policy
        if policy.tracking(uuid) is not None:
            # Tracked already (a restart raced a forget): this restore replaces it.
            policy.forget(uuid)
        record = policy.restore_started(uuid, epoch)
        self._containers[uuid] = container
        try:
            claimed = await self._claim_and_import(uuid, container, epoch)
        except BaseException:
            policy.restore_failed(record)
            if policy.tracking(uuid) is None and self._containers.get(uuid) is container:
                del self._containers[uuid]
            raise
        if policy.current(record):
            policy.restored(record, claimed, container.state_version)

    async def _claim_and_import(self, uuid: str, container: Container, epoch: int) -> int:
        """Return the epoch claimed, once the saved state (if any) is imported."""
        try:
            claim = await self.store.claim(uuid, epoch)
        except StateStoreError as exc:
            raise RestoreFailed(f"reading the saved state of {uuid} failed: {exc}") from exc
        stored = claim.saved
        if stored is None:
            return claim.epoch  # nothing saved yet: the container starts afresh
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
        log.info("agent %s: %s restored (%d bytes, epoch %d)", self.agent_id, uuid,
                 len(stored.state), claim.epoch)
        return claim.epoch

    def hold_all(self) -> list[str]:
        """The agent is closing: return the tracked uuids, now held for the last checkpoint."""
        return self.policy.hold_all()

    def resume(self, uuid: str, epoch: int) -> None:
        """``uuid`` serves on here after a pause: its writes carry at least ``epoch``."""
        self.policy.resume(uuid, epoch)

    def forget(self, uuid: str) -> tuple[StateRecord, Container] | None:
        """Stop tracking ``uuid``; returns what ``final`` needs for its last write."""
        record = self.policy.forget(uuid)
        container = self._containers.pop(uuid, None)
        if record is None or container is None:
            return None
        return record, container

    async def checkpoint(self) -> int:
        """Write every changed container in one transaction; returns how many were written.

        A store failure is logged (the next checkpoint tries again); a stale
        write stops that container (``on_stale``).
        """
        async with self._lock:
            policy = self.policy
            containers = self._containers
            # The batch in columns, the states beside it: nothing the garbage
            # collector tracks is made per container and kept (module docstring).
            batch = WriteBatch()
            states: list[bytes] = []
            uuids = policy.uuids()
            started = time.perf_counter()
            # The policy is asked a slice at a time, so scanning 10,000 idle
            # containers also lets other tasks in every ``SLICE``.
            for i in range(0, len(uuids), SCAN):
                scan = [u for u in uuids[i:i + SCAN] if u in containers]
                due = policy.due_batch(scan, [containers[u].state_version for u in scan])
                for j, uuid in enumerate(due.uuids):
                    if policy.tracking(uuid) != due.gens[j]:
                        continue  # left while earlier exports ran
                    data = await self._export(uuid, containers[uuid])
                    if data is not None:
                        batch.take(due, j)
                        states.append(data)
                    if time.perf_counter() - started > SLICE:
                        await trio.lowlevel.checkpoint()
                        started = time.perf_counter()
                if time.perf_counter() - started > SLICE:
                    await trio.lowlevel.checkpoint()
                    started = time.perf_counter()
            written = await self._write(batch, states)
            return 0 if written is None else written

    async def final(self, uuid: str, leaving: tuple[StateRecord, Container] | None) -> bool:
        """The last write of a container leaving (``leaving`` from ``forget``), if it changed.

        Returns False when the store failed (the same call may be tried
        again: the write is still due), True otherwise: written, refused as
        stale, nothing to write, or a state that cannot be exported (logged).
        """
        if leaving is None:
            return True
        record, container = leaving
        async with self._lock:
            write = self.policy.final_write(record, container.state_version)
            if write is None:
                return True
            data = await self._export(uuid, container)
            if data is None:
                return True
            batch = WriteBatch()
            batch.append(write)
            return await self._write(batch, [data]) is not None

    async def run(self) -> None:
        """Checkpoint every ``interval`` seconds, for ever (cancel to stop)."""
        policy = self.policy
        policy.start(trio.current_time())
        while True:
            deadline = policy.next_deadline()
            assert deadline is not None  # armed by start()
            await trio.sleep_until(deadline)
            if policy.checkpoint_due(trio.current_time()):
                await self.checkpoint()

    async def _export(self, uuid: str, container: Container) -> bytes | None:
        try:
            return encode_payload(await container.export_state()) or NIL
        except LocalProtocolError as exc:
            log.error("agent %s: the state of %s cannot be saved: export_state returned %s",
                      self.agent_id, uuid, exc)
        except Exception as exc:
            log.error("agent %s: export_state of %s raised %s: %s", self.agent_id, uuid,
                      type(exc).__name__, exc)
        return None

    async def _write(self, batch: WriteBatch, states: list[bytes]) -> int | None:
        """Write ``batch``; returns how many writes the store accepted (None: it failed)."""
        if not batch:
            return 0
        try:
            refused = await self.store.put_many(_Items(batch, states))
        except StateStoreError as exc:
            log.error("agent %s: checkpoint of %d containers failed: %s", self.agent_id,
                      len(batch), exc)
            return None
        stale: dict[str, StaleEpoch] = {r.uuid: r for r in refused}
        # The answer is taken in slices, and the states are let go of as it
        # goes: in one step, 10,000 writes held the loop about 2 ms (0.8 ms
        # of the policy's bookkeeping, 1 ms freeing the encoded states),
        # the longest stretch of a checkpoint.  The yields cannot be
        # cancelled: a write the store acknowledged is always accounted for.
        started = time.perf_counter()
        for start in reversed(range(0, len(batch), SCAN)):
            for uuid in self.policy.written(batch.part(start, start + SCAN), stale):
                log.warning("agent %s: %s; another owner took %s over, it stops serving here",
                            self.agent_id, stale[uuid], uuid)
                self._containers.pop(uuid, None)
                self._on_stale(uuid)
            del states[start:]
            if time.perf_counter() - started > SLICE:
                await trio.lowlevel.cancel_shielded_checkpoint()
                started = time.perf_counter()
        self.written += len(batch) - len(stale)
        return len(batch) - len(stale)


class _Items(Sequence[tuple[str, bytes, int]]):
    """A batch's ``(uuid, state, epoch)`` items for ``put_many``, made as the store reads them.

    The store iterates them on its worker thread, where each tuple lives only
    until the driver has bound it: none is kept through the checkpoint.
    """

    __slots__ = ("_batch", "_states")

    def __init__(self, batch: WriteBatch, states: list[bytes]) -> None:
        self._batch = batch
        self._states = states

    def __len__(self) -> int:
        return len(self._states)

    @overload
    def __getitem__(self, i: int) -> tuple[str, bytes, int]: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[tuple[str, bytes, int]]: ...

    def __getitem__(self, i: int | slice) -> tuple[str, bytes, int] | Sequence[
            tuple[str, bytes, int]]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        return self._batch.uuids[i], self._states[i], self._batch.epochs[i]

    def __iter__(self) -> Iterator[tuple[str, bytes, int]]:
        return zip(self._batch.uuids, self._states, self._batch.epochs, strict=True)
