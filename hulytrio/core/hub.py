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

Stale forwards.  When a *caller's* session ends, its requests in flight stay
forwarded: the agent keeps running them, and the caller's resend after a
reconnect joins the run there instead of running it again (at most once,
``core/answers.py``).  Such a forward, or one whose call the caller resent
while it was in flight, is *stale*: the caller's session no longer counts
it.  The next forward of the same call (caller peer id and call id)
supersedes it: the hub ends it and sends the agent ``Cancel`` for it right
after the resend, which has joined the run by then, so the run goes on and
the caller's own ``Cancel`` later meets its only waiter and stops it.  A
``Cancel`` of the call cancels its stale forward too (a resend answered
``Retry``, or a call cancelled while its caller was away: the session sends
that ``Cancel`` after its next ``Welcome``).  fix: the caller's ``Cancel``
reached only the resend's forward, the stale one still waited for the run,
and the run never stopped (issue 13: a caller that reconnected under load
left its abandoned calls' handlers running).

The ``Registry`` decides everything about agents, containers and holds.  The
hub takes its effects in one list (``Registry.take_effects()``): sends by
client id, which the hub maps to connections, and the two things only the hub
can act on, ``ClientDead`` and ``AgentSuperseded``.  Each keeps its own
deadlines: the hub's (``HubTimer``: the event window's flush, a new
connection's hello) and the registry's run in one order of time
(``handle_timers``); ``timers`` is the read-only view drivers wait on.

Draining.  An agent's ``Drain`` moves its containers away (the registry
decides: ``Registry.drain``); each container left DRAINING is dropped here
once the forwards to it are answered, and meanwhile a request or connect to
it is answered ``Retry`` (the caller resends, finds it gone and re-acquires
it elsewhere).  The hub's own shutdown (``stop_taking_calls``) answers every
new get, request and connect ``Retry`` while the forwards in flight finish
(``forwards_in_flight``); ``close_all`` then says ``Close`` to every peer,
whose session resends those calls to the next hub.

Authentication: with it on, the driver verifies the hello's credential and
hands the hub the ``Principal`` it proves (``receive_hello``), or the reason
it does not (``refuse_hello``).  The hub decides what the principal may do:
a hello for a peer id another principal holds is refused, each message kind
its roles do not allow is answered ``forbidden`` (one set lookup, made once
per session at hello: ``_denied``), and so is a registration under an agent
id the credential does not name or another principal holds.  Every refusal
is an ``Error`` to the peer plus a ``Refused`` effect the driver logs; none
changes the registry.  A restart of the same principal supersedes as
before.  With authentication off every peer is ``UNAUTHENTICATED``
(nothing is stored per session, nothing is checked).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable
from typing import Any, ClassVar

from .effects import (
    AgentSuperseded,
    ClientDead,
    CloseConnection,
    Fact,
    HubEffect,
    Notice,
    Refused,
    RegistryEffect,
    Send,
)
from .errors import ErrorCode
from .events import ContainerEvent, NetworkEvent
from .messages import (
    PROTOCOL_VERSION,
    AgentsReply,
    Cancel,
    Claim,
    ClientsReply,
    Close,
    Connect,
    ContainerStopped,
    Disconnect,
    Drain,
    Error,
    Event,
    Get,
    GetReply,
    Hello,
    KindsReply,
    ListReply,
    Message,
    Ok,
    Ping,
    Pong,
    Push,
    Query,
    RegisterAgent,
    RegisterReply,
    Release,
    Request,
    Response,
    Retry,
    Started,
    TerminateAny,
    UnregisterAgent,
    Welcome,
)
from .principals import UNAUTHENTICATED, Action, Principal
from .probes import Probes
from .registry import Registry
from .tally import Durations
from .timeouts import Timeouts
from .timers import Timers
from .types import ClientId, ClientInfo, ContainerUuid

__all__ = ["MAX_EVENT_BYTES", "MAX_IN_FLIGHT_BYTES", "MAX_IN_FLIGHT_BYTES_PER_AGENT", "MAX_KINDS",
           "MAX_OFFERS", "MAX_REGISTRATIONS", "Hub", "HubStatistics", "HubTimer", "HubTimers",
           "term_epoch_base"]

#: messages without fields are immutable: one instance serves every send
_PONG = Pong()
#: marks a connection the hub does not know (never made, or forgotten)
_GONE: Any = object()
#: the registry's answers to a call (``Hub._answered`` counts them per operation)
_REPLIES = frozenset({GetReply, Ok, Error, ListReply, AgentsReply, KindsReply, RegisterReply})
#: the queries counted under their own operation name (others: "query")
_QUERIES = frozenset({"list", "agents", "kinds"})
_CANCELLED = ErrorCode.CANCELLED.value
#: how many ended sessions' peer ids the hub remembers, to tell a reconnect
_REMEMBERED_PEERS = 4096
#: The most one ``Event`` takes encoded (an upper bound: ``events.change_bytes``);
#: a quarter of the 16 MiB frame limit, so an event always fits a frame and
#: leaves room for the replies batched with it.
MAX_EVENT_BYTES = 4 * 1024 * 1024
#: The payload bytes of one client's requests in flight through the hub: a
#: quarter of the transport's 32 MiB send queue, so a client firing large
#: requests at a slow agent fills neither the agent's queue (which would drop
#: the agent as not reading) nor the hub's memory.
MAX_IN_FLIGHT_BYTES = 8 * 1024 * 1024
#: The payload bytes of the requests in flight to one agent connection, from
#: every client together: half the transport's 32 MiB send queue.  Four
#: clients at ``MAX_IN_FLIGHT_BYTES`` each would fill that queue, and the hub
#: would drop the *agent* as not reading, ending its containers for everyone.
MAX_IN_FLIGHT_BYTES_PER_AGENT = 16 * 1024 * 1024
#: The agent ids one session may have registered at once: an agent process
#: hosts a few; each registration costs registry entries and events.
MAX_REGISTRATIONS = 64
#: Stale forwards (see "Stale forwards" above) kept at once, hub-wide.  A
#: caller that never comes back leaves its runs going at the agents; one
#: that sends calls to a slow container and leaves, again and again under
#: new peer ids, would pin forwards here and handlers there without end.
#: Beyond this many, the oldest is cancelled (its run stops at the agent; a
#: resend of it, should its caller still return, runs it again).
MAX_STALE_FORWARDS = 4096
#: The kinds one ``register`` may name (each is a line of the scheduler's
#: index and of every snapshot).
MAX_KINDS = 1024
#: The containers one ``register`` may offer.  The registry spends ~11 us and
#: a log line per offer in the hub's one loop (60,000 offers: 0.7 s of core
#: work, every peer waiting); a bigger agent registers under several ids.
MAX_OFFERS = 10_000

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
    """Counters a driver may export; plain ints, updated in O(1).

    Container requests (``forwarded``) are counted by outcome only off the
    answered path: ``request_errors`` (the agent answered an error),
    ``request_lost`` (its agent went away), ``request_cancelled`` (the
    caller abandoned it, or a resend of it superseded this forward),
    ``not_found`` and ``retries``; the rest answered
    ok or are in flight.  ``calls`` counts the registry's
    calls by ``(operation, "ok" | "error")``; ``durations`` holds the hub's
    time from a call to its answer, per operation (``request`` and
    ``connect``: forwarded to answered; ``get``: to the reply).
    """

    __slots__ = ("calls", "connections", "durations", "errors", "events", "forwarded",
                 "messages_in", "not_found", "request_cancelled", "request_errors",
                 "request_lost", "retries")

    def __init__(self) -> None:
        self.connections = 0
        self.messages_in = 0
        self.forwarded = 0
        self.errors = 0
        self.retries = 0
        self.events = 0
        self.not_found = 0
        self.request_errors = 0
        self.request_lost = 0
        self.request_cancelled = 0
        self.calls: dict[tuple[str, str], int] = {}
        self.durations = {"request": Durations(), "connect": Durations(), "get": Durations()}


class _Forward:
    __slots__ = ("agent_client", "caller", "caller_id", "kind", "sent", "size", "uuid")

    def __init__(
        self, caller: ClientId, caller_id: int, agent_client: ClientId, kind: str,
        uuid: ContainerUuid, sent: float, size: int = 0,
    ) -> None:
        self.caller = caller
        self.caller_id = caller_id
        self.agent_client = agent_client
        self.kind = kind  # "request" or "connect"
        self.uuid = uuid
        self.sent = sent  # when it was forwarded (its duration counts from it)
        self.size = size  # the request's payload bytes (0 for a connect)


class _Flight:
    """One client's calls in flight through the hub (requests and connects).

    ``calls`` maps the client's call id to the hub's forward id (a ``Cancel``
    finds its forward here); ``per_uuid`` counts them per container, so one
    stuck container cannot take every slot of the client; ``bytes`` sums the
    payloads of its requests in flight, so one client cannot fill an agent's
    send queue (and get the agent dropped as not reading).
    """

    __slots__ = ("bytes", "calls", "per_uuid")

    def __init__(self) -> None:
        self.calls: dict[int, int] = {}
        self.per_uuid: dict[ContainerUuid, int] = {}
        self.bytes = 0


def term_epoch_base(term: int) -> int:
    """Return the first stateless ownership epoch of hub term ``term``.

    The term sits in the high bits (``(term - 1) << 32``): every epoch a
    later term publishes is above every epoch of an earlier one, and term 1
    (a hub without a lease) numbers epochs from 0 as it always did.
    """
    return (term - 1) << 32 if term > 1 else 0


class Hub:
    """The hub's decision machine (see module docstring).

    ``max_in_flight`` bounds the container calls (requests and connects) one
    client may have outstanding through the hub, and
    ``max_in_flight_per_container`` those to any one container; beyond
    either the hub answers ``Retry``.  A ``Cancel`` frees a call's slot.
    ``max_in_flight_bytes`` bounds the payload bytes of one client's requests
    in flight the same way (answered ``Retry``); a request alone in flight is
    admitted whatever its size, so a large legal request still runs.
    ``max_in_flight_bytes_per_agent`` bounds the same bytes per agent
    connection, summed over every caller (answered ``Retry``; a request
    alone in flight to the agent is admitted whatever its size).
    ``max_offers`` bounds the containers one ``RegisterAgent`` may offer (a
    larger one is refused with a ``protocol`` error before the registry sees it),
    ``max_kinds`` the kinds it may name, and ``max_registrations`` the agent
    ids one session may have registered at once (refused the same way).
    ``max_alive_timeout`` caps the alive timeout a hello may ask for (a
    larger one is clamped, and the ``Welcome`` says what was granted).
    ``max_event_bytes`` bounds one ``Event`` as encoded: a window with more
    changes goes out as several events, numbered one after the other.
    ``max_stale_forwards`` bounds the forwards kept for callers that left
    (``MAX_STALE_FORWARDS``): beyond it the oldest is cancelled.
    """

    def __init__(
        self,
        hub_id: str,
        timeouts: Timeouts | None = None,
        *,
        term: int = 1,
        max_in_flight: int = 1024,
        max_in_flight_per_container: int = 512,
        max_in_flight_bytes: int = MAX_IN_FLIGHT_BYTES,
        max_in_flight_bytes_per_agent: int = MAX_IN_FLIGHT_BYTES_PER_AGENT,
        max_offers: int = MAX_OFFERS,
        max_kinds: int = MAX_KINDS,
        max_registrations: int = MAX_REGISTRATIONS,
        max_alive_timeout: float = 300.0,
        max_event_bytes: int = MAX_EVENT_BYTES,
        max_stale_forwards: int = MAX_STALE_FORWARDS,
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
        self.max_in_flight_per_container = max_in_flight_per_container
        self.max_in_flight_bytes = max_in_flight_bytes
        self.max_in_flight_bytes_per_agent = max_in_flight_bytes_per_agent
        self.max_offers = max_offers
        self.max_kinds = max_kinds
        self.max_registrations = max_registrations
        self.max_stale_forwards = max_stale_forwards
        self.max_alive_timeout = max_alive_timeout
        self.probes = probes if probes is not None else Probes()
        self.registry = Registry(hub_id, self.timeouts, probes=self.probes,
                                 seeded_bugs=seeded_bugs, epoch_base=term_epoch_base(term))
        self.registry.events.max_bytes = max_event_bytes
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
        #: caller client id -> its call id -> the forward of that request
        #: its session no longer counts (the session ended, or the call was
        #: resent): the next forward of the call supersedes it, a ``Cancel``
        #: of the call cancels it (see "Stale forwards" in the module
        #: docstring); an entry leaves with its forward
        self._stale: dict[ClientId, dict[int, int]] = {}
        #: the same stale forwards, oldest first: forward id -> (caller, call id)
        self._stale_order: dict[int, tuple[ClientId, int]] = {}
        #: client id -> its calls in flight through the hub
        self._in_flight: dict[ClientId, _Flight] = {}
        #: agent client id -> payload bytes of the requests in flight to it,
        #: from every caller (absent at 0)
        self._agent_bytes: dict[ClientId, int] = {}
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
        #: client id -> its registry calls awaiting an answer: call id -> (operation, since)
        self._calls: dict[ClientId, dict[int, tuple[str, float]]] = {}
        #: peer ids of recently ended sessions (a hello from one is a reconnect)
        self._ended: dict[ClientId, None] = {}
        #: the request durations' pending list (appended to per answered request)
        self._request_seconds = self.stats.durations["request"].pending
        #: draining container -> forwards to it not yet answered (dropped at 0)
        self._draining: dict[ContainerUuid, int] = {}
        #: whether the hub itself shuts down (``stop_taking_calls``)
        self.stopping = False
        self._handlers = Hub.HANDLERS
        #: client id -> its principal, for authenticated sessions only
        self._principals: dict[ClientId, Principal] = {}
        #: client id -> the message types its roles do not allow (sessions
        #: with none denied are absent: with authentication off it stays empty)
        self._denied: dict[ClientId, frozenset[type[Message]]] = {}

    # --- driver interface -------------------------------------------------------

    def effects(self) -> list[HubEffect]:
        """Return and clear the effects produced since the last call, in order."""
        reg = self.registry
        if reg.effects or reg.events.dirty:
            self._collect()
        out = self._effects
        self._effects = []
        return out

    def requests_in_flight(self) -> int:
        """Return the container requests forwarded and not answered yet (O(in flight))."""
        return sum(1 for fwd in self._forwards.values() if fwd.kind == "request")

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
            self._end_session(client_id, now, "connection lost")

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
        # Timers fire at least once per alive timeout while clients are
        # connected: the request durations' list stays short.
        self.stats.durations["request"].fold()
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
                self._hello(conn, message, UNAUTHENTICATED, now)
            else:
                self._protocol_error(conn, getattr(message, "id", 0),
                                     f"{message.TAG!r} before hello")
                self._effects.append(CloseConnection(conn, "no hello"))
                self._conn_client.pop(conn, None)
            return
        reg = self.registry
        reg.touch(client_id, now)
        if self._denied and type(message) in self._denied.get(client_id, ()):
            self._forbid(conn, client_id, message)
            return
        handler = self._handlers.get(type(message))
        if handler is None:
            self._protocol_error(conn, getattr(message, "id", 0),
                                 f"a peer may not send {message.TAG!r}")
            return
        handler(self, conn, client_id, message, now)
        if reg.effects or reg.events.dirty:  # most messages (pings) leave nothing to collect
            self._collect()

    def stop_taking_calls(self) -> None:
        """The hub shuts down: answer every new get, request and connect ``Retry``.

        Everything else (pings, releases, answers from agents, registrations)
        is handled as before, so the forwards in flight are answered.
        """
        if not self.stopping:
            self.stopping = True
            self._handlers = {**Hub.HANDLERS, Get: Hub._on_call_stopping,
                              Request: Hub._on_call_stopping, Connect: Hub._on_call_stopping}

    def forwards_in_flight(self) -> int:
        """Return how many forwarded requests and connects await their agent's answer."""
        return len(self._forwards)

    def close_all(self, reason: str) -> None:
        """Say ``Close(reason)`` to every peer and close every connection."""
        close = Close(reason)
        for conn, client_id in list(self._conn_client.items()):
            if client_id is not None:
                self._effects.append(Send(conn, close))
            self._effects.append(CloseConnection(conn, reason))
        for conn in self._conn_client:
            self._timers.cancel((HubTimer.HELLO, conn))
        self._conn_client.clear()
        self._client_conn.clear()

    def hand_over(self, url: str, *, everyone: bool = False) -> int:
        """This hub resigned its lease to the hub at ``url``: send its peers there.

        Every later hello is redirected to ``url`` (as a standby's is).  Every
        session with no call in flight through the hub, neither as the caller
        nor as the agent that answers it, is sent a ``Welcome`` redirecting
        to ``url`` (a session follows it at once) and its connection is
        closed; the others keep theirs until their forwards are answered, so
        call this again after later inputs.  ``everyone``: send the busy
        sessions too (their forwarded calls are not answered here; their
        callers resend them to ``url``).  Returns how many sessions were
        sent away by this call.
        """
        self.redirect = url
        moved = 0
        for conn, client_id in list(self._conn_client.items()):
            if client_id is None:
                continue  # its hello will be redirected
            flight = self._in_flight.get(client_id)
            if not everyone and ((flight is not None and flight.calls)
                                 or self._forwards_to.get(client_id)):
                continue
            self._effects.append(Send(conn, Welcome(
                PROTOCOL_VERSION, self.hub_id, self.timeouts.alive, self.timeouts.ping_interval,
                self.term, 0, url)))
            self._effects.append(CloseConnection(conn, f"hub handed over to {url}"))
            # As close_all: the session is not ended (no churn in a hub that
            # is going away); nothing more is sent to it.
            del self._conn_client[conn]
            if self._client_conn.get(client_id) == conn:
                del self._client_conn[client_id]
            moved += 1
        return moved

    def has_session(self, conn: Conn) -> bool:
        """Return whether ``conn`` said an accepted hello and its session is current."""
        return self._conn_client.get(conn) is not None

    def resyncs_after_gap(self, conn: Conn) -> bool:
        """Return whether ``conn``'s session gets every event (``events="all"``).

        Such a session rebuilds its view from a snapshot when it sees a gap
        in the event numbers, so a driver may skip events for it while it
        is behind; an ``"own"`` session has no snapshot to fall back on.
        """
        client_id = self._conn_client.get(conn)
        return client_id is not None and client_id not in self._own

    def receive_hello(self, conn: Conn, message: Hello, principal: Principal, now: float
                      ) -> None:
        """Handle ``message``, a hello whose credential the driver verified as ``principal``.

        As ``receive`` does for a hello, but the session gets ``principal``'s
        rights; a hello on a connection that has a session already is a
        protocol error, as it is through ``receive``.
        """
        client_id = self._conn_client.get(conn, _GONE)
        if client_id is None:
            self.stats.messages_in += 1
            self._now = now
            self._hello(conn, message, principal, now)
        else:
            self.receive(conn, message, now)

    def refuse_hello(self, conn: Conn, message: Hello, reason: str, now: float) -> None:
        """The driver could not verify ``message``'s credential: refuse the connection.

        Answers ``Error(0, "unauthorized", reason)``, closes the connection
        and emits ``Refused``; nothing else changes.
        """
        self.stats.messages_in += 1
        self._now = now
        if self._conn_client.get(conn, _GONE) is not None:
            self.receive(conn, message, now)  # not a first hello: not ours to refuse
            return
        self._refuse_hello(conn, message, "?", ErrorCode.UNAUTHORIZED, reason)

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
                    if type(message) in _REPLIES:
                        self._answered(client_id, message)
                    conn = self._client_conn.get(client_id)
                    if conn is not None:
                        self._effects.append(Send(conn, message))
                case AgentSuperseded(old_session=old_session, uuids=uuids):
                    self._fail_forwards(old_session, uuids)
                case ClientDead():
                    pass  # only a timer declares a client dead: handle_timers ends it
                case Notice():
                    self._effects.append(effect)

    def _call(self, client_id: ClientId, call_id: int, operation: str, now: float) -> None:
        """``client_id`` made registry call ``call_id`` (``operation``) at ``now``."""
        calls = self._calls.get(client_id)
        if calls is None:
            calls = self._calls[client_id] = {}
        calls[call_id] = (operation, now)

    def _answered(self, client_id: ClientId, message: Any) -> None:
        """The registry answers ``client_id`` with ``message``: count its call's outcome."""
        calls = self._calls.get(client_id)
        if not calls:
            return
        call = calls.pop(message.id, None)
        if call is None:
            return
        operation, since = call
        if type(message) is Error:
            self._count(operation, "cancelled" if message.code == _CANCELLED else "error")
        else:
            self._count(operation, "ok")
        if operation == "get":
            self.stats.durations["get"].observe(self._now - since)

    def _flush(self) -> None:
        event, interest = self.registry.flush_events()
        while event is not None:
            self.broadcast(event, interest)
            # A window too large for one event leaves the rest queued: each
            # part goes out as the next event (EventQueue.max_bytes).
            event = self.registry.events.flush() if self.registry.events.dirty else None

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

    def _refuse_hello(self, conn: Conn, msg: Hello, peer: str, code: ErrorCode, reason: str
                      ) -> None:
        self.stats.errors += 1
        self._timers.cancel((HubTimer.HELLO, conn))
        self._conn_client.pop(conn, None)
        self._effects.append(Refused(conn, peer, msg.peer_id, msg.TAG, reason))
        self._effects.append(Send(conn, Error(0, code.value, reason)))
        self._effects.append(CloseConnection(conn, f"{code.value}: {reason}"))

    def _principal(self, client_id: ClientId) -> Principal:
        return self._principals.get(client_id, UNAUTHENTICATED)

    def _forbid(self, conn: Conn, client_id: ClientId, message: Message,
                reason: str | None = None) -> None:
        """Answer ``message`` with ``forbidden`` (the session's roles do not allow it)."""
        principal = self._principal(client_id)
        if reason is None:
            roles = ", ".join(sorted(r.value for r in principal.roles))
            reason = (f"{message.TAG!r} needs a role that allows "
                      f"{_ACTION_OF[type(message)].value} ({principal.subject!r} has: {roles})")
        self.stats.errors += 1
        self._effects.append(Refused(conn, principal.subject, client_id, message.TAG, reason))
        self._effects.append(Send(conn, Error(getattr(message, "id", 0),
                                              ErrorCode.FORBIDDEN.value, reason)))

    def _hello(self, conn: Conn, msg: Hello, principal: Principal, now: float) -> None:
        if msg.protocol != PROTOCOL_VERSION:
            self._protocol_error(conn, 0, f"protocol {msg.protocol} not supported "
                                          f"(this hub speaks {PROTOCOL_VERSION})")
            self._effects.append(CloseConnection(conn, "protocol version"))
            self._conn_client.pop(conn, None)
            self._count("hello", "error")
            return
        if msg.events not in ("all", "own"):
            self._protocol_error(conn, 0, f"hello: events must be 'all' or 'own', "
                                          f"got {msg.events!r}")
            self._effects.append(CloseConnection(conn, "bad hello"))
            self._conn_client.pop(conn, None)
            self._count("hello", "error")
            return
        if msg.alive_timeout is not None and not msg.alive_timeout > 0:
            self._protocol_error(conn, 0, "alive_timeout must be > 0")
            self._effects.append(CloseConnection(conn, "bad hello"))
            self._conn_client.pop(conn, None)
            self._count("hello", "error")
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
        if ((old is not None or self.registry.has_client(client_id))
                and not self._principal(client_id).same_owner(principal)):
            self._refuse_hello(conn, msg, principal.subject, ErrorCode.FORBIDDEN,
                               f"peer id {client_id!r} is held by another principal")
            return
        self._timers.cancel((HubTimer.HELLO, conn))
        if old is not None or client_id in self._ended or self.registry.has_client(client_id):
            self._effects.append(Notice(Fact.CLIENT_RECONNECTED, None, None, None, client_id,
                                        "" if old is None else "superseded its connection"))
        if old is not None:
            self.probes.hit("reconnect same peer id")
            # Forget the old connection: its late messages are ignored.
            self._conn_client.pop(old, None)
            self._effects.append(CloseConnection(old, "superseded by a new connection"))
            self._end_session(client_id, now, "reconnected")
        elif self.registry.has_client(client_id):
            self._end_session(client_id, now, "reconnected")
        self._conn_client[conn] = client_id
        self._client_conn[client_id] = conn
        if principal.authenticated:
            self._principals[client_id] = principal
            denied = _denied_types(principal)
            if denied:
                self._denied[client_id] = denied
        if msg.events == "own":
            self._own[client_id] = None
            self.registry.track_interest()
        asked = msg.alive_timeout
        if asked is not None and asked > self.max_alive_timeout:
            # A peer may not keep its session (and its timer) for ever.
            asked = self.max_alive_timeout
        self.registry.add_client(client_id, asked, now)
        self._count("hello", "ok")
        alive = asked if asked is not None else self.timeouts.alive
        self._effects.append(Send(conn, Welcome(
            PROTOCOL_VERSION, self.hub_id, alive, self.timeouts.ping_interval,
            self.term, self.registry.events.seq,
        )))
        self._collect()

    def _end_session(self, client_id: ClientId, now: float, reason: str) -> None:
        """End ``client_id``'s session (for ``reason``): the hub's side, then the registry's."""
        self._close_session(client_id)
        self.registry.remove_client(client_id, now, reason)
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
        flight = self._in_flight.pop(client_id, None)
        if flight is not None:
            # Its requests still at agents go on (a resend of one after a
            # reconnect joins its run there: at most once) and become stale:
            # the resend, or a ``Cancel`` from the next session, reaches them.
            # They stop counting against the agents' bytes: nobody waits for
            # their answers (a stuck container must not keep an agent's byte
            # bound full of gone callers' calls).
            forwards = self._forwards
            for call_id, fwd_id in flight.calls.items():
                fwd = forwards.get(fwd_id)
                if fwd is None or fwd.kind != "request":
                    continue
                self._mark_stale(client_id, call_id, fwd_id)
                if fwd.size:
                    self._agent_bytes_done(fwd)
                    fwd.size = 0
        self._own.pop(client_id, None)
        self._pongs.pop(client_id, None)
        self._calls.pop(client_id, None)
        ended = self._ended
        ended[client_id] = None
        if len(ended) > _REMEMBERED_PEERS:
            del ended[next(iter(ended))]
        self._principals.pop(client_id, None)
        self._denied.pop(client_id, None)

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
            self._finish_forward(fwd_id, fwd)  # frees the caller's in-flight slot
            if fwd.kind == "request":
                self.stats.request_lost += 1
            self._send_to(fwd.caller, Error(fwd.caller_id, ErrorCode.AGENT_GONE.value,
                                            "the container's agent went away"))

    def _count(self, operation: str, status: str) -> None:
        counts = self.stats.calls
        key = (operation, status)
        counts[key] = counts.get(key, 0) + 1

    def _send_to(self, client_id: ClientId, message: Message) -> None:
        conn = self._client_conn.get(client_id)
        if conn is not None:
            self._effects.append(Send(conn, message))

    def _in_flight_done(self, fwd_id: int, fwd: _Forward) -> None:
        flight = self._in_flight.get(fwd.caller)
        # Only if this forward is what the caller's session counts (a session
        # that ended and came back counts its resent call, not the old one).
        if flight is None or flight.calls.get(fwd.caller_id) != fwd_id:
            return
        del flight.calls[fwd.caller_id]
        flight.bytes -= fwd.size
        per_uuid = flight.per_uuid
        n = per_uuid[fwd.uuid] - 1
        if n:
            per_uuid[fwd.uuid] = n
        else:
            del per_uuid[fwd.uuid]

    def _admit(self, conn: Conn, client_id: ClientId, call_id: int, uuid: ContainerUuid,
               size: int = 0, agent_full: bool = False) -> _Flight | None:
        """Return the caller's in-flight record if one more call to ``uuid`` fits.

        ``size`` is the call's payload bytes (0 for a connect); ``agent_full``
        says they do not fit the agent's ``max_in_flight_bytes_per_agent``.
        Otherwise answer ``Retry`` and return None.  A call id already in
        flight (a resend) gives up its old slot first: the newer counts.  A
        call that alone exceeds ``max_in_flight_bytes`` fits when no bytes
        are in flight.
        """
        flight = self._in_flight.get(client_id)
        if flight is None:
            flight = self._in_flight[client_id] = _Flight()
            if not agent_full:
                return flight
        else:
            old = flight.calls.get(call_id)
            if old is not None:
                self._forget_count(flight, call_id, old)
        if (agent_full or len(flight.calls) >= self.max_in_flight
                or flight.per_uuid.get(uuid, 0) >= self.max_in_flight_per_container
                or (flight.bytes and flight.bytes + size > self.max_in_flight_bytes)):
            self.stats.retries += 1
            self._effects.append(Send(conn, Retry(call_id, self.timeouts.event_window)))
            return None
        return flight

    def _count_flight(self, flight: _Flight, call_id: int, uuid: ContainerUuid, fwd_id: int
                      ) -> None:
        """Count the admitted call ``call_id`` (forward ``fwd_id``) against its caller.

        (A request's bytes are added by ``_on_request``: connects carry none.)
        """
        flight.calls[call_id] = fwd_id
        per_uuid = flight.per_uuid
        per_uuid[uuid] = per_uuid.get(uuid, 0) + 1

    def _forget_count(self, flight: _Flight, call_id: int, fwd_id: int) -> None:
        fwd = self._forwards.get(fwd_id)
        if fwd is None:
            del flight.calls[call_id]
            return
        self._in_flight_done(fwd_id, fwd)
        if fwd.kind == "request":
            # Resent while the first forward goes on: the first is stale.
            self._mark_stale(fwd.caller, call_id, fwd_id)

    def _mark_stale(self, caller: ClientId, call_id: int, fwd_id: int) -> None:
        """The request forward ``fwd_id`` of ``caller``'s call ``call_id`` is no longer counted.

        (An older stale forward of the same call, which cannot be in
        practice, is cancelled: only the newest forward of a call is kept.)
        """
        known = self._stale.get(caller)
        if known is not None and known.get(call_id, fwd_id) != fwd_id:
            self._cancel_stale(caller, call_id)
        self._stale.setdefault(caller, {})[call_id] = fwd_id
        order = self._stale_order
        order[fwd_id] = (caller, call_id)
        while len(order) > self.max_stale_forwards:
            oldest_caller, oldest_call = next(iter(order.values()))
            self.probes.hit("stale forwards over their bound")
            self._cancel_stale(oldest_caller, oldest_call)

    def _cancel_stale(self, caller: ClientId, call_id: int) -> bool:
        """Cancel the stale forward of ``caller``'s call ``call_id``; returns whether one was.

        The forward ends here (its late answer reaches nobody) and its agent
        gets ``Cancel``: it drops this forward's wait for the run, and stops
        the run when no other forward waits for it (``core/hosting.py``).
        """
        mine = self._stale.get(caller)
        if mine is None:
            return False
        fwd_id = mine.pop(call_id, None)
        if not mine:
            del self._stale[caller]
        if fwd_id is None:
            return False
        del self._stale_order[fwd_id]
        fwd = self._forwards.get(fwd_id)
        if fwd is None:
            return False
        self._finish_forward(fwd_id, fwd)
        self.stats.request_cancelled += 1
        self.probes.hit("stale forward cancelled")
        self._send_to(fwd.agent_client, Cancel(fwd_id))
        return True

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
        self._end_session(client_id, now, "client closed")
        self._effects.append(CloseConnection(conn, "peer closed"))

    def _on_get(self, conn: Conn, client_id: ClientId, msg: Get, now: float) -> None:
        self._call(client_id, msg.id, "get", now)
        self.registry.get(client_id, msg.id, msg.kind, msg.options, now,
                          reacquire=msg.reacquire, held_instance=msg.held_instance)

    def _on_release(self, conn: Conn, client_id: ClientId, msg: Release, now: float) -> None:
        self._call(client_id, msg.id, "release", now)
        self.registry.release(client_id, msg.id, msg.uuid, now)

    def _on_register(self, conn: Conn, client_id: ClientId, msg: RegisterAgent, now: float
                     ) -> None:
        refusal = self._over_limits(client_id, msg.agent_id, len(msg.kinds),
                                    len(msg.containers))
        if refusal:
            self._count("register", "error")
            self._protocol_error(conn, msg.id, f"register {msg.agent_id!r}: {refusal}")
            return
        principal = self._principals.get(client_id)
        if principal is not None:  # authentication on
            if not principal.may_use_agent_id(msg.agent_id):
                self._forbid(conn, client_id, msg, f"agent id {msg.agent_id!r} is not among "
                                                   f"those {principal.subject!r} may register")
                return
            owner = self.registry.agent_owner(msg.agent_id)
            if (owner is not None and owner != client_id
                    and not self._principal(owner).same_owner(principal)):
                self._forbid(conn, client_id, msg, f"agent id {msg.agent_id!r} is held by "
                                                   f"another principal")
                return
        self._call(client_id, msg.id, "register", now)
        self.registry.register(client_id, msg, now)

    def refuse_registration(self, conn: Conn, call_id: int, agent_id: str, kinds: int,
                            offers: int) -> bool:
        """Refuse a ``RegisterAgent`` from its counts alone, before it is decoded.

        ``kinds`` and ``offers`` are how many kinds it names and containers
        it offers (a driver reads them from the frame's headers:
        ``wire.prescan``).  Returns True when it is over ``max_offers`` or
        ``max_kinds``: it was answered with the same ``protocol`` error
        ``receive`` would give, and the driver must not feed it.  Returns
        False otherwise (``max_registrations`` depends on the messages before
        it, and is checked when it is received), and for a connection
        without a session (``receive`` refuses its messages).
        """
        if self._conn_client.get(conn) is None:
            return False
        refusal = self._too_large(kinds, offers)
        if not refusal:
            return False
        self._count("register", "error")
        self._protocol_error(conn, call_id, f"register {agent_id!r}: {refusal}")
        return True

    def _over_limits(self, client_id: ClientId, agent_id: str, kinds: int, offers: int) -> str:
        """Return which bound a registration passes, naming the limit ("" if none)."""
        return self._too_large(kinds, offers) or self._too_many(client_id, agent_id)

    def _too_large(self, kinds: int, offers: int) -> str:
        """Return which bound on one registration's size it passes ("" if none)."""
        if offers > self.max_offers:
            return (f"offers {offers} containers; the hub accepts at most "
                    f"{self.max_offers} per registration (limits.maxOffers)")
        if kinds > self.max_kinds:
            return (f"names {kinds} kinds; the hub accepts at most "
                    f"{self.max_kinds} per registration (limits.maxKinds)")
        return ""

    def _too_many(self, client_id: ClientId, agent_id: str) -> str:
        """Return the bound on registrations per session, if one more passes it ("" if not)."""
        reg = self.registry
        if (reg.agent_owner(agent_id) != client_id
                and reg.registered_agents(client_id) >= self.max_registrations):
            return (f"this session has {reg.registered_agents(client_id)} agents registered; "
                    f"the hub accepts at most {self.max_registrations} per session "
                    f"(limits.maxRegistrations)")
        return ""

    def _on_unregister(self, conn: Conn, client_id: ClientId, msg: UnregisterAgent, now: float
                       ) -> None:
        self._call(client_id, msg.id, "unregister", now)
        self.registry.unregister(client_id, msg.id, msg.agent_id, now)

    def _on_claim(self, conn: Conn, client_id: ClientId, msg: Claim, now: float) -> None:
        self._call(client_id, msg.id, "claim", now)
        self.registry.claim(client_id, msg.id, msg.agent_id, msg.container, now)

    def _on_query(self, conn: Conn, client_id: ClientId, msg: Query, now: float) -> None:
        if msg.what == "clients":
            self._clients_query(conn, client_id, msg)
            return
        self._call(client_id, msg.id, msg.what if msg.what in _QUERIES else "query", now)
        self.registry.query(client_id, msg.id, msg.what, msg.kind)

    def _clients_query(self, conn: Conn, client_id: ClientId, msg: Query) -> None:
        """Answer ``Query("clients")``: every session, for an admin only."""
        if not self._principal(client_id).allows(Action.SEE_ALL_CLIENTS):
            self._forbid(conn, client_id, msg, "query 'clients' needs the admin role")
            return
        reg = self.registry
        agents: dict[ClientId, list[str]] = {}
        for info in reg.agents():
            owner = reg.agent_owner(info.agent_id)
            if owner is not None:
                agents.setdefault(owner, []).append(info.agent_id)
        self._count("clients", "ok")
        self._effects.append(Send(conn, ClientsReply(msg.id, tuple(
            ClientInfo(cid, self._principal(cid).subject, tuple(sorted(reg.holds(cid))),
                       tuple(sorted(agents.get(cid, ()))))
            for cid in sorted(reg.clients())))))

    def _on_terminate_any(self, conn: Conn, client_id: ClientId, msg: TerminateAny, now: float
                          ) -> None:
        # the admin role is checked with every gated kind (``_denied``, at hello)
        self._call(client_id, msg.id, "terminate", now)
        self.registry.terminate_any(client_id, msg.id, msg.uuid, now)

    def _on_stopped(self, conn: Conn, client_id: ClientId, msg: ContainerStopped, now: float
                    ) -> None:
        self.registry.container_stopped(client_id, msg.agent_id, msg.uuid, now)

    def _on_started(self, conn: Conn, client_id: ClientId, msg: Started, now: float) -> None:
        self.registry.started(client_id, msg.id, msg.uuid, msg.endpoint, now)

    def _on_error(self, conn: Conn, client_id: ClientId, msg: Error, now: float) -> None:
        fwd = self._forwards.get(msg.id)
        if fwd is not None and fwd.agent_client == client_id:
            self._finish_forward(msg.id, fwd)
            self.stats.durations[fwd.kind].observe(now - fwd.sent)
            if fwd.kind == "request":
                self.stats.request_errors += 1
            else:
                self._count(fwd.kind, "error")
            self._send_to(fwd.caller, Error(fwd.caller_id, msg.code, msg.message, msg.type))
            return
        # Otherwise it answers a Start.
        self.registry.start_failed(client_id, msg.id, msg.code, msg.message, now)

    def _on_request(self, conn: Conn, client_id: ClientId, msg: Request, now: float) -> None:
        route = self.registry.route(msg.uuid)
        if route is None:
            self.stats.not_found += 1
            self._effects.append(Send(conn, Error(msg.id, ErrorCode.NOT_FOUND.value,
                                                  f"container {msg.uuid!r} not found")))
            return
        if self._draining and msg.uuid in self._draining:
            self._retry_draining(conn, msg.id)
            return
        size = len(msg.payload)
        agent_client = route[1]
        # The agent's bytes in flight from every caller; a request alone to
        # it is admitted whatever its size.  (Subtracted in
        # ``_finish_forward``, or when the caller goes.)
        agent_bytes = self._agent_bytes.get(agent_client, 0)
        flight = self._admit(conn, client_id, msg.id, msg.uuid, size,
                             agent_bytes + size > self.max_in_flight_bytes_per_agent
                             and agent_bytes > 0 and size > 0)
        if flight is None:
            return
        fwd_id = self._new_forward(_Forward(client_id, msg.id, agent_client, "request", msg.uuid,
                                            now, size))
        self._count_flight(flight, msg.id, msg.uuid, fwd_id)
        flight.bytes += size
        if size:
            self._agent_bytes[agent_client] = agent_bytes + size
        self.stats.forwarded += 1
        self._send_to(agent_client, Request(fwd_id, msg.uuid, msg.operation, msg.payload,
                                            client_id, msg.id))
        if self._stale:
            # A resend supersedes the call's stale forward, after it on the
            # agent's connection: the resend joins the run first, then the
            # old forward's wait goes, so the caller's next ``Cancel`` is
            # the run's last waiter's and stops it.
            self._cancel_stale(client_id, msg.id)

    def _new_forward(self, fwd: _Forward) -> int:
        self._forward_serial += 1
        fwd_id = self._forward_serial
        self._forwards[fwd_id] = fwd
        self._forwards_to.setdefault(fwd.agent_client, {})[fwd_id] = None
        return fwd_id

    def _finish_forward(self, fwd_id: int, fwd: _Forward) -> None:
        del self._forwards[fwd_id]
        if self._stale:
            mine = self._stale.get(fwd.caller)
            if mine is not None and mine.get(fwd.caller_id) == fwd_id:
                del mine[fwd.caller_id]
                if not mine:
                    del self._stale[fwd.caller]
                del self._stale_order[fwd_id]
        bucket = self._forwards_to.get(fwd.agent_client)
        if bucket is not None:
            bucket.pop(fwd_id, None)
        self._in_flight_done(fwd_id, fwd)
        if fwd.size:
            self._agent_bytes_done(fwd)
        if self._draining:
            left = self._draining.get(fwd.uuid)
            if left is not None:
                if left > 1:
                    self._draining[fwd.uuid] = left - 1
                else:
                    del self._draining[fwd.uuid]
                    self.registry.drop_drained(fwd.uuid, self._now)

    def _agent_bytes_done(self, fwd: _Forward) -> None:
        """Subtract request ``fwd``'s payload from its agent's bytes in flight."""
        agent_bytes = self._agent_bytes
        left = agent_bytes[fwd.agent_client] - fwd.size
        if left:
            agent_bytes[fwd.agent_client] = left
        else:
            del agent_bytes[fwd.agent_client]

    def _on_response(self, conn: Conn, client_id: ClientId, msg: Response, now: float) -> None:
        fwd = self._forwards.get(msg.id)
        if fwd is None or fwd.agent_client != client_id:
            return  # a late answer for a caller that is gone
        self._finish_forward(msg.id, fwd)
        self._request_seconds.append(now - fwd.sent)
        self._send_to(fwd.caller, Response(fwd.caller_id, msg.payload))

    def _on_ok(self, conn: Conn, client_id: ClientId, msg: Ok, now: float) -> None:
        fwd = self._forwards.get(msg.id)
        if fwd is None or fwd.agent_client != client_id:
            return
        self._finish_forward(msg.id, fwd)
        self.stats.durations[fwd.kind].observe(now - fwd.sent)
        if fwd.kind != "request":
            self._count(fwd.kind, "ok")
        self._send_to(fwd.caller, Ok(fwd.caller_id))

    def _on_connect(self, conn: Conn, client_id: ClientId, msg: Connect, now: float) -> None:
        route = self.registry.route(msg.uuid)
        if route is None:
            self._count("connect", "error")
            self._effects.append(Send(conn, Error(msg.id, ErrorCode.NOT_FOUND.value,
                                                  f"container {msg.uuid!r} not found")))
            return
        if msg.uuid in self._draining:
            self._retry_draining(conn, msg.id)
            return
        flight = self._admit(conn, client_id, msg.id, msg.uuid)
        if flight is None:
            return
        agent_client = route[1]
        self._connected.setdefault(client_id, {})[msg.uuid] = agent_client
        fwd_id = self._new_forward(_Forward(client_id, msg.id, agent_client, "connect", msg.uuid,
                                            now))
        self._count_flight(flight, msg.id, msg.uuid, fwd_id)
        self._send_to(agent_client, Connect(fwd_id, msg.uuid, client_id))

    def _on_cancel(self, conn: Conn, client_id: ClientId, msg: Cancel, now: float) -> None:
        """The caller abandoned call ``msg.id``: free its slot, tell the agent; no answer."""
        flight = self._in_flight.get(client_id)
        fwd_id = flight.calls.get(msg.id) if flight is not None else None
        # A forward of the call from an ended session, or one its resend has
        # not superseded yet (answered ``Retry``), is cancelled too.
        stale = bool(self._stale) and self._cancel_stale(client_id, msg.id)
        if fwd_id is None:
            if not stale:
                # A get waiting for a container to start stops waiting
                # (answered ``cancelled``); anything else was answered already.
                self.registry.cancel_get(client_id, msg.id)
            return
        fwd = self._forwards.get(fwd_id)
        if fwd is None:
            return
        self._finish_forward(fwd_id, fwd)
        if fwd.kind == "request":
            self.stats.request_cancelled += 1
            self._send_to(fwd.agent_client, Cancel(fwd_id))
        else:
            # A connect: the agent's answer will reach nobody; the stream, if
            # it opens, is closed by the caller's ``disconnect``.
            self._count(fwd.kind, "cancelled")

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

    def _retry_draining(self, conn: Conn, call_id: int) -> None:
        """A call to a draining container: the caller resends it later (then finds it gone)."""
        self.probes.hit("call retried: container draining")
        self._effects.append(Send(conn, Retry(call_id, self.timeouts.drain_retry)))

    def _on_drain(self, conn: Conn, client_id: ClientId, msg: Drain, now: float) -> None:
        draining = self.registry.drain(client_id, msg.id, msg.agent_id, now)
        if not draining:
            return
        left = dict.fromkeys(draining, 0)
        for fwd_id in self._forwards_to.get(client_id, ()):
            uuid = self._forwards[fwd_id].uuid
            if uuid in left:
                left[uuid] += 1
        for uuid, n in left.items():
            if n:
                self._draining[uuid] = n
            else:
                self.registry.drop_drained(uuid, now)

    def _on_call_stopping(self, conn: Conn, client_id: ClientId, msg: Get | Request | Connect,
                          now: float) -> None:
        """The hub shuts down: the caller resends the call (to the next hub, once it reconnects)."""
        self.stats.retries += 1
        self._effects.append(Send(conn, Retry(msg.id, self.timeouts.ping_interval)))

    #: The handler of each message a peer may send (``receive`` dispatches on it).
    HANDLERS: ClassVar[dict[type[Message], Callable[[Hub, Conn, ClientId, Any, float], None]]]


Hub.HANDLERS = {
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
    Cancel: Hub._on_cancel,
    Push: Hub._on_push,
    Drain: Hub._on_drain,
    TerminateAny: Hub._on_terminate_any,
}


#: The action each gated message kind needs.  Answers (``Response``, ``Ok``,
#: ``Error``) and ``Push`` are not here: the hub acts on them only from the
#: session it forwarded the call to or that serves the container.  ``Ping``,
#: ``Pong`` and ``Close`` are every session's.
_ACTION_OF: dict[type[Message], Action] = {
    Get: Action.GET,
    Release: Action.RELEASE,
    Request: Action.REQUEST,
    Query: Action.LIST,
    Connect: Action.CONNECT,
    Disconnect: Action.CONNECT,
    RegisterAgent: Action.REGISTER_AGENT,
    UnregisterAgent: Action.REGISTER_AGENT,
    Claim: Action.SERVE,
    Started: Action.SERVE,
    ContainerStopped: Action.SERVE,
    TerminateAny: Action.TERMINATE_ANY,
}


def _denied_types(principal: Principal) -> frozenset[type[Message]]:
    """Return the message types ``principal``'s roles do not allow."""
    return frozenset(t for t, action in _ACTION_OF.items() if not principal.allows(action))
