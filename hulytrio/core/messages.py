"""The wire protocol's messages, as frozen attrs classes.

One message set serves every connection: a peer (a client, which may also
host agents) talks to the hub, and a client talks to an agent's own endpoint.
Each class has a short wire ``TAG``; the codec in ``hulytrio.wire.codec``
turns them into bytes.  See docs/protocol.md for the table of fields.

Calls carry an ``id`` chosen by the sender, unique among its calls in flight
on that connection; the answer (``Reply``, ``Response``, ``Error`` or
``Retry``) carries the same id.  Hub-to-agent calls (``Start``, forwarded
``Request``) use the hub's own id space on that connection.

Container request bodies travel as opaque ``bytes`` (``payload``): the client
encodes the user's data once and the hub forwards it without decoding.
"""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from .events import NetworkEvent
from .fastinit import fast_init
from .types import AgentId, AgentInfo, ContainerRecord, GetOptions, OfferedContainer

__all__ = [
    "PROTOCOL_VERSION",
    "Activate",
    "AgentsReply",
    "Cancel",
    "Claim",
    "Close",
    "Connect",
    "ContainerStopped",
    "Disconnect",
    "Drain",
    "Error",
    "Event",
    "Get",
    "GetReply",
    "Hello",
    "KindsReply",
    "ListReply",
    "Message",
    "Ok",
    "Ping",
    "Pong",
    "Push",
    "Query",
    "RegisterAgent",
    "RegisterReply",
    "Release",
    "Request",
    "Response",
    "Retry",
    "Start",
    "Started",
    "Terminate",
    "UnregisterAgent",
    "Welcome",
]

#: Bumped on any incompatible change; a hub refuses a hello with another major.
PROTOCOL_VERSION = 1


class Message:
    """Base of every protocol message (a marker; carries the wire tag)."""

    __slots__ = ()
    TAG: ClassVar[str] = ""


# --- session ---------------------------------------------------------------


@fast_init
@attrs.frozen
class Hello(Message):
    """First message of a peer. ``alive_timeout`` asks for a per-peer timeout.

    ``credentials`` is reserved for authentication (a token); ``None`` today.
    ``events`` chooses the registry events this peer receives: ``"all"``
    (every change, for a full view) or ``"own"`` (agent changes, and changes
    to the containers it holds or stands by for: what a session needs to
    follow its own references, at a cost that does not grow with the
    registry).
    """

    TAG: ClassVar[str] = "hello"
    protocol: int
    peer_id: str
    alive_timeout: float | None = None
    credentials: str | None = None
    events: str = "all"


@fast_init
@attrs.frozen
class Welcome(Message):
    """The hub's answer to ``Hello``.

    ``hub_id`` changes when the hub restarts (clients then rebuild their
    state); ``term`` numbers the active hub's term (hub failover);
    ``redirect`` names another hub to use instead (a standby answers so).
    ``event_seq`` is the sequence number of the last event broadcast.
    """

    TAG: ClassVar[str] = "welcome"
    protocol: int
    hub_id: str
    alive_timeout: float
    ping_interval: float
    term: int = 1
    event_seq: int = 0
    redirect: str | None = None


@fast_init
@attrs.frozen
class Ping(Message):
    """Sign of life; answered with ``Pong``."""

    TAG: ClassVar[str] = "ping"


@fast_init
@attrs.frozen
class Pong(Message):
    """Answer to ``Ping``."""

    TAG: ClassVar[str] = "pong"


@fast_init
@attrs.frozen
class Close(Message):
    """The sender is closing this connection on purpose, with a reason."""

    TAG: ClassVar[str] = "close"
    reason: str = ""


# --- client -> hub calls ----------------------------------------------------


@fast_init
@attrs.frozen
class Get(Message):
    """Acquire a container of ``kind`` (answered with ``GetReply``).

    ``reacquire`` marks a session rebuilding a reference it already had (the
    hub may park it during its recovery window, see docs/design.md);
    ``held_instance`` names the container instance this reference held: if
    it is still live and held by the caller (a promoted stateless
    container), no second hold is taken, so one release still frees it.
    """

    TAG: ClassVar[str] = "get"
    id: int
    kind: str
    options: GetOptions = attrs.field(factory=GetOptions)
    reacquire: bool = False
    held_instance: int | None = None


@fast_init
@attrs.frozen
class Release(Message):
    """Drop one hold on ``uuid`` (answered with ``Ok``)."""

    TAG: ClassVar[str] = "release"
    id: int
    uuid: str


@fast_init
@attrs.frozen
class RegisterAgent(Message):
    """Register (or re-register) an agent hosted by the sending peer.

    Answered with ``RegisterReply`` listing the stateless offers that lost
    to another agent (they stand by) and containers the agent must
    terminate.
    """

    TAG: ClassVar[str] = "register"
    id: int
    agent_id: AgentId
    kinds: tuple[str, ...]
    endpoint: str | None = None
    containers: tuple[OfferedContainer, ...] = ()
    max_containers: int | None = None


@fast_init
@attrs.frozen
class UnregisterAgent(Message):
    """Remove an agent this peer registered (answered with ``Ok``)."""

    TAG: ClassVar[str] = "unregister"
    id: int
    agent_id: AgentId


@fast_init
@attrs.frozen
class Claim(Message):
    """A standby asks to own the stateless ``uuid`` it offers (answered ``RegisterReply``)."""

    TAG: ClassVar[str] = "claim"
    id: int
    agent_id: AgentId
    container: OfferedContainer


@fast_init
@attrs.frozen
class Query(Message):
    """Read the registry: ``what`` is ``"list"``, ``"agents"`` or ``"kinds"``."""

    TAG: ClassVar[str] = "query"
    id: int
    what: str
    kind: str | None = None


@fast_init
@attrs.frozen
class ContainerStopped(Message):
    """An agent reports that one of its containers is gone (one-way)."""

    TAG: ClassVar[str] = "stopped"
    agent_id: AgentId
    uuid: str


@fast_init
@attrs.frozen
class Drain(Message):
    """The sending peer's agent ``agent_id`` is shutting down: move its containers first.

    Answered with ``Ok`` once the hub has placed everything it could
    elsewhere: no new starts go to the agent, its stateless containers are
    handed to a standby (``Activate`` sent before this ``Ok``), its other
    containers are removed from the registry (holders re-acquire them on
    another agent), and requests already forwarded to it are still answered
    through the hub.  The agent then finishes what it runs, terminates its
    containers and unregisters.
    """

    TAG: ClassVar[str] = "drain"
    id: int
    agent_id: AgentId


# --- replies ----------------------------------------------------------------


@fast_init
@attrs.frozen
class Ok(Message):
    """A call succeeded with nothing to return."""

    TAG: ClassVar[str] = "ok"
    id: int


@fast_init
@attrs.frozen
class GetReply(Message):
    """Answer to ``Get``: the container now held by the caller."""

    TAG: ClassVar[str] = "got"
    id: int
    container: ContainerRecord


@fast_init
@attrs.frozen
class RegisterReply(Message):
    """Answer to ``RegisterAgent``/``Claim``.

    ``standby``: stateless uuids owned by another agent (do not serve them);
    ``terminate``: containers the hub will not accept (wrong kind, duplicate).
    """

    TAG: ClassVar[str] = "registered"
    id: int
    standby: tuple[str, ...] = ()
    terminate: tuple[str, ...] = ()


@fast_init
@attrs.frozen
class ListReply(Message):
    """Answer to ``Query("list")``."""

    TAG: ClassVar[str] = "listed"
    id: int
    containers: tuple[ContainerRecord, ...]


@fast_init
@attrs.frozen
class AgentsReply(Message):
    """Answer to ``Query("agents")``."""

    TAG: ClassVar[str] = "agents"
    id: int
    agents: tuple[AgentInfo, ...]


@fast_init
@attrs.frozen
class KindsReply(Message):
    """Answer to ``Query("kinds")``: the sorted union of the agents' kinds."""

    TAG: ClassVar[str] = "kinds"
    id: int
    kinds: tuple[str, ...]


@fast_init
@attrs.frozen
class Error(Message):
    """A call failed.

    ``code`` is machine-readable (see ``hulytrio.core.errors.ErrorCode``);
    ``type`` names the remote exception class when a container raised.
    """

    TAG: ClassVar[str] = "error"
    id: int
    code: str
    message: str
    type: str = ""


@fast_init
@attrs.frozen
class Retry(Message):
    """Back-pressure: too many calls in flight; resend call ``id`` after ``after`` s."""

    TAG: ClassVar[str] = "retry"
    id: int
    after: float


# --- hub -> agent -----------------------------------------------------------


@fast_init
@attrs.frozen
class Start(Message):
    """Ask the peer's agent ``agent_id`` to start a container (answered ``Started``)."""

    TAG: ClassVar[str] = "start"
    id: int
    agent_id: AgentId
    kind: str
    uuid: str
    labels: tuple[str, ...] = ()
    extra: dict[str, Any] | None = None


@fast_init
@attrs.frozen
class Started(Message):
    """Answer to ``Start``: the container runs as ``uuid`` at ``endpoint``."""

    TAG: ClassVar[str] = "started"
    id: int
    uuid: str
    endpoint: str | None = None


@fast_init
@attrs.frozen
class Terminate(Message):
    """Order the agent to terminate ``uuid`` (one-way)."""

    TAG: ClassVar[str] = "terminate"
    agent_id: AgentId
    uuid: str


@fast_init
@attrs.frozen
class Activate(Message):
    """Promote a standing-by stateless offer: ``agent_id`` now owns ``uuid``."""

    TAG: ClassVar[str] = "activate"
    agent_id: AgentId
    uuid: str
    epoch: int


# --- container traffic (client -> hub -> agent, or client -> agent endpoint) --


@fast_init
@attrs.frozen
class Request(Message):
    """Call ``operation`` on container ``uuid``; ``payload`` is the encoded data.

    ``client_id`` and ``caller_id`` are filled in by the hub when it forwards
    to an agent: the caller's peer id and the caller's own ``id`` for the
    request, which stay the same when the caller resends it after a hub
    restart or takeover (the agent answers such a resend from memory).
    """

    TAG: ClassVar[str] = "req"
    id: int
    uuid: str
    operation: str
    payload: bytes = b""
    client_id: str | None = None
    caller_id: int | None = None


@fast_init
@attrs.frozen
class Response(Message):
    """Answer to ``Request``: the encoded result."""

    TAG: ClassVar[str] = "res"
    id: int
    payload: bytes = b""


@fast_init
@attrs.frozen
class Cancel(Message):
    """The sender abandoned its call ``id`` (a ``Request``): expect no answer (one-way).

    A client sends it to the hub when its caller gives up; the hub frees the
    call's in-flight slot and forwards it (under its own id) to the agent,
    which stops the container's handler if it still runs.  An answer that
    crossed it on the wire is ignored.
    """

    TAG: ClassVar[str] = "cancel"
    id: int


@fast_init
@attrs.frozen
class Connect(Message):
    """Open an event stream from container ``uuid`` (answered ``Ok``)."""

    TAG: ClassVar[str] = "connect"
    id: int
    uuid: str
    client_id: str | None = None


@fast_init
@attrs.frozen
class Disconnect(Message):
    """Close the event stream from container ``uuid`` (one-way)."""

    TAG: ClassVar[str] = "disconnect"
    uuid: str
    client_id: str | None = None


@fast_init
@attrs.frozen
class Push(Message):
    """One event a container broadcast to a connected client (encoded payload)."""

    TAG: ClassVar[str] = "push"
    uuid: str
    payload: bytes
    client_id: str | None = None


@fast_init
@attrs.frozen
class Event(Message):
    """A coalesced registry event broadcast by the hub."""

    TAG: ClassVar[str] = "event"
    event: NetworkEvent


#: Every message class by wire tag.
MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.TAG: cls
    for cls in (
        Hello, Welcome, Ping, Pong, Close, Get, Release, RegisterAgent, UnregisterAgent,
        Claim, Query, ContainerStopped, Drain, Ok, GetReply, RegisterReply, ListReply,
        AgentsReply, KindsReply, Error, Retry, Start, Started, Terminate, Activate, Request,
        Response, Connect, Disconnect, Push, Event, Cancel,
    )
}
