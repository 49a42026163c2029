"""A client's own requests never make it drop its hub connection (issue 13), on loopback.

The livelock: user code queued more request bytes than the client keeps for
the hub (``SEND_BYTES``, 64 MiB), e.g. 100 concurrent ``ref.request`` of
1 MiB.  The client dropped its own connection as "hub not reading",
reconnected, resent every unanswered request at once, went over the bound
again, and so on for ever: nothing was ever answered.
"""

from __future__ import annotations

import time
from typing import Any

import trio
from hubpair import count_overflows

import hulytrio
from hulytrio.core.messages import PROTOCOL_VERSION, Get, GetReply, Hello, Welcome
from hulytrio.core.types import ContainerRecord
from hulytrio.transport import client as client_module
from hulytrio.transport.websocket import WebSocket, accept_websocket
from hulytrio.wire.codec import decode_frame, encode_frame

MIB = 1024 * 1024


class Sizer(hulytrio.Container):
    """Answers each request with its payload's size, slowly (an agent that is busy)."""

    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        await trio.sleep(0.01)
        return len(data) if isinstance(data, bytes) else data


async def start_sizer(options: hulytrio.GetOptions) -> hulytrio.Container:
    return Sizer()


async def test_more_request_bytes_than_the_send_bound_are_all_answered(monkeypatch, caplog):
    overflows = count_overflows(monkeypatch)
    with trio.fail_after(90):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as host, \
                hulytrio.open_client(hub.url) as caller:
            await host.serve_agent({"sizer": start_sizer})
            ref = await caller.get("sizer")
            answers: list[int] = []

            async def call(i: int) -> None:
                answers.append(await ref.request("size", bytes([i % 256]) * MIB))

            started = time.monotonic()
            with trio.move_on_after(60):
                async with trio.open_nursery() as nursery:
                    for i in range(100):  # 100 MiB: over the client's 64 MiB bound
                        nursery.start_soon(call, i)
            elapsed = time.monotonic() - started
            assert len(answers) == 100, (
                f"{len(answers)} of 100 answered in {elapsed:.1f} s "
                f"({caller.session.welcomes} welcomes: the client dropped its own connection)")
            assert answers == [MIB] * 100
            # No connection was dropped for bytes it kept (neither the client's
            # nor the hub's to the agent).
            assert overflows == [], overflows
            assert "send queue full" not in caplog.text


async def test_the_resend_after_a_reconnect_waits_for_room_too(monkeypatch):
    """100 MiB of unanswered requests when the connection breaks: resent in order,
    within the bound, and all answered on the second connection."""
    overflows = count_overflows(monkeypatch)
    gate = trio.Event()
    seen: list[int] = []

    class Gated(hulytrio.Container):
        async def request(self, operation: str, data: Any = None,
                          client_id: str | None = None) -> Any:
            seen.append(data[0])
            await gate.wait()
            return len(data)

    async def start_gated(options: hulytrio.GetOptions) -> hulytrio.Container:
        return Gated()

    with trio.fail_after(90):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as host, \
                hulytrio.open_client(hub.url) as caller:
            await host.serve_agent({"gated": start_gated})
            ref = await caller.get("gated")
            answers: list[int] = []
            worst = 0

            async def call(i: int) -> None:
                answers.append(await ref.request("size", bytes([i]) * MIB))

            async def watch_pending() -> None:
                nonlocal worst
                while True:
                    conn = caller._conn
                    if conn is not None and conn.ws is not None:
                        worst = max(worst, conn.ws.pending)
                    await trio.sleep(0.001)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_pending)
                async with trio.open_nursery() as calls:
                    for i in range(100):
                        calls.start_soon(call, i)
                    while not seen:  # noqa: ASYNC110 - polls the container
                        await trio.sleep(0.01)
                    await trio.sleep(0.5)
                    conn = caller._conn
                    assert conn is not None
                    assert conn.ws is not None
                    conn.ws.abort()  # the connection breaks with every request unanswered
                    while caller.session.welcomes < 2:  # noqa: ASYNC110 - polls the session
                        await trio.sleep(0.01)
                    await trio.sleep(1.0)
                    gate.set()
                nursery.cancel_scope.cancel()
            assert sorted(answers) == [MIB] * 100
            assert overflows == [], overflows  # the resend did not drop the connection
            # Never more than the bound plus one request waited for the hub.
            assert worst <= caller.max_unsent_request_bytes + 2 * MIB, worst


async def test_a_hub_that_stops_reading_leaves_requests_held_and_is_dropped(monkeypatch, caplog):
    """A fake hub answers the get, then never reads: the client keeps at most its
    bound (plus one request) for it, a cancelled held request is never sent,
    and the connection is dropped once the hub has taken nothing for
    ``STALL_TIMEOUT`` (its pings would wait for ever)."""
    monkeypatch.setattr(client_module, "STALL_TIMEOUT", 2.0)
    budget = 512 * 1024
    connections: list[WebSocket] = []
    second = trio.Event()
    reading = trio.Event()

    async def fake_hub(stream: trio.SocketStream) -> None:
        ws = await accept_websocket(stream, max_message_size=1 << 25)
        connections.append(ws)
        if len(connections) > 1:
            second.set()
            await trio.sleep_forever()
        hello = decode_frame((await ws.receive())[0])[0]  # type: ignore[arg-type]
        assert isinstance(hello, Hello)
        ws.send_nowait(encode_frame([Welcome(PROTOCOL_VERSION, "fake-hub", 60.0, 1.0)]))
        while True:
            got = [m for data in await ws.receive()
                   for m in decode_frame(data)]  # type: ignore[arg-type]
            for message in got:
                if isinstance(message, Get):
                    ws.send_nowait(encode_frame([GetReply(message.id, ContainerRecord(
                        "u-1", "k", "a-1"))]))
                    await reading.wait()  # and never read again

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = listeners[0].socket.getsockname()[1]
            nursery.start_soon(trio.serve_listeners, fake_hub, listeners)
            async with hulytrio.open_client(f"ws://127.0.0.1:{port}",
                                            max_unsent_request_bytes=budget) as client:
                ref = await client.get("k")
                conn = client._conn
                assert conn is not None
                assert conn.ws is not None
                async with trio.open_nursery() as calls:
                    for i in range(64):  # 64 MiB: far more than the kernel buffers
                        calls.start_soon(ref.request, "op", bytes([i]) * MIB)
                    while conn.pacer.held == 0:  # noqa: ASYNC110 - polls the pacer
                        await trio.sleep(0.01)
                    await trio.sleep(0.2)
                    held = conn.pacer.held
                    assert held > 0
                    assert conn.ws.pending <= budget + MIB + 1024
                    before = conn.outbox.messages
                    calls.cancel_scope.cancel()
                await trio.sleep(0.05)
                # The held requests are forgotten: a Cancel goes only for each
                # request that was sent (and a ping or two).
                assert conn.pacer.held == 0
                assert not client.session.calls.pending
                cancels = conn.outbox.messages + conn.outbox.queued - before
                assert 64 - held <= cancels <= 64 - held + 3, (cancels, held)
                await second.wait()  # the stalled hub was dropped, and redialled
            nursery.cancel_scope.cancel()
    assert "took none of the" in caplog.text
    assert "send queue full" not in caplog.text
    for ws in connections:
        ws.abort()
