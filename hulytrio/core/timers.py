"""Deadlines and periodic handlers for state machines that are told the time.

Theory of operation: a ``Timers`` holds one-shot deadlines keyed by any
hashable key.  Re-arming a key replaces its deadline; cancelling forgets it.
The heap is lazy: a replaced or cancelled entry stays in the heap and is
skipped when it surfaces, so ``call_at`` and ``cancel`` are O(log n) and O(1),
and ``expired(now)`` costs O(expired log n), never O(number of timers).
Dead entries are not kept until their deadline, though (a peer could make
the hub keep one per session it ever had): once they outnumber the live
ones, the heap is rebuilt from the live entries, O(n) once per n changes.

Periodic handlers (``call_every``) are deadlines that re-arm themselves when
they expire, at ``first + k * interval`` so they do not drift.

Both drivers use it the same way: feed ``expired(now)`` to the machine, then
sleep until ``next_deadline()``.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable

__all__ = ["Timers"]

#: Heaps this small are never compacted (not worth a rebuild).
_MIN_COMPACT = 64


class Timers:
    """A set of keyed deadlines with lazy deletion."""

    __slots__ = ("_compact_at", "_deadlines", "_heap", "_intervals", "armings")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable]] = []
        # key -> (deadline, serial) of its live entry
        self._deadlines: dict[Hashable, tuple[float, int]] = {}
        self._intervals: dict[Hashable, float] = {}
        #: the heap size that makes ``call_at`` look for dead entries to drop
        self._compact_at = _MIN_COMPACT
        #: How many times a deadline was armed so far (read-only for users).
        #: Only arming can bring the next deadline forward, so a driver that
        #: already waits for ``next_deadline()`` need not ask again while this
        #: number is unchanged.  (A plain attribute, not a property: drivers
        #: read it after every input.)  It is also the serial of the latest
        #: arming: serials break ties deterministically (insertion order) and
        #: tell a live heap entry from a stale one.
        self.armings = 0

    def __len__(self) -> int:
        return len(self._deadlines)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._deadlines

    def call_at(self, deadline: float, key: Hashable) -> None:
        """Arm ``key`` to expire at ``deadline``, replacing any earlier arming."""
        serial = self.armings = self.armings + 1
        self._deadlines[key] = (deadline, serial)
        heap = self._heap
        heapq.heappush(heap, (deadline, serial, key))
        if len(heap) > self._compact_at:
            self._compact()

    def call_every(self, interval: float, key: Hashable, first: float) -> None:
        """Arm ``key`` to expire at ``first`` and every ``interval`` after it.

        Raises:
            ValueError: if ``interval`` is not positive.
        """
        if not interval > 0:
            raise ValueError(f"interval must be > 0, got {interval!r}")
        self._intervals[key] = interval
        self.call_at(first, key)

    def cancel(self, key: Hashable) -> None:
        """Forget ``key`` (a no-op if it is not armed)."""
        if self._deadlines.pop(key, None) is not None:
            self._intervals.pop(key, None)
            size = len(self._heap)
            if size > _MIN_COMPACT and size > 2 * len(self._deadlines):
                self._compact()

    def _compact(self) -> None:
        """Rebuild the heap from the live entries (the same order: serials are unique)."""
        deadlines = self._deadlines
        if 2 * len(deadlines) < len(self._heap):
            heap = [(deadline, serial, key) for key, (deadline, serial) in deadlines.items()]
            heapq.heapify(heap)
            self._heap = heap
        self._compact_at = max(_MIN_COMPACT, 2 * len(self._heap))

    def deadline(self, key: Hashable) -> float | None:
        """Return when ``key`` expires, or None if it is not armed."""
        entry = self._deadlines.get(key)
        return None if entry is None else entry[0]

    def next_deadline(self) -> float | None:
        """Return the earliest armed deadline, or None when nothing is armed."""
        # Drivers ask after every input: the prune loop is inlined here.
        heap = self._heap
        deadlines = self._deadlines
        while heap:
            deadline, serial, key = heap[0]
            live = deadlines.get(key)
            if live is not None and live[1] == serial:
                return deadline
            heapq.heappop(heap)
        return None

    def expired(self, now: float) -> list[Hashable]:
        """Return the keys whose deadline is ``<= now``, earliest first.

        One-shot keys are disarmed; periodic keys are re-armed at their next
        multiple of the interval after ``now``.
        """
        heap = self._heap
        if not heap or heap[0][0] > now:
            return []
        out: list[Hashable] = []
        deadlines = self._deadlines
        intervals = self._intervals
        pop = heapq.heappop
        # Periodic keys are re-armed in expiry order, and never fire twice in
        # one call: a re-arming later than now replaces the fired entry in
        # place (one heap operation instead of two; it cannot surface before
        # the loop ends).  One that rounds to now or earlier waits for the end
        # of the loop, and so does every re-arming after it, so serials are
        # still handed out in expiry order.
        rearm: list[tuple[float, Hashable]] | None = None
        while heap:
            deadline, serial, key = heap[0]
            if deadline > now:
                break
            live = deadlines.get(key)
            if live is None or live[1] != serial:
                pop(heap)
                continue
            out.append(key)
            interval = intervals.get(key)
            if interval is not None:
                lag = now - deadline
                # The next multiple of the interval after now: one interval
                # on when on time (the usual case; the same float as one step
                # below), float floor division only for a timer that lagged.
                if lag < interval:
                    nxt = deadline + interval
                else:
                    nxt = deadline + (int(lag // interval) + 1) * interval
                if rearm is None and nxt > now:
                    serial = self.armings = self.armings + 1
                    deadlines[key] = (nxt, serial)
                    heapq.heapreplace(heap, (nxt, serial, key))
                    continue
                if rearm is None:
                    rearm = [(nxt, key)]
                else:
                    rearm.append((nxt, key))
            del deadlines[key]
            pop(heap)
        if rearm is not None:
            for deadline, key in rearm:
                serial = self.armings = self.armings + 1  # call_at, inlined
                deadlines[key] = (deadline, serial)
                heapq.heappush(heap, (deadline, serial, key))
        return out
