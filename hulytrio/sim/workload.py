"""A simulated client's workload: references held, requests sent, outcomes counted.

The workload calls the session's user operations (``get``, ``request``,
``release``) as application code would, and reads the ``Resolve`` /
``Reject`` effects the session answers with.  It keeps the per-run request
ledger the invariants use: every request must end exactly once.

It knows its process only as a ``Host`` (a session, an incarnation, paused or
not) and the run's checks only as a ``Ledger``; after it calls the session it
asks ``perform()`` to have the driver carry out the session's effects.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Protocol

from ..core.effects import Reject, Resolve
from ..core.errors import HulyError, LocalProtocolError
from ..core.session import ClientSession
from ..core.types import GetOptions
from .clock import Clock, Event
from .scenario import ClientSpec

__all__ = ["Host", "Ledger", "RequestStats", "Workload"]


class Host(Protocol):
    """What a workload sees of its process."""

    pid: str
    incarnation: int
    paused: bool
    session: ClientSession | None


class Ledger(Protocol):
    """Where a workload accounts for its requests (the invariant checker)."""

    requests: RequestStats
    checked: dict[str, int]

    def violate(self, name: str, text: str) -> None:
        """Record that invariant ``name`` broke now."""


class RequestStats:
    """Request outcomes over a whole run (all clients)."""

    __slots__ = ("failed", "failed_after_release", "failed_injected", "issued", "latencies",
                 "lost_with_process", "ok", "pending")

    def __init__(self) -> None:
        self.issued = 0
        self.ok = 0
        self.failed_injected = 0
        #: failed after the user released the reference (no longer re-routed)
        self.failed_after_release = 0
        #: error code -> count, for failures other than the configured ones
        self.failed: dict[str, int] = {}
        self.lost_with_process = 0
        self.pending = 0
        self.latencies: list[float] = []


class Workload:
    """The workload of one client process (see module docstring)."""

    def __init__(self, proc: Host, spec: ClientSpec | None, rng: random.Random, *,
                 clock: Clock, ledger: Ledger, perform: Callable[[], None]) -> None:
        self.proc = proc
        self.spec = spec
        self.rng = rng
        self.clock = clock
        self.ledger = ledger
        self.perform = perform
        self.stats = ledger.requests
        #: reference slot -> ref id (None: empty)
        self.slots: dict[int, int | None] = {}
        #: get handle (= ref id) -> slot, while the get is pending
        self.getting: dict[int, int] = {}
        #: request handle -> issue time
        self.outstanding: dict[int, float] = {}
        #: request handle -> the reference it was sent on
        self.request_ref: dict[int, int] = {}
        self.releasing: dict[int, None] = {}
        self.ended: set[int] = set()
        #: ref id -> the container uuid it points at now ("": lost, re-acquiring)
        self.pointing: dict[int, str] = {}
        #: container uuid -> payloads it pushed to this client
        self.pushed: dict[str, int] = {}
        self.stopped = False
        #: each request's payload names it (``peer#incarnation:n``), so a check can tell a
        #: request run twice from two requests (sim/hubchecks.py); off: b"x"
        self.unique_payloads = False
        self._serial = 0
        self.dead = False
        self.generation = 0
        #: the one request-loop event of this workload, scheduled again after each tick
        #: (a workload lives for one incarnation of its process, and ticks one at a time)
        self._tick = _Tick(self, proc.incarnation)
        if spec is not None:
            options = GetOptions(spec.uuid, spec.labels)
            self.kind = spec.kind
            self.options = options
        else:
            self.kind = ""
            self.options = GetOptions()

    # --- scheduled behaviour ----------------------------------------------------

    def start(self) -> None:
        """Acquire the configured references and start the request loop."""
        spec = self.spec
        if spec is None:
            return
        for slot in range(spec.references):
            self.get(slot)
        if spec.request_interval is not None:
            self._schedule_request()

    def _schedule_request(self) -> None:
        spec = self.spec
        assert spec is not None
        span = spec.request_interval
        assert span is not None
        # Span.draw and Random.uniform, inlined (every tick): the same draw.
        low = span.low
        high = span.high
        delay = low if low == high else low + (high - low) * self.rng.random()
        self.clock.at(self.clock.now + delay, self._tick)

    def tick(self, inc: int) -> None:
        proc = self.proc
        if self.dead or self.stopped or inc != proc.incarnation:
            return
        if not proc.paused:
            getting = self.getting
            held: list[int] = []
            for s, r in self.slots.items():
                if r is not None and r not in getting:
                    held.append(s)
            if held:
                self.request(held[randbelow(self.rng, len(held))])
                self.perform()
        self._schedule_request()

    def _release_later(self, slot: int, ref: int) -> None:
        spec = self.spec
        if spec is None or spec.hold is None:
            return
        self.clock.at(self.clock.now + float(spec.hold),
                      _HoldOver(self, self.proc.incarnation, slot, ref))

    def hold_over(self, inc: int, slot: int, ref: int) -> None:
        if self.dead or self.stopped or inc != self.proc.incarnation or self.proc.paused:
            return
        if self.slots.get(slot) != ref:
            return
        self.release(slot)
        self.get(slot)
        self.perform()

    # --- operations --------------------------------------------------------------

    def explicit(self, op: str, slot: int) -> None:
        """Run an explicit scenario operation on reference ``slot``."""
        if op == "get":
            if self.slots.get(slot) is None:
                self.get(slot)
        elif op == "request":
            if self.slots.get(slot) is not None:
                self.request(slot)
        elif op == "release" and self.slots.get(slot) is not None:
            self.release(slot)

    def get(self, slot: int) -> None:
        """Get a container into ``slot``."""
        session = self.proc.session
        assert session is not None
        kind = self.kind or "echo"
        options = self.options
        if self.spec is not None and self.spec.private:
            # A fresh label per get: a released container is not reused, so it
            # is orphaned and terminated.
            self.generation += 1
            label = f"{self.proc.pid}.{slot}.{self.generation}"
            options = GetOptions(options.uuid, (*options.labels, label))
        ref = session.get(kind, options)
        self.slots[slot] = ref
        self.getting[ref] = slot

    def request(self, slot: int) -> None:
        """Send one request on the reference in ``slot``."""
        session = self.proc.session
        ref = self.slots.get(slot)
        if session is None or ref is None:
            return
        payload = b"x"
        if self.unique_payloads:
            self._serial += 1
            # (the incarnation too: a restarted process numbers from 1 again)
            payload = f"{session.client_id}#{self.proc.incarnation}:{self._serial}".encode()
        try:
            handle = session.request(ref, "work", payload)
        except LocalProtocolError:
            return
        self.outstanding[handle] = self.clock.now
        self.request_ref[handle] = ref
        self.stats.issued += 1
        self.stats.pending += 1

    def release(self, slot: int) -> None:
        """Release the reference in ``slot``."""
        session = self.proc.session
        ref = self.slots.get(slot)
        if session is None or ref is None:
            return
        self.slots[slot] = None
        self.getting.pop(ref, None)
        self.pointing.pop(ref, None)
        try:
            handle = session.release(ref)
        except LocalProtocolError:
            return
        self.releasing[handle] = None

    def on_result(self, eff: Resolve | Reject) -> None:
        """Account for the outcome of one operation."""
        h = eff.handle
        slot = self.getting.pop(h, None)
        if slot is not None:
            if type(eff) is Resolve:
                self._release_later(slot, h)
            elif self.slots.get(slot) == h:
                # A get that cannot succeed (e.g. start failed): try again later.
                self.slots[slot] = None
                if not self.stopped:
                    self.clock.at(self.clock.now + 1.0, _Reget(self, self.proc.incarnation, slot))
            return
        started = self.outstanding.pop(h, None)
        if started is not None or h in self.ended:
            self.ledger.checked["request-ends-once"] += 1
        if started is not None:
            self.ended.add(h)
            self.stats.pending -= 1
            ref = self.request_ref.pop(h, None)
            if type(eff) is Reject and ref not in self.slots.values():
                self.stats.failed_after_release += 1
            elif type(eff) is Resolve:
                self.stats.ok += 1
                self.stats.latencies.append(self.clock.now - started)
            else:
                error = eff.error  # type: ignore[union-attr]
                code = _code(error)
                if code == "SimulatedFailure":
                    self.stats.failed_injected += 1
                else:
                    self.stats.failed[code] = self.stats.failed.get(code, 0) + 1
            return
        if h in self.ended:
            self.ledger.violate(
                "request-ends-once", f"{self.proc.pid}: request {h} ended a second time")
            return
        self.releasing.pop(h, None)

    def reget(self, inc: int, slot: int) -> None:
        if self.dead or self.stopped or inc != self.proc.incarnation:
            return
        if self.slots.get(slot) is None:
            self.get(slot)
            self.perform()

    def reference_changed(self, ref: int, uuid: str | None) -> None:
        """The session's reference ``ref`` now points at ``uuid`` (None: lost, re-acquiring)."""
        if ref in self.getting or ref in self.slots.values():
            self.pointing[ref] = uuid or ""

    def delivered(self, uuid: str) -> None:
        """Container ``uuid`` pushed an event to this client."""
        self.pushed[uuid] = self.pushed.get(uuid, 0) + 1

    # --- lifecycle ------------------------------------------------------------------

    def stop(self) -> None:
        """Issue nothing new (the liveness phase); outstanding requests go on."""
        self.stopped = True

    def process_died(self) -> None:
        """The process crashed or left: its outstanding requests die with it."""
        self.dead = True
        n = len(self.outstanding)
        self.stats.lost_with_process += n
        self.stats.pending -= n
        self.outstanding.clear()
        self.request_ref.clear()


class _Tick(Event):
    """Time for the workload's next request (of incarnation ``inc`` of its process)."""

    __slots__ = ("inc", "load")

    def __init__(self, load: Workload, inc: int) -> None:
        self.load = load
        self.inc = inc

    def fire(self) -> None:
        """Send a request, schedule the next."""
        self.load.tick(self.inc)


class _HoldOver(Event):
    """A reference held for ``hold`` is released and got again."""

    __slots__ = ("inc", "load", "ref", "slot")

    def __init__(self, load: Workload, inc: int, slot: int, ref: int) -> None:
        self.load = load
        self.inc = inc
        self.slot = slot
        self.ref = ref

    def fire(self) -> None:
        """Release and get again, if the slot still holds that reference."""
        self.load.hold_over(self.inc, self.slot, self.ref)


class _Reget(Event):
    """A get that failed is tried again."""

    __slots__ = ("inc", "load", "slot")

    def __init__(self, load: Workload, inc: int, slot: int) -> None:
        self.load = load
        self.inc = inc
        self.slot = slot

    def fire(self) -> None:
        """Get into the slot if it is still empty."""
        self.load.reget(self.inc, self.slot)


def randbelow(rng: random.Random, n: int) -> int:
    """Return ``rng.randrange(n)`` for ``n > 0``: the same draws, at a third of the calls.

    CPython's ``randrange(n)`` checks its arguments and calls
    ``_randbelow_with_getrandbits(n)``, which is this (a test compares them).
    """
    k = n.bit_length()
    r = rng.getrandbits(k)
    while r >= n:
        r = rng.getrandbits(k)
    return r


def _code(error: HulyError) -> str:
    type_name = getattr(error, "type_name", None) or getattr(error, "remote_type", None)
    if isinstance(type_name, str) and type_name:
        return type_name
    code = getattr(error, "code", None)
    if code is not None:
        return str(getattr(code, "value", code))
    return type(error).__name__
