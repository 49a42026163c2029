"""Gets, answers and direct requests never make a connection drop itself (issue 13), on loopback.

The hub connection's requests wait for room (``pacing.RequestPacer``,
tests/transport/test_client_send_budget.py); these cases were left out and
each broke on its own:

- 300 ``get`` calls with 256 KiB of ``extra`` (75 MiB of ``Get`` at once,
  and again after every reconnect) went over the client's 64 MiB bound: it
  dropped its own connection, reconnected and resent them all, for ever;
- 300 answers of 256 KiB from a hosted agent (small requests, large
  results) did the same to the *agent's* connection: the host reconnected
  over and over and not one answer arrived;
- 300 answers of 256 KiB from an agent's endpoint went over the 32 MiB it
  keeps for a direct client: the endpoint dropped the client, and every
  call failed ``ConnectionClosed``;
- 300 requests of 256 KiB on a direct connection were buffered whole (75
  MiB waiting for the endpoint; the direct connection had no bound at all).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from hubpair import count_overflows, open_hub_pair

import hulytrio
from hulytrio.core.errors import ConnectionClosed
from hulytrio.core.messages import PROTOCOL_VERSION, Hello, Ok, Request, Welcome
from hulytrio.transport import agent as agent_module
from hulytrio.transport import connection as connection_module
from hulytrio.transport.websocket import WebSocket, accept_websocket, connect_websocket
from hulytrio.wire.codec import MAX_FRAME_BYTES, decode_frame, encode_frame, encode_payload

KIB = 1024
MIB = 1024 * KIB
SIZE = 256 * KIB
CALLS = 300  # 75 MiB: over the client's 64 MiB and the endpoint's 32 MiB bounds
#: the default ``max_unsent_request_bytes``
BUDGET = 8 * MIB


class Big(hulytrio.Container):
    """``big`` answers SIZE bytes; ``size`` answers its payload's length."""

    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        if operation == "big":
            return bytes([data % 256]) * SIZE
        await trio.sleep(0.01)
        return len(data) if isinstance(data, bytes) else data


async def start_big(options: hulytrio.GetOptions) -> hulytrio.Container:
    return Big()


async def _watch_pending(get_ws: Any, worst: list[int]) -> None:
    """Keep ``worst[0]`` at the most bytes ``get_ws()`` was seen keeping for its peer."""
    while True:
        ws = get_ws()
        if ws is not None:
            worst[0] = max(worst[0], ws.pending)
        await trio.sleep(0.001)


async def test_gets_with_a_large_extra_are_paced_and_all_answered(monkeypatch, caplog):
    overflows = count_overflows(monkeypatch)
    with trio.fail_after(60):
        async with open_hub_pair({"big": start_big}) as (_, _, caller, _):
            await caller.wait_connection()
            refs: list[hulytrio.ContainerReference] = []

            async def get(i: int) -> None:
                refs.append(await caller.get("big", extra={"blob": bytes([i % 256]) * SIZE}))

            with trio.move_on_after(20):
                async with trio.open_nursery() as nursery:
                    for i in range(CALLS):
                        nursery.start_soon(get, i)
            assert len(refs) == CALLS, (
                f"{len(refs)} of {CALLS} gets answered ({caller.session.welcomes} welcomes: "
                f"the client dropped its own connection)")
            assert caller.session.welcomes == 1
            # After a reconnect every reference re-sends its Get (75 MiB again):
            # paced as well, and every reference is held again.
            conn = caller._conn
            assert conn is not None
            assert conn.ws is not None
            conn.ws.abort()
            with trio.move_on_after(20):
                while (caller.session.welcomes < 2  # noqa: ASYNC110 - polls the session
                       or any(r is None for r in caller.session.references().values())):
                    await trio.sleep(0.05)
            assert caller.session.welcomes == 2
            assert all(r is not None for r in caller.session.references().values())
            assert await refs[0].request("size", b"abc") == 3
    assert overflows == [], overflows
    assert "send queue full" not in caplog.text


async def test_a_hosted_agents_large_answers_are_paced_and_all_arrive():
    # (The hub may still drop the *caller* here, for the 75 MiB of answers it
    # relays to it faster than it reads in this one process: a hub-side
    # bound, not paced yet; the caller resends and is answered from the
    # agent's memory.  What this checks is that the host never drops itself.)
    with trio.fail_after(60):
        async with open_hub_pair({"big": start_big}) as (_, host, caller, _):
            ref = await caller.get("big")
            answers: list[bytes] = []
            worst = [0]

            async def call(i: int) -> None:
                answers.append(await ref.request("big", i))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(_watch_pending,
                                   lambda: host._conn.ws if host._conn is not None else None,
                                   worst)
                with trio.move_on_after(20):
                    async with trio.open_nursery() as calls:
                        for i in range(CALLS):
                            calls.start_soon(call, i)
                nursery.cancel_scope.cancel()
            assert len(answers) == CALLS, (
                f"{len(answers)} of {CALLS} answered ({host.session.welcomes} welcomes of the "
                f"host: it dropped its own connection)")
            assert sorted(answers) == sorted(bytes([i % 256]) * SIZE for i in range(CALLS))
            assert host.session.welcomes == 1
            # The host never kept more than its bound plus one answer for the hub.
            assert worst[0] <= BUDGET + SIZE + KIB, worst[0]


@asynccontextmanager
async def _direct_big() -> AsyncIterator[hulytrio.ContainerConnection]:
    """A hub pair whose caller holds a direct connection to a ``big`` container."""
    async with open_hub_pair({"big": start_big}, endpoint="127.0.0.1:0"
                             ) as (_, _, caller, _):
        ref = await caller.get("big")
        async with ref.connect() as conn:
            assert conn.direct
            yield conn


async def test_an_endpoints_large_answers_are_paced_and_all_arrive(monkeypatch):
    overflows = count_overflows(monkeypatch)
    with trio.fail_after(60):
        async with _direct_big() as conn:
            answers: list[bytes] = []
            failures: list[Exception] = []

            async def call(i: int) -> None:
                try:
                    answers.append(await conn.request("big", i))
                except ConnectionClosed as exc:
                    failures.append(exc)

            with trio.move_on_after(20):
                async with trio.open_nursery() as calls:
                    for i in range(CALLS):
                        calls.start_soon(call, i)
            assert failures == [], f"{len(failures)} calls failed: the endpoint dropped us"
            assert sorted(answers) == sorted(bytes([i % 256]) * SIZE for i in range(CALLS))
            assert await conn.request("size", b"xy") == 2
    assert overflows == [], overflows


async def test_direct_requests_wait_for_room_instead_of_piling_up(monkeypatch):
    overflows = count_overflows(monkeypatch)
    with trio.fail_after(60):
        async with _direct_big() as conn:
            direct = conn._direct
            assert direct is not None
            answers: list[int] = []
            worst = [0]

            async def call(i: int) -> None:
                answers.append(await conn.request("size", bytes([i % 256]) * SIZE))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(_watch_pending, lambda: direct.ws, worst)
                with trio.move_on_after(20):
                    async with trio.open_nursery() as calls:
                        for i in range(CALLS):
                            calls.start_soon(call, i)
                nursery.cancel_scope.cancel()
            assert answers == [SIZE] * CALLS
            # Never more than the bound plus one request waited for the endpoint.
            assert worst[0] <= BUDGET + SIZE + KIB, worst[0]
    assert overflows == [], overflows


async def test_an_endpoint_that_stops_reading_is_dropped_and_its_calls_fail(monkeypatch):
    """A fake endpoint welcomes the client and accepts the stream, then never reads:
    the client keeps at most its bound (plus one request) for it, and drops it
    once it has taken nothing for ``STALL_TIMEOUT``: the calls fail instead of
    waiting for ever."""
    monkeypatch.setattr(connection_module, "STALL_TIMEOUT", 2.0)
    budget = 512 * KIB
    sockets: list[WebSocket] = []

    async def fake_endpoint(stream: trio.SocketStream) -> None:
        ws = await accept_websocket(stream, max_message_size=1 << 25)
        sockets.append(ws)
        answered = 0
        while answered < 2:  # the hello and the connect
            for data in await ws.receive():
                for message in decode_frame(data):  # type: ignore[arg-type]
                    if isinstance(message, Hello):
                        ws.send_nowait(encode_frame([Welcome(PROTOCOL_VERSION, "fake", 3.0,
                                                             1.0)]))
                    else:
                        ws.send_nowait(encode_frame([Ok(message.id)]))  # type: ignore[attr-defined]
                    answered += 1
        await trio.sleep_forever()  # and never read again

    class Target:
        uuid = "u-1"

        async def request(self, operation: str, data: Any = None) -> Any:
            raise AssertionError("not through the hub")

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = listeners[0].socket.getsockname()[1]
            nursery.start_soon(trio.serve_listeners, fake_endpoint, listeners)
            ws = await connection_module.open_endpoint(f"ws://127.0.0.1:{port}",
                                                       ssl_context=None,
                                                       spawn=nursery.start_soon)
            assert ws is not None
            failed: list[Exception] = []

            async def call(conn: Any, i: int) -> None:
                try:
                    await conn.request("op", bytes([i]) * MIB)
                except ConnectionClosed as exc:
                    failed.append(exc)

            async with connection_module.run_direct_connection(Target(), ws, "me",
                                                               budget) as conn:
                direct = conn._direct
                assert direct is not None
                async with trio.open_nursery() as calls:
                    for i in range(64):  # 64 MiB: far more than the kernel buffers
                        calls.start_soon(call, conn, i)
                    while direct.pacer.held == 0:  # noqa: ASYNC110 - polls the pacer
                        await trio.sleep(0.01)
                    await trio.sleep(0.2)
                    assert direct.ws.pending <= budget + MIB + KIB
                # Every call ended: the stalled endpoint was dropped.
                assert len(failed) == 64
            nursery.cancel_scope.cancel()
    for ws_ in sockets:
        ws_.abort()


async def test_an_endpoint_stops_reading_a_client_that_does_not_take_its_answers(monkeypatch):
    """A direct client asks for 200 answers of 256 KiB and reads nothing: the
    endpoint keeps its bound for it, holds the rest, runs none of the client's
    later requests meanwhile, and drops it once it has taken nothing for
    ``STALL_TIMEOUT``; the healthy pair is undisturbed."""
    monkeypatch.setattr(agent_module, "STALL_TIMEOUT", 2.0)
    ran: list[int] = []

    class Counting(Big):
        async def request(self, operation: str, data: Any = None,
                          client_id: str | None = None) -> Any:
            if operation == "big":
                ran.append(data)
            return await super().request(operation, data, client_id)

    async def start_counting(options: hulytrio.GetOptions) -> hulytrio.Container:
        return Counting()

    with trio.fail_after(30):
        async with open_hub_pair({"big": start_counting}, endpoint="127.0.0.1:0"
                                 ) as (_, _, caller, agent):
            assert agent.endpoint is not None
            ref = await caller.get("big")
            peer_ws = await connect_websocket(agent.endpoint, max_message_size=MAX_FRAME_BYTES)
            peer_ws.send_nowait(encode_frame([Hello(PROTOCOL_VERSION, "greedy")]))
            got = [m for data in await peer_ws.receive()
                   for m in decode_frame(data)]  # type: ignore[arg-type]
            assert isinstance(got[0], Welcome)
            peer_ws.send_nowait(encode_frame(
                [Request(i, ref.uuid, "big", encode_payload(i)) for i in range(1, 201)]))
            await peer_ws.wait_sent()
            while len(ran) < 200:  # noqa: ASYNC110 - polls the container
                await trio.sleep(0.01)
            await trio.sleep(0.2)
            (peer,) = agent._runtime._endpoint_peers.values()
            assert peer.pacer.held > 0
            assert peer.outbox._ws is not None
            assert peer.outbox._ws.pending <= BUDGET + SIZE + KIB
            # More requests: not read while answers wait, so none runs.
            peer_ws.send_nowait(encode_frame(
                [Request(i, ref.uuid, "big", encode_payload(i)) for i in range(201, 211)]))
            await trio.sleep(0.5)
            assert len(ran) == 200
            assert await ref.request("size", b"abc") == 3, "the healthy pair works"
            with trio.fail_after(10):
                while agent._runtime._endpoint_peers:  # noqa: ASYNC110 - polls the agent
                    await trio.sleep(0.05)
            assert len(ran) == 200
            peer_ws.abort()
