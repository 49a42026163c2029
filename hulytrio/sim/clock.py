"""The virtual clock: typed events on a queue, run in time order.

Theory of operation
-------------------
An event is a small slotted object naming what happens and to whom
(``Deliver`` a link's ready messages, ``Wake`` a machine at its deadline,
``FaultAt`` a scheduled fault, a workload ``Tick`` ...); each class says in
``fire()`` which layer handles it.  The queue is a heap of the distinct due
times and, per due time, its events in the order they were scheduled:
exactly the order of a heap of ``(time, seq, event)``, at one heap operation
per instant rather than per event (timers and fixed latencies put many
events on one instant).  The clock jumps from one instant to the next, so
idle virtual time costs nothing.

*Scripted* events (the scenario's faults and operations, the end of the
fault phase) are known before the run; they run after every other event
due at the same instant, exactly as when a test injects them between steps,
so a chaos run written out as a scenario replays the same way.

This module knows nothing of hubs, sessions, links or processes.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from heapq import heappop, heappush

__all__ = ["Clock", "Event"]


class Event(abc.ABC):
    """One thing due at one instant; subclasses name it and say who handles it."""

    __slots__ = ()

    @abc.abstractmethod
    def fire(self) -> None:
        """Make it happen (called by ``Clock.run_until`` at its due time)."""


class Clock:
    """Virtual time and the event queue (see module docstring)."""

    __slots__ = ("_due", "_next_scripted", "_scripted", "_times", "_yield", "now", "stopped")

    def __init__(self) -> None:
        self.now = 0.0
        #: set by whoever decides the run is over (convergence); the loop ends
        self.stopped = False
        self._times: list[float] = []
        self._due: dict[float, Event | list[Event]] = {}
        #: leave the instant being run now: stopped, or an event was scheduled
        #: before it (a queue whose items came due while held or paused),
        #: which a heap would run next
        self._yield = False
        self._scripted: list[tuple[float, Event]] = []
        self._next_scripted = 0

    def at(self, t: float, event: Event) -> None:
        """Schedule ``event`` at virtual time ``t`` (after those already due at ``t``)."""
        # An instant holds its one event as is (most instants have one: link
        # latencies are drawn), and a list once a second one comes.
        due = self._due.get(t)
        if due is None:
            self._due[t] = event
            heappush(self._times, t)
            if t < self.now:
                self._yield = True
        elif type(due) is list:
            due.append(event)
        else:
            self._due[t] = [due, event]  # type: ignore[list-item]

    def script(self, events: list[tuple[float, Event]]) -> None:
        """Set the scripted events: each runs after the queue's events due at its time.

        Events at one time keep the order given.
        """
        self._scripted = sorted(events, key=lambda x: x[0])
        self._next_scripted = 0

    def stop(self) -> None:
        """End the run after the event being fired now."""
        self.stopped = True
        self._yield = True

    def clear(self) -> None:
        """Drop every queued and scripted event (tests that drive the queue alone)."""
        self._times.clear()
        self._due.clear()
        self._scripted = []
        self._next_scripted = 0

    def run_until(self, limit: float, between: Callable[[float], None] | None = None) -> None:
        """Fire every event due by ``limit`` in time order, or until ``stop()``.

        ``between(t)``, if given, is called before each instant runs
        (progress reports).  Time ends at ``limit`` unless stopped earlier.
        """
        times = self._times
        dues = self._due
        scripted = self._scripted
        i = self._next_scripted
        nx = scripted[i][0] if i < len(scripted) else _NEVER
        while not self.stopped:
            t = times[0] if times else _NEVER
            if nx < t and nx <= limit:
                when, event = scripted[i]
                i += 1
                self._next_scripted = i
                nx = scripted[i][0] if i < len(scripted) else _NEVER
                self.now = when
                event.fire()
                continue
            if t > limit or not times:
                break
            if between is not None:
                between(t)
            # Every event due at t, in scheduling order.  One scheduled at t
            # meanwhile opens a new entry for t that runs right after this
            # one, exactly where a heap would put it.
            heappop(times)
            batch = dues.pop(t)
            self.now = t
            if type(batch) is not list:
                batch.fire()  # type: ignore[union-attr]
                continue
            self._yield = False
            events = iter(batch)
            for event in events:
                event.fire()
                if self._yield:
                    break
            if self._yield:
                # Left early: the rest of t runs before anything scheduled at t since.
                rest = list(events)
                if rest:
                    later = dues.get(t)
                    if later is None:
                        heappush(times, t)
                    elif type(later) is list:
                        rest += later
                    else:
                        rest.append(later)  # type: ignore[arg-type]
                    dues[t] = rest
        if not self.stopped and self.now < limit < _NEVER:
            self.now = limit


_NEVER = float("inf")
