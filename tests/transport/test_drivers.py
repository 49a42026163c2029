"""Driver building blocks: the outbox writes at once or packs a burst; deadlines wake."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from wspair import ws_pair

from hulytrio.core.messages import Ping, Pong, Request
from hulytrio.core.timers import Timers
from hulytrio.transport.deadlines import DeadlineTask
from hulytrio.transport.outbox import Outbox
from hulytrio.transport.websocket import WebSocket, WebSocketClosed
from hulytrio.wire.codec import decode_frame


async def _frames(ws: WebSocket, count: int) -> list[list[object]]:
    """Receive ``count`` frames; returns each decoded."""
    out: list[list[object]] = []
    while len(out) < count:
        out.extend(decode_frame(data) for data in await ws.receive())  # type: ignore[arg-type]
    return out


async def _burst(outbox: Outbox, ids: range) -> None:
    """Queue one request per id, each from its own task, all in one scheduler round."""

    async def put(i: int) -> None:
        assert outbox.put_nowait(Request(i, "u", "op"))

    async with trio.open_nursery() as tasks:
        for i in ids:
            tasks.start_soon(put, i)


async def test_outbox_writes_what_a_round_queued_as_one_frame():
    with trio.fail_after(10):
        async with ws_pair() as (client, server), trio.open_nursery() as nursery:
            outbox = Outbox(100)
            nursery.start_soon(outbox.run_writer, client)
            await trio.testing.wait_all_tasks_blocked()
            # ten tasks in one round: one frame
            await _burst(outbox, range(10))
            assert outbox.statistics().frames == 1
            frames = await _frames(server, 1)
            assert sorted(m.id for m in frames[0]) == list(range(10))  # type: ignore[attr-defined]
            # a lone message is written before the process sleeps: no delay
            outbox.put_nowait(Ping())
            assert outbox.statistics().queued == 1, "queued until the round ends"
            assert await _frames(server, 1) == [[Ping()]]
            assert outbox.put_nowait(Pong())
            assert outbox.put_nowait(Ping())
            assert await _frames(server, 1) == [[Pong(), Ping()]]
            # close after flush: what was queued goes out first, then a close frame
            outbox.put_nowait(Pong())
            assert outbox.close_after_flush("bye")
            assert not outbox.put_nowait(Ping()), "nothing is queued after a close"
            assert await _frames(server, 1) == [[Pong()]]
            with pytest.raises(WebSocketClosed) as closed:
                await server.receive()
            assert (closed.value.code, closed.value.reason) == (1000, "bye")
    stats = outbox.statistics()
    assert (stats.frames, stats.messages, stats.queued) == (4, 14, 0)


async def test_a_burst_as_large_as_the_last_leaves_in_two_halves():
    with trio.fail_after(10):
        async with ws_pair() as (client, server), trio.open_nursery() as nursery:
            outbox = Outbox(100)
            nursery.start_soon(outbox.run_writer, client)
            await trio.testing.wait_all_tasks_blocked()
            await _burst(outbox, range(16))  # no history: one frame
            assert [len(f) for f in await _frames(server, 1)] == [16]
            # as large as the last: half at once, half at the round's end
            await _burst(outbox, range(16, 32))
            halves = await _frames(server, 2)
            assert [len(f) for f in halves] == [8, 8]
            assert sorted(m.id for f in halves for m in f) == list(range(16, 32))  # type: ignore[attr-defined]
            # small bursts stay whole
            for _ in range(3):
                outbox.put_nowait(Ping())
            assert [len(f) for f in await _frames(server, 1)] == [3]
            assert outbox.statistics().frames == 4
            nursery.cancel_scope.cancel()


async def test_outbox_is_bounded_in_messages_per_round():
    with trio.fail_after(10):
        async with ws_pair() as (client, server), trio.open_nursery() as nursery:
            outbox = Outbox(5)
            nursery.start_soon(outbox.run_writer, client)
            await trio.testing.wait_all_tasks_blocked()
            # One round (no checkpoint): the sixth message is refused.
            accepted = [outbox.put_nowait(Request(i, "u", "op")) for i in range(6)]
            assert accepted == [True] * 5 + [False]
            received = 0
            while received < 5:
                received += sum(len(decode_frame(d)) for d in await server.receive())  # type: ignore[arg-type]
            nursery.cancel_scope.cancel()


async def test_outbox_keeps_bytes_for_a_slow_peer_in_order_up_to_its_byte_bound():
    with trio.fail_after(10):
        async with ws_pair() as (client, server), trio.open_nursery() as nursery:
            outbox = Outbox(5, max_bytes=64 * 1024 * 1024)
            nursery.start_soon(outbox.run_writer, client)
            await trio.testing.wait_all_tasks_blocked()
            # The server does not read: the kernel's buffers fill, and the
            # WebSocket keeps the rest as bytes (counted in ``pending``).
            big = Request(0, "u", "op", b"x" * 65536)
            sent = 0
            while client.pending < 4 * 1024 * 1024:
                assert outbox.put_nowait(big)
                sent += 1
                await trio.lowlevel.checkpoint()
            assert not client.overflowed
            # once the peer reads, everything accepted arrives, in order
            received = 0
            while received < sent:
                received += sum(len(decode_frame(d)) for d in await server.receive())  # type: ignore[arg-type]
            assert received == sent
            nursery.cancel_scope.cancel()


async def test_a_peer_that_does_not_read_is_dropped_past_the_byte_bound():
    with trio.fail_after(10):
        async with ws_pair() as (client, _server), trio.open_nursery() as nursery:
            outbox = Outbox(5, max_bytes=2 * 1024 * 1024)
            nursery.start_soon(outbox.run_writer, client)
            await trio.testing.wait_all_tasks_blocked()
            big = Request(0, "u", "op", b"x" * 65536)
            for _ in range(10_000):
                if client.overflowed:
                    break
                outbox.put_nowait(big)
                await trio.lowlevel.checkpoint()
            assert client.overflowed, "dropped once the bytes kept passed the bound"
            assert client.pending == 0, "and the bytes are freed"
            assert client.closed is not None
            nursery.cancel_scope.cancel()


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


async def test_a_burst_sent_early_that_the_kernel_only_partly_takes_still_arrives():
    # Regression: the early half of a burst (``MIN_SPLIT``) that the kernel
    # took only part of never woke the writer, and the round's flush then
    # left the rest to that writer: the connection wedged for good.
    with trio.fail_after(10):
        async with ws_pair(max_message_size=64 << 20) as (client, server), \
                trio.open_nursery() as nursery:
            outbox = Outbox(100)
            nursery.start_soon(outbox.run_writer, client)
            await trio.testing.wait_all_tasks_blocked()
            await _burst(outbox, range(8))  # the round the next one is compared with
            assert [len(f) for f in await _frames(server, 1)] == [8]
            big = b"x" * (1 << 20)
            for i in range(8):  # as many as the last: the first half goes early
                assert outbox.put_nowait(Request(i, "u", "op", big))
            assert client.pending > 0, "the kernel took only part of the early half"
            ids = []
            while len(ids) < 8:
                for data in await server.receive():
                    ids.extend(m.id for m in decode_frame(data, 64 << 20))  # type: ignore[arg-type, attr-defined]
            assert ids == list(range(8))
            nursery.cancel_scope.cancel()


async def test_no_frame_is_built_over_the_limit_and_an_oversized_message_is_handed_back():
    refused: list[tuple[object, int]] = []
    with trio.fail_after(10):
        async with ws_pair() as (client, server), trio.open_nursery() as nursery:
            outbox = Outbox(100, max_frame_bytes=1000,
                            oversized=lambda message, size: refused.append((message, size)))
            nursery.start_soon(outbox.run_writer, client)
            await trio.testing.wait_all_tasks_blocked()
            messages = [Request(i, "u", "op", b"y" * 300) for i in range(10)]
            too_big = Request(99, "u", "op", b"z" * 1000)
            for message in [*messages[:5], too_big, *messages[5:]]:
                assert outbox.put_nowait(message)
            received: list[object] = []
            while len(received) < 10:
                for data in await server.receive():
                    assert len(data) <= 1000, "a frame over the peer's limit"
                    received.extend(decode_frame(data))  # type: ignore[arg-type]
            assert received == messages, "the rest arrives, in order"
            await trio.testing.wait_all_tasks_blocked()
            assert [(m, size > 1000) for m, size in refused] == [(too_big, True)]
            nursery.cancel_scope.cancel()
