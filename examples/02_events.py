"""Event broadcasting: a container pushes ticks to every connected client.

The agent opens its own endpoint, so ``ref.connect()`` goes straight to it
(bypassing the hub); without ``endpoint=`` the hub relays the events.
Run ``make serve`` first, then ``python examples/02_events.py``.
"""

from __future__ import annotations

import os
import sys

import trio

import hulytrio

URL = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("HULY_URL", "ws://127.0.0.1:3737")


class Ticker(hulytrio.Container):
    def __init__(self) -> None:
        self.listeners: dict[str, hulytrio.Broadcast] = {}

    async def request(self, operation, data=None, client_id=None):
        if operation == "tick":
            for broadcast in list(self.listeners.values()):
                await broadcast({"tick": data})
            return len(self.listeners)
        raise ValueError(f"unknown operation {operation!r}")

    async def connect(self, client_id, broadcast):
        self.listeners[client_id] = broadcast

    async def disconnect(self, client_id):
        self.listeners.pop(client_id, None)


async def start_ticker(options):
    return Ticker()


async def main() -> None:
    with trio.fail_after(10):
        async with hulytrio.open_client(URL) as agent_side, hulytrio.open_client(URL) as client:
            await agent_side.serve_agent({"ticker": start_ticker}, endpoint="127.0.0.1:0")
            ref = await client.get("ticker")
            async with ref.connect() as conn:
                print("connected", "directly to the agent" if conn.direct else "through the hub")
                for i in range(3):
                    listeners = await ref.request("tick", i)
                    print(f"tick {i} sent to {listeners} listener(s)")
                events = conn.events()
                for _ in range(3):
                    print("event:", await events.__anext__())
            await ref.release()


if __name__ == "__main__":
    trio.run(main)
