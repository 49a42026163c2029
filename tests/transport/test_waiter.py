"""The drivers' ``Waiter``: one call's outcome, and the one task awaiting it."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from hulytrio.core.effects import Reject, Resolve
from hulytrio.core.errors import ContainerNotFound
from hulytrio.transport.waiter import Waiter


async def test_a_resolve_wakes_the_waiting_task_with_its_value():
    waiter = Waiter()
    got = []

    async def waiting() -> None:
        got.append(await waiter.wait())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiting)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        waiter.set(Resolve(1, {"n": 1}))
    assert got == [{"n": 1}]


async def test_a_reject_raises_its_error_in_the_waiting_task():
    waiter = Waiter()
    waiter.set(Reject(1, ContainerNotFound("gone")))
    with pytest.raises(ContainerNotFound, match="gone"):
        await waiter.wait()


async def test_an_outcome_set_before_the_wait_is_returned_at_a_checkpoint():
    waiter = Waiter()
    waiter.set(Resolve(1, None))
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await waiter.wait()  # a checkpoint even when nothing is awaited
    assert await waiter.wait() is None


async def test_the_first_outcome_wins():
    waiter = Waiter()
    waiter.set(Resolve(1, "first"))
    waiter.set(Resolve(1, "second"))
    waiter.set(Reject(1, ContainerNotFound("late")))
    assert await waiter.wait() == "first"


async def test_a_cancelled_wait_leaves_a_later_outcome_harmless():
    waiter = Waiter()
    with trio.move_on_after(1) as scope:
        await waiter.wait()
    assert scope.cancelled_caught
    waiter.set(Resolve(1, "late"))  # nobody to wake: must not reschedule a gone task
    await trio.lowlevel.checkpoint()
    assert await waiter.wait() == "late"
