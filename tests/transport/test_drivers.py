"""Driver building blocks: the outbox packs queued messages in one frame; deadlines wake."""

from __future__ import annotations

import trio
import trio.testing

from hulytrio.core.messages import Ping, Pong, Request
from hulytrio.core.timers import Timers
from hulytrio.transport.codec import decode_frame
from hulytrio.transport.deadlines import DeadlineTask
from hulytrio.transport.outbox import Outbox


class FakeWs:
    """Records frames; ``gate`` blocks sends until opened."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.gate = trio.Event()
        self.gate.set()
        self.closed: tuple[int, str] | None = None

    async def send_message(self, data: bytes) -> None:
        await self.gate.wait()
        self.frames.append(data)

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)


async def test_outbox_packs_what_is_queued_into_one_frame():
    ws = FakeWs()
    outbox = Outbox(100)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(outbox.run_writer, ws)
            # queued before the writer runs: one frame
            for i in range(10):
                assert outbox.put_nowait(Request(i, "u", "op"))
            await trio.testing.wait_all_tasks_blocked()
            assert len(ws.frames) == 1
            assert [m.id for m in decode_frame(ws.frames[0])] == list(range(10))
            # a lone message is not delayed
            outbox.put_nowait(Ping())
            await trio.testing.wait_all_tasks_blocked()
            assert decode_frame(ws.frames[1]) == [Ping()]
            # close after flush: what was queued goes out first
            outbox.put_nowait(Pong())
            assert outbox.close_after_flush("bye")
            assert not outbox.put_nowait(Ping()), "nothing is queued after a close"
    assert decode_frame(ws.frames[2]) == [Pong()]
    assert ws.closed == (1000, "bye")
    stats = outbox.statistics()
    assert (stats.frames, stats.messages, stats.queued) == (3, 12, 0)


async def test_outbox_is_bounded_while_the_peer_does_not_read():
    ws = FakeWs()
    ws.gate = trio.Event()  # the socket does not drain
    outbox = Outbox(5)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(outbox.run_writer, ws)
            assert outbox.put_nowait(Ping())
            await trio.testing.wait_all_tasks_blocked()  # the writer is stuck sending it
            accepted = [outbox.put_nowait(Ping()) for _ in range(10)]
            assert accepted == [True] * 5 + [False] * 5
            ws.gate.set()
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert sum(len(decode_frame(f)) for f in ws.frames) == 6


async def test_deadline_task_fires_at_deadlines_and_wakes_early(autojump_clock):
    timers = Timers()
    fired: list[tuple[float, list[object]]] = []

    def fire(now: float) -> None:
        fired.append((now, timers.expired(now)))

    task = DeadlineTask(timers.next_deadline, fire)
    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            start = trio.current_time()
            timers.call_at(start + 10, "late")
            nursery.start_soon(task.run)
            await trio.sleep(1)
            # an earlier deadline appears while the task sleeps until +10
            timers.call_at(start + 2, "early")
            task.poke()
            await trio.sleep(20)
            nursery.cancel_scope.cancel()
    assert [(round(t - start, 6), keys) for t, keys in fired] == [(2, ["early"]),
                                                                 (10, ["late"])]
