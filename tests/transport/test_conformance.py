"""The WebSocket transport behaves the way the simulator's links model it.

``hulytrio/sim/links.py`` states what a simulated connection does ("what
WebSocket over TCP really does, and no more"); these checks hold the real
driver to the same properties, over loopback sockets:

- each direction is FIFO and nothing is duplicated, whether messages travel
  one per frame or many per frame;
- a close is seen after the messages already in flight (both ways);
- a connection that breaks without a close handshake is seen as closed at
  once by the other side (no timeout needed).
"""

from __future__ import annotations

import trio
import trio.testing
import trio_websocket
from wsclient import dial

import hulytrio
from hulytrio.core.messages import (
    PROTOCOL_VERSION,
    Close,
    Event,
    Hello,
    KindsReply,
    Message,
    Query,
    Welcome,
)
from hulytrio.wire.codec import decode_frame, encode_frame


async def _read(ws: trio_websocket.WebSocketConnection, n: int) -> list[Message]:
    """Read until ``n`` non-event messages have arrived; returns them in order."""
    out: list[Message] = []
    while len(out) < n:
        out.extend(m for m in decode_frame(await ws.get_message()) if not isinstance(m, Event))
    return out


async def _hello(ws: trio_websocket.WebSocketConnection, name: str) -> None:
    await ws.send_message(encode_frame([Hello(PROTOCOL_VERSION, name)]))
    assert isinstance((await _read(ws, 1))[0], Welcome)


async def test_fifo_without_duplicates_across_and_within_frames():
    with trio.fail_after(10):
        async with hulytrio.serve_network(port=0) as hub, trio.open_nursery() as nursery:
            ws, stream = await dial(nursery, hub.url)
            async with stream:
                await _hello(ws, "fifo")
                ids = list(range(1, 601))
                # 200 one-message frames, then 400 messages in frames of 1..50
                for i in ids[:200]:
                    await ws.send_message(encode_frame([Query(i, "kinds")]))
                rest, size = ids[200:], 1
                while rest:
                    chunk, rest = rest[:size], rest[size:]
                    await ws.send_message(encode_frame([Query(i, "kinds") for i in chunk]))
                    size = size % 50 + 1
                replies = await _read(ws, len(ids))
                assert all(isinstance(r, KindsReply) for r in replies)
                assert [r.id for r in replies] == ids


async def test_close_is_seen_after_the_messages_in_flight():
    with trio.fail_after(10):
        async with hulytrio.serve_network(port=0) as hub, trio.open_nursery() as nursery:
            ws, stream = await dial(nursery, hub.url)
            async with stream:
                await _hello(ws, "closer")
                # The peer's last calls and its Close share one frame: the
                # hub answers the calls, then closes.
                await ws.send_message(encode_frame([Query(1, "kinds"), Query(2, "agents"),
                                                    Close("done")]))
                replies = await _read(ws, 2)
                assert [r.id for r in replies] == [1, 2]
                try:
                    extra = await ws.get_message()
                except trio_websocket.ConnectionClosed:
                    extra = None
                assert extra is None or all(isinstance(m, Event) for m in decode_frame(extra))
                await trio.testing.wait_all_tasks_blocked()
                assert hub.statistics().connections == 0


async def test_a_broken_connection_is_seen_at_once():
    with trio.fail_after(10):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as watcher, trio.open_nursery() as nursery:
            await watcher.wait_connection()
            ws, stream = await dial(nursery, hub.url)
            await _hello(ws, "breaker")
            assert hub.statistics().connections == 2
            # No close handshake: the TCP stream just goes away.
            await trio.aclose_forcefully(stream)
            start = trio.current_time()
            while hub.statistics().connections != 1:  # noqa: ASYNC110 - the hub's state
                await trio.sleep(0.001)
            assert trio.current_time() - start < 0.5, "no timeout was needed"
            assert await watcher.kinds() == ()
