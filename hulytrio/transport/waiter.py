"""``Waiter``: where the outcome of one call lands, and the one task awaiting it.

The drivers number their calls into the core and park the calling task
until the core emits the ``Resolve`` or ``Reject`` of that number.  A trio
``Event`` would do, but its parking lot serves any number of waiters and
costs about 4,000 instructions more per call here; with exactly one waiter
the task can be parked and rescheduled directly (measured with
``benchmarks/cpu_per_request.py``, docs/performance.md).
"""

from __future__ import annotations

from typing import Any

import trio

from hulytrio.core.effects import Reject, Resolve

__all__ = ["Waiter"]


class Waiter:
    """One call's outcome slot; ``wait()`` by one task, ``set()`` once by the driver."""

    __slots__ = ("outcome", "task")

    def __init__(self) -> None:
        self.outcome: Resolve | Reject | None = None
        self.task: trio.lowlevel.Task | None = None

    def set(self, outcome: Resolve | Reject) -> None:
        """Record ``outcome`` (the first one wins) and wake the waiting task."""
        if self.outcome is not None:
            return
        self.outcome = outcome
        task = self.task
        if task is not None:
            self.task = None
            trio.lowlevel.reschedule(task)

    async def wait(self) -> Any:
        """Wait for the outcome (a checkpoint either way).

        Returns the ``Resolve``'s value.

        Raises:
            HulyError: the ``Reject``'s error.
            trio.Cancelled: cancelled while waiting (the outcome, if it
                comes later, is dropped).
        """
        if self.outcome is None:
            self.task = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort)
        else:
            await trio.lowlevel.checkpoint()
        outcome = self.outcome
        if type(outcome) is Resolve:
            return outcome.value
        assert isinstance(outcome, Reject)
        raise outcome.error

    def _abort(self, raise_cancel: object) -> trio.lowlevel.Abort:
        self.task = None
        return trio.lowlevel.Abort.SUCCEEDED
