"""A trio-websocket client for tests: an independent WebSocket implementation.

Tests that speak the wire protocol by hand use it, so the hub's own
WebSocket code is checked against someone else's, not against itself.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import trio
import trio_websocket


async def dial(nursery: trio.Nursery, url: str
               ) -> tuple[trio_websocket.WebSocketConnection, trio.SocketStream]:
    """Open a trio-websocket client to ``url``; returns it and its TCP stream.

    trio-websocket leaves a client's socket open when the server goes away,
    so the test owns the stream and closes (or breaks) it.
    """
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    ws = await trio_websocket.wrap_client_stream(nursery, stream, parts.hostname, "/")
    return ws, stream
