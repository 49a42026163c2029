"""The hub driver: a WebSocket server feeding ``hulytrio.core.hub.Hub``.

Theory of operation
-------------------
``serve_network`` opens one nursery that owns everything: the TCP listener,
one handler per connection and the timer task.  Each connection has a
reader (the handler itself: read from the socket, decode, feed
``Hub.receive``) and a writer (``Outbox.run_writer``), inside a cancel scope
of its own, so a connection's death cancels only its tasks.  After every
input (a read, a connection opened or lost, a deadline) the driver drains
``hub.effects()``: ``Send`` goes to the target connection's bounded outbox,
which writes everything a scheduler round queued as one frame
(``outbox.py``); ``CloseConnection`` asks the writer to flush and close.  A
peer whose outbox is full has stopped reading: it is dropped (logged), so it
can neither grow the hub's memory nor stall the messages of anyone else.

Bad input never reaches the hub as an exception: an undecodable frame or
message is answered with an ``Error`` through ``Hub.protocol_error`` and
logged, and the connection carries on.
"""

from __future__ import annotations

import logging
import secrets
import socket
from collections.abc import AsyncIterator, Hashable, Sequence
from contextlib import asynccontextmanager
from typing import assert_never

import attrs
import trio

from hulytrio.core.effects import CloseConnection, Send
from hulytrio.core.hub import Hub
from hulytrio.core.messages import Message
from hulytrio.core.timeouts import Timeouts

from ..wire.codec import MAX_FRAME_BYTES, WireError, decode_frame_lenient
from .deadlines import DeadlineTask
from .errors import single_errors
from .http import serve_http
from .limits import refusal
from .metrics import hub_routes
from .outbox import Outbox
from .websocket import HandshakeError, HttpAnswered, WebSocket, WebSocketClosed, accept_websocket

__all__ = ["NetworkServer", "ServerStatistics", "serve_network"]

log = logging.getLogger("hulytrio.hub")

#: Messages queued for one peer before it counts as a slow consumer.
DEFAULT_SEND_QUEUE = 10_000
#: Seconds a new connection has to complete the WebSocket upgrade.
HANDSHAKE_TIMEOUT = 10.0


@attrs.frozen
class ServerStatistics:
    """Counters of a running hub driver."""

    connections: int
    frames_in: int
    bad_frames: int
    dropped_slow: int
    #: connections accepted since start (health probes not counted)
    accepted: int = 0


class _Peer:
    __slots__ = ("address", "conn", "hub", "outbox", "scope", "ws")

    def __init__(self, conn: int, ws: WebSocket, outbox: Outbox, hub: Hub) -> None:
        self.conn = conn
        #: the hub machine this connection talks to (a standby that wins the
        #: lease, or an active hub that loses it, gets a new one)
        self.hub = hub
        self.ws = ws
        self.outbox = outbox
        self.scope = trio.CancelScope()
        self.address = ws.remote


class NetworkServer:
    """A running hub: ``url`` to connect to, ``hub`` the core machine it drives."""

    def __init__(self, hub: Hub, *, send_queue: int, max_frame_bytes: int) -> None:
        self.hub = hub
        self.host = ""
        self.port = 0
        self.send_queue = send_queue
        self.max_frame_bytes = max_frame_bytes
        self._peers: dict[Hashable, _Peer] = {}
        self._serial = 0
        self._frames_in = 0
        self._bad_frames = 0
        self._dropped = 0
        self._timer = DeadlineTask(self._next_deadline, self._fire)
        #: "active" serves; "standby" (a hub campaigning for its lease,
        #: ``leadership.py``) redirects every hello; ``/ready`` answers 503
        #: unless ``ready``
        self.role = "active"
        self.started = trio.current_time()
        self.metrics_port: int | None = None
        self.http = hub_routes(self)

    @property
    def ready(self) -> bool:
        """Return whether this hub serves clients (``/ready``): only the active one."""
        return self.role == "active"

    def uptime(self) -> float:
        """Return the seconds since the hub started."""
        return trio.current_time() - self.started

    @property
    def url(self) -> str:
        """Return the ``ws://host:port`` URL clients connect to."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"ws://{host}:{self.port}"

    # --- the role (hub standby: leadership.py) ----------------------------------

    def stand_by(self, redirect: str, reason: str) -> None:
        """Serve as a standby from now on: every hello is redirected to ``redirect``.

        Every open connection is closed at once (``reason`` is logged): its
        session belonged to a term that is over, and its peer reconnects to
        the active hub.  The registry starts empty again.
        """
        self._replace_hub(self.hub.term, reason)
        self.hub.redirect = redirect
        self.role = "standby"

    def activate(self, term: int) -> None:
        """Serve as the active hub of ``term`` (the lease's term) from now on.

        Connections still open to the standby (waiting for their redirect)
        are closed; their peers reconnect and are welcomed.
        """
        self._replace_hub(term, f"now the active hub (term {term})")
        self.role = "active"

    def set_redirect(self, url: str) -> None:
        """A standby learnt the active hub's URL (``""``: unknown)."""
        if self.hub.redirect is not None:
            self.hub.redirect = url

    def _replace_hub(self, term: int, reason: str) -> None:
        old = self.hub
        self.hub = Hub(f"hub-{secrets.token_hex(4)}", old.timeouts, term=term,
                       max_in_flight=old.max_in_flight)
        if self._peers:
            log.info("closing %d connection(s): %s", len(self._peers), reason)
        for peer in list(self._peers.values()):
            peer.outbox.closing = True
            peer.scope.cancel()
        self._timer.poke()

    def _next_deadline(self) -> float | None:
        return self.hub.next_deadline()

    def statistics(self) -> ServerStatistics:
        """Return the driver's counters."""
        return ServerStatistics(len(self._peers), self._frames_in, self._bad_frames,
                                self._dropped, self._serial)

    # --- effects -------------------------------------------------------------------

    def _drain(self) -> None:
        # The core annotates its outputs as any Effect; the hub emits
        # HubEffect only (core/effects.py).
        for effect in self.hub.effects():
            match effect:
                case Send():
                    peer = self._peers.get(effect.conn)
                    if (peer is not None and not peer.outbox.closing
                            and not peer.outbox.put_nowait(effect.message)):
                        self._drop_slow(peer)
                case CloseConnection():
                    peer = self._peers.get(effect.conn)
                    if peer is not None:
                        log.info("closing connection %s (%s): %s", peer.conn, peer.address,
                                 effect.reason)
                        peer.outbox.close_after_flush(effect.reason)
                case _:
                    assert_never(effect)
        self._timer.poke()

    def _drop_slow(self, peer: _Peer) -> None:
        self._dropped += 1
        log.warning("dropping connection %s (%s): send queue full (%d messages); "
                    "the peer is not reading", peer.conn, peer.address, self.send_queue)
        peer.outbox.closing = True
        peer.scope.cancel()

    def _fire(self, now: float) -> None:
        self.hub.handle_timers(now)
        self._drain()

    # --- connections -------------------------------------------------------------

    async def _handle(self, stream: trio.SocketStream) -> None:
        """Serve one connection; nothing it raises reaches the nursery of the others."""
        address = _address(stream)
        try:
            ws = await self._accept(stream)
            if ws is not None:
                await self._serve(ws)
        except Exception as exc:
            # A bug meeting one peer's input: that connection ends, the hub
            # and every other connection carry on.
            log.error("connection from %s failed: %r", address, exc)

    async def _accept(self, stream: trio.SocketStream) -> WebSocket | None:
        """Complete the WebSocket upgrade; returns the WebSocket, or None (logged)."""
        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT):
                return await accept_websocket(stream, max_message_size=2 * self.max_frame_bytes,
                                              http=self.http.answer)
        except (HandshakeError, OSError, trio.TooSlowError) as exc:
            if not isinstance(exc, HttpAnswered):
                log.info("WebSocket upgrade failed: %r", exc)
            await trio.aclose_forcefully(stream)
            return None

    async def _serve(self, ws: WebSocket) -> None:
        self._serial += 1
        conn = self._serial
        outbox = Outbox(self.send_queue, max_frame_bytes=min(self.max_frame_bytes,
                                                             MAX_FRAME_BYTES),
                        oversized=lambda message, size: self._oversized(conn, message, size))
        peer = _Peer(conn, ws, outbox, self.hub)
        self._peers[conn] = peer
        try:
            peer.hub.connection_made(conn, trio.current_time())
            self._drain()
            with peer.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(outbox.run_writer, ws)
                    await self._read(peer)
                    nursery.cancel_scope.cancel()
        except Exception as exc:
            log.error("connection %s (%s) failed: %r", conn, peer.address, exc)
            ws.close_nowait(1011, "internal error")
        finally:
            ws.abort()
            del self._peers[conn]
            peer.hub.connection_lost(conn, trio.current_time())
            self._drain()

    def _oversized(self, conn: int, message: Message, size: int) -> None:
        """A message for ``conn`` is too large for any frame: see ``limits.refusal``."""
        peer = self._peers.get(conn)
        if peer is None:
            return
        limit = peer.outbox.max_frame_bytes
        refused = refusal(message, size, limit)
        log.warning("connection %s (%s): %s; not sent", conn, peer.address, refused.text)
        if refused.send is not None:
            peer.outbox.put_nowait(refused.send)
        if refused.answer is not None:
            peer.hub.receive(conn, refused.answer, trio.current_time())
            self._drain()

    async def _read(self, peer: _Peer) -> None:
        hub, ws = peer.hub, peer.ws
        while True:
            try:
                frames = await ws.receive()
            except WebSocketClosed:
                return
            now = trio.current_time()
            for data in frames:
                self._frames_in += 1
                if isinstance(data, str):
                    self._bad(peer, 0, "text frames are not part of the protocol; send binary")
                    continue
                try:
                    messages, errors = decode_frame_lenient(data, self.max_frame_bytes)
                except WireError as exc:
                    self._bad(peer, 0, str(exc))
                    continue
                for err in errors:
                    self._bad(peer, err.call_id or 0, str(err))
                for message in messages:
                    hub.receive(peer.conn, message, now)
            self._drain()

    def _bad(self, peer: _Peer, call_id: int, text: str) -> None:
        self._bad_frames += 1
        log.warning("bad input from connection %s (%s): %s", peer.conn, peer.address, text)
        peer.hub.protocol_error(peer.conn, call_id, text)


def _address(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "?"
    return f"{host}:{port}"


@asynccontextmanager
async def serve_network(
    host: str = "127.0.0.1",
    port: int = 3737,
    *,
    timeouts: Timeouts | None = None,
    hub_id: str | None = None,
    send_queue: int = DEFAULT_SEND_QUEUE,
    max_frame_bytes: int = MAX_FRAME_BYTES,
    listen_sockets: Sequence[socket.socket] | None = None,
    metrics_port: int | None = None,
    standby: bool = False,
) -> AsyncIterator[NetworkServer]:
    """Run a hub on ``host:port`` for the duration of the ``async with`` block.

    ``port=0`` picks a free port (read it from ``server.port`` / ``server.url``).
    ``hub_id`` defaults to a fresh random id, so clients can tell a restarted
    hub.  ``listen_sockets``, if given, are already listening (see
    ``listen.bind_listeners``) and are served instead of binding ``host:port``;
    they are closed on exit.  ``metrics_port``, if given, serves ``/metrics``
    (and ``/health``, ``/ready``) over plain HTTP on ``host:metrics_port``
    too (0 picks a free port: ``server.metrics_port``).  ``standby`` starts
    the hub as a standby (``leadership.py`` campaigns for it).  Yields the
    ``NetworkServer``; on exit every connection is cancelled.

    Raises:
        OSError: if the address cannot be bound.
    """
    hub = Hub(hub_id if hub_id is not None else f"hub-{secrets.token_hex(4)}", timeouts)
    server = NetworkServer(hub, send_queue=send_queue, max_frame_bytes=max_frame_bytes)
    if standby:
        server.stand_by("", "standby: campaigning for the lease")
    with single_errors():
        async with trio.open_nursery() as nursery:
            listener: trio.SocketListener = await nursery.start(_listen, server, host, port,
                                                                nursery, listen_sockets)
            server.host = host
            server.port = listener.socket.getsockname()[1]
            nursery.start_soon(server._timer.run)
            if metrics_port is not None:
                server.metrics_port = await nursery.start(serve_http, server.http, host,
                                                          metrics_port)
            log.info("hub %s listening on %s", hub.hub_id, server.url)
            try:
                yield server
            finally:
                nursery.cancel_scope.cancel()


async def _listen(server: NetworkServer, host: str, port: int, nursery: trio.Nursery,
                  sockets: Sequence[socket.socket] | None,
                  *, task_status: trio.TaskStatus[trio.SocketListener]
                  = trio.TASK_STATUS_IGNORED) -> None:
    # The handlers run in the server's own nursery ("one nursery owns every
    # connection").  A message over twice the frame limit closes the
    # connection (1009); one somewhat over the frame limit gets a protocol
    # Error answer from the codec instead, while memory stays bounded.
    if sockets is None:
        listeners = await trio.open_tcp_listeners(port, host=host or None)
    else:
        listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(s)) for s in sockets]
    task_status.started(listeners[0])
    await trio.serve_listeners(server._handle, listeners, handler_nursery=nursery)


