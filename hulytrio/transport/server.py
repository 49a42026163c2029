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

Registry events are the one thing the hub sends unasked, to every session
at once, so a slow reader must not make them pile up.  While more than
``event_backlog`` bytes wait for a peer that resyncs from snapshots (an
``events="all"`` session), new events for it are *held back*: only the
latest is kept (one shared object, no bytes), and it is sent once the
peer has caught up.  The peer sees a gap in the numbers and resyncs
(``list`` + ``agents``); the messages it asked for are never held.  Every
other session's events go out as before, and the hub loop never waits.

Bad input never reaches the hub as an exception: an undecodable frame or
message is answered with an ``Error`` through ``Hub.protocol_error`` and
logged, and the connection carries on.

``NetworkServer.drain`` is the hub's SIGTERM: the role becomes "draining"
(``/ready`` answers 503 at once), the hub answers new gets, requests and
connects ``Retry`` (``Hub.stop_taking_calls``), the requests already
forwarded get up to the shutdown timeout to be answered, and then every
peer is told ``Close`` and its connection closed with 1001 (going away).
Clients reconnect with backoff and resend what was retried to the next hub.

With an ``authenticator`` the driver verifies each connection's hello
credential (``hulytrio.auth``) and hands the hub the principal
(``Hub.receive_hello``) or the reason it is refused (``Hub.refuse_hello``);
the hub decides the rest.  Every refusal is one ``WARNING`` line on the
``hulytrio.audit`` logger.  With an ``ssl_context`` every connection is
TLS (``wss://``): see ``tls.serve_tls``.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import math
import secrets
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from contextlib import asynccontextmanager
from typing import Protocol, assert_never

import attrs
import trio

from hulytrio.auth import Authenticator, AuthError
from hulytrio.core.effects import CloseConnection, Notice, Refused, Send
from hulytrio.core.events import EVENT_ENVELOPE_BYTES, change_bytes
from hulytrio.core.hub import (
    MAX_IN_FLIGHT_BYTES,
    MAX_KINDS,
    MAX_OFFERS,
    MAX_REGISTRATIONS,
    Hub,
)
from hulytrio.core.messages import Event, Hello, Message
from hulytrio.core.timeouts import Timeouts

from ..wire.codec import MAX_FRAME_BYTES, WireError, decode_frame_lenient
from ..wire.prescan import registrations, without
from .deadlines import DeadlineTask
from .errors import single_errors
from .http import serve_http
from .lifecycle import Lifecycle
from .limits import MAX_BAD_MESSAGES_PER_FRAME, PRE_HELLO_BYTES, refusal
from .metrics import hub_routes
from .outbox import Outbox
from .tls_relay import accept_tls
from .websocket import HandshakeError, HttpAnswered, WebSocket, WebSocketClosed, accept_websocket

__all__ = ["NetworkServer", "ServerStatistics", "serve_network"]

log = logging.getLogger("hulytrio.hub")
audit = logging.getLogger("hulytrio.audit")

#: Messages queued for one peer in one scheduler round before it counts as a slow consumer.
DEFAULT_SEND_QUEUE = 10_000
#: Bytes kept for one peer that does not read before it is dropped (pongs
#: included).  Twice the frame limit: one largest answer must always fit.
DEFAULT_SEND_BYTES = 2 * MAX_FRAME_BYTES
#: Bytes waiting for a peer beyond which registry events for it are held
#: back (the latest one kept) until it catches up: two of the largest
#: events (``core.hub.MAX_EVENT_BYTES``), well under ``DEFAULT_SEND_BYTES``.
DEFAULT_EVENT_BACKLOG = 8 * 1024 * 1024
#: Seconds a new connection has to complete the WebSocket upgrade.
HANDSHAKE_TIMEOUT = 10.0
#: Frames larger than this are looked at before decoding for registrations
#: over the hub's limits (``wire.prescan``): a smaller one holds too few
#: offers to cost much to decode (64 KiB: a few thousand, ~30 ms).
PRESCAN_BYTES = 64 * 1024


class LeaseClock(Protocol):
    """What the hub's lease gate reads: ``hulytrio.lease.Lease.valid_until``."""

    @property
    def valid_until(self) -> float:
        """The trio time until which this hub may act as the active one."""


class _NoLease:
    """A hub without a lease (or a standby, which answers only redirects): never expires."""

    __slots__ = ()
    valid_until = math.inf


_NO_LEASE = _NoLease()


@attrs.frozen
class ServerStatistics:
    """Counters of a running hub driver."""

    connections: int
    frames_in: int
    bad_frames: int
    dropped_slow: int
    #: connections accepted since start (health probes not counted)
    accepted: int = 0
    #: registry events not sent to a peer that was behind (it resyncs)
    events_held: int = 0


class _Peer:
    __slots__ = ("address", "conn", "greeted", "held", "hub", "outbox", "scope", "ws")

    def __init__(self, conn: int, ws: WebSocket, outbox: Outbox, hub: Hub) -> None:
        self.conn = conn
        #: the hub machine this connection talks to (a standby that wins the
        #: lease, or an active hub that loses it, gets a new one)
        self.hub = hub
        self.ws = ws
        self.outbox = outbox
        self.scope = trio.CancelScope()
        self.address = ws.remote
        #: the hub accepted its hello (its messages may be full size now)
        self.greeted = False
        #: the latest registry event held back while the peer was behind
        self.held: Event | None = None


class _Behind:
    """One drain's bookkeeping of events for peers with bytes waiting.

    ``queued``: event bytes queued by this drain per peer (a window's parts
    are flushed in one drain: they count together); ``sizes``: each event's
    size by ``id``, measured once however many peers are behind.
    """

    __slots__ = ("queued", "sizes")

    def __init__(self) -> None:
        self.queued: dict[_Peer, int] = {}
        self.sizes: dict[int, int] = {}


class NetworkServer:
    """A running hub: ``url`` to connect to, ``hub`` the core machine it drives."""

    def __init__(self, hub: Hub, *, send_queue: int, max_frame_bytes: int,
                 send_bytes: int = DEFAULT_SEND_BYTES,
                 event_backlog: int = DEFAULT_EVENT_BACKLOG,
                 authenticator: Authenticator | None = None,
                 ssl_context: ssl.SSLContext | None = None,
                 max_bad_messages_per_frame: int = MAX_BAD_MESSAGES_PER_FRAME,
                 pre_hello_bytes: int = PRE_HELLO_BYTES) -> None:
        self.hub = hub
        #: bad messages answered in one frame before the connection is closed
        self.max_bad_messages_per_frame = max_bad_messages_per_frame
        #: the largest message a connection may send before its hello is accepted
        self.pre_hello_bytes = pre_hello_bytes
        #: verifies hello credentials; None: authentication off
        self.authenticator = authenticator
        self.ssl_context = ssl_context
        self.host = ""
        self.port = 0
        self.send_queue = send_queue
        self.send_bytes = send_bytes
        self.event_backlog = event_backlog
        self.max_frame_bytes = max_frame_bytes
        self._peers: dict[Hashable, _Peer] = {}
        self._events_held = 0
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
        #: the hub's lifecycle notices: logged, and counted for /metrics
        self.lifecycle = Lifecycle()
        self.http = hub_routes(self)
        #: set when the forwards in flight reach 0 while ``drain`` waits for it
        self._forwards_done: trio.Event | None = None
        #: the close code of every connection once ``drain`` closed them all
        self._going_away = False
        #: set when the last connection ends while ``drain`` waits for it
        self._peers_gone: trio.Event | None = None
        #: set by ``serve_on_lease``: resigns the lease at the start of
        #: ``drain`` and returns the URL of the hub that took it over ("": none
        #: before the deadline it is given)
        self.resign: Callable[[float], Awaitable[str]] | None = None
        #: the hub this one handed over to while it drains ("": none)
        self._successor = ""
        #: the lease gate: past ``valid_until`` the active hub steps down
        #: before it reads or answers anything (``_lease_expired``)
        self._lease: LeaseClock = _NO_LEASE
        #: called once when the gate steps the hub down (``activate``)
        self._lease_expired_hook: Callable[[], None] | None = None

    @property
    def ready(self) -> bool:
        """Return whether this hub serves clients (``/ready``): only the active one."""
        return self.role == "active"

    def uptime(self) -> float:
        """Return the seconds since the hub started."""
        return trio.current_time() - self.started

    @property
    def url(self) -> str:
        """Return the ``ws://host:port`` URL clients connect to (``wss://`` with TLS)."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        scheme = "ws" if self.ssl_context is None else "wss"
        return f"{scheme}://{host}:{self.port}"

    # --- the role (hub standby: leadership.py) ----------------------------------

    def stand_by(self, redirect: str, reason: str) -> None:
        """Serve as a standby from now on: every hello is redirected to ``redirect``.

        Every open connection is closed at once (``reason`` is logged): its
        session belonged to a term that is over, and its peer reconnects to
        the active hub.  The registry starts empty again.
        """
        self._lease = _NO_LEASE
        self._lease_expired_hook = None
        self._replace_hub(self.hub.term, reason)
        self.hub.redirect = redirect
        self.role = "standby"

    def activate(self, term: int, lease: LeaseClock | None = None,
                 on_expired: Callable[[], None] | None = None) -> None:
        """Serve as the active hub of ``term`` (the lease's term) from now on.

        Connections still open to the standby (waiting for their redirect)
        are closed; their peers reconnect and are welcomed.  With ``lease``
        the hub is active only until ``lease.valid_until`` (re-read at every
        check, so each renewal extends it): past it, it steps down before
        it reads another message or fires another timer, and calls
        ``on_expired`` (the lease driver stops holding: ``leadership.lead``).
        """
        self._replace_hub(term, f"now the active hub (term {term})")
        self._lease = _NO_LEASE if lease is None else lease
        self._lease_expired_hook = on_expired
        self.role = "active"

    def _lease_expired(self, now: float) -> bool:
        """Return whether the lease may have expired at ``now``; if so, step down.

        Why here and not only in ``hold``: a process paused past its lease
        (SIGSTOP, a VM freeze) wakes with every task runnable at once, and
        its readers may answer the pings that waited in their sockets before
        ``hold`` runs and notices: those answers would renew the agents'
        fence leases past the new hub's first session.  Checked before every
        batch of frames is read and every timer fires (one comparison).
        """
        valid_until = self._lease.valid_until
        if now < valid_until:
            return False
        late = now - valid_until
        hook = self._lease_expired_hook
        self.stand_by("", f"the lease may have expired by this hub's clock ({late:.3f}s past "
                          f"its last renewal's ttl minus margin): stepping down unanswered")
        log.error("lease: %.3fs past the time it could be sure it held the lease (a pause?): "
                  "stepped down to standby before reading anything more", late)
        if hook is not None:
            hook()
        return True

    def set_redirect(self, url: str) -> None:
        """A standby learnt the active hub's URL (``""``: unknown)."""
        if self.hub.redirect is not None:
            self.hub.redirect = url

    def _replace_hub(self, term: int, reason: str) -> None:
        old = self.hub
        self.hub = Hub(f"hub-{secrets.token_hex(4)}", old.timeouts, term=term,
                       max_in_flight=old.max_in_flight,
                       max_in_flight_per_container=old.max_in_flight_per_container,
                       max_in_flight_bytes=old.max_in_flight_bytes,
                       max_in_flight_bytes_per_agent=old.max_in_flight_bytes_per_agent,
                       max_offers=old.max_offers,
                       max_kinds=old.max_kinds,
                       max_registrations=old.max_registrations,
                       max_alive_timeout=old.max_alive_timeout)
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
                                self._dropped, self._serial, self._events_held)

    # --- effects -------------------------------------------------------------------

    def _drain(self) -> None:
        # The core annotates its outputs as any Effect; the hub emits
        # HubEffect only (core/effects.py).
        if self._successor:
            # Handing over: every peer whose calls are all answered moves on.
            self.hub.hand_over(self._successor)
        behind: _Behind | None = None  # made when a peer with bytes waiting gets an event
        for effect in self.hub.effects():
            match effect:
                case Send():
                    peer = self._peers.get(effect.conn)
                    if peer is None or peer.outbox.closing:
                        continue
                    if peer.ws.pending and type(effect.message) is Event:
                        if behind is None:
                            behind = _Behind()
                        if self._hold_event(peer, effect.message, behind):
                            continue
                    if not peer.outbox.put_nowait(effect.message):
                        self._drop_slow(peer)
                case CloseConnection():
                    peer = self._peers.get(effect.conn)
                    if peer is not None:
                        log.info("closing connection %s (%s): %s", peer.conn, peer.address,
                                 effect.reason)
                        peer.outbox.close_after_flush(effect.reason,
                                                      1001 if self._going_away else 1000)
                case Notice():
                    self.lifecycle.notice(effect)
                case Refused():
                    peer = self._peers.get(effect.conn)
                    audit.warning("refused %r from connection %s (%s) peer id %r subject %r: %s",
                                  effect.what, effect.conn, peer.address if peer else "?",
                                  effect.peer_id, effect.peer, effect.reason)
                case _:
                    assert_never(effect)
        self._timer.poke()
        if self._forwards_done is not None and not self.hub.forwards_in_flight():
            self._forwards_done.set()

    async def drain(self, grace: float) -> bool:
        """Shut down gracefully; returns whether every forwarded call was answered in time.

        Stops taking calls (they are answered ``Retry``), waits up to
        ``grace`` seconds for the calls already forwarded to agents, then
        says ``Close`` to every peer and closes its connection with 1001,
        waiting (within what is left of ``grace``, at least a second) for
        the close handshakes.  The caller then leaves ``serve_network``.

        A hub on a lease (``resign`` set) first resigns it; once a standby
        has taken it over, every peer with no call in flight is redirected
        to that hub at once, and each of the others as soon as its calls
        are answered (``Hub.hand_over``), so nobody waits for the drain.
        """
        self.role = "draining"
        self.hub.stop_taking_calls()
        deadline = trio.current_time() + grace
        if self.resign is not None:
            # The lease is given up on purpose: the gate must not close the
            # sessions the hand-over below still answers and redirects.
            self._lease = _NO_LEASE
            self._lease_expired_hook = None
            successor = await self.resign(deadline)
            if successor:
                log.info("handing over to %s: peers with nothing in flight are redirected "
                         "there now, the others once their calls are answered", successor)
                self._successor = successor
        # Again, in case the campaign changed the role or the hub while it stopped.
        self.role = "draining"
        hub = self.hub
        hub.stop_taking_calls()
        self._drain()
        log.info("hub %s draining: %d calls in flight get up to %g s; new calls are told to "
                 "retry", hub.hub_id, hub.forwards_in_flight(), grace)
        answered = True
        # Handing over, the busy peers wait at most half an alive timeout:
        # the new hub parks re-acquires of uuids it does not know yet for one
        # alive timeout from its first session; an agent that re-registered
        # later would see its containers started afresh elsewhere.
        busy_until = (deadline if not self._successor
                      else min(deadline, trio.current_time() + hub.timeouts.alive / 2))
        with trio.move_on_at(busy_until):
            while hub.forwards_in_flight():
                self._forwards_done = trio.Event()
                await self._forwards_done.wait()
        self._forwards_done = None
        if hub.forwards_in_flight():
            answered = False
            if self._successor:
                log.warning("hub %s: %d calls still in flight after %g s; their peers go to "
                            "%s now and the callers resend them there", hub.hub_id,
                            hub.forwards_in_flight(), hub.timeouts.alive / 2,
                            self._successor)
                hub.hand_over(self._successor, everyone=True)
                self._drain()
            else:
                log.warning("hub %s: %d calls still in flight after %g s; closing anyway",
                            hub.hub_id, hub.forwards_in_flight(), grace)
        self._going_away = True
        hub.close_all("hub shutting down")
        self._drain()
        with trio.move_on_at(max(deadline, trio.current_time() + 1.0)):
            while self._peers:
                self._peers_gone = trio.Event()
                await self._peers_gone.wait()
        self._peers_gone = None
        log.info("hub %s drained: %d connections left", hub.hub_id, len(self._peers))
        return answered

    def _hold_event(self, peer: _Peer, event: Event, behind: _Behind) -> bool:
        """Return whether to hold ``event`` back from ``peer``, which has bytes waiting.

        Held while the bytes waiting plus the events queued for it in this
        drain would pass ``event_backlog``; only for a session that resyncs
        after a gap (``Hub.resyncs_after_gap``).  The latest held event goes
        out when the peer catches up (``_caught_up``).
        """
        sizes, queued = behind.sizes, behind.queued
        size = sizes.get(id(event))
        if size is None:
            size = sizes[id(event)] = _event_bytes(event)
        ahead = peer.ws.pending + queued.get(peer, 0)
        if ahead + size <= self.event_backlog or not peer.hub.resyncs_after_gap(peer.conn):
            queued[peer] = queued.get(peer, 0) + size
            peer.held = None  # this newer event shows the gap; the older one is moot
            return False
        if peer.held is None:
            log.info("connection %s (%s) is %d bytes behind: registry events held back "
                     "until it catches up (it resyncs)", peer.conn, peer.address, ahead)
        peer.held = event
        self._events_held += 1
        return True

    def _caught_up(self, peer: _Peer) -> None:
        """Every byte for ``peer`` is sent: send the latest event held back from it."""
        held, peer.held = peer.held, None
        if held is not None:
            peer.outbox.put_nowait(held)

    def _drop_slow(self, peer: _Peer) -> None:
        self._dropped += 1
        log.warning("dropping connection %s (%s): send queue full (%d messages); "
                    "the peer is not reading", peer.conn, peer.address, self.send_queue)
        peer.outbox.closing = True
        peer.scope.cancel()

    def _fire(self, now: float) -> None:
        if now >= self._lease.valid_until and self._lease_expired(now):
            return
        self.hub.handle_timers(now)
        self._drain()

    # --- connections -------------------------------------------------------------

    async def _handle(self, stream: trio.SocketStream) -> None:
        """Serve one connection; nothing it raises reaches the nursery of the others."""
        address = _address(stream)
        try:
            if self.ssl_context is None:
                ws = await self._accept(stream)
                if ws is not None:
                    await self._serve(ws)
                return
            async with trio.open_nursery() as relays:
                plain = await self._accept_tls(stream, address, relays)
                ws = None if plain is None else await self._accept(plain)
                if ws is not None:
                    ws.remote = address
                    await self._serve(ws)
        except Exception as exc:
            # A bug meeting one peer's input: that connection ends, the hub
            # and every other connection carry on.
            log.error("connection from %s failed: %r", address, exc)

    async def _accept_tls(self, stream: trio.SocketStream, address: str,
                          relays: trio.Nursery) -> trio.SocketStream | None:
        """Complete the TLS handshake; returns the relay's plain end, or None (logged)."""
        assert self.ssl_context is not None
        with trio.move_on_after(HANDSHAKE_TIMEOUT):
            return await accept_tls(stream, self.ssl_context, address, relays.start_soon)
        log.info("TLS handshake with %s: none within %g s", address, HANDSHAKE_TIMEOUT)
        return None

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
                        max_bytes=self.send_bytes,
                        oversized=lambda message, size: self._oversized(conn, message, size))
        peer = _Peer(conn, ws, outbox, self.hub)
        outbox.on_caught_up = lambda: self._caught_up(peer)
        if self._going_away:
            # Drained: a peer reconnecting now is told to go elsewhere at once.
            ws.close_nowait(1001, "hub shutting down")
            ws.abort()
            return
        ws.max_message_size = min(self.pre_hello_bytes, ws.max_message_size)
        now = trio.current_time()
        if now >= self._lease.valid_until:
            self._lease_expired(now)
            peer.hub = self.hub  # the standby's: it redirects this peer
        self._peers[conn] = peer
        try:
            peer.hub.connection_made(conn, now)
            self._drain()
            with peer.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(outbox.run_writer, ws)
                    await self._read(peer)
                    nursery.cancel_scope.cancel()
            if ws.overflowed:
                self._dropped += 1
                log.warning("dropped connection %s (%s): over %d bytes queued; the peer is "
                            "not reading", conn, peer.address, self.send_bytes)
        except Exception as exc:
            log.error("connection %s (%s) failed: %r", conn, peer.address, exc)
            ws.close_nowait(1011, "internal error")
        finally:
            ws.abort()
            del self._peers[conn]
            now = trio.current_time()
            if now >= self._lease.valid_until:
                self._lease_expired(now)
            peer.hub.connection_lost(conn, now)
            self._drain()
            if self._peers_gone is not None and not self._peers:
                self._peers_gone.set()

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
        auth = self.authenticator if self.authenticator and self.authenticator.required else None
        while True:
            try:
                frames = await ws.receive()
            except WebSocketClosed:
                return
            now = trio.current_time()
            if now >= self._lease.valid_until and self._lease_expired(now):
                return  # stood by: this connection is closed unanswered
            for data in frames:
                self._frames_in += 1
                if peer.outbox.closing:
                    continue  # closed for bad input: nothing more is read
                if isinstance(data, str):
                    self._bad(peer, 0, "text frames are not part of the protocol; send binary")
                    continue
                if len(data) > PRESCAN_BYTES:
                    data = self._refuse_large_registrations(peer, data)
                try:
                    messages, errors = decode_frame_lenient(data, self.max_frame_bytes,
                                                            self.max_bad_messages_per_frame)
                except WireError as exc:
                    self._bad(peer, 0, str(exc))
                    continue
                if len(errors) > self.max_bad_messages_per_frame:
                    self._too_many_bad(peer, errors)
                    continue
                for err in errors:
                    self._bad(peer, err.call_id or 0, str(err))
                for message in messages:
                    if auth is not None and type(message) is Hello:
                        self._hello(peer, message, auth, now)
                    else:
                        hub.receive(peer.conn, message, now)
                if not peer.greeted and hub.has_session(peer.conn):
                    peer.greeted = True
                    ws.max_message_size = 2 * self.max_frame_bytes
            self._drain()

    def _refuse_large_registrations(self, peer: _Peer, data: bytes) -> bytes:
        """Return ``data`` without the registrations over the hub's size limits.

        Their counts are read from the frame's headers (``wire.prescan``);
        the hub answers each refused one, and it is never decoded.
        """
        refused = [r for r in registrations(data)
                   if peer.hub.refuse_registration(peer.conn, r.call_id, r.agent_id, r.kinds,
                                                   r.offers)]
        if not refused:
            return data
        for r in refused:
            log.warning("bad input from connection %s (%s): register %r refused before "
                        "decoding: %d kinds, %d offers", peer.conn, peer.address, r.agent_id,
                        r.kinds, r.offers)
        return without(data, refused)

    def _too_many_bad(self, peer: _Peer, errors: list[WireError]) -> None:
        """Answer the first bad messages of a frame full of them, then close (1008)."""
        limit = self.max_bad_messages_per_frame
        for err in errors[:limit]:
            self._bad(peer, err.call_id or 0, str(err))
        reason = (f"more than {limit} bad messages in one frame "
                  f"(limits.maxBadMessagesPerFrame)")
        log.warning("closing connection %s (%s): %s", peer.conn, peer.address, reason)
        self._drain()  # the answers go out before the close
        peer.outbox.close_after_flush(reason, 1008)

    def _hello(self, peer: _Peer, message: Hello, auth: Authenticator, now: float) -> None:
        """Verify ``message``'s credential and hand the hub the principal, or the refusal."""
        try:
            principal = auth.authenticate(message.credentials, time.time())
        except AuthError as exc:
            peer.hub.refuse_hello(peer.conn, message, str(exc), now)
        else:
            peer.hub.receive_hello(peer.conn, message, principal, now)

    def _bad(self, peer: _Peer, call_id: int, text: str) -> None:
        self._bad_frames += 1
        log.warning("bad input from connection %s (%s): %s", peer.conn, peer.address, text)
        peer.hub.protocol_error(peer.conn, call_id, text)


def _loopback_only(listener: trio.SocketListener,
                   sockets: Sequence[socket.socket] | None) -> bool:
    """Return whether every address the hub listens on is a loopback address."""
    names = ([s.getsockname() for s in sockets] if sockets is not None
             else [listener.socket.getsockname()])
    try:
        return all(ipaddress.ip_address(name[0]).is_loopback for name in names)
    except ValueError:
        return False


def _event_bytes(event: Event) -> int:
    """Return an upper bound of ``event``'s encoded size (``events.change_bytes``)."""
    changes = event.event
    return (EVENT_ENVELOPE_BYTES + sum(map(change_bytes, changes.agents))
            + sum(map(change_bytes, changes.containers)))


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
    send_bytes: int = DEFAULT_SEND_BYTES,
    event_backlog: int = DEFAULT_EVENT_BACKLOG,
    max_frame_bytes: int = MAX_FRAME_BYTES,
    listen_sockets: Sequence[socket.socket] | None = None,
    metrics_port: int | None = None,
    max_in_flight: int = 1024,
    max_in_flight_per_container: int = 512,
    max_in_flight_bytes: int = MAX_IN_FLIGHT_BYTES,
    max_in_flight_bytes_per_agent: int | None = None,
    max_offers: int = MAX_OFFERS,
    max_kinds: int = MAX_KINDS,
    max_registrations: int = MAX_REGISTRATIONS,
    max_alive_timeout: float = 300.0,
    max_bad_messages_per_frame: int = MAX_BAD_MESSAGES_PER_FRAME,
    pre_hello_bytes: int = PRE_HELLO_BYTES,
    authenticator: Authenticator | None = None,
    ssl_context: ssl.SSLContext | None = None,
    standby: bool = False,
) -> AsyncIterator[NetworkServer]:
    """Run a hub on ``host:port`` for the duration of the ``async with`` block.

    ``port=0`` picks a free port (read it from ``server.port`` / ``server.url``).
    ``hub_id`` defaults to a fresh random id, so clients can tell a restarted
    hub.  ``listen_sockets``, if given, are already listening (see
    ``listen.bind_listeners``) and are served instead of binding ``host:port``;
    they are closed on exit.  ``metrics_port``, if given, serves ``/metrics``
    (and ``/health``, ``/ready``) over HTTP on ``host:metrics_port``
    too (0 picks a free port: ``server.metrics_port``), over TLS
    (``https://``) with ``ssl_context`` when one is given.  ``authenticator``
    (``hulytrio.auth.load_authenticator``) makes every peer present a
    credential in its hello; without one, a hub bound beyond loopback logs
    a warning.  ``ssl_context`` (``tls.server_ssl_context``) serves
    ``wss://`` (and ``https://`` for ``/health`` and the like) instead of
    ``ws://``.  Yields the ``NetworkServer``; on exit every connection is
    cancelled.  ``send_bytes`` bounds the bytes kept for a peer that does
    not read (it is dropped past it); ``send_queue`` the messages queued for
    it in one scheduler round; ``event_backlog`` the bytes waiting for a
    peer beyond which registry events for it are held back (it resyncs).
    ``max_in_flight``, ``max_in_flight_per_container``, ``max_in_flight_bytes``
    (request payload bytes per client), ``max_in_flight_bytes_per_agent``
    (the same per agent connection, from every client; None: half of
    ``send_bytes``, so callers together never fill an agent's send queue
    and get it dropped as not reading), ``max_offers`` (containers per
    registration), ``max_kinds`` (kinds per registration),
    ``max_registrations`` (agent ids per session) and ``max_alive_timeout``
    are the hub's own bounds (``core.hub.Hub``).  The first
    ``max_bad_messages_per_frame`` bad messages of a frame are answered,
    then the connection is closed; ``pre_hello_bytes`` is the largest
    message before an accepted hello.  ``standby`` starts the hub as a standby
    (``leadership.py`` campaigns for it).

    Raises:
        OSError: if the address cannot be bound.
    """
    hub = Hub(hub_id if hub_id is not None else f"hub-{secrets.token_hex(4)}", timeouts,
              max_in_flight=max_in_flight,
              max_in_flight_per_container=max_in_flight_per_container,
              max_in_flight_bytes=max_in_flight_bytes,
              max_in_flight_bytes_per_agent=(send_bytes // 2
                                             if max_in_flight_bytes_per_agent is None
                                             else max_in_flight_bytes_per_agent),
              max_offers=max_offers,
              max_kinds=max_kinds,
              max_registrations=max_registrations,
              max_alive_timeout=max_alive_timeout)
    server = NetworkServer(hub, send_queue=send_queue, max_frame_bytes=max_frame_bytes,
                           send_bytes=send_bytes, event_backlog=event_backlog,
                           authenticator=authenticator,
                           ssl_context=ssl_context,
                           max_bad_messages_per_frame=max_bad_messages_per_frame,
                           pre_hello_bytes=pre_hello_bytes)
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
                server.metrics_port = await nursery.start(functools.partial(
                    serve_http, server.http, host, metrics_port, ssl_context=ssl_context))
            log.info("hub %s listening on %s", hub.hub_id, server.url)
            if ((authenticator is None or not authenticator.required)
                    and not _loopback_only(listener, listen_sockets)):
                log.warning("authentication is off and the hub listens beyond loopback "
                            "(%s): any peer that reaches the port may register agents, "
                            "call any container and see the whole registry; use --auth "
                            "(docs/security.md)", server.url)
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


