"""WebSockets over non-blocking sockets, driven by wsproto with no helper task.

Theory of operation
-------------------
trio-websocket runs a reader task per connection that hands every message
to the consumer through a channel, and sends under a lock with ``send_all``
(a scheduler yield per send).  On the hub's hot path that costs three task
switches per hop, and on a 2-core machine those switches, not the bytes,
bound the request rate (docs/performance.md).  This module keeps wsproto
for the HTTP upgrade, reads and writes frames with ``frames.py``, and drives a plain
non-blocking ``socket.socket`` itself:

- ``WebSocket.receive()`` runs in the caller's task: it reads whatever the
  kernel has (waiting with ``trio.lowlevel.wait_readable`` only when it has
  nothing), feeds wsproto, answers pings and close frames, and returns every
  complete message of that read;
- ``WebSocket.send_nowait()`` frames the message and hands it to the kernel
  *at once*, from the caller's task (an optimistic write, like asyncio's
  transports).  Only what the kernel does not take is kept, and
  ``wait_sent()`` waits until the socket is writable and sends it; ``pending``
  is the number of bytes kept.  Every byte written goes through one place
  (data frames, pongs, close frames), so one bound covers them all: once
  ``pending`` passes ``max_pending`` the peer is not reading, and the
  connection is dropped (``overflowed``) and its bytes freed.

A receive that found data without waiting checkpoints every few reads, so a
peer that always has data ready cannot starve the other tasks.  Text
messages are returned as ``str`` (the protocol is binary; drivers answer
them with an error).  A message larger than ``max_message_size`` closes the
connection with code 1009, as trio-websocket does.
"""

from __future__ import annotations

import contextlib
import math
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Event, RejectConnection, Request
from wsproto.utilities import RemoteProtocolError as WsRemoteProtocolError

from .frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    Control,
    MessageReader,
    close_payload,
    encode_frame,
)

__all__ = [
    "HandshakeError",
    "HttpAnswered",
    "WebSocket",
    "WebSocketClosed",
    "accept_websocket",
    "connect_websocket",
]

#: Bytes asked of the kernel per read.
READ_BYTES = 64 * 1024
#: Reads that found data without waiting before a receive yields anyway.
READS_PER_YIELD = 8
#: What one send joins at most from the bytes kept for a slow peer.
_COALESCE = 256 * 1024
#: Largest HTTP upgrade request or response accepted.
MAX_HANDSHAKE_BYTES = 16 * 1024
#: The answer to an upgrade request that cannot be parsed.
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class WebSocketClosed(Exception):
    """The WebSocket is closed: ``code`` and ``reason`` from the close frame (1006: lost)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"WebSocket closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


class HandshakeError(Exception):
    """The HTTP upgrade failed: the peer refused, or is not a WebSocket peer."""


class HttpAnswered(HandshakeError):
    """The peer sent a plain HTTP request, answered by the ``http`` hook (``http.py``)."""


class WebSocket:
    """One open WebSocket (see the module docstring); made by ``accept_``/``connect_websocket``."""

    __slots__ = ("_close_sent", "_closed", "_closed_event", "_inbox", "_masked", "_out",
                 "_reader", "_sock", "_streak", "drained", "max_pending", "on_backlog",
                 "overflowed", "pending", "remote")

    def __init__(self, sock: socket.socket, *, client: bool, max_message_size: int,
                 remote: str, received: bytes = b"") -> None:
        sock.setblocking(False)
        self._sock = sock
        #: a client masks what it sends and reads unmasked frames; a server the reverse
        self._masked = client
        self._reader = MessageReader(masked=not client, max_message_size=max_message_size)
        self.remote = remote
        #: bytes the kernel has not taken yet, in order
        self._out: list[bytes | memoryview] = []
        self.pending = 0
        #: bytes of the backlog the kernel has taken so far (in ``wait_sent``): the
        #: progress that tells a peer that reads slowly from one that does not
        self.drained = 0
        #: the most ``pending`` may reach; past it the connection is dropped
        self.max_pending: float = math.inf
        #: dropped because ``pending`` passed ``max_pending``
        self.overflowed = False
        #: called when a write leaves bytes the kernel did not take (``pending``
        #: becomes non-zero), from whichever task wrote: whoever serves
        #: ``wait_sent`` must be woken, or the rest is never sent
        self.on_backlog: Callable[[], None] | None = None
        self._inbox: list[bytes | str] = []
        self._close_sent = False
        self._closed: WebSocketClosed | None = None
        self._closed_event = trio.Event()
        self._streak = 0
        if received:
            self._feed(received)

    @property
    def max_message_size(self) -> int:
        """Return the largest message accepted now (a larger one closes with 1009)."""
        return self._reader.max_message_size

    @max_message_size.setter
    def max_message_size(self, size: int) -> None:
        # Drivers keep it small until the peer's hello (pre-hello buffering).
        self._reader.max_message_size = size

    @property
    def closed(self) -> WebSocketClosed | None:
        """Return how the connection closed, or None while it is open."""
        return self._closed

    async def wait_closed(self) -> None:
        """Return once the connection is closed (a close frame received, or lost).

        Something must be reading (``receive``) for a close frame to be seen.
        """
        await self._closed_event.wait()

    # --- receiving ----------------------------------------------------------------------

    async def receive(self) -> list[bytes | str]:
        """Return the next complete messages (at least one), in order.

        Raises:
            WebSocketClosed: the peer closed (after every message before its
                close frame was returned), or the connection was lost.
        """
        sock = self._sock
        while True:
            if self._inbox:
                messages, self._inbox = self._inbox, []
                self._streak += 1
                if self._streak >= READS_PER_YIELD:
                    self._streak = 0
                    await trio.lowlevel.checkpoint()
                else:
                    await trio.lowlevel.checkpoint_if_cancelled()
                return messages
            if self._closed is not None:
                raise self._closed
            try:
                data = sock.recv(READ_BYTES)
            except BlockingIOError:
                self._streak = 0
                try:
                    await trio.lowlevel.wait_readable(sock)
                except trio.ClosedResourceError:
                    self._lost("the connection was closed locally")
                continue
            except OSError as exc:
                self._lost(f"{type(exc).__name__}: {exc}")
                continue
            if not data:
                self._lost("the peer closed the TCP connection")
                continue
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        items, error = self._reader.feed(data)
        inbox = self._inbox
        for item in items:
            if not isinstance(item, Control):
                inbox.append(item)
            elif item.opcode == OP_PING:
                self._write(encode_frame(OP_PONG, item.payload, masked=self._masked))
            elif item.opcode == OP_CLOSE:
                if not self._close_sent:
                    # Answer with the same code, as the RFC suggests.
                    self._close_sent = True
                    self._write(encode_frame(OP_CLOSE, close_payload(item.code, item.reason),
                                             masked=self._masked))
                self._finish(item.code, item.reason)
                return
        if error is not None:
            self._fail(error.code, error.reason)

    # --- sending ------------------------------------------------------------------------

    def send_nowait(self, data: bytes) -> None:
        """Send ``data`` as one binary message; what the kernel does not take is kept.

        Never blocks.  Sending on a closed WebSocket does nothing (the
        receiver learns of the close from ``receive``).
        """
        if self._close_sent or self._closed is not None:
            return
        self._write(encode_frame(OP_BINARY, data, masked=self._masked))

    def _write(self, data: bytes) -> None:
        if self._out:
            self._out.append(data)
            self.pending += len(data)
            if self.pending > self.max_pending:
                self._overflow()
            return
        if self.overflowed:
            return
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._lost(f"{type(exc).__name__}: {exc}")
            return
        if sent < len(data):
            rest = data[sent:]
            self._out.append(rest)
            self.pending += len(rest)
            if self.pending > self.max_pending:
                self._overflow()
                return
            if self.on_backlog is not None:
                self.on_backlog()

    def _overflow(self) -> None:
        """More than ``max_pending`` bytes wait for a peer that does not read: drop it.

        The bytes are freed now; the socket is closed from the run loop (this
        may run in the outbox's flush between scheduler rounds), which wakes
        the tasks waiting on it.
        """
        self.overflowed = True
        limit = self.max_pending
        self._lost(f"over {limit:.0f} bytes queued for a peer that does not read")
        trio.lowlevel.current_trio_token().run_sync_soon(self.abort)

    async def wait_sent(self) -> None:
        """Return once the kernel has taken every byte sent so far.

        Raises:
            WebSocketClosed: if the connection was lost meanwhile.
        """
        sock, out = self._sock, self._out
        while out:
            try:
                await trio.lowlevel.wait_writable(sock)
            except trio.ClosedResourceError:
                self._lost("the connection was closed locally")
                continue
            if not out:
                # Emptied while we waited: another task's write passed
                # ``max_pending`` (``_overflow``), or the connection was lost.
                # (Found by tests/fuzz/test_live_hub.py: an IndexError here
                # failed the hub's connection to a healthy agent.)
                break
            # Up to about _COALESCE bytes per send: joining everything kept
            # (up to max_pending) for every send would copy it over and over.
            data = out[0]
            if len(out) > 1 and len(data) < _COALESCE:
                count, size = 1, len(data)
                while count < len(out) and size < _COALESCE:
                    size += len(out[count])
                    count += 1
                data = b"".join(out[:count])
                out[:count] = [data]
            try:
                sent = sock.send(data)
            except BlockingIOError:
                continue
            except OSError as exc:
                self._lost(f"{type(exc).__name__}: {exc}")
                continue
            self.pending -= sent
            self.drained += sent
            if sent < len(data):
                out[0] = memoryview(data)[sent:]
            else:
                del out[0]
        if self._closed is not None and self._closed.code == 1006:
            raise self._closed

    # --- closing ------------------------------------------------------------------------

    def close_nowait(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake: send a close frame (the peer answers with its own)."""
        if self._closed is not None or self._close_sent:
            return
        self._close_sent = True
        self._write(encode_frame(OP_CLOSE, close_payload(code, reason), masked=self._masked))

    def abort(self) -> None:
        """Close the socket now (a task blocked in ``receive`` sees the connection lost)."""
        if self._sock.fileno() == -1:
            return
        trio.lowlevel.notify_closing(self._sock)
        self._sock.close()
        if self._closed is None:
            self._closed = WebSocketClosed(1006, "the connection was closed locally")
        self._closed_event.set()

    def _finish(self, code: int, reason: str) -> None:
        if self._closed is None:
            self._closed = WebSocketClosed(code, reason)
        self._closed_event.set()

    def _fail(self, code: int, reason: str) -> None:
        """Close with ``code`` because the peer broke the protocol or a limit."""
        self.close_nowait(code, reason)
        self._finish(code, reason)

    def _lost(self, reason: str) -> None:
        self._out.clear()
        self.pending = 0
        if self._closed is None:
            self._closed = WebSocketClosed(1006, reason)
        self._closed_event.set()


# --- opening ------------------------------------------------------------------------------


def _peer_name(sock: socket.socket) -> str:
    try:
        host, port = sock.getpeername()[:2]
    except (OSError, ValueError):  # ValueError: a socketpair's end (a TLS relay) has no address
        return "?"
    return f"{host}:{port}"


async def _read_handshake(sock: socket.socket, conn: WSConnection,
                          http: Callable[[bytes], bytes | None] | None = None
                          ) -> tuple[list[Event], bytes]:
    """Read the peer's upgrade request or response; returns its events and what followed.

    The HTTP part ends at the first empty line (neither side sends a body),
    so the bytes after it are already WebSocket frames, for the caller.
    """
    received = b""
    while True:
        try:
            data = sock.recv(READ_BYTES)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(sock)
            continue
        if not data:
            raise HandshakeError("the peer closed the connection during the handshake")
        received += data
        end = received.find(b"\r\n\r\n")
        if end < 0:
            if len(received) > MAX_HANDSHAKE_BYTES:
                raise HandshakeError("handshake too large")
            continue
        if end + 4 > MAX_HANDSHAKE_BYTES:  # it may arrive whole, in one read
            raise HandshakeError("handshake too large")
        head, rest = received[:end + 4], received[end + 4:]
        if http is not None and (answer := http(head)) is not None:
            await _send_all(sock, answer)
            raise HttpAnswered("answered a plain HTTP request")
        try:
            conn.receive_data(head)
            events = list(conn.events())
        except (WsRemoteProtocolError, ValueError) as exc:
            # wsproto decodes header values with the ascii and idna codecs and
            # lets their UnicodeError (a ValueError) out: one non-ASCII byte in
            # Host or Connection is a bad handshake, not a crash.
            raise HandshakeError(f"bad handshake: {exc}") from exc
        if not events:
            raise HandshakeError("incomplete handshake")
        return events, rest


async def _send_all(sock: socket.socket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)
            continue
        view = view[sent:]


def _detach(stream: trio.SocketStream) -> socket.socket:
    """Take the stdlib socket out of a trio ``SocketStream`` (TCP_NODELAY already set)."""
    fd = stream.socket.detach()
    sock = socket.socket(fileno=fd)
    sock.setblocking(False)
    return sock


async def accept_websocket(stream: trio.SocketStream, *, max_message_size: int,
                           path: str | None = None,
                           http: Callable[[bytes], bytes | None] | None = None) -> WebSocket:
    """Complete the server side of the HTTP upgrade on ``stream``; returns the WebSocket.

    The stream's socket is taken over (the stream must not be used after).
    ``path``, when given, is the only resource accepted (others get 404).
    ``http``, when given, is offered each request head first: what it
    returns is sent as the answer and ``HttpAnswered`` raised (None: go on
    with the upgrade).
    Bound the wait with a trio timeout.

    Raises:
        HandshakeError: the peer did not send a valid upgrade request (it
            was answered 400 Bad Request, if the socket still took it).
        OSError: the connection failed.
    """
    sock = _detach(stream)
    try:
        conn = WSConnection(ConnectionType.SERVER)
        try:
            events, rest = await _read_handshake(sock, conn, http)
        except HttpAnswered:
            raise
        except HandshakeError:
            with contextlib.suppress(OSError):
                await _send_all(sock, BAD_REQUEST)
            raise
        request = events[0]
        if not isinstance(request, Request):
            raise HandshakeError(f"expected an upgrade request, got {type(request).__name__}")
        if path is not None and request.target != path:
            await _send_all(sock, conn.send(RejectConnection(status_code=404)))
            raise HandshakeError(f"no WebSocket at {request.target!r}")
        await _send_all(sock, conn.send(AcceptConnection()))
        return WebSocket(sock, client=False, max_message_size=max_message_size,
                         remote=_peer_name(sock), received=rest)
    except BaseException:
        trio.lowlevel.notify_closing(sock)
        sock.close()
        raise


async def connect_websocket(url: str, *, max_message_size: int,
                            stream: trio.SocketStream | None = None) -> WebSocket:
    """Open a WebSocket to ``url`` (``ws://host:port/path``); returns it.

    ``stream``, when given, is the connection to use instead of dialling
    ``url`` (the plain end of a TLS relay for ``wss://``: ``tls_relay.py``).
    Bound the wait with a trio timeout; cancellation closes the socket.

    Raises:
        ValueError: if ``url`` is not a ``ws://`` URL.
        OSError: if the TCP connection fails.
        HandshakeError: if the server refuses the upgrade or is no WebSocket server.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname or (
            parts.scheme == "wss" and stream is None):
        raise ValueError(f"expected a ws://host:port URL, got {url!r}")
    port = parts.port or (80 if parts.scheme == "ws" else 443)
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    if stream is None:
        stream = await trio.open_tcp_stream(parts.hostname, port)
    sock = _detach(stream)
    try:
        conn = WSConnection(ConnectionType.CLIENT)
        host = parts.hostname if parts.port is None else f"{parts.hostname}:{port}"
        await _send_all(sock, conn.send(Request(host=host, target=resource)))
        events, rest = await _read_handshake(sock, conn)
        answer = events[0]
        if isinstance(answer, RejectConnection):
            raise HandshakeError(f"the server refused the upgrade (HTTP {answer.status_code})")
        if not isinstance(answer, AcceptConnection):
            raise HandshakeError(f"unexpected handshake answer {type(answer).__name__}")
        return WebSocket(sock, client=True, max_message_size=max_message_size,
                         remote=f"{parts.hostname}:{port}", received=rest)
    except BaseException:
        trio.lowlevel.notify_closing(sock)
        sock.close()
        raise
