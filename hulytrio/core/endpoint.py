"""Direct connections to an agent's own endpoint, both sides, as sans-IO machines.

Theory of operation
-------------------
An agent started with an endpoint runs its own WebSocket server; a client's
``ref.connect()`` talks to it directly (the reference's "routed" endpoint),
bypassing the hub.  The conversation is a subset of the hub protocol::

    client                         agent endpoint
    Hello(protocol, client id) ->
                               <-  Welcome(protocol, agent id, ...)
    Connect(id, uuid)          ->                     (start the event stream)
                               <-  Ok(id) | Error(id, not_found) | Retry(id, after)
    Request(id, uuid, op, ..)  ->
                               <-  Response(id, ..) | Error(id, ..) | Retry(id, after)
    Cancel(id)                 ->                     (the caller gave up: no answer)
                               <-  Push(uuid, payload)   (container broadcasts)
                               <-  Disconnect(uuid)      (the container stopped here)
    Disconnect(uuid)           ->
    Ping                       ->  <- Pong
    Close                      ->  (either side)

``EndpointSession`` is the agent's side of one connection: it checks the
hello, answers only for containers the agent serves *now* (a standby or a
terminated container is ``not_found``, so the client falls back to the hub
and re-acquires), and turns calls into the same agent effects the hub path
produces (``RunRequest``, ``ConnectContainer``, ``DisconnectContainer``).
A request id already in flight on the connection is processed once; a
``Cancel`` of one stops it (``CancelRequest``) and no answer is sent.  A
stateless owner *fenced* while its registration awaits the hub's answer
(see ``core/agent.py``) is neither serving nor gone: its calls are answered
``Retry(id, FENCED_RETRY_AFTER)``, so they wait out that round trip instead
of failing.

``EndpointClient`` is the client's side: it numbers calls and turns answers
into ``Resolve`` / ``Reject`` of those numbers, pushes into ``DeliverPush``,
and the agent's ``Disconnect`` (the container stopped or moved away) into
``StreamEnded``.  A ``Retry`` re-sends the call after the delay it names,
doubled for each further ``Retry`` of the same call up to ``RETRY_MAX``
(the driver wakes it at ``next_deadline()``); a call retried this way
waits as long as the agent stays fenced, as a call through the hub waits
while the hub is away, so callers bound it with a timeout of their own.
Liveness is the TCP connection itself: both ends see a WebSocket close at
once, and a connection that dies is simply reopened by the user's next
``ref.connect()``.

Endpoint connection lifecycle (``EndpointState``, table ``ENDPOINT_TRANSITIONS``, both sides)::

    HELLO --Hello (right protocol)--> OPEN --Close / lost--> CLOSED
    HELLO --anything else--> CLOSED (with an Error)
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from .effects import (
    CancelRequest,
    CloseConnection,
    ConnectContainer,
    DeliverPush,
    DisconnectContainer,
    EndpointEffect,
    Reject,
    Resolve,
    RunRequest,
    Send,
    StreamEnded,
)
from .errors import ConnectionClosed, ErrorCode, LocalProtocolError, error_from_code
from .messages import (
    PROTOCOL_VERSION,
    Cancel,
    Close,
    Connect,
    Disconnect,
    Error,
    Hello,
    Message,
    Ok,
    Ping,
    Pong,
    Push,
    Request,
    Response,
    Retry,
    Welcome,
)
from .timers import Timers
from .transitions import TransitionTable
from .types import AgentId, ContainerUuid

__all__ = [
    "ENDPOINT_MAX_IN_FLIGHT",
    "ENDPOINT_TRANSITIONS",
    "FENCED_RETRY_AFTER",
    "IN_FLIGHT_RETRY_AFTER",
    "RETRY_MAX",
    "EndpointClient",
    "EndpointSession",
    "EndpointState",
]

#: What a fenced offer asks callers to wait before resending (seconds): the
#: fence lasts one round trip to the hub, so a short first wait mostly wins.
FENCED_RETRY_AFTER = 0.02
#: The longest wait between resends of one call that keeps being retried.
RETRY_MAX = 1.0
#: Requests one direct connection may have in flight at the agent (the hub's
#: bound per client and container is 512, per client 1024).
ENDPOINT_MAX_IN_FLIGHT = 1024
#: What a request over that bound is asked to wait before it is resent
#: (seconds; the client doubles it for each further ``Retry``).
IN_FLIGHT_RETRY_AFTER = 0.01


class EndpointState(enum.Enum):
    """Where one direct connection stands."""

    #: Waiting for the peer's ``Hello`` (agent side) or ``Welcome`` (client side).
    HELLO = "hello"
    #: Calls flow.
    OPEN = "open"
    #: Closed for good.
    CLOSED = "closed"


#: The moves of either side of a direct connection (see the module docstring).
ENDPOINT_TRANSITIONS: TransitionTable[EndpointState] = TransitionTable("endpoint connection", {
    EndpointState.HELLO: (EndpointState.OPEN, EndpointState.CLOSED),
    EndpointState.OPEN: (EndpointState.CLOSED,),
})


class EndpointSession:
    """The agent's side of one direct connection (see module docstring).

    ``serves(uuid)`` tells whether the agent serves ``uuid`` right now, and
    ``fenced(uuid)`` whether it will again once the hub answers its
    registration (calls to it are then answered ``Retry``).
    ``alive_timeout`` and ``ping_interval`` are announced in the ``Welcome``.
    ``max_in_flight`` bounds the requests the peer may have running or
    queued at once; beyond it a request is answered ``Retry`` (as the hub
    answers a client over its bound), and a ``Cancel`` frees a slot.
    """

    def __init__(self, agent_id: AgentId, serves: Callable[[ContainerUuid], bool],
                 fenced: Callable[[ContainerUuid], bool] | None = None, *,
                 alive_timeout: float = 3.0, ping_interval: float = 1.0,
                 max_in_flight: int = ENDPOINT_MAX_IN_FLIGHT) -> None:
        self.agent_id = agent_id
        self.max_in_flight = max_in_flight
        self.serves = serves
        self.fenced = fenced
        self.alive_timeout = alive_timeout
        self.ping_interval = ping_interval
        self.state = EndpointState.HELLO
        #: the peer's client id, from its hello
        self.peer_id: str | None = None
        #: uuids the peer has an event stream from (insertion-ordered)
        self.connected: dict[ContainerUuid, None] = {}
        self._in_flight: set[int] = set()

    def _transition(self, new: EndpointState) -> None:
        # The one place this side's connection changes state (ENDPOINT_TRANSITIONS).
        self.state = ENDPOINT_TRANSITIONS.check(self.state, new)

    def receive(self, message: Message) -> list[EndpointEffect]:
        """Handle one decoded message; returns what the driver must do."""
        if self.state is EndpointState.CLOSED:
            return []
        if self.state is EndpointState.HELLO:
            return self._hello(message)
        if isinstance(message, Ping):
            return [Send(None, Pong())]
        if isinstance(message, Request):
            return self._request(message)
        if isinstance(message, Connect):
            return self._connect(message)
        if isinstance(message, Disconnect):
            if self.connected.pop(message.uuid, 0) is None and self.peer_id is not None:
                return [DisconnectContainer(self.agent_id, message.uuid, self.peer_id)]
            return []
        if isinstance(message, Close):
            return [*self.connection_lost(), CloseConnection(None, "peer closed")]
        if isinstance(message, Pong):
            return []
        if isinstance(message, Cancel):
            # Stopped, and never answered: ``reply`` / ``error`` find it gone.
            if message.id in self._in_flight:
                self._in_flight.discard(message.id)
                return [CancelRequest(message.id)]
            return []  # answered already (the answer crossed the cancel)
        return [self.protocol_error(getattr(message, "id", 0),
                                    f"{message.TAG!r} is not served by an agent endpoint")]

    def protocol_error(self, call_id: int, text: str) -> EndpointEffect:
        """Return the ``Error`` answer to an undecodable or illegal message."""
        return Send(None, Error(call_id, ErrorCode.PROTOCOL.value, text))

    def reply(self, call_id: int, payload: bytes) -> list[EndpointEffect]:
        """Request ``call_id`` completed; returns the ``Response`` to send (none if closed)."""
        if self._done(call_id):
            return [Send(None, Response(call_id, payload))]
        return []

    def error(self, call_id: int, code: str, message: str,
              type_name: str = "") -> list[EndpointEffect]:
        """Request ``call_id`` failed; returns the ``Error`` to send (none if closed)."""
        if self._done(call_id):
            return [Send(None, Error(call_id, code, message, type_name))]
        return []

    def push(self, uuid: ContainerUuid, payload: bytes) -> list[EndpointEffect]:
        """Container ``uuid`` broadcasts ``payload``; returns the ``Push`` if the peer listens."""
        if self.state is EndpointState.OPEN and uuid in self.connected:
            return [Send(None, Push(uuid, payload))]
        return []

    def container_stopped(self, uuid: ContainerUuid) -> list[EndpointEffect]:
        """Container ``uuid`` stopped on this agent; returns the ``Disconnect`` telling the peer.

        Nothing if the peer had no stream from it.  No ``DisconnectContainer``:
        the container is gone, there is nobody to tell.
        """
        if self.state is EndpointState.OPEN and self.connected.pop(uuid, 0) is None:
            return [Send(None, Disconnect(uuid))]
        return []

    def connection_lost(self) -> list[EndpointEffect]:
        """The connection ended; returns ``DisconnectContainer`` for every open stream."""
        if self.state is EndpointState.CLOSED:
            return []
        self._transition(EndpointState.CLOSED)
        self._in_flight.clear()
        peer, streams = self.peer_id, list(self.connected)
        self.connected.clear()
        if peer is None:
            return []
        return [DisconnectContainer(self.agent_id, uuid, peer) for uuid in streams]

    # --- internals ---------------------------------------------------------------

    def _done(self, call_id: int) -> bool:
        if self.state is not EndpointState.OPEN or call_id not in self._in_flight:
            return False
        self._in_flight.discard(call_id)
        return True

    def _refusal(self, call_id: int, uuid: ContainerUuid) -> EndpointEffect:
        # A fenced owner serves again after one round trip to the hub (or
        # hands over to another agent, when a Retry then meets not_found).
        if self.fenced is not None and self.fenced(uuid):
            return Send(None, Retry(call_id, FENCED_RETRY_AFTER))
        return self._not_found(call_id, uuid)

    def _not_found(self, call_id: int, uuid: ContainerUuid) -> EndpointEffect:
        return Send(None, Error(call_id, ErrorCode.NOT_FOUND.value,
                                f"container {uuid!r} is not served by agent {self.agent_id!r}"))

    def _hello(self, message: Message) -> list[EndpointEffect]:
        if not isinstance(message, Hello):
            self._transition(EndpointState.CLOSED)
            return [self.protocol_error(getattr(message, "id", 0),
                                        f"{message.TAG!r} before hello"),
                    CloseConnection(None, "no hello")]
        if message.protocol != PROTOCOL_VERSION:
            self._transition(EndpointState.CLOSED)
            return [self.protocol_error(0, f"protocol {message.protocol} not supported "
                                           f"(this endpoint speaks {PROTOCOL_VERSION})"),
                    CloseConnection(None, "protocol version")]
        self._transition(EndpointState.OPEN)
        self.peer_id = message.peer_id
        return [Send(None, Welcome(PROTOCOL_VERSION, self.agent_id, self.alive_timeout,
                                   self.ping_interval))]

    def _request(self, msg: Request) -> list[EndpointEffect]:
        if msg.id in self._in_flight:
            return []  # a duplicate of a request still running: answered once
        if not self.serves(msg.uuid):
            return [self._refusal(msg.id, msg.uuid)]
        if len(self._in_flight) >= self.max_in_flight:
            return [Send(None, Retry(msg.id, IN_FLIGHT_RETRY_AFTER))]
        self._in_flight.add(msg.id)
        return [RunRequest(self.agent_id, msg.uuid, msg.id, msg.operation, msg.payload,
                           self.peer_id)]

    def _connect(self, msg: Connect) -> list[EndpointEffect]:
        if self.peer_id is None:  # a stream needs a client id to address it
            return [self._not_found(msg.id, msg.uuid)]
        if not self.serves(msg.uuid):
            return [self._refusal(msg.id, msg.uuid)]
        out: list[EndpointEffect] = [Send(None, Ok(msg.id))]
        if msg.uuid not in self.connected:
            self.connected[msg.uuid] = None
            out.insert(0, ConnectContainer(self.agent_id, msg.uuid, self.peer_id))
        return out


class EndpointClient:
    """The client's side of one direct connection (see module docstring).

    Call ``hello()`` once the connection is open, then ``connect`` /
    ``request``; every call returns a handle that a later ``Resolve`` /
    ``Reject`` answers.  The hello itself resolves handle 0.  A driver feeds
    ``receive(message, now)`` and calls ``handle_timers(now)`` at
    ``next_deadline()`` (the resends of retried calls).
    """

    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self.state = EndpointState.HELLO
        self._next_id = 0
        #: calls awaiting an answer: handle -> the message, kept to resend it
        self._calls: dict[int, Request | Connect] = {}
        #: handle -> how many times the call was answered Retry
        self._retries: dict[int, int] = {}
        self.timers = Timers()

    def _transition(self, new: EndpointState) -> None:
        # The one place this side's connection changes state (ENDPOINT_TRANSITIONS).
        self.state = ENDPOINT_TRANSITIONS.check(self.state, new)

    def hello(self) -> list[EndpointEffect]:
        """Return the ``Hello`` to send first."""
        return [Send(None, Hello(PROTOCOL_VERSION, self.client_id))]

    def connect(self, uuid: ContainerUuid) -> tuple[int, list[EndpointEffect]]:
        """Open the event stream from ``uuid``; returns (handle, effects).

        Raises:
            LocalProtocolError: if the connection is not open.
        """
        handle = self._call()
        message = self._calls[handle] = Connect(handle, uuid, self.client_id)
        return handle, [Send(None, message)]

    def request(self, uuid: ContainerUuid, operation: str, payload: bytes
                ) -> tuple[int, list[EndpointEffect]]:
        """Call ``operation`` on ``uuid``; returns (handle, effects).

        Raises:
            LocalProtocolError: if the connection is not open.
        """
        handle = self._call()
        message = self._calls[handle] = Request(handle, uuid, operation, payload)
        return handle, [Send(None, message)]

    def cancel(self, handle: int) -> list[EndpointEffect]:
        """The caller abandoned call ``handle``: forget it; returns the effects.

        A request still open is cancelled at the agent (``Cancel``; its
        answer, if one crosses, is ignored); a connect is just forgotten
        (the caller's ``disconnect`` ends the stream).  No outcome follows.
        """
        message = self._calls.pop(handle, None)
        if message is None:
            return []
        if self._retries:
            self._forget_retries(handle)
        if isinstance(message, Request) and self.state is EndpointState.OPEN:
            return [Send(None, Cancel(handle))]
        return []

    def disconnect(self, uuid: ContainerUuid) -> list[EndpointEffect]:
        """Close the event stream from ``uuid`` and the connection; returns the effects."""
        if self.state is not EndpointState.OPEN:
            return []
        return [Send(None, Disconnect(uuid, self.client_id)), Send(None, Close("done")),
                *self.connection_lost()]

    def receive(self, message: Message, now: float) -> list[EndpointEffect]:
        """Handle one decoded message received at ``now``.

        Returns ``Resolve`` / ``Reject`` / ``DeliverPush`` / ``StreamEnded``
        and ``Send`` effects; a ``Retry`` only arms a resend (see
        ``next_deadline``).
        """
        state = self.state
        if state is not EndpointState.OPEN:
            if state is EndpointState.HELLO:
                return self._receive_hello(message)
            return []
        # Answers first: they are most of a busy connection's input.
        match message:
            case Response() | Ok() | Error():
                if self._calls.pop(message.id, None) is None:
                    return []
                if self._retries:
                    self._forget_retries(message.id)
                if isinstance(message, Response):
                    return [Resolve(message.id, message.payload)]
                if isinstance(message, Ok):
                    return [Resolve(message.id, None)]
                return [Reject(message.id, error_from_code(message.code, message.message,
                                                           message.type))]
            case Push():
                return [DeliverPush(message.uuid, message.payload)]
            case Disconnect():
                return [StreamEnded(message.uuid)]
            case Ping():
                return [Send(None, Pong())]
            case Retry():
                self._retry(message, now)
                return []
            case Close():
                return self.connection_lost()
        return []

    def _receive_hello(self, message: Message) -> list[EndpointEffect]:
        # Before the Welcome: only the Welcome or a refusal (Error) counts.
        if isinstance(message, Welcome):
            self._transition(EndpointState.OPEN)
            return [Resolve(0, message)]
        if isinstance(message, Error):
            return [Reject(0, error_from_code(message.code, message.message, message.type)),
                    *self.connection_lost()]
        return []

    def next_deadline(self) -> float | None:
        """Return when ``handle_timers`` must next run (a resend is due), or None."""
        return self.timers.next_deadline()

    def handle_timers(self, now: float) -> list[EndpointEffect]:
        """Resend the retried calls due by ``now``; returns their ``Send`` effects."""
        out: list[EndpointEffect] = []
        for handle in self.timers.expired(now):
            # Timer keys here are call handles (ints); isinstance narrows them.
            message = self._calls.get(handle) if isinstance(handle, int) else None
            if message is not None and self.state is EndpointState.OPEN:
                out.append(Send(None, message))
        return out

    def connection_lost(self) -> list[EndpointEffect]:
        """The connection ended: every call in flight fails with ``ConnectionClosed``."""
        if self.state is EndpointState.CLOSED:
            return []
        was_hello = self.state is EndpointState.HELLO
        self._transition(EndpointState.CLOSED)
        out: list[EndpointEffect] = (
            [Reject(0, ConnectionClosed("endpoint closed"))] if was_hello else [])
        out.extend(Reject(h, ConnectionClosed("endpoint connection closed")) for h in self._calls)
        self._calls.clear()
        self._retries.clear()
        self.timers = Timers()
        return out

    def _retry(self, message: Retry, now: float) -> None:
        if message.id not in self._calls:
            return  # answered meanwhile, or never ours
        # The agent names its wait; a call retried again and again backs off
        # (doubling, up to RETRY_MAX) so a long fence costs little traffic.
        tries = self._retries.get(message.id, 0)
        self._retries[message.id] = tries + 1
        delay = max(message.after, min(message.after * 2 ** tries, RETRY_MAX))
        self.timers.call_at(now + delay, message.id)

    def _forget_retries(self, handle: int) -> None:
        if self._retries.pop(handle, None) is not None:
            self.timers.cancel(handle)

    def _call(self) -> int:
        if self.state is not EndpointState.OPEN:
            raise LocalProtocolError(f"endpoint connection is {self.state.value}")
        self._next_id += 1
        return self._next_id
