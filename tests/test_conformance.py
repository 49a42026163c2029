"""One conformance suite for every link (trio's ``check_two_way_stream`` idea).

The same checks run over a real loopback WebSocket (``hulytrio/transport``,
frames encoded by ``hulytrio/wire/codec.py``) and over a simulator link
(``hulytrio/sim/links.py`` with a latency *range*, so each message draws its
own delay), with and without the simulator's codec round-trip:

- framing: messages sent together (one frame) arrive whole, equal to what
  was sent, in order;
- ordering: each direction is FIFO and nothing is duplicated, whatever the
  frame sizes and delays;
- close: a close is seen after the messages already in flight, both ways;
- disconnect: a connection that breaks without a close handshake is seen as
  closed by the other side at once (no timeout needed).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

import pytest
import trio
from wspair import ws_pair

from hulytrio.core.messages import Close, Message, Query, Request
from hulytrio.sim.clock import Clock, Event
from hulytrio.sim.links import CLOSE, Connection, Direction, LinkProfile
from hulytrio.sim.scenario import Span
from hulytrio.transport.websocket import WebSocket, WebSocketClosed
from hulytrio.wire.codec import decode_frame, encode_frame


class End(Protocol):
    """One end of a link, as the checks drive it."""

    def send(self, frame: list[Message]) -> None:
        """Send ``frame``'s messages together."""

    def close(self) -> None:
        """Close this end's sending side (after what was sent)."""

    def abort(self) -> None:
        """Break the connection without a close handshake."""

    async def receive_all(self) -> list[Message]:
        """Return every message received until the other side's close or loss."""

    def elapsed(self) -> float:
        """Return the time (real or virtual) since the pair was opened."""


class _WsEnd:
    def __init__(self, ws: WebSocket, start: float) -> None:
        self.ws = ws
        self.start = start

    def send(self, frame: list[Message]) -> None:
        self.ws.send_nowait(encode_frame(frame))

    def close(self) -> None:
        self.ws.close_nowait(1000, "done")

    def abort(self) -> None:
        self.ws.abort()

    async def receive_all(self) -> list[Message]:
        out: list[Message] = []
        while True:
            try:
                frames = await self.ws.receive()
            except WebSocketClosed:
                return out
            for frame in frames:
                assert isinstance(frame, bytes)
                out.extend(decode_frame(frame))

    def elapsed(self) -> float:
        return trio.current_time() - self.start


class _Collect(Event):
    """The simulator link's delivery event: take what is ready off ``direction``."""

    __slots__ = ("direction", "got", "seen_close")

    def __init__(self, direction: Direction) -> None:
        self.direction = direction
        self.got: list[Message] = []
        self.seen_close: float | None = None

    def fire(self) -> None:
        d = self.direction
        d.scheduled = False
        now = d.clock.now
        while d.queue and d.queue[0][0] <= now:
            item = d.queue.popleft()[1]
            if item is CLOSE:
                if self.seen_close is None:
                    self.seen_close = now
            elif self.seen_close is None:
                self.got.append(item)
        d.reschedule()


class _SimEnd:
    def __init__(self, clock: Clock, outgoing: Direction, incoming: _Collect,
                 both: tuple[Direction, Direction]) -> None:
        self.clock = clock
        self.outgoing = outgoing
        self.incoming = incoming
        self.both = both

    def send(self, frame: list[Message]) -> None:
        for message in frame:
            self.outgoing.push(message)

    def close(self) -> None:
        self.outgoing.close()

    def abort(self) -> None:
        # A reset: both sides see a close after what is already in flight.
        for d in self.both:
            d.close()

    async def receive_all(self) -> list[Message]:
        self.clock.run_until(math.inf)
        assert self.incoming.seen_close is not None, "the close was seen"
        return self.incoming.got

    def elapsed(self) -> float:
        return self.clock.now if self.incoming.seen_close is None else self.incoming.seen_close


Pair = Callable[[], Any]


@asynccontextmanager
async def websocket_pair() -> AsyncIterator[tuple[End, End]]:
    async with ws_pair() as (client, server):
        now = trio.current_time()
        yield _WsEnd(client, now), _WsEnd(server, now)


def sim_pair(codec: bool) -> Callable[[], Any]:
    @asynccontextmanager
    async def pair() -> AsyncIterator[tuple[End, End]]:
        clock = Clock()
        profile = LinkProfile(Span(0.001, 0.040), codec=codec)
        conn = Connection(1, "peer", clock, profile)
        up, down = _Collect(conn.up), _Collect(conn.down)
        conn.up.wake, conn.down.wake = up, down
        both = (conn.up, conn.down)
        yield _SimEnd(clock, conn.up, down, both), _SimEnd(clock, conn.down, up, both)

    return pair


PAIRS = {"websocket": websocket_pair, "sim": sim_pair(False), "sim-codec": sim_pair(True)}
#: a break is seen "at once": within the sim link's largest latency, or this on loopback
AT_ONCE = 0.5


@pytest.fixture(params=list(PAIRS))
def pair(request: pytest.FixtureRequest) -> Any:
    return PAIRS[request.param]


def _queries(ids: list[int]) -> list[Message]:
    return [Query(i, "kinds") for i in ids]


async def test_messages_sent_together_arrive_whole_and_equal(pair: Any) -> None:
    with trio.fail_after(10):
        async with pair() as (a, b):
            frame: list[Message] = [Request(1, "u1", "op", b"\x00\xffpayload", None),
                                    Query(2, "agents"), Close("done")]
            a.send(frame)
            a.close()
            assert await b.receive_all() == frame


async def test_each_direction_is_fifo_without_duplicates(pair: Any) -> None:
    with trio.fail_after(10):
        async with pair() as (a, b):
            ids = list(range(1, 601))
            # 200 one-message frames, then 400 messages in frames of 1..50
            for i in ids[:200]:
                a.send(_queries([i]))
            rest, size = ids[200:], 1
            while rest:
                chunk, rest = rest[:size], rest[size:]
                a.send(_queries(chunk))
                size = size % 50 + 1
            back = list(range(1001, 1301))
            for i in back:
                b.send(_queries([i]))
            a.close()
            b.close()
            assert [m.id for m in await b.receive_all()] == ids  # type: ignore[attr-defined]
            assert [m.id for m in await a.receive_all()] == back  # type: ignore[attr-defined]


async def test_a_close_is_seen_after_the_messages_in_flight(pair: Any) -> None:
    with trio.fail_after(10):
        async with pair() as (a, b):
            a.send(_queries([1, 2]))
            a.send(_queries([3]))
            a.close()
            a.send(_queries([4]))  # after the close: never delivered
            assert [m.id for m in await b.receive_all()] == [1, 2, 3]  # type: ignore[attr-defined]


async def test_a_broken_connection_is_seen_at_once(pair: Any) -> None:
    with trio.fail_after(10):
        async with pair() as (a, b):
            a.abort()
            assert await b.receive_all() == []
            assert b.elapsed() < AT_ONCE, "no timeout was needed"
