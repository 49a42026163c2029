"""The hub as a sans-IO machine: connections in, effects out.

Theory of operation
-------------------
The driver owns the sockets.  It tells the hub about connections
(``connection_made`` / ``connection_lost``), feeds it every decoded message
(``receive``) and the time (``handle_timers``), and performs the effects it
drains (``effects()``): ``Send`` and ``CloseConnection``.  Sends to one
connection keep their order, so a driver may pack consecutive sends to one
connection into one frame.

A connection becomes a session with ``Hello``; its peer id is the client id in
the ``Registry``.  A second ``Hello`` with the same peer id supersedes the old
connection: the old session ends exactly as if it had closed (its agents are
removed, its holds released) and late messages from the old connection are
ignored.  The new session starts clean and rebuilds (re-register,
re-acquire), which is the same path a client takes after a hub restart.

Container requests are forwarded to the owning agent's session under a hub
id; the answer goes back to the caller under the caller's id.  The payload is
never decoded here.  When the agent's session ends, every request in flight
to it fails with ``agent_gone`` (the client session re-acquires and resends).

The ``Registry`` decides everything about agents, containers and holds.  The
hub takes its effects in one list (``Registry.take_effects()``): sends by
client id, which the hub maps to connections, and the two things only the hub
can act on, ``ClientDead`` and ``AgentSuperseded``.  Each keeps its own
deadlines: the hub's (``HubTimer``: the event window's flush, a new
connection's hello) and the registry's run in one order of time
(``handle_timers``); ``timers`` is the read-only view drivers wait on.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable
from typing import Any, ClassVar

from .effects import AgentSuperseded, ClientDead, CloseConnection, HubEffect, RegistryEffect, Send
from .errors import ErrorCode
from .events import ContainerEvent, NetworkEvent
from .messages import (
    PROTOCOL_VERSION,
    Claim,
    Close,
    Connect,
    ContainerStopped,
    Disconnect,
    Error,
    Event,
    Get,
    Hello,
    Message,
    Ok,
    Ping,
    Pong,
    Push,
    Query,
    RegisterAgent,
    Release,
    Request,
    Response,
    Retry,
    Started,
    UnregisterAgent,
    Welcome,
)
from .probes import Probes
from .registry import Registry
from .timeouts import Timeouts
from .timers import Timers
from .types import ClientId, ContainerUuid

__all__ = ["Hub", "HubStatistics", "HubTimer", "HubTimers", "term_epoch_base"]

#: messages without fields are immutable: one instance serves every send
_PONG = Pong()
#: marks a connection the hub does not know (never made, or forgotten)
_GONE: Any = object()

Conn = Hashable


class HubTimer(enum.IntEnum):
    """The kinds of the hub's own deadlines; a key is ``(kind, what)``."""

    #: ``(FLUSH, None)``: the event window ends; broadcast the coalesced event
    FLUSH = 1
    #: ``(HELLO, conn)``: a new connection has not said hello in time
    HELLO = 2

    # Enum's own __hash__ is Python code; an int's is C (every key is hashed
    # on every arming and lookup).
    __hash__ = int.__hash__


_FLUSH = (HubTimer.FLUSH, None)


class HubTimers:
    """Read-only view of every deadline of a hub (its own and its registry's).

    ``armings`` counts the deadlines armed so far: only an arming can bring
    ``next_deadline()`` forward, so a driver that already waits for it need
    not ask again while the count is unchanged.
    """

    __slots__ = ("_own", "_registry", "next_deadline")

    def __init__(self, own: Timers, registry: Timers, next_deadline: Callable[[], float | None]
                 ) -> None:
        self._own = own
        self._registry = registry
        #: the hub's ``next_deadline``
        self.next_deadline = next_deadline

    @property
    def armings(self) -> int:
        """Return how many deadlines the hub and its registry armed so far."""
        return self._own.armings + self._registry.armings


class HubStatistics:
    """Counters a driver may export; plain ints, updated in O(1)."""

    __slots__ = ("connections", "errors", "events", "forwarded", "messages_in", "retries")

    def __init__(self) -> None:
        self.connections = 0
        self.messages_in = 0
        self.forwarded = 0
        self.errors = 0
        self.retries = 0
        self.events = 0


class _Forward:
    __slots__ = ("agent_client", "caller", "caller_id", "kind", "uuid")

    def __init__(
        self, caller: ClientId, caller_id: int, agent_client: ClientId, kind: str,
        uuid: ContainerUuid,
    ) -> None:
        self.caller = caller
        self.caller_id = caller_id
        self.agent_client = agent_client
        self.kind = kind  # "request" or "connect"
        self.uuid = uuid


def term_epoch_base(term: int) -> int:
    """Return the first stateless ownership epoch of hub term ``term``.

    The term sits in the high bits (``(term - 1) << 32``): every epoch a
    later term publishes is above every epoch of an earlier one, and term 1
    (a hub without a lease) numbers epochs from 0 as it always did.
    """
    return (term - 1) << 32 if term > 1 else 0


class Hub:
    """The hub's decision machine (see module docstring).

    ``max_in_flight`` bounds the container requests one client may have
    outstanding through the hub; beyond it the hub answers ``Retry``.
    """

    def __init__(
        self,
        hub_id: str,
        timeouts: Timeouts | None = None,
        *,
        term: int = 1,
        max_in_flight: int = 1024,
        probes: Probes | None = None,
        seeded_bugs: frozenset[str] = frozenset(),
    ) -> None:
        self.hub_id = hub_id
        self.term = term
        #: set on a standby hub: every hello is answered with a ``Welcome``
        #: redirecting to this URL (the active hub's; "" when unknown) and
        #: the connection is closed; the hub serves nobody
        self.redirect: str | None = None
        self.timeouts = timeouts if timeouts is not None else Timeouts()
        self.max_in_flight = max_in_flight
        self.probes = probes if probes is not None else Probes()
        self.registry = Registry(hub_id, self.timeouts, probes=self.probes,
                                 seeded_bugs=seeded_bugs, epoch_base=term_epoch_base(term))
        self.stats = HubStatistics()
        self._timers = Timers()
        #: every deadline of the hub, read-only (drivers wait on it)
        self.timers = HubTimers(self._timers, self.registry.timers, self.next_deadline)
        self._effects: list[HubEffect] = []
        self._conn_client: dict[Conn, ClientId | None] = {}
        self._client_conn: dict[ClientId, Conn] = {}
        self._forwards: dict[int, _Forward] = {}
        #: client id -> forward ids in flight *to* its agents
        self._forwards_to: dict[ClientId, dict[int, None]] = {}
        #: client id -> its requests in flight through the hub
        self._in_flight: dict[ClientId, int] = {}
        #: client id -> {(uuid, agent client)} it is connected to through the hub
        self._connected: dict[ClientId, dict[str, ClientId]] = {}
        self._forward_serial = 0
        #: sessions that receive only their own events (Hello.events == "own")
        self._own: dict[ClientId, None] = {}
        #: the time of the latest input (the event window starts from it)
        self._now = 0.0
        #: client id -> the Send of a Pong on its connection (pongs are most of
        #: an idle hub's output; an effect is immutable, so one serves them all)
        self._pongs: dict[ClientId, Send] = {}

    # --- driver interface -------------------------------------------------------

    def effects(self) -> list[HubEffect]:
        """Return and clear the effects produced since the last call, in order."""
        reg = self.registry
        if reg.effects or reg.events.dirty:
            self._collect()
        out = self._effects
        self._effects = []
        return out

    def next_deadline(self) -> float | None:
        """Return when ``handle_timers`` must be called next, or None."""
        mine = self._timers.next_deadline()
        theirs = self.registry.timers.next_deadline()
        if mine is None or (theirs is not None and theirs < mine):
            return theirs
        return mine

    def connection_made(self, conn: Conn, now: float) -> None:
        """A connection opened; it must say ``Hello`` within the alive timeout.

        A connection that stays silent that long is closed (it would otherwise
        hold a socket forever without being a peer).
        """
        self._now = now
        self._conn_client[conn] = None
        self.stats.connections += 1
        self._timers.call_at(now + self.timeouts.alive, (HubTimer.HELLO, conn))

    def connection_lost(self, conn: Conn, now: float) -> None:
        """A connection closed (or the driver gave up on it): end its session at once."""
        self._now = now
        self._timers.cancel((HubTimer.HELLO, conn))
        client_id = self._conn_client.pop(conn, None)
        self.stats.connections -= 1
        if client_id is not None and self._client_conn.get(client_id) == conn:
            self.probes.hit("client connection closed")
            self._end_session(client_id, now)

    def handle_timers(self, now: float) -> None:
        """Fire every deadline that is due at ``now``."""
        self._now = now
        reg = self.registry
        own = self._timers
        # The registry's deadlines and ours, one instant at a time, earliest
        # first (at a tie the registry's first): a flush sees exactly the
        # changes made before it.
        while True:
            mine = own.next_deadline()
            theirs = reg.timers.next_deadline()
            if theirs is not None and theirs <= now and (mine is None or theirs <= mine):
                reg.handle_timers(now, due=theirs)
            elif mine is not None and mine <= now:
                for key in own.expired(mine):
                    match key:
                        case (HubTimer.FLUSH, None):
                            self._flush()
                        case (HubTimer.HELLO, conn):
                            self._hello_expired(conn)
                        case _:
                            raise AssertionError(f"not a hub timer key: {key!r}")
            else:
                break
        out = reg.take_effects()
        first = True
        for effect in out:
            if type(effect) is not ClientDead:
                continue
            # The registry removed the client already; end its session here.
            # The registry's sends go out after the first dead session's own
            # clean-up (the order the drivers and every trace rely on).
            client_id = effect.client_id
            conn = self._client_conn.get(client_id)
            self._close_session(client_id)
            if first:
                first = False
                self._deliver(out)
            self._collect()
            if conn is not None:
                self._conn_client.pop(conn, None)
                self._effects.append(CloseConnection(conn, "alive timeout"))
        if first:
            self._deliver(out)
        self._collect()

    def _hello_expired(self, conn: Conn) -> None:
        if conn in self._conn_client and self._conn_client[conn] is None:
            self.probes.hit("no hello in time")
            self._conn_client.pop(conn)
            self._effects.append(CloseConnection(conn, "no hello within the alive timeout"))

    def receive(self, conn: Conn, message: Message, now: float) -> None:
        """Handle one decoded ``message`` from ``conn``.

        Illegal input is answered with ``Error`` (and, before ``Hello``, a
        close); it never disturbs other sessions.  Messages from a connection
        whose session was superseded or ended are ignored.
        """
        self.stats.messages_in += 1
        self._now = now
        client_id = self._conn_client.get(conn, _GONE)
        if client_id is _GONE:
            return
        if client_id is None:
            if isinstance(message, Hello):
                self._hello(conn, message, now)
            else:
                self._protocol_error(conn, getattr(message, "id", 0),
                                     f"{message.TAG!r} before hello")
                self._effects.append(CloseConnection(conn, "no hello"))
                self._conn_client.pop(conn, None)
            return
        reg = self.registry
        reg.touch(client_id, now)
        handler = self._handlers.get(type(message))
        if handler is None:
            self._protocol_error(conn, getattr(message, "id", 0),
                                 f"a peer may not send {message.TAG!r}")
            return
        handler(self, conn, client_id, message, now)
        if reg.effects or reg.events.dirty:  # most messages (pings) leave nothing to collect
            self._collect()

    def protocol_error(self, conn: Conn, call_id: int, text: str) -> None:
        """Answer an undecodable or illegal message from ``conn`` (driver-detected)."""
        self._protocol_error(conn, call_id, text)

    # --- internals ----------------------------------------------------------------

    def _protocol_error(self, conn: Conn, call_id: int, text: str) -> None:
        self.stats.errors += 1
        self._effects.append(Send(conn, Error(call_id, ErrorCode.PROTOCOL.value, text)))

    def _collect(self) -> None:
        """Perform the registry's effects, and arm the event flush."""
        reg = self.registry
        if reg.effects:
            self._deliver(reg.take_effects())
        if reg.events.dirty and _FLUSH not in self._timers:
            # The window starts at the first change; a driver that calls
            # handle_timers at next_deadline() flushes it.  It is relative to
            # the time of the last input (timers know no "now").
            self._timers.call_at(self._now + self.timeouts.event_window, _FLUSH)

    def _deliver(self, effects: list[RegistryEffect]) -> None:
        """Perform ``effects`` of the registry in order (``ClientDead``: see handle_timers)."""
        for effect in effects:
            match effect:
                case Send(conn=str() as client_id, message=message):
                    conn = self._client_conn.get(client_id)
                    if conn is not None:
                        self._effects.append(Send(conn, message))
                case AgentSuperseded(old_session=old_session, uuids=uuids):
                    self._fail_forwards(old_session, uuids)
                case ClientDead():
                    pass  # only a timer declares a client dead: handle_timers ends it

    def _flush(self) -> None:
        event, interest = self.registry.flush_events()
        if event is None:
            return
        self.broadcast(event, interest)

    def broadcast(self, event: NetworkEvent,
                  interest: dict[str, dict[ClientId, None]] | None = None) -> None:
        """Send ``event`` to every session.

        A session that asked for its own events only gets the agent changes
        and the container changes ``interest`` (uuid -> sessions) names for it,
        and nothing when that leaves the event empty.
        """
        self.stats.events += 1
        msg = Event(event)
        if not self._own:
            for conn in self._client_conn.values():
                self._effects.append(Send(conn, msg))
            return
        mine: dict[ClientId, list[ContainerEvent]] = {}
        if interest:
            for ce in event.containers:
                for client_id in interest.get(ce.container.uuid, ()):
                    if client_id in self._own:
                        mine.setdefault(client_id, []).append(ce)
        for client_id, conn in self._client_conn.items():
            if client_id not in self._own:
                self._effects.append(Send(conn, msg))
                continue
            own = mine.get(client_id)
            if own or event.agents:
                self._effects.append(Send(conn, Event(
                    NetworkEvent(event.seq, event.agents, tuple(own or ())))))

    def _hello(self, conn: Conn, msg: Hello, now: float) -> None:
        if msg.protocol != PROTOCOL_VERSION:
            self._protocol_error(conn, 0, f"protocol {msg.protocol} not supported "
                                          f"(this hub speaks {PROTOCOL_VERSION})")
            self._effects.append(CloseConnection(conn, "protocol version"))
            self._conn_client.pop(conn, None)
            return
        if msg.events not in ("all", "own"):
            self._protocol_error(conn, 0, f"hello: events must be 'all' or 'own', "
                                          f"got {msg.events!r}")
            self._effects.append(CloseConnection(conn, "bad hello"))
            self._conn_client.pop(conn, None)
            return
        if msg.alive_timeout is not None and not msg.alive_timeout > 0:
            self._protocol_error(conn, 0, "alive_timeout must be > 0")
            self._effects.append(CloseConnection(conn, "bad hello"))
            self._conn_client.pop(conn, None)
            return
        self._timers.cancel((HubTimer.HELLO, conn))
        if self.redirect is not None:
            self.probes.hit("standby: hello redirected")
            self._effects.append(Send(conn, Welcome(
                PROTOCOL_VERSION, self.hub_id, self.timeouts.alive, self.timeouts.ping_interval,
                self.term, 0, self.redirect)))
            self._effects.append(CloseConnection(conn, "standby hub: redirected"))
            self._conn_client.pop(conn, None)
            return
        client_id = msg.peer_id
        old = self._client_conn.get(client_id)
        if old is not None:
            self.probes.hit("reconnect same peer id")
            # Forget the old connection: its late messages are ignored.
            self._conn_client.pop(old, None)
            self._effects.append(CloseConnection(old, "superseded by a new connection"))
            self._end_session(client_id, now)
        elif self.registry.has_client(client_id):
            self._end_session(client_id, now)
        self._conn_client[conn] = client_id
        self._client_conn[client_id] = conn
        if msg.events == "own":
            self._own[client_id] = None
            self.registry.track_interest()
        self.registry.add_client(client_id, msg.alive_timeout, now)
        alive = msg.alive_timeout if msg.alive_timeout is not None else self.timeouts.alive
        self._effects.append(Send(conn, Welcome(
            PROTOCOL_VERSION, self.hub_id, alive, self.timeouts.ping_interval,
            self.term, self.registry.events.seq,
        )))
        self._collect()

    def _end_session(self, client_id: ClientId, now: float) -> None:
        """End ``client_id``'s session: the hub's side, then the registry's."""
        self._close_session(client_id)
        self.registry.remove_client(client_id, now)
        self._collect()

    def _close_session(self, client_id: ClientId) -> None:
        """The hub's side of a session's end: its connection, forwards and streams."""
        conn = self._client_conn.pop(client_id, None)
        if conn is not None and self._conn_client.get(conn) == client_id:
            # The session is over; anything more on its connection is ignored.
            self._conn_client.pop(conn)
        # Requests in flight to this client's agents fail; callers re-acquire.
        self._fail_forwards(client_id)
        self._forwards_to.pop(client_id, None)
        # Streams this client had open through the hub end; tell the agents.
        for uuid, agent_client in self._connected.pop(client_id, {}).items():
            route = self.registry.route(uuid)
            if route is not None and route[1] == agent_client:
                self._send_to(agent_client, Disconnect(uuid, client_id))
        self._in_flight.pop(client_id, None)
        self._own.pop(client_id, None)
        self._pongs.pop(client_id, None)

    def _fail_forwards(self, agent_client: ClientId,
                       uuids: tuple[ContainerUuid, ...] | None = None) -> None:
        """Fail the calls forwarded to ``agent_client`` (for ``uuids`` only, if given).

        Their callers are told ``agent_gone`` and re-acquire.  Used when the
        session ends, and when an agent it hosted moves to a new session (a
        restarted process under a new peer id): the old session may take an
        alive timeout to end, and its calls would wait that long for nothing.
        """
        bucket = self._forwards_to.get(agent_client)
        if not bucket:
            return
        for fwd_id in list(bucket):
            fwd = self._forwards.get(fwd_id)
            if fwd is None:
                continue
            if uuids is not None and fwd.uuid not in uuids:
                continue
            self._finish_forward(fwd_id, fwd)
            self._in_flight_done(fwd)
            self._send_to(fwd.caller, Error(fwd.caller_id, ErrorCode.AGENT_GONE.value,
                                            "the container's agent went away"))

    def _send_to(self, client_id: ClientId, message: Message) -> None:
        conn = self._client_conn.get(client_id)
        if conn is not None:
            self._effects.append(Send(conn, message))

    def _in_flight_done(self, fwd: _Forward) -> None:
        if fwd.kind == "request":
            n = self._in_flight.get(fwd.caller, 0)
            if n > 0:
                self._in_flight[fwd.caller] = n - 1

    # --- handlers -------------------------------------------------------------

    def _on_ping(self, conn: Conn, client_id: ClientId, msg: Ping, now: float) -> None:
        pong = self._pongs.get(client_id)
        if pong is None or pong.conn is not conn:
            pong = self._pongs[client_id] = Send(conn, _PONG)
        self._effects.append(pong)

    def _on_pong(self, conn: Conn, client_id: ClientId, msg: Pong, now: float) -> None:
        pass  # a sign of life; touch() already counted it

    def _on_close(self, conn: Conn, client_id: ClientId, msg: Close, now: float) -> None:
        self.probes.hit("client said close")
        self._end_session(client_id, now)
        self._effects.append(CloseConnection(conn, "peer closed"))

    def _on_get(self, conn: Conn, client_id: ClientId, msg: Get, now: float) -> None:
        self.registry.get(client_id, msg.id, msg.kind, msg.options, now,
                          reacquire=msg.reacquire, held_instance=msg.held_instance)

    def _on_release(self, conn: Conn, client_id: ClientId, msg: Release, now: float) -> None:
        self.registry.release(client_id, msg.id, msg.uuid, now)

    def _on_register(self, conn: Conn, client_id: ClientId, msg: RegisterAgent, now: float
                     ) -> None:
        self.registry.register(client_id, msg, now)

    def _on_unregister(self, conn: Conn, client_id: ClientId, msg: UnregisterAgent, now: float
                       ) -> None:
        self.registry.unregister(client_id, msg.id, msg.agent_id, now)

    def _on_claim(self, conn: Conn, client_id: ClientId, msg: Claim, now: float) -> None:
        self.registry.claim(client_id, msg.id, msg.agent_id, msg.container, now)

    def _on_query(self, conn: Conn, client_id: ClientId, msg: Query, now: float) -> None:
        self.registry.query(client_id, msg.id, msg.what, msg.kind)

    def _on_stopped(self, conn: Conn, client_id: ClientId, msg: ContainerStopped, now: float
                    ) -> None:
        self.registry.container_stopped(client_id, msg.agent_id, msg.uuid, now)

    def _on_started(self, conn: Conn, client_id: ClientId, msg: Started, now: float) -> None:
        self.registry.started(client_id, msg.id, msg.uuid, msg.endpoint, now)

    def _on_error(self, conn: Conn, client_id: ClientId, msg: Error, now: float) -> None:
        fwd = self._forwards.get(msg.id)
        if fwd is not None and fwd.agent_client == client_id:
            self._finish_forward(msg.id, fwd)
            self._send_to(fwd.caller, Error(fwd.caller_id, msg.code, msg.message, msg.type))
            return
        # Otherwise it answers a Start.
        self.registry.start_failed(client_id, msg.id, msg.code, msg.message, now)

    def _on_request(self, conn: Conn, client_id: ClientId, msg: Request, now: float) -> None:
        route = self.registry.route(msg.uuid)
        if route is None:
            self._effects.append(Send(conn, Error(msg.id, ErrorCode.NOT_FOUND.value,
                                                  f"container {msg.uuid!r} not found")))
            return
        n = self._in_flight.get(client_id, 0)
        if n >= self.max_in_flight:
            self.stats.retries += 1
            self._effects.append(Send(conn, Retry(msg.id, self.timeouts.event_window)))
            return
        self._in_flight[client_id] = n + 1
        agent_client = route[1]
        fwd_id = self._new_forward(_Forward(client_id, msg.id, agent_client, "request", msg.uuid))
        self.stats.forwarded += 1
        self._send_to(agent_client, Request(fwd_id, msg.uuid, msg.operation, msg.payload,
                                            client_id))

    def _new_forward(self, fwd: _Forward) -> int:
        self._forward_serial += 1
        fwd_id = self._forward_serial
        self._forwards[fwd_id] = fwd
        self._forwards_to.setdefault(fwd.agent_client, {})[fwd_id] = None
        return fwd_id

    def _finish_forward(self, fwd_id: int, fwd: _Forward) -> None:
        del self._forwards[fwd_id]
        bucket = self._forwards_to.get(fwd.agent_client)
        if bucket is not None:
            bucket.pop(fwd_id, None)
        self._in_flight_done(fwd)

    def _on_response(self, conn: Conn, client_id: ClientId, msg: Response, now: float) -> None:
        fwd = self._forwards.get(msg.id)
        if fwd is None or fwd.agent_client != client_id:
            return  # a late answer for a caller that is gone
        self._finish_forward(msg.id, fwd)
        self._send_to(fwd.caller, Response(fwd.caller_id, msg.payload))

    def _on_ok(self, conn: Conn, client_id: ClientId, msg: Ok, now: float) -> None:
        fwd = self._forwards.get(msg.id)
        if fwd is None or fwd.agent_client != client_id:
            return
        self._finish_forward(msg.id, fwd)
        self._send_to(fwd.caller, Ok(fwd.caller_id))

    def _on_connect(self, conn: Conn, client_id: ClientId, msg: Connect, now: float) -> None:
        route = self.registry.route(msg.uuid)
        if route is None:
            self._effects.append(Send(conn, Error(msg.id, ErrorCode.NOT_FOUND.value,
                                                  f"container {msg.uuid!r} not found")))
            return
        agent_client = route[1]
        self._connected.setdefault(client_id, {})[msg.uuid] = agent_client
        fwd_id = self._new_forward(_Forward(client_id, msg.id, agent_client, "connect", msg.uuid))
        self._send_to(agent_client, Connect(fwd_id, msg.uuid, client_id))

    def _on_disconnect(self, conn: Conn, client_id: ClientId, msg: Disconnect, now: float
                       ) -> None:
        agent_client = self._connected.get(client_id, {}).pop(msg.uuid, None)
        if agent_client is not None:
            self._send_to(agent_client, Disconnect(msg.uuid, client_id))

    def _on_push(self, conn: Conn, client_id: ClientId, msg: Push, now: float) -> None:
        if msg.client_id is None:
            return
        # Only the agent that serves the container may push for it.
        route = self.registry.route(msg.uuid)
        if route is None or route[1] != client_id:
            return
        self._send_to(msg.client_id, Push(msg.uuid, msg.payload))

    _handlers: ClassVar[dict[type[Message], Callable[[Hub, Conn, ClientId, Any, float], None]]]


Hub._handlers = {
    Ping: Hub._on_ping,
    Pong: Hub._on_pong,
    Close: Hub._on_close,
    Get: Hub._on_get,
    Release: Hub._on_release,
    RegisterAgent: Hub._on_register,
    UnregisterAgent: Hub._on_unregister,
    Claim: Hub._on_claim,
    Query: Hub._on_query,
    ContainerStopped: Hub._on_stopped,
    Started: Hub._on_started,
    Error: Hub._on_error,
    Request: Hub._on_request,
    Response: Hub._on_response,
    Ok: Hub._on_ok,
    Connect: Hub._on_connect,
    Disconnect: Hub._on_disconnect,
    Push: Hub._on_push,
}
