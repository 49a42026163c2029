"""Two ends of one real loopback WebSocket, made by hulytrio's own code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from hulytrio.transport.websocket import WebSocket, accept_websocket, connect_websocket


@asynccontextmanager
async def ws_pair(max_message_size: int = 1 << 20
                  ) -> AsyncIterator[tuple[WebSocket, WebSocket]]:
    """Yield ``(client, server)``; both sockets are closed on exit."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    accepted: list[WebSocket] = []
    async with trio.open_nursery() as nursery:

        async def accept() -> None:
            stream = await listeners[0].accept()
            accepted.append(await accept_websocket(stream, max_message_size=max_message_size))

        nursery.start_soon(accept)
        client = await connect_websocket(f"ws://127.0.0.1:{port}/",
                                         max_message_size=max_message_size)
    await listeners[0].aclose()
    server = accepted[0]
    try:
        yield client, server
    finally:
        client.abort()
        server.abort()
