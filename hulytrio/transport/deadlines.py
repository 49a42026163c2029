"""The timer task every driver runs: sleep until the machine's next deadline.

A machine reports ``next_deadline()``; the driver's ``DeadlineTask`` sleeps
until then and calls ``fire(now)``.  After any input that may have armed an
earlier deadline the driver calls ``poke()``, which wakes the task early so
it re-reads the deadline (never polls).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import trio

__all__ = ["DeadlineTask"]


class DeadlineTask:
    """Wakes a sans-IO machine at its deadlines (see module docstring)."""

    def __init__(self, next_deadline: Callable[[], float | None],
                 fire: Callable[[float], None]) -> None:
        self._next_deadline = next_deadline
        self._fire = fire
        self._sleeping_until = math.inf
        self._wake = trio.Event()

    def poke(self) -> None:
        """Wake the task if the machine now wants to be called earlier."""
        deadline = self._next_deadline()
        if deadline is not None and deadline < self._sleeping_until:
            self._wake.set()

    async def run(self) -> None:
        """Fire the machine's deadlines forever (cancel to stop)."""
        while True:
            deadline = self._next_deadline()
            self._sleeping_until = math.inf if deadline is None else deadline
            self._wake = trio.Event()
            with trio.move_on_at(self._sleeping_until):
                await self._wake.wait()
            now = trio.current_time()
            deadline = self._next_deadline()
            if deadline is not None and deadline <= now:
                self._fire(now)
