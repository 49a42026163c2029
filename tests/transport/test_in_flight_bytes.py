"""A client's request bytes in flight are bounded at the hub (issue 13), on loopback.

The attack: a client fires 200 requests of 256 KiB (50 MiB) at a container
whose agent reads slower than the client sends.  Bounded by count alone the
hub forwarded them all, past the 32 MiB it keeps for the agent's connection,
and dropped the *agent* as not reading: its containers were terminated and
every other caller of them disturbed.
"""

from __future__ import annotations

import time
from typing import Any

import trio

import hulytrio
from hulytrio.core.messages import (
    PROTOCOL_VERSION,
    Hello,
    Message,
    RegisterAgent,
    Request,
    Response,
    Start,
    Started,
)
from hulytrio.transport.websocket import WebSocket, WebSocketClosed, connect_websocket
from hulytrio.wire.codec import MAX_FRAME_BYTES, decode_frame, encode_frame, encode_payload

SIZE = 256 * 1024
REQUESTS = 200


class Echo(hulytrio.Container):
    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        return data


async def start_echo(options: hulytrio.GetOptions) -> hulytrio.Container:
    return Echo()


async def _messages(ws: WebSocket) -> list[Message]:
    got: list[Message] = []
    for data in await ws.receive():
        assert isinstance(data, bytes)
        got.extend(decode_frame(data))
    return got


async def _stalling_agent(url: str, stalled: trio.Event, resume: trio.Event,
                          *, task_status: trio.TaskStatus[WebSocket]) -> None:
    """A hand-driven agent of kind ``slow``: starts its container, then reads
    nothing until ``resume``; then answers every request with its payload's size.

    (An agent whose handlers hold its loop reads its connection this way; a
    peer in the same process as the hub cannot stall only itself.)
    """
    ws = await connect_websocket(url, max_message_size=2 * MAX_FRAME_BYTES)
    ws.send_nowait(encode_frame([Hello(PROTOCOL_VERSION, "slow-host", 120.0)]))
    ws.send_nowait(encode_frame([RegisterAgent(1, "slow-agent", ("slow",))]))
    task_status.started(ws)
    started = False
    while True:
        try:
            batch = await _messages(ws)
        except WebSocketClosed:
            return
        out: list[Message] = []
        for message in batch:
            if isinstance(message, Start):
                out.append(Started(message.id, message.uuid))
                started = True
            elif isinstance(message, Request):
                out.append(Response(message.id, encode_payload(len(message.payload))))
        if out:
            ws.send_nowait(encode_frame(out))
        if started and not stalled.is_set():
            stalled.set()
            await resume.wait()


async def test_the_issue_attack_large_requests_do_not_get_the_agent_dropped():
    with trio.fail_after(120):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as attacker, \
                hulytrio.open_client(hub.url) as healthy_host, \
                hulytrio.open_client(hub.url) as healthy, \
                trio.open_nursery() as nursery:
            stalled, resume = trio.Event(), trio.Event()
            agent_ws = await nursery.start(_stalling_agent, hub.url, stalled, resume)
            await healthy_host.serve_agent({"echo": start_echo})
            echo = await healthy.get("echo")
            slow = await attacker.get("slow")
            await stalled.wait()
            answers: list[int] = []
            worst = 0.0

            async def fire(i: int) -> None:
                answers.append(await slow.request("work", bytes([i % 256]) * SIZE))

            async def keep_calling(done: trio.Event) -> None:
                nonlocal worst
                n = 0
                while not done.is_set():
                    start = time.monotonic()
                    assert await echo.request("op", n) == n
                    worst = max(worst, time.monotonic() - start)
                    n += 1
                    await trio.sleep(0.02)

            done = trio.Event()
            async with trio.open_nursery() as calls:
                calls.start_soon(keep_calling, done)
                async with trio.open_nursery() as attack:
                    for i in range(REQUESTS):
                        attack.start_soon(fire, i)
                    # The agent reads nothing for 3 s while the client fires.
                    await trio.sleep(3.0)
                    resume.set()
                    # Until every answer is in, or the hub gave up on the agent
                    # (its calls would wait for a container that is gone).
                    with trio.move_on_after(30):
                        while len(answers) < REQUESTS and not hub.statistics().dropped_slow:  # noqa: ASYNC110 - polls the hub
                            await trio.sleep(0.05)
                    attack.cancel_scope.cancel()
                done.set()
            assert hub.statistics().dropped_slow == 0, "the hub dropped the agent"
            # Every request was answered by the one agent (its container was
            # never terminated).
            assert answers == [len(encode_payload(b"x" * SIZE))] * REQUESTS
            assert worst < 1.0, f"the healthy pair waited {worst:.2f} s"
            assert await slow.request("work", b"xy") == len(encode_payload(b"xy"))
            agent_ws.abort()
            nursery.cancel_scope.cancel()


CLIENTS = 6
#: each client's requests stay under its own 8 MiB bound (a payload is its
#: bytes plus a 5-byte header: 32 of them would pass 8 MiB by 160 bytes)
PER_CLIENT = 31


async def test_several_clients_each_within_their_bound_do_not_get_the_agent_dropped():
    # 6 clients x 31 x 256 KiB = 46.5 MiB at one agent that reads nothing for
    # 3 s: each client within its 8 MiB, together well past the 32 MiB the hub
    # keeps for the agent.  Bounded per client only, the hub dropped the agent.
    with trio.fail_after(120):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as healthy_host, \
                hulytrio.open_client(hub.url) as healthy, \
                trio.open_nursery() as nursery:
            stalled, resume = trio.Event(), trio.Event()
            agent_ws = await nursery.start(_stalling_agent, hub.url, stalled, resume)
            await healthy_host.serve_agent({"echo": start_echo})
            echo = await healthy.get("echo")
            attackers = []
            for _ in range(CLIENTS):
                client = await nursery.start(_client, hub.url)
                attackers.append(client)
            slows = [await client.get("slow") for client in attackers]
            await stalled.wait()
            answers: list[int] = []
            worst = 0.0
            peak = 0

            async def fire(slow: Any, i: int) -> None:
                answers.append(await slow.request("work", bytes([i % 256]) * SIZE))

            async def keep_calling(done: trio.Event) -> None:
                nonlocal worst, peak
                n = 0
                while not done.is_set():
                    start = time.monotonic()
                    assert await echo.request("op", n) == n
                    worst = max(worst, time.monotonic() - start)
                    peak = max(peak, max(hub.hub._agent_bytes.values(), default=0))
                    n += 1
                    await trio.sleep(0.02)

            done = trio.Event()
            async with trio.open_nursery() as calls:
                calls.start_soon(keep_calling, done)
                async with trio.open_nursery() as attack:
                    for slow in slows:
                        for i in range(PER_CLIENT):
                            attack.start_soon(fire, slow, i)
                    await trio.sleep(3.0)
                    resume.set()
                    with trio.move_on_after(60):
                        while (len(answers) < CLIENTS * PER_CLIENT  # noqa: ASYNC110 - polls the hub
                               and not hub.statistics().dropped_slow):
                            await trio.sleep(0.05)
                    attack.cancel_scope.cancel()
                done.set()
            assert hub.statistics().dropped_slow == 0, "the hub dropped the agent"
            assert answers == [len(encode_payload(b"x" * SIZE))] * (CLIENTS * PER_CLIENT)
            assert peak <= hub.hub.max_in_flight_bytes_per_agent == hub.send_bytes // 2
            assert worst < 1.0, f"the healthy pair waited {worst:.2f} s"
            assert hub.hub._agent_bytes == {}
            agent_ws.abort()
            nursery.cancel_scope.cancel()


async def _client(url: str, *, task_status: trio.TaskStatus[hulytrio.Client]) -> None:
    async with hulytrio.open_client(url) as client:
        task_status.started(client)
        await trio.sleep_forever()
