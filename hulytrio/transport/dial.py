"""Opening client WebSockets whose TCP stream the caller owns (and so can always close)."""

from __future__ import annotations

from urllib.parse import urlsplit

import trio
from trio_websocket import WebSocketConnection, wrap_client_stream

from .codec import MAX_FRAME_BYTES, RECEIVE_BYTES

__all__ = ["dial"]


async def dial(nursery: trio.Nursery, url: str, *, message_queue_size: int = 1,
               max_message_size: int = MAX_FRAME_BYTES
               ) -> tuple[WebSocketConnection, trio.SocketStream]:
    """Open a WebSocket to ``url`` (``ws://host:port/path``); returns it and its TCP stream.

    trio-websocket does not close a client's TCP stream when the server goes
    away, so the caller closes the returned stream when done with the
    connection (``await stream.aclose()``, safe to repeat).

    Raises:
        ValueError: if ``url`` is not a ``ws://`` URL.
        OSError: if the TCP connection fails.
        trio_websocket.HandshakeError: if the WebSocket handshake fails.
    """
    parts = urlsplit(url)
    if parts.scheme != "ws" or not parts.hostname:
        raise ValueError(f"expected a ws://host:port URL, got {url!r}")
    port = parts.port or 80
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    stream = await trio.open_tcp_stream(parts.hostname, port)
    try:
        ws = await wrap_client_stream(nursery, stream, parts.hostname, resource,
                                      message_queue_size=message_queue_size,
                                      max_message_size=max_message_size,
                                      receive_buffer_size=RECEIVE_BYTES)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return ws, stream
