"""The simulated state store: a process that can be slow, paused or cut off.

Theory of operation
-------------------
One store holds, per container uuid, the last state written (here an
integer: the container's change counter), the writer's epoch and the time
of the write, with the real stores' rules (``hulytrio/state/base.py``):

- ``put_many``: a write whose epoch is older than the stored one is refused
  (``StaleEpoch`` in the real store), the others are stored;
- ``claim(uuid, epoch)``: a new owner's takeover raises the stored epoch to
  ``max(stored + 1, epoch)`` and returns it with the state; nothing stored,
  it stores ``epoch`` in a row with no state (``Row.value`` None; the real
  stores' empty state), so the next owner's claim fences this one even if it
  never writes.

Each operation takes ``latency`` (drawn from the seed's ``store`` stream) and
is applied when it reaches the store; operations of one client are applied in
the order they were issued (one connection per agent, as the real agents
have).  Faults: a *paused* store applies nothing until it resumes, then
everything that arrived, in order (a stalled database); a *cut off* store is
unreachable: an operation issued or arriving meanwhile fails after
``timeout`` (the client's connect or statement timeout); *slow* changes the
latency.  The answer reaches the client at the moment the operation is
applied (its way back is folded into the latency).

Every applied operation is reported to the store's ``observer`` (the
invariant checks), which sees what the store accepted independently of the
agents that asked.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Protocol

from .clock import Clock, Event
from .scenario import Span

__all__ = ["ACCEPTS_STALE", "CLAIMS_ONLY_SAVED", "Row", "SimStore", "StoreObserver",
           "StoreReply"]

#: Seeded bug (the simulator's self-test): a write with an older epoch is stored.
ACCEPTS_STALE = "store-accepts-stale"
#: Seeded bug: a claim of a uuid with nothing stored stores nothing and hands
#: back the ownership epoch (the design before issue 15's fix: two owners of a
#: uuid that never had a checkpoint wrote at the same epoch).
CLAIMS_ONLY_SAVED = "store-claims-only-saved"


class Row:
    """One uuid's row: the value saved (None: claimed, nothing saved yet), the epoch
    of its owner, when it was written (or claimed)."""

    __slots__ = ("epoch", "value", "written_at")

    def __init__(self, value: int | None, epoch: int, written_at: float) -> None:
        self.value = value
        self.epoch = epoch
        self.written_at = written_at


class StoreReply:
    """The answer to one operation: ``ok`` False means the store failed (cut off).

    A claim's ``epoch`` is the one it claimed (the owner writes at it) and
    ``saved`` the value saved (None: nothing saved yet); a write's
    ``refused`` lists the uuids refused as stale.
    """

    __slots__ = ("epoch", "ok", "refused", "saved")

    def __init__(self, ok: bool, *, epoch: int = 0, saved: int | None = None,
                 refused: frozenset[str] = frozenset()) -> None:
        self.ok = ok
        self.epoch = epoch
        self.saved = saved
        self.refused = refused


class StoreObserver(Protocol):
    """What the store tells the checks about each operation it applied."""

    def store_claimed(self, client: str, uuid: str, epoch: int, claimed: int,
                      saved: int | None) -> None:
        """``client`` claimed ``uuid`` at ownership ``epoch`` and got epoch ``claimed``
        and the value ``saved`` (None: nothing saved)."""

    def store_write(self, client: str, uuid: str, value: int, epoch: int, stored: int | None,
                    accepted: bool) -> None:
        """``client`` wrote ``value`` at ``epoch`` over ``stored`` (the epoch held)."""


class _Op:
    """One operation on its way: a claim (``items`` None) or a batch of writes."""

    __slots__ = ("answer", "client", "epoch", "items", "uuid")

    def __init__(self, client: str, answer: Callable[[StoreReply], None], *, uuid: str = "",
                 epoch: int = 0, items: list[tuple[str, int, int]] | None = None) -> None:
        self.client = client
        self.answer = answer
        self.uuid = uuid
        self.epoch = epoch
        self.items = items


class SimStore:
    """The store (see module docstring)."""

    def __init__(self, clock: Clock, latency: Span, timeout: float, rng: random.Random,
                 observer: StoreObserver, trace: Callable[[str, str, str], None], *,
                 seeded_bugs: frozenset[str] = frozenset()) -> None:
        self.clock = clock
        self.base_latency = latency
        self.latency = latency
        self.timeout = timeout
        self.rng = rng
        self.observer = observer
        self._trace = trace
        self.rows: dict[str, Row] = {}
        self.paused = False
        self.cut = False
        #: operations that reached a paused store, applied on resume
        self._waiting: list[_Op] = []
        #: per client: when its last operation reaches the store (FIFO per client)
        self._last: dict[str, float] = {}
        self._accept_stale = ACCEPTS_STALE in seeded_bugs
        self._claims_only_saved = CLAIMS_ONLY_SAVED in seeded_bugs
        #: (start, end or None) of every stretch the store was paused, cut off or slow
        self.outages: list[list[float | None]] = []

    # --- the clients' calls ---------------------------------------------------------

    def claim(self, client: str, uuid: str, epoch: int,
              answer: Callable[[StoreReply], None]) -> None:
        """Claim ``uuid`` at ``epoch`` for ``client``; ``answer`` gets the reply later."""
        self._send(_Op(client, answer, uuid=uuid, epoch=epoch))

    def put_many(self, client: str, items: list[tuple[str, int, int]],
                 answer: Callable[[StoreReply], None]) -> None:
        """Write ``(uuid, value, epoch)`` items in one transaction; ``answer`` gets the reply."""
        self._send(_Op(client, answer, items=items))

    def _send(self, op: _Op) -> None:
        now = self.clock.now
        if self.cut:
            self.clock.at(now + self.timeout, _Fail(self, op))
            return
        span = self.latency
        delay = span.low if span.low == span.high else self.rng.uniform(span.low, span.high)
        at = max(now + delay, self._last.get(op.client, 0.0))
        self._last[op.client] = at
        self.clock.at(at, _Apply(self, op))

    # --- faults -----------------------------------------------------------------------

    def pause(self) -> None:
        """Apply nothing until ``resume`` (a stalled database)."""
        if not self.paused:
            self.paused = True
            self._outage_starts()

    def resume(self) -> None:
        """Apply, in order, what arrived while paused."""
        if not self.paused:
            return
        self.paused = False
        self._outage_ends()
        waiting, self._waiting = self._waiting, []
        for op in waiting:
            self.apply(op)

    def cut_off(self) -> None:
        """Unreachable: operations fail after ``timeout``."""
        if not self.cut:
            self.cut = True
            self._outage_starts()

    def heal(self) -> None:
        """Reachable again."""
        if self.cut:
            self.cut = False
            self._outage_ends()

    def slow(self, latency: Span) -> None:
        """Operations take ``latency`` from now on."""
        if self.latency == self.base_latency:
            self._outage_starts()
        self.latency = latency

    def unslow(self) -> None:
        """Back to the scenario's latency."""
        if self.latency != self.base_latency:
            self.latency = self.base_latency
            self._outage_ends()

    def healthy(self) -> bool:
        """Return whether the store is neither paused, cut off nor slow now."""
        return not self.paused and not self.cut and self.latency == self.base_latency

    def _outage_starts(self) -> None:
        self.outages.append([self.clock.now, None])

    def _outage_ends(self) -> None:
        if not self.healthy():
            return
        for stretch in self.outages:
            if stretch[1] is None:
                stretch[1] = self.clock.now

    def healthy_since(self, since: float) -> bool:
        """Return whether the store had no outage at any time from ``since`` until now."""
        for start, end in self.outages:
            assert start is not None
            if end is None or end >= since:
                return False
        return True

    # --- applying ---------------------------------------------------------------------

    def apply(self, op: _Op) -> None:
        """``op`` reaches the store: apply it and answer (a paused store keeps it)."""
        if self.cut:
            self.fail(op)
            return
        if self.paused:
            self._waiting.append(op)
            return
        now = self.clock.now
        if op.items is None:
            row = self.rows.get(op.uuid)
            if row is not None:
                row.epoch = max(row.epoch + 1, op.epoch)
            elif not self._claims_only_saved:
                row = self.rows[op.uuid] = Row(None, op.epoch, now)
            claimed = op.epoch if row is None else row.epoch
            saved = None if row is None else row.value
            self._trace("store-claim", op.client, f"{op.uuid}@{op.epoch}:{claimed}:"
                        + ("none" if saved is None else "saved"))
            self.observer.store_claimed(op.client, op.uuid, op.epoch, claimed, saved)
            op.answer(StoreReply(True, epoch=claimed, saved=saved))
            return
        refused: set[str] = set()
        for uuid, value, epoch in op.items:
            row = self.rows.get(uuid)
            stored = None if row is None else row.epoch
            accepted = row is None or row.epoch <= epoch or self._accept_stale
            self.observer.store_write(op.client, uuid, value, epoch, stored, accepted)
            if accepted:
                self.rows[uuid] = Row(value, epoch, now)
            else:
                refused.add(uuid)
        self._trace("store-put", op.client, f"{len(op.items)}:{len(refused)}")
        op.answer(StoreReply(True, refused=frozenset(refused)))

    def fail(self, op: _Op) -> None:
        """``op`` failed: the store could not be reached."""
        self._trace("store-fail", op.client, op.uuid or f"{len(op.items or ())}")
        op.answer(StoreReply(False))


class _Apply(Event):
    """An operation reaches the store."""

    __slots__ = ("op", "store")

    def __init__(self, store: SimStore, op: _Op) -> None:
        self.store = store
        self.op = op

    def fire(self) -> None:
        """Hand it to the store."""
        self.store.apply(self.op)


class _Fail(Event):
    """An operation issued while the store was cut off times out."""

    __slots__ = ("op", "store")

    def __init__(self, store: SimStore, op: _Op) -> None:
        self.store = store
        self.op = op

    def fire(self) -> None:
        """Hand it to the store."""
        self.store.fail(self.op)
