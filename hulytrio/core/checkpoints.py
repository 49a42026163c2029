"""The checkpoint and restore policy of one agent's containers with state (sans-IO).

Theory of operation
-------------------
Both drivers (``transport/checkpoints.py`` with a real store, ``sim/state.py``
with the simulated one) ask this machine every decision about container
state and perform only the I/O: the claim and ``import_state``, the exports,
the writes.  The machine never reads a clock or a container: the driver
hands it ``now`` and each container's ``state_version``.

A container with state is *tracked* from the moment its driver starts to
restore it (``restore_started``) until it leaves (``forget``).  Its record's
lifecycle (``STATE_TRANSITIONS``)::

    RESTORING -> SERVING       the claim and import_state ended (``restored``)
    SERVING   -> HELD          the agent is closing (``hold_all``): requests
                               wait for the last checkpoint, then go elsewhere

A record leaves the machine (its final state) when the container goes
(``forget``), its restore fails (``restore_failed``) or the store refuses one
of its writes as stale (``written``).

Decisions:

- **gating**: ``may_serve(uuid)`` is False while the record is RESTORING or
  HELD: no request reaches a container before its saved state is in, nor
  after the last checkpoint of a closing agent began;
- **which containers are due**: ``due(versions)`` lists the SERVING/HELD
  containers whose ``state_version`` moved since their last acknowledged
  write (idle containers cost one comparison); ``checkpoint_due(now)`` says
  when the next interval checkpoint is due (every ``interval`` seconds);
- **the final checkpoint**: ``forget`` hands back the record a leaving
  container's last write needs; ``final_write(record, version)`` is that
  write, or None when nothing changed since the last one;
- **the epoch of each write** is the record's: the epoch its claim returned
  (``max(stored + 1, ownership epoch)``, or the ownership epoch when nothing
  was stored; the store keeps it either way, so the next owner's claim
  fences this one even if it never wrote); ``resume`` raises it to a newer
  ownership epoch of an owner that keeps serving;
- **a stale write** (refused by the store) means a newer owner exists:
  ``written`` forgets the record and names the uuid, and the driver stops the
  container there.

Columns
-------
An agent may track 10,000 containers and checkpoint them all at once, on
the thread that serves its requests.  So the machine keeps no object per
container: its records are columns (dicts of the status, epoch, last
written version and *tracking* number, keyed by uuid), a checkpoint's writes
are columns too (``WriteBatch``, from ``due_batch``), and a ``StateRecord``
or ``StateWrite`` is made only where one container is in hand (a restore, a
leave).  Every object the garbage collector tracks that lives through a
checkpoint adds to the count that triggers its collections; three per
container (a write and the driver's two tuples) made about 38 collections
per checkpoint of 10,000 and a full one (40-50 ms, the loop held) about
every fifth (docs/performance.md, "Container state").  The tracking number
(``StateRecord.gen``) stands for the identity of the old record objects: a
write or a restore answered for a tracking that has ended does not touch
the uuid's next one.
"""

from __future__ import annotations

import enum
import weakref
from collections.abc import Collection, Iterable, Iterator, Sequence

from .errors import LocalProtocolError
from .transitions import TransitionTable

__all__ = [
    "FINAL_CHECKPOINT_SKIPPED",
    "INTERVAL_CHECKPOINTS_SKIPPED",
    "SERVE_BEFORE_IMPORT",
    "STATE_TRANSITIONS",
    "CheckpointPolicy",
    "StateRecord",
    "StateStatus",
    "StateWrite",
    "WriteBatch",
]

#: Seeded bug (the simulator's self-test only): requests reach a container
#: while its saved state is still being imported.
SERVE_BEFORE_IMPORT = "serve-before-import"
#: Seeded bug: a container leaving cleanly gets no final checkpoint (nor does a held one
#: in the last checkpoint of an agent that leaves or drains).
FINAL_CHECKPOINT_SKIPPED = "skip-final-checkpoint"
#: Seeded bug: no interval checkpoint is ever due.
INTERVAL_CHECKPOINTS_SKIPPED = "skip-interval-checkpoints"


class StateStatus(enum.Enum):
    """Where a tracked container's state stands."""

    RESTORING = "restoring"
    SERVING = "serving"
    HELD = "held"


STATE_TRANSITIONS: TransitionTable[StateStatus] = TransitionTable("container state", {
    StateStatus.RESTORING: (StateStatus.SERVING,),
    StateStatus.SERVING: (StateStatus.HELD,),
})


class StateRecord:
    """One tracking of a container, as the driver holds it: a handle and a snapshot.

    The policy keeps no object per container (see "Columns" in the module
    docstring); a record is made when the driver needs one (``restore_started``,
    ``forget``, ``record``) and names one *tracking* of ``uuid`` (``gen``): a
    uuid that leaves and is taken over again is a new tracking, so an answer
    about the old one (``written``, ``restored``) cannot touch the new one.
    ``status``, ``epoch`` and ``saved`` are as they were when the record was
    made (``restored`` updates the record it is given).
    """

    __slots__ = ("__weakref__", "epoch", "gen", "saved", "status", "uuid")

    def __init__(self, uuid: str, gen: int, status: StateStatus, epoch: int,
                 saved: int) -> None:
        self.uuid = uuid
        #: which tracking of ``uuid`` this is
        self.gen = gen
        self.status = status
        #: the epoch its writes carry
        self.epoch = epoch
        #: its ``state_version`` at its last acknowledged write (or its restore)
        self.saved = saved

    def __repr__(self) -> str:
        return (f"StateRecord({self.uuid!r}, {self.status.name}, epoch={self.epoch}, "
                f"saved={self.saved})")


class StateWrite:
    """One write the driver is to make: ``uuid``'s export at ``version``, at ``epoch``."""

    __slots__ = ("epoch", "gen", "uuid", "version")

    def __init__(self, uuid: str, gen: int, epoch: int, version: int) -> None:
        self.uuid = uuid
        #: the tracking of ``uuid`` the write belongs to (``StateRecord.gen``)
        self.gen = gen
        self.epoch = epoch
        self.version = version

    def __repr__(self) -> str:
        return f"StateWrite({self.uuid!r}, epoch={self.epoch}, version={self.version})"


class WriteBatch:
    """The writes of a checkpoint, in columns: ``uuids[i]`` at ``versions[i]``, ``epochs[i]``.

    Four lists of strings and integers, none of which the garbage collector
    tracks, instead of one ``StateWrite`` per container: a checkpoint of
    10,000 containers keeps its writes alive for its whole length, and one
    object each (with the driver's two tuples) made the collector run about
    38 times per checkpoint, a full collection (40-50 ms on the agent's
    thread) about every fifth.
    ``write(i)`` makes the ``StateWrite`` of one entry.
    """

    __slots__ = ("epochs", "gens", "uuids", "versions")

    def __init__(self) -> None:
        self.uuids: list[str] = []
        self.gens: list[int] = []
        self.epochs: list[int] = []
        self.versions: list[int] = []

    def __len__(self) -> int:
        return len(self.uuids)

    def __iter__(self) -> Iterator[StateWrite]:
        for i in range(len(self.uuids)):
            yield self.write(i)

    def write(self, i: int) -> StateWrite:
        """Return entry ``i`` as a ``StateWrite``."""
        return StateWrite(self.uuids[i], self.gens[i], self.epochs[i], self.versions[i])

    def append(self, write: StateWrite) -> None:
        """Append ``write``."""
        self.uuids.append(write.uuid)
        self.gens.append(write.gen)
        self.epochs.append(write.epoch)
        self.versions.append(write.version)

    def part(self, start: int, stop: int) -> WriteBatch:
        """Return entries ``start`` to ``stop`` (excluded) as a batch of their own."""
        part = WriteBatch()
        part.uuids = self.uuids[start:stop]
        part.gens = self.gens[start:stop]
        part.epochs = self.epochs[start:stop]
        part.versions = self.versions[start:stop]
        return part

    def take(self, other: WriteBatch, i: int) -> None:
        """Append entry ``i`` of ``other`` (a write whose export succeeded)."""
        self.uuids.append(other.uuids[i])
        self.gens.append(other.gens[i])
        self.epochs.append(other.epochs[i])
        self.versions.append(other.versions[i])


class CheckpointPolicy:
    """The checkpoint/restore decisions of one agent (see module docstring).

    ``interval``: seconds between checkpoints.  ``seeded_bugs``: test-only
    faults (``SERVE_BEFORE_IMPORT``, ``FINAL_CHECKPOINT_SKIPPED``,
    ``INTERVAL_CHECKPOINTS_SKIPPED``).
    """

    __slots__ = ("_due", "_epoch", "_gen", "_gens", "_left", "_never_due", "_saved",
                 "_serve_early", "_skip_final", "_status", "interval")

    def __init__(self, interval: float, *, seeded_bugs: frozenset[str] = frozenset()) -> None:
        if not interval > 0:
            raise LocalProtocolError(f"checkpoint interval must be > 0, got {interval!r}")
        self.interval = interval
        # The tracked containers, in columns keyed by uuid (module docstring):
        # the same keys, in the order the uuids were taken over.
        self._status: dict[str, StateStatus] = {}
        self._epoch: dict[str, int] = {}
        self._saved: dict[str, int] = {}
        self._gen: dict[str, int] = {}
        #: trackings begun so far (the next one's ``gen``)
        self._gens = 0
        # The records ``forget`` handed out, while their driver holds them:
        # a write of theirs acknowledged after they left still counts for
        # their final write (no second write of an unchanged state).
        self._left: weakref.WeakValueDictionary[int, StateRecord] = (
            weakref.WeakValueDictionary())
        self._due: float | None = None
        self._serve_early = SERVE_BEFORE_IMPORT in seeded_bugs
        self._skip_final = FINAL_CHECKPOINT_SKIPPED in seeded_bugs
        self._never_due = INTERVAL_CHECKPOINTS_SKIPPED in seeded_bugs

    # --- time -------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Arm the first interval checkpoint at ``now + interval``."""
        self._due = now + self.interval

    def next_deadline(self) -> float | None:
        """Return when the next interval checkpoint is due (None before ``start``)."""
        return self._due

    def checkpoint_due(self, now: float) -> bool:
        """Return whether an interval checkpoint is due at ``now``; if so, arm the next one."""
        if self._due is None or now < self._due:
            return False
        self._due = now + self.interval
        return not self._never_due

    # --- the lifecycle of a record --------------------------------------------------

    def restore_started(self, uuid: str, epoch: int) -> StateRecord:
        """``uuid`` is taken over at ownership ``epoch``: the claim and import begin.

        Returns its record (RESTORING: ``may_serve`` is False until ``restored``).
        Raises ``LocalProtocolError`` if ``uuid`` is tracked already.
        """
        if uuid in self._status:
            raise LocalProtocolError(f"state of {uuid!r} is tracked already")
        gen = self._gens
        self._gens = gen + 1
        self._status[uuid] = StateStatus.RESTORING
        self._epoch[uuid] = epoch
        self._saved[uuid] = 0
        self._gen[uuid] = gen
        return StateRecord(uuid, gen, StateStatus.RESTORING, epoch, 0)

    def current(self, record: StateRecord) -> bool:
        """Return whether ``record`` is its uuid's tracking now (not left, not replaced)."""
        return self._gen.get(record.uuid) == record.gen

    def tracking(self, uuid: str) -> int | None:
        """Return the number (``StateRecord.gen``) of ``uuid``'s tracking, None if untracked."""
        return self._gen.get(uuid)

    def restored(self, record: StateRecord, claimed: int, version: int) -> None:
        """The restore of ``record`` ended: ``claimed`` is the epoch the claim returned
        (saved state or not), ``version`` the container's ``state_version`` now.

        Its writes carry the claimed epoch from now on; it serves (a record
        that is no longer ``current`` changes only itself).  Raises
        ``LocalProtocolError`` if it is not RESTORING, or if ``claimed`` is
        older than the ownership epoch it was claimed at (a claim never
        lowers it).
        """
        uuid = record.uuid
        if claimed < record.epoch:
            raise LocalProtocolError(f"state of {uuid!r}: claimed epoch {claimed} is older "
                                     f"than the ownership epoch {record.epoch}")
        current = self.current(record)
        status = self._status[uuid] if current else record.status
        record.status = STATE_TRANSITIONS.check(status, StateStatus.SERVING)
        record.epoch = claimed
        record.saved = version
        if current:
            self._status[uuid] = record.status
            self._epoch[uuid] = record.epoch
            self._saved[uuid] = version

    def restore_failed(self, record: StateRecord) -> None:
        """The restore of ``record`` failed: the container does not serve here."""
        if self.current(record):
            self._drop(record.uuid)

    def may_serve(self, uuid: str) -> bool:
        """Return whether a request may run on ``uuid`` now (untracked: True)."""
        status = self._status.get(uuid)
        if status is None or status is StateStatus.SERVING:
            return True
        return self._serve_early and status is StateStatus.RESTORING

    def tracks(self, uuid: str) -> bool:
        """Return whether ``uuid`` is restored here and tracked (serving or held)."""
        status = self._status.get(uuid)
        return status is not None and status is not StateStatus.RESTORING

    def restoring(self, uuid: str) -> bool:
        """Return whether ``uuid``'s restore is running."""
        return self._status.get(uuid) is StateStatus.RESTORING

    def record(self, uuid: str) -> StateRecord | None:
        """Return ``uuid``'s record now (any status), or None when it is not tracked."""
        status = self._status.get(uuid)
        if status is None:
            return None
        return StateRecord(uuid, self._gen[uuid], status, self._epoch[uuid], self._saved[uuid])

    def epoch(self, uuid: str) -> int | None:
        """Return the epoch the writes of ``uuid`` carry, None if it is not tracked."""
        return self._epoch[uuid] if self.tracks(uuid) else None

    def resume(self, uuid: str, epoch: int) -> None:
        """``uuid`` serves on here after a pause: its writes carry at least ``epoch``."""
        old = self._epoch.get(uuid)
        if old is not None and epoch > old:
            self._epoch[uuid] = epoch

    def hold_all(self) -> list[str]:
        """The agent is closing: every serving record is HELD; returns their uuids.

        Their requests wait (``may_serve`` is False) until the driver has
        written the last checkpoint and the containers are gone.
        """
        statuses = self._status
        held = [uuid for uuid, status in statuses.items() if status is StateStatus.SERVING]
        for uuid in held:
            statuses[uuid] = STATE_TRANSITIONS.check(statuses[uuid], StateStatus.HELD)
        return held

    def forget(self, uuid: str) -> StateRecord | None:
        """``uuid`` leaves: stop tracking it; returns the record its final write needs."""
        record = self.record(uuid)
        if record is not None:
            self._drop(uuid)
            self._left[record.gen] = record
        return record

    def _drop(self, uuid: str) -> None:
        del self._status[uuid], self._epoch[uuid], self._saved[uuid], self._gen[uuid]

    def uuids(self) -> list[str]:
        """Return the tracked uuids (restored ones), in the order they were taken over."""
        restoring = StateStatus.RESTORING
        return [u for u, s in self._status.items() if s is not restoring]

    # --- writes -----------------------------------------------------------------------

    def changed(self, uuid: str, version: int) -> StateWrite | None:
        """Return the write ``uuid`` needs at ``version`` (None: untracked or unchanged)."""
        status = self._status.get(uuid)
        if status is None or status is StateStatus.RESTORING or version == self._saved[uuid]:
            return None
        return StateWrite(uuid, self._gen[uuid], self._epoch[uuid], version)

    def due(self, versions: Iterable[tuple[str, int]]) -> list[StateWrite]:
        """Return the writes of a checkpoint: those of ``versions`` that changed.

        (``due_batch`` is the same decision in columns, for many containers.)
        """
        uuids: list[str] = []
        numbers: list[int] = []
        for uuid, version in versions:
            uuids.append(uuid)
            numbers.append(version)
        return list(self.due_batch(uuids, numbers))

    def due_batch(self, uuids: Sequence[str], versions: Sequence[int]) -> WriteBatch:
        """Return the writes of ``uuids`` whose ``versions`` (same order) changed, in columns.

        Untracked and restoring uuids are skipped.  Raises ``ValueError`` when
        the two sequences differ in length.
        """
        if len(uuids) != len(versions):
            raise ValueError(f"{len(uuids)} uuids but {len(versions)} versions")
        batch = WriteBatch()
        statuses = self._status
        saved = self._saved
        restoring = StateStatus.RESTORING
        # Seeded bug ``skip-final-checkpoint``: held (leaving) ones are skipped too.
        skipped = StateStatus.HELD if self._skip_final else restoring
        for uuid, version in zip(uuids, versions, strict=True):
            status = statuses.get(uuid)
            if status is not None and status is not restoring and status is not skipped \
                    and version != saved[uuid]:
                batch.uuids.append(uuid)
                batch.versions.append(version)
        # Gens and epochs read in a second pass: the due ones are the few in
        # a checkpoint of mostly idle containers.
        batch.gens = [self._gen[uuid] for uuid in batch.uuids]
        batch.epochs = [self._epoch[uuid] for uuid in batch.uuids]
        return batch

    def final_write(self, record: StateRecord | None, version: int) -> StateWrite | None:
        """Return the last write of a container leaving cleanly (``record`` from ``forget``).

        None when there is nothing to write: no record, not restored, or no
        change since its last write.
        """
        if record is None or record.status is StateStatus.RESTORING or self._skip_final:
            return None
        if version == record.saved:
            return None
        return StateWrite(record.uuid, record.gen, record.epoch, version)

    def written(self, writes: Sequence[StateWrite] | WriteBatch,
                refused: Collection[str]) -> list[str]:
        """The store answered ``writes``: ``refused`` are the uuids it refused as stale.

        The accepted ones are saved at their version (when their tracking
        is still the one the write was made for).  Returns the uuids whose
        trackings were current and are now forgotten because a newer owner
        exists (the driver stops those containers).
        """
        if isinstance(writes, WriteBatch):
            return self._written(writes.uuids, writes.gens, writes.versions, refused)
        return self._written([w.uuid for w in writes], [w.gen for w in writes],
                             [w.version for w in writes], refused)

    def _written(self, uuids: list[str], gens: list[int], versions: list[int],
                 refused: Collection[str]) -> list[str]:
        current = self._gen
        saved = self._saved
        if not refused and list(map(current.get, uuids)) == gens:
            # The usual answer (all written, all still tracked), in two C
            # loops: a Python loop over 10,000 writes held the agent's
            # thread for 3-4 ms.
            saved.update(zip(uuids, versions, strict=True))
            return []
        stale = []
        for uuid, gen, version in zip(uuids, gens, versions, strict=True):
            if current.get(uuid) != gen:
                # Left (and maybe came back) since: only its record learns it.
                left = self._left.get(gen)
                if left is not None and uuid not in refused:
                    left.saved = version
                continue
            if uuid not in refused:
                saved[uuid] = version
                continue
            self._drop(uuid)
            stale.append(uuid)
        return stale
