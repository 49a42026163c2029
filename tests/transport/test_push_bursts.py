"""An agent pushing bursts of large events stalls nobody (issue 13), on loopback.

The issue reported "an agent pushing 8 x 128 KiB every 2 s stalls its
victim 3 s per burst".  Here a container pushes exactly that to a client
(``broadcast`` from its ``connect`` hook, relayed by the hub as ``Push``,
or straight from the agent's endpoint) for several bursts, while the victim
keeps calling another container and a healthy pair keeps calling each other:
every one of their requests must be answered within ``BOUND`` during the
bursts, and the victim must get every event.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import trio

import hulytrio

EVENT = 128 * 1024
PER_BURST = 8
BURSTS = 4
PERIOD = 2.0
#: the slowest answer allowed to the victim's and the healthy pair's calls
BOUND = 0.5


class Echo(hulytrio.Container):
    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        return data


async def start_echo(options: hulytrio.GetOptions) -> hulytrio.Container:
    return Echo()


class Pusher(hulytrio.Container):
    """Remembers each connected client's ``broadcast``; the test pushes through it."""

    def __init__(self, connected: dict[str, hulytrio.Broadcast]) -> None:
        self.connected = connected

    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        return len(self.connected)

    async def connect(self, client_id: str, broadcast: hulytrio.Broadcast) -> None:
        self.connected[client_id] = broadcast

    async def disconnect(self, client_id: str) -> None:
        self.connected.pop(client_id, None)


@pytest.mark.parametrize("endpoint", [None, "127.0.0.1:0"], ids=["via-hub", "direct"])
async def test_bursts_of_large_pushes_stall_neither_the_victim_nor_a_healthy_pair(
        endpoint: str | None) -> None:
    connected: dict[str, hulytrio.Broadcast] = {}

    async def start_pusher(options: hulytrio.GetOptions) -> hulytrio.Container:
        return Pusher(connected)

    with trio.fail_after(60):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as pusher_host, \
                hulytrio.open_client(hub.url) as echo_host, \
                hulytrio.open_client(hub.url) as victim, \
                hulytrio.open_client(hub.url) as healthy:
            await pusher_host.serve_agent({"pusher": start_pusher}, endpoint=endpoint)
            await echo_host.serve_agent({"echo": start_echo})
            source = await victim.get("pusher")
            victim_echo = await victim.get("echo")
            healthy_echo = await healthy.get("echo")
            worst = {"victim": 0.0, "healthy": 0.0}
            calls = {"victim": 0, "healthy": 0}
            received: list[int] = []

            async def keep_calling(name: str, ref: hulytrio.ContainerReference) -> None:
                n = 0
                while True:
                    start = time.monotonic()
                    assert await ref.request("op", n) == n
                    worst[name] = max(worst[name], time.monotonic() - start)
                    calls[name] += 1
                    n += 1
                    await trio.sleep(0.02)

            async with source.connect() as conn:
                assert conn.direct == (endpoint is not None)
                while victim.client_id not in connected:  # noqa: ASYNC110 - polls the container
                    await trio.sleep(0.01)
                broadcast = connected[victim.client_id]

                async def read_events() -> None:
                    async for event in conn.events():
                        received.append(len(event))

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(read_events)
                    nursery.start_soon(keep_calling, "victim", victim_echo)
                    nursery.start_soon(keep_calling, "healthy", healthy_echo)
                    await trio.sleep(0.3)
                    for burst in range(BURSTS):
                        for i in range(PER_BURST):
                            await broadcast(bytes([burst * PER_BURST + i]) * EVENT)
                        await trio.sleep(PERIOD)
                    nursery.cancel_scope.cancel()
            print(f"worst latency during {BURSTS} bursts of {PER_BURST} x {EVENT} bytes: "
                  f"victim {worst['victim'] * 1000:.0f} ms ({calls['victim']} calls), "
                  f"healthy pair {worst['healthy'] * 1000:.0f} ms ({calls['healthy']} calls)")
            assert received == [EVENT] * (BURSTS * PER_BURST)
            assert calls["victim"] > 50
            assert calls["healthy"] > 50
            assert worst["victim"] < BOUND, worst
            assert worst["healthy"] < BOUND, worst
