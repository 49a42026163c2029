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
- **the epoch of each write** is the record's: the epoch the claim returned
  when saved state was claimed (``max(stored + 1, ownership epoch)``), else
  the ownership epoch; ``resume`` raises it to a newer ownership epoch of an
  owner that keeps serving;
- **a stale write** (refused by the store) means a newer owner exists:
  ``written`` forgets the record and names the uuid, and the driver stops the
  container there.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Sequence

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
]

#: Seeded bug (the simulator's self-test only): requests reach a container
#: while its saved state is still being imported.
SERVE_BEFORE_IMPORT = "serve-before-import"
#: Seeded bug: a container leaving cleanly gets no final checkpoint.
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
    """One tracked container: its status, write epoch and last written version."""

    __slots__ = ("epoch", "saved", "status", "uuid")

    def __init__(self, uuid: str, epoch: int) -> None:
        self.uuid = uuid
        self.status = StateStatus.RESTORING
        #: the epoch its writes carry
        self.epoch = epoch
        #: its ``state_version`` at its last acknowledged write (or its restore)
        self.saved = 0

    def _transition(self, new: StateStatus) -> None:
        self.status = STATE_TRANSITIONS.check(self.status, new)


class StateWrite:
    """One write the driver is to make: ``uuid``'s export at ``version``, at ``epoch``."""

    __slots__ = ("epoch", "record", "uuid", "version")

    def __init__(self, record: StateRecord, version: int) -> None:
        self.record = record
        self.uuid = record.uuid
        self.epoch = record.epoch
        self.version = version

    def __repr__(self) -> str:
        return f"StateWrite({self.uuid!r}, epoch={self.epoch}, version={self.version})"


class CheckpointPolicy:
    """The checkpoint/restore decisions of one agent (see module docstring).

    ``interval``: seconds between checkpoints.  ``seeded_bugs``: test-only
    faults (``SERVE_BEFORE_IMPORT``, ``FINAL_CHECKPOINT_SKIPPED``,
    ``INTERVAL_CHECKPOINTS_SKIPPED``).
    """

    __slots__ = ("_due", "_never_due", "_records", "_serve_early", "_skip_final", "interval")

    def __init__(self, interval: float, *, seeded_bugs: frozenset[str] = frozenset()) -> None:
        if not interval > 0:
            raise LocalProtocolError(f"checkpoint interval must be > 0, got {interval!r}")
        self.interval = interval
        self._records: dict[str, StateRecord] = {}
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
        if uuid in self._records:
            raise LocalProtocolError(f"state of {uuid!r} is tracked already")
        record = self._records[uuid] = StateRecord(uuid, epoch)
        return record

    def restored(self, record: StateRecord, claimed: int | None, version: int) -> None:
        """The restore of ``record`` ended: ``claimed`` is the epoch the claim returned
        (None: nothing was stored), ``version`` the container's ``state_version`` now.

        Its writes carry the claimed epoch from now on; it serves.
        """
        if claimed is not None:
            record.epoch = claimed
        record.saved = version
        record._transition(StateStatus.SERVING)

    def restore_failed(self, record: StateRecord) -> None:
        """The restore of ``record`` failed: the container does not serve here."""
        if self._records.get(record.uuid) is record:
            del self._records[record.uuid]

    def may_serve(self, uuid: str) -> bool:
        """Return whether a request may run on ``uuid`` now (untracked: True)."""
        record = self._records.get(uuid)
        if record is None or record.status is StateStatus.SERVING:
            return True
        return self._serve_early and record.status is StateStatus.RESTORING

    def tracks(self, uuid: str) -> bool:
        """Return whether ``uuid`` is restored here and tracked (serving or held)."""
        record = self._records.get(uuid)
        return record is not None and record.status is not StateStatus.RESTORING

    def restoring(self, uuid: str) -> bool:
        """Return whether ``uuid``'s restore is running."""
        record = self._records.get(uuid)
        return record is not None and record.status is StateStatus.RESTORING

    def record(self, uuid: str) -> StateRecord | None:
        """Return ``uuid``'s record (any status), or None."""
        return self._records.get(uuid)

    def epoch(self, uuid: str) -> int | None:
        """Return the epoch the writes of ``uuid`` carry, None if it is not tracked."""
        return self._records[uuid].epoch if self.tracks(uuid) else None

    def resume(self, uuid: str, epoch: int) -> None:
        """``uuid`` serves on here after a pause: its writes carry at least ``epoch``."""
        record = self._records.get(uuid)
        if record is not None:
            record.epoch = max(record.epoch, epoch)

    def hold_all(self) -> list[str]:
        """The agent is closing: every serving record is HELD; returns their uuids.

        Their requests wait (``may_serve`` is False) until the driver has
        written the last checkpoint and the containers are gone.
        """
        held = []
        for uuid, record in self._records.items():
            if record.status is StateStatus.SERVING:
                record._transition(StateStatus.HELD)
                held.append(uuid)
        return held

    def forget(self, uuid: str) -> StateRecord | None:
        """``uuid`` leaves: stop tracking it; returns the record its final write needs."""
        return self._records.pop(uuid, None)

    def uuids(self) -> list[str]:
        """Return the tracked uuids (restored ones), in the order they were taken over."""
        return [u for u, r in self._records.items() if r.status is not StateStatus.RESTORING]

    # --- writes -----------------------------------------------------------------------

    def changed(self, uuid: str, version: int) -> StateWrite | None:
        """Return the write ``uuid`` needs at ``version`` (None: untracked or unchanged)."""
        record = self._records.get(uuid)
        if record is None or record.status is StateStatus.RESTORING or version == record.saved:
            return None
        return StateWrite(record, version)

    def due(self, versions: Iterable[tuple[str, int]]) -> list[StateWrite]:
        """Return the writes of a checkpoint: those of ``versions`` that changed."""
        # ``changed`` inlined: a checkpoint of 10,000 containers runs this
        # loop on the agent's trio thread without a scheduling point.
        records = self._records
        restoring = StateStatus.RESTORING
        out = []
        for uuid, version in versions:
            record = records.get(uuid)
            if record is not None and version != record.saved and record.status is not restoring:
                out.append(StateWrite(record, version))
        return out

    def final_write(self, record: StateRecord | None, version: int) -> StateWrite | None:
        """Return the last write of a container leaving cleanly (``record`` from ``forget``).

        None when there is nothing to write: no record, not restored, or no
        change since its last write.
        """
        if record is None or record.status is StateStatus.RESTORING or self._skip_final:
            return None
        if version == record.saved:
            return None
        return StateWrite(record, version)

    def written(self, writes: Sequence[StateWrite], refused: Collection[str]) -> list[str]:
        """The store answered ``writes``: ``refused`` are the uuids it refused as stale.

        The accepted ones are saved at their version.  Returns the uuids whose
        records were still tracked and are now forgotten because a newer owner
        exists (the driver stops those containers).
        """
        stale = []
        for write in writes:
            record = write.record
            if write.uuid not in refused:
                if write.version != record.saved:
                    record.saved = write.version
                continue
            if self._records.get(write.uuid) is record:
                del self._records[write.uuid]
                stale.append(write.uuid)
        return stale
