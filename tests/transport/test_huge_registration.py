"""A registration offering too many containers is refused (issue 13), on loopback.

The attack: one ``register`` of 60,000 stateless offers (0.96 MB). The hub
spent ~11 us per offer in the registry and a log line each, in its one loop
(0.7 s of core work plus 0.4 s decoding, measured without the profiler on
this VM), stalling every peer; every ``events="all"`` session then got
60,000 changes.  The hub now refuses a registration over ``max_offers``
(10,000) before the registry sees it.
"""

from __future__ import annotations

import time
from typing import Any

import trio

import hulytrio
from hulytrio.core.errors import ErrorCode
from hulytrio.core.hub import MAX_OFFERS
from hulytrio.core.messages import (
    PROTOCOL_VERSION,
    Error,
    Event,
    Hello,
    Message,
    RegisterAgent,
    Welcome,
)
from hulytrio.core.types import OfferedContainer
from hulytrio.transport.websocket import WebSocket, connect_websocket
from hulytrio.wire.codec import MAX_FRAME_BYTES, decode_frame, encode_frame


class Echo(hulytrio.Container):
    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        return data


async def start_echo(options: hulytrio.GetOptions) -> hulytrio.Container:
    return Echo()


async def _next_message(ws: WebSocket) -> Message:
    while True:
        for data in await ws.receive():
            assert isinstance(data, bytes)
            for message in decode_frame(data):
                if not isinstance(message, Event):
                    return message


def _offers(n: int) -> tuple[OfferedContainer, ...]:
    # Offers that say they serve: a new hub takes them at once (the others
    # stand by until its recovery window closes).
    return tuple(OfferedContainer(f"s-{i:05d}", "echo", stateless=True, serving=True)
                 for i in range(n))


async def test_the_issue_attack_a_60000_offer_registration_is_refused_quickly():
    assert MAX_OFFERS == 10_000
    with trio.fail_after(60):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as host, hulytrio.open_client(hub.url) as caller:
            await host.serve_agent({"echo": start_echo})
            ref = await caller.get("echo")
            attacker = await connect_websocket(hub.url, max_message_size=MAX_FRAME_BYTES)
            attacker.send_nowait(encode_frame([Hello(PROTOCOL_VERSION, "attacker", 120.0)]))
            assert isinstance(await _next_message(attacker), Welcome)
            frame = encode_frame([RegisterAgent(7, "big", ("echo",), containers=_offers(60_000))])
            worst = 0.0
            done = trio.Event()

            async def keep_calling() -> None:
                nonlocal worst
                n = 0
                while not done.is_set():
                    start = time.monotonic()
                    assert await ref.request("op", n) == n
                    worst = max(worst, time.monotonic() - start)
                    n += 1
                    await trio.sleep(0.01)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(keep_calling)
                await trio.sleep(0.1)
                attacker.send_nowait(frame)
                await attacker.wait_sent()
                reply = await _next_message(attacker)
                await trio.sleep(0.3)
                done.set()
            assert isinstance(reply, Error), reply
            assert (reply.id, reply.code) == (7, ErrorCode.PROTOCOL.value)
            assert "60000 containers" in reply.message
            assert "limits.maxOffers" in reply.message
            # Nothing of it reached the registry.
            assert "big" not in {info.agent_id for info in hub.hub.registry.agents()}
            assert not hub.hub.registry.route("s-00000")
            # The healthy pair waited at most the frame's decoding, not the
            # registry's work on 60,000 offers and their log lines.
            assert worst < 1.0, f"the healthy pair waited {worst:.2f} s"
            attacker.abort()


async def test_a_registration_at_the_limit_is_accepted():
    with trio.fail_after(60):
        async with hulytrio.serve_network(port=0, max_offers=3) as hub:
            ws = await connect_websocket(hub.url, max_message_size=MAX_FRAME_BYTES)
            ws.send_nowait(encode_frame([Hello(PROTOCOL_VERSION, "agent", 120.0)]))
            assert isinstance(await _next_message(ws), Welcome)
            ws.send_nowait(encode_frame([RegisterAgent(1, "a", ("echo",), containers=_offers(3))]))
            await ws.wait_sent()
            reply = await _next_message(ws)
            assert not isinstance(reply, Error), reply
            assert hub.hub.registry.route("s-00002") is not None
            ws.send_nowait(encode_frame([RegisterAgent(2, "b", ("echo",), containers=_offers(4))]))
            await ws.wait_sent()
            reply = await _next_message(ws)
            assert isinstance(reply, Error), reply
            assert "at most 3" in reply.message
            ws.abort()


async def test_a_registration_over_the_limits_is_refused_before_it_is_decoded(monkeypatch):
    # Issue 13: the 60,000 offers cost the hub 0.5 s to decode before it
    # could see they were too many.  The counts are read from the frame's
    # msgpack headers; the refused registration is cut out of the frame, and
    # what is decoded is only the rest of it (the ping, the fitting one).
    from hulytrio.core.messages import Ping, Pong, RegisterReply
    from hulytrio.transport import server as server_module

    decoded: list[int] = []
    real = server_module.decode_frame_lenient

    def spy(data: bytes, *args: Any) -> Any:
        decoded.append(len(data))
        return real(data, *args)

    monkeypatch.setattr(server_module, "decode_frame_lenient", spy)
    with trio.fail_after(60):
        async with hulytrio.serve_network(port=0, max_kinds=100) as hub:
            ws = await connect_websocket(hub.url, max_message_size=MAX_FRAME_BYTES)
            ws.send_nowait(encode_frame([Hello(PROTOCOL_VERSION, "attacker", 120.0)]))
            assert isinstance(await _next_message(ws), Welcome)
            frame = encode_frame([
                Ping(),
                RegisterAgent(7, "big", ("echo",), containers=_offers(60_000)),
                RegisterAgent(8, "kinds", tuple(f"k{i}" for i in range(20_000))),
                RegisterAgent(9, "fits", ("echo",), containers=_offers(3)),
            ])
            assert len(frame) > 900_000
            decoded.clear()
            start = time.monotonic()
            ws.send_nowait(frame)
            await ws.wait_sent()
            replies: list[Message] = []
            while len(replies) < 4:  # every message of every frame, events aside
                for data in await ws.receive():
                    assert isinstance(data, bytes)
                    replies.extend(m for m in decode_frame(data) if not isinstance(m, Event))
            took = time.monotonic() - start
            errors = {m.id: m.message for m in replies if isinstance(m, Error)}
            assert errors == {
                7: "register 'big': offers 60000 containers; the hub accepts at most 10000 per "
                   "registration (limits.maxOffers)",
                8: "register 'kinds': names 20000 kinds; the hub accepts at most 100 per "
                   "registration (limits.maxKinds)"}
            assert {type(m) for m in replies} == {Error, Pong, RegisterReply}
            # Only the fitting rest of the frame was decoded.
            assert decoded
            assert max(decoded) < 1000, decoded
            assert hub.hub.registry.route("s-00002") is not None
            assert {info.agent_id for info in hub.hub.registry.agents()} == {"fits"}
            assert took < 1.0, f"the hub took {took:.2f} s"
            ws.abort()
