"""The record of a run: the trace (every event, hashed) and the timeline (its story).

The trace is the regression oracle: one JSON line per event, and the SHA-256
of all of them, the same for the same scenario and seed whether or not the
lines are written.  Lines are formatted, hashed and written in batches: the
hot paths only append a tuple.
"""

from __future__ import annotations

import hashlib
from collections import deque
from typing import IO

import attrs

from .clock import Clock

__all__ = ["TimelineEntry", "Trace"]

#: trace lines formatted, hashed and written per batch
BATCH = 8192


@attrs.frozen
class TimelineEntry:
    """One line of the run's story: a fault, or the system's reaction to one."""

    time: float
    kind: str
    text: str


class Trace:
    """The trace and timeline of one run, stamped with ``clock``'s time.

    ``out`` (a text file) receives every event as a JSON line; ``keep``
    keeps them in memory too (``kept``, for ``--check-determinism``).
    """

    __slots__ = ("_hasher", "clock", "events", "kept", "out", "pending", "recent", "timeline")

    def __init__(self, clock: Clock, out: IO[str] | None = None, keep: bool = False) -> None:
        self.clock = clock
        self.out = out
        self.kept: list[str] | None = [] if keep else None
        #: events recorded and not yet formatted: ``(time, kind, who, what)``
        self.pending: list[tuple[float, str, str, str]] = []
        #: events formatted so far
        self.events = 0
        self.recent: deque[str] = deque(maxlen=40)
        self.timeline: list[TimelineEntry] = []
        self._hasher = hashlib.sha256()

    def record(self, kind: str, who: str, what: str) -> None:
        """Record one event now (formatted later, in a batch)."""
        self.pending.append((self.clock.now, kind, who, what))
        if len(self.pending) >= BATCH:
            self.flush()

    def flush_if_full(self) -> None:
        """Format the pending events once a batch is full (the driver calls it now and then)."""
        if len(self.pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        """Format, hash and write the pending events."""
        buf = self.pending
        if not buf:
            return
        self.events += len(buf)
        # Many events share an instant (timers and fixed latencies line up):
        # the time, the costly part of a line, is formatted once per instant.
        lines: list[str] = []
        add = lines.append
        last = None
        head = ""
        for t, k, w, x in buf:
            if t != last:
                last = t
                # %-formatting: faster than an f-string with a format spec,
                # which the compiled build turns into a str.format call.
                head = '{"t":%.9f,"ev":"' % t  # noqa: UP031
            add(f'{head}{k}","at":"{w}","what":"{x}"}}\n')
        self.pending = []
        self._hasher.update("".join(lines).encode())
        self.recent.extend(lines[-40:])
        if self.out is not None:
            self.out.writelines(lines)
        if self.kept is not None:
            self.kept.extend(lines)

    def recent_lines(self) -> list[str]:
        """Return the last trace lines (the events leading to now)."""
        self.flush()
        return list(self.recent)

    def hash(self) -> str:
        """Return the SHA-256 of the trace lines so far."""
        self.flush()
        return self._hasher.hexdigest()

    def note(self, kind: str, text: str) -> None:
        """Add a line to the run's timeline (faults and reactions)."""
        self.timeline.append(TimelineEntry(self.clock.now, kind, text))
