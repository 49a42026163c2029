"""Bounded cost per peer on loopback: abandoned calls, slow readers, floods, silence.

Each test runs a healthy pair (a client hosting an agent, and a caller) beside
the attack, over real sockets, and checks the pair keeps working.
"""

from __future__ import annotations

from typing import Any

import msgpack
import trio

import hulytrio
from hulytrio.core.messages import (
    PROTOCOL_VERSION,
    Error,
    Event,
    Get,
    GetReply,
    Hello,
    Message,
    Request,
    Welcome,
)
from hulytrio.core.types import GetOptions
from hulytrio.transport.limits import (
    MAX_BAD_MESSAGES_PER_FRAME,
    PRE_HELLO_BYTES,
    EndpointLimits,
)
from hulytrio.transport.websocket import WebSocket, WebSocketClosed, connect_websocket
from hulytrio.wire.codec import MAX_FRAME_BYTES, decode_frame, encode_frame, encode_payload


class Stuck(hulytrio.Container):
    """Answers ``op`` at once; ``hang`` never returns (until cancelled)."""

    def __init__(self) -> None:
        self.running = 0
        self.cancelled = 0

    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        if operation != "hang":
            return data
        self.running += 1
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1


async def test_the_issue_attack_1030_abandoned_calls_leave_the_client_working():
    made: list[Stuck] = []

    async def start(options: hulytrio.GetOptions) -> hulytrio.Container:
        made.append(Stuck())
        return made[-1]

    with trio.fail_after(60):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as host, hulytrio.open_client(hub.url) as caller:
            await host.serve_agent({"stuck": start})
            stuck = await caller.get("stuck", uuid="stuck-1")
            other = await caller.get("stuck", uuid="other-1")
            box = made[0]

            async def abandon() -> None:
                with trio.move_on_after(0.5):
                    await stuck.request("hang")

            async with trio.open_nursery() as nursery:
                for _ in range(1030):
                    nursery.start_soon(abandon)
            # The agent stopped every handler (the hub forwarded each cancel).
            with trio.fail_after(5):
                while box.running:  # noqa: ASYNC110 - polls another task's counter
                    await trio.sleep(0.05)
            # (the hub admits 512 calls per client and container at a time, the
            # rest are answered Retry until slots free; of those the agent got,
            # some were cancelled while still queued, never run)
            assert 0 < box.cancelled <= 1030
            # The hub freed every slot: the client can still call another
            # container, and the stuck one, at once.
            with trio.fail_after(2):
                assert await other.request("op", 1) == 1
                assert await stuck.request("op", 2) == 2


class Sized(hulytrio.Container):
    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        return b"x" * int(data)


async def start_sized(options: hulytrio.GetOptions) -> hulytrio.Container:
    return Sized()


async def _raw_peer(url: str, peer_id: str) -> WebSocket:
    """A hand-driven peer, welcomed by the hub; it reads only when the test says."""
    ws = await connect_websocket(url, max_message_size=MAX_FRAME_BYTES)
    # A long alive timeout: it never pings, and must be closed for what it
    # does, not for its silence.
    ws.send_nowait(encode_frame([Hello(PROTOCOL_VERSION, peer_id, 120.0)]))
    assert isinstance(await _next_message(ws), Welcome)
    return ws


async def _next_message(ws: WebSocket) -> Message:
    while True:
        for data in await ws.receive():
            assert isinstance(data, bytes)
            for message in decode_frame(data):
                if not isinstance(message, Event):
                    return message


async def test_a_peer_that_never_reads_600_large_answers_is_dropped():
    with trio.fail_after(120):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as host, hulytrio.open_client(hub.url) as caller:
            await host.serve_agent({"sized": start_sized})
            ref = await caller.get("sized")
            attacker = await _raw_peer(hub.url, "attacker")
            attacker.send_nowait(encode_frame([Get(1, "sized", GetOptions(ref.uuid))]))
            got = await _next_message(attacker)
            assert isinstance(got, GetReply), got
            # 600 calls for 256 KiB each (150 MiB), and never another read.
            size = 256 * 1024
            for first in range(0, 600, 50):
                attacker.send_nowait(encode_frame(
                    [Request(10 + i, ref.uuid, "op", encode_payload(size))
                     for i in range(first, first + 50)]))
                assert len(await ref.request("op", 3)) == 3, "the healthy pair works meanwhile"
            with trio.fail_after(60):
                while hub.statistics().dropped_slow == 0:
                    assert len(await ref.request("op", 3)) == 3
                    await trio.sleep(0.05)
            with trio.fail_after(5):
                while hub.statistics().connections != 2:  # noqa: ASYNC110 - polls the hub
                    await trio.sleep(0.05)
            assert len(await ref.request("op", size)) == size
            attacker.abort()


async def _read_until_closed(ws: WebSocket) -> tuple[list[Message], WebSocketClosed]:
    got: list[Message] = []
    while True:
        try:
            frames = await ws.receive()
        except WebSocketClosed as closed:
            return got, closed
        for data in frames:
            assert isinstance(data, bytes)
            got.extend(m for m in decode_frame(data) if not isinstance(m, Event))


async def test_a_frame_of_300000_nil_messages_gets_a_bounded_answer_and_a_close():
    with trio.fail_after(30):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as host, hulytrio.open_client(hub.url) as caller:
            await host.serve_agent({"sized": start_sized})
            ref = await caller.get("sized")
            attacker = await _raw_peer(hub.url, "attacker")
            attacker.send_nowait(msgpack.packb([None] * 300_000))
            await attacker.wait_sent()
            got, closed = await _read_until_closed(attacker)
            assert closed.code == 1008, closed
            assert 0 < len(got) <= MAX_BAD_MESSAGES_PER_FRAME
            assert all(isinstance(m, Error) for m in got)
            assert hub.hub.stats.errors <= MAX_BAD_MESSAGES_PER_FRAME
            assert len(await ref.request("op", 5)) == 5, "the healthy pair works"
            attacker.abort()


async def test_an_agent_endpoint_closes_on_a_frame_of_bad_messages_too():
    with trio.fail_after(30):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as host, hulytrio.open_client(hub.url) as caller:
            agent = await host.serve_agent({"sized": start_sized}, endpoint="127.0.0.1:0")
            assert agent.endpoint is not None
            ref = await caller.get("sized")
            attacker = await connect_websocket(agent.endpoint, max_message_size=MAX_FRAME_BYTES)
            attacker.send_nowait(encode_frame([Hello(PROTOCOL_VERSION, "attacker")]))
            assert isinstance(await _next_message(attacker), Welcome)
            attacker.send_nowait(msgpack.packb([None] * 300_000))
            await attacker.wait_sent()
            got, closed = await _read_until_closed(attacker)
            assert closed.code == 1008, closed
            assert len([m for m in got if isinstance(m, Error)]) <= MAX_BAD_MESSAGES_PER_FRAME
            async with ref.connect() as conn:
                assert conn.direct
                assert len(await conn.request("op", 4)) == 4
            attacker.abort()


class Echo(hulytrio.Container):
    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        return data


async def start_echo(options: hulytrio.GetOptions) -> hulytrio.Container:
    return Echo()


async def test_the_hub_refuses_a_large_message_before_the_hello():
    with trio.fail_after(30):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as host, hulytrio.open_client(hub.url) as caller:
            await host.serve_agent({"echo": start_echo})
            ref = await caller.get("echo")
            attacker = await connect_websocket(hub.url, max_message_size=MAX_FRAME_BYTES)
            attacker.send_nowait(b"\x91" + b"\xc0" * (PRE_HELLO_BYTES + 1))
            await attacker.wait_sent()
            _got, closed = await _read_until_closed(attacker)
            attacker.abort()
            assert closed.code == 1009, closed
            # After a hello, messages of any size up to the frame limit pass.
            big = "y" * (4 * PRE_HELLO_BYTES)
            assert await ref.request("op", big) == big


async def test_an_agent_endpoint_closes_silent_and_oversized_peers_before_hello():
    with trio.fail_after(30):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as host, hulytrio.open_client(hub.url) as caller:
            agent = await host.serve_agent({"echo": start_echo}, endpoint="127.0.0.1:0",
                                           endpoint_limits=EndpointLimits(hello_timeout=0.5))
            assert agent.endpoint is not None
            ref = await caller.get("echo")
            silent = await connect_websocket(agent.endpoint, max_message_size=MAX_FRAME_BYTES)
            with trio.fail_after(5):
                _got, closed = await _read_until_closed(silent)
            silent.abort()
            assert closed.code == 1008, closed
            loud = await connect_websocket(agent.endpoint, max_message_size=MAX_FRAME_BYTES)
            loud.send_nowait(b"\x91" + b"\xc0" * (PRE_HELLO_BYTES + 1))
            await loud.wait_sent()
            _got, closed = await _read_until_closed(loud)
            loud.abort()
            assert closed.code == 1009, closed
            async with ref.connect() as conn:
                assert conn.direct
                big = "z" * (4 * PRE_HELLO_BYTES)
                assert await conn.request("op", big) == big


async def test_an_agent_endpoint_serves_at_most_its_maximum_of_connections():
    with trio.fail_after(30):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as host, hulytrio.open_client(hub.url) as caller:
            agent = await host.serve_agent({"echo": start_echo}, endpoint="127.0.0.1:0",
                                           endpoint_limits=EndpointLimits(max_connections=3))
            assert agent.endpoint is not None
            ref = await caller.get("echo")
            host_port = agent.endpoint.removeprefix("ws://").rsplit(":", 1)
            address = (host_port[0], int(host_port[1]))
            held = [await trio.open_tcp_stream(*address) for _ in range(3)]
            await trio.sleep(0.2)
            extra = await trio.open_tcp_stream(*address)
            with trio.fail_after(5):
                assert await extra.receive_some() == b"", "closed at once"
            for stream in held:
                await stream.aclose()
            await extra.aclose()
            with trio.fail_after(5):
                while True:
                    async with ref.connect() as conn:
                        if conn.direct:
                            assert await conn.request("op", 1) == 1
                            break
                    await trio.sleep(0.1)


async def test_the_hub_takes_its_bad_message_and_pre_hello_bounds_as_settings():
    # limits.maxBadMessagesPerFrame and limits.preHelloBytes reach the hub's
    # connections (they were module constants).
    with trio.fail_after(30):
        async with hulytrio.serve_network(port=0, max_bad_messages_per_frame=3,
                                          pre_hello_bytes=8 * 1024) as hub, \
                hulytrio.open_client(hub.url) as host, hulytrio.open_client(hub.url) as caller:
            await host.serve_agent({"echo": start_echo})
            ref = await caller.get("echo")
            attacker = await _raw_peer(hub.url, "attacker")
            attacker.send_nowait(msgpack.packb([None] * 10))
            await attacker.wait_sent()
            got, closed = await _read_until_closed(attacker)
            attacker.abort()
            assert closed.code == 1008, closed
            assert "limits.maxBadMessagesPerFrame" in closed.reason
            assert len([m for m in got if isinstance(m, Error)]) == 3
            early = await connect_websocket(hub.url, max_message_size=MAX_FRAME_BYTES)
            early.send_nowait(b"\x91" + b"\xc0" * (8 * 1024 + 1))  # under the default 64K
            await early.wait_sent()
            _got, closed = await _read_until_closed(early)
            early.abort()
            assert closed.code == 1009, closed
            assert await ref.request("op", "y" * 20_000) == "y" * 20_000


async def test_an_agent_endpoint_takes_its_bad_message_and_pre_hello_bounds_as_settings():
    with trio.fail_after(30):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as host, hulytrio.open_client(hub.url) as caller:
            limits = EndpointLimits(max_bad_messages_per_frame=2, pre_hello_bytes=4096)
            agent = await host.serve_agent({"echo": start_echo}, endpoint="127.0.0.1:0",
                                           endpoint_limits=limits)
            assert agent.endpoint is not None
            ref = await caller.get("echo")
            attacker = await connect_websocket(agent.endpoint, max_message_size=MAX_FRAME_BYTES)
            attacker.send_nowait(encode_frame([Hello(PROTOCOL_VERSION, "attacker")]))
            assert isinstance(await _next_message(attacker), Welcome)
            attacker.send_nowait(msgpack.packb([None] * 10))
            await attacker.wait_sent()
            got, closed = await _read_until_closed(attacker)
            attacker.abort()
            assert closed.code == 1008, closed
            assert len([m for m in got if isinstance(m, Error)]) == 2
            early = await connect_websocket(agent.endpoint, max_message_size=MAX_FRAME_BYTES)
            early.send_nowait(b"\x91" + b"\xc0" * 5000)
            await early.wait_sent()
            _got, closed = await _read_until_closed(early)
            early.abort()
            assert closed.code == 1009, closed
            async with ref.connect() as conn:
                assert conn.direct
                assert await conn.request("op", "z" * 10_000) == "z" * 10_000
