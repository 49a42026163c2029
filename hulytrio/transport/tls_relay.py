"""``wss://``: TLS with ``trio.SSLStream`` in front of the plain-socket WebSocket.

Theory of operation
-------------------
``websocket.WebSocket`` drives a plain non-blocking socket itself, with no
helper task and no ``await`` on the send path (that is what makes a routed
request cheap: docs/performance.md).  TLS is not put inside it.  A TLS
connection is instead completed with ``trio.SSLStream`` (the contexts come
from ``tls.py``) and *relayed*: two small tasks copy bytes between the
``SSLStream`` and one end of a ``socket.socketpair()``; the WebSocket runs
unchanged on the other end.  What this costs is paid by TLS connections
only (two more descriptors and one copy each way); a ``ws://`` connection
runs exactly as before.

The relay ends when either side does: the WebSocket closing its socket
(after its close frame, which the relay forwards first), or the TLS peer
going away (the WebSocket then sees its connection lost).  It then closes
both ends, the TLS one with a ``close_notify`` bounded to a second.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import trio

from .websocket import HandshakeError, WebSocket, connect_websocket

__all__ = ["CLOSE_NOTIFY_TIMEOUT", "RELAY_BYTES", "TLS_HANDSHAKE_ERRORS", "accept_tls",
           "connect_wss", "handshake", "relay"]

log = logging.getLogger(__name__)

#: Bytes moved per read, each way.
RELAY_BYTES = 256 * 1024
#: Seconds the relay waits to send its ``close_notify`` before closing the socket.
CLOSE_NOTIFY_TIMEOUT = 1.0
#: What a failed TLS handshake raises in trio (the ssl error is its cause).
TLS_HANDSHAKE_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)

_Spawn = Callable[..., Any]


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__ or exc
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"{cause.reason} ({cause.verify_message})"
    if isinstance(cause, ssl.SSLError) and cause.reason:
        return str(cause.reason)
    return str(cause) or type(cause).__name__


async def handshake(tls: trio.SSLStream[Any], where: str) -> None:
    """Complete the TLS handshake on ``tls``; closes it and raises ``HandshakeError`` if it fails.

    ``where`` names the peer in the error (``"hub 10.0.0.1:3737"``).
    """
    try:
        await tls.do_handshake()
    except BaseException as exc:
        # cancelled, too (a timeout, the client closing): the socket is closed either way
        await trio.aclose_forcefully(tls.transport_stream)
        if isinstance(exc, TLS_HANDSHAKE_ERRORS):
            raise HandshakeError(f"TLS handshake with {where} failed: {_reason(exc)}"
                                 ) from None
        raise


def relay(spawn: _Spawn, tls: trio.SSLStream[Any]) -> trio.SocketStream:
    """Start relaying ``tls`` (handshake done) through ``spawn``; returns the plain end.

    ``spawn(fn, *args)`` starts a task in the nursery that owns the
    connection.  Use the returned stream as the connection's socket (for
    ``accept_websocket``, or ``connect_websocket(stream=...)``).
    """
    outer, inner = socket.socketpair()
    spawn(_relay, tls, trio.SocketStream(trio.socket.from_stdlib_socket(inner)))
    return trio.SocketStream(trio.socket.from_stdlib_socket(outer))


async def _relay(tls: trio.SSLStream[Any], inner: trio.SocketStream) -> None:
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_copy, inner, tls, nursery.cancel_scope)
            nursery.start_soon(_copy, tls, inner, nursery.cancel_scope)
    finally:
        # Shielded: a relay is usually ended by cancellation (a client closing
        # cancels its tasks), and in a cancelled scope the first checkpoint
        # re-raises Cancelled: unshielded, that skipped the rest of this block
        # and left the TLS socket open (the ResourceWarning of h/auth-wss-wip).
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(inner)
            with trio.move_on_after(CLOSE_NOTIFY_TIMEOUT), contextlib.suppress(
                    trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await tls.aclose()
            # whatever state the TLS stream ended in, its socket is closed
            await trio.aclose_forcefully(tls.transport_stream)


async def _copy(source: trio.abc.Stream, sink: trio.abc.Stream, done: trio.CancelScope
                ) -> None:
    """Copy ``source`` to ``sink`` until either ends; then end the relay."""
    try:
        while data := await source.receive_some(RELAY_BYTES):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    done.cancel()


async def accept_tls(stream: trio.SocketStream, context: ssl.SSLContext, where: str,
                     spawn: _Spawn) -> trio.SocketStream | None:
    """Complete a server-side TLS handshake on ``stream`` and start relaying it.

    Returns the relay's plain end (for ``accept_websocket``), or None if the
    handshake failed: a peer speaking plain ``ws://``, a certificate the
    context refuses (mutual TLS).  The failure is logged at info (``where``
    names the peer) and ``stream`` is closed; it is closed too if the wait is
    cancelled (bound it with ``trio.move_on_after``).  ``spawn`` is as for
    ``relay``.
    """
    tls = trio.SSLStream(stream, context, server_side=True)
    try:
        await handshake(tls, where)
    except HandshakeError as exc:
        log.info("%s", exc)
        return None
    return relay(spawn, tls)


async def connect_wss(url: str, *, max_message_size: int, ssl_context: ssl.SSLContext | None,
                      spawn: _Spawn) -> WebSocket:
    """Open a WebSocket to ``url``, ``ws://`` or ``wss://``; returns it.

    A ``wss://`` URL is dialled with TLS (``ssl_context``; None: the
    system's CAs), its certificate checked against the URL's host, and
    relayed through ``spawn`` (see ``relay``).  Bound the wait with a trio
    timeout.

    Raises:
        ValueError: if ``url`` is neither ``ws://`` nor ``wss://``.
        OSError: if the TCP connection fails.
        HandshakeError: if the TLS handshake fails (an untrusted or wrong
            certificate, a peer that does not speak TLS) or the upgrade is refused.
    """
    parts = urlsplit(url)
    if parts.scheme != "wss":
        return await connect_websocket(url, max_message_size=max_message_size)
    if not parts.hostname:
        raise ValueError(f"expected a wss://host:port URL, got {url!r}")
    if ssl_context is None:
        ssl_context = ssl.create_default_context()
    port = parts.port or 443
    tcp = await trio.open_tcp_stream(parts.hostname, port)
    tls = trio.SSLStream(tcp, ssl_context, server_hostname=parts.hostname)
    # from here, handshake() or the relay owns the socket
    await handshake(tls, f"{parts.hostname}:{port}")
    plain = relay(spawn, tls)
    try:
        return await connect_websocket(url, max_message_size=max_message_size, stream=plain)
    except BaseException:
        await trio.aclose_forcefully(plain)
        raise
