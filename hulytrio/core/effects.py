"""Outputs of the state machines: what a driver must do.

A driver drains a machine's effects after every input and performs them in
order.  The hub addresses connections by the opaque ``conn`` handle its driver
gave it; a client session has one connection, so its sends carry no address.

The registry is a machine inside the hub: it addresses peers by client id
(its ``Send.conn`` is a client id, which the hub maps to the connection) and
tells the hub, in the same one list, what only the hub can act on
(``ClientDead``, ``AgentSuperseded``).
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from typing import Any, TypeAlias

import attrs

from .errors import HulyError
from .events import NetworkEvent
from .fastinit import fast_init
from .messages import Message
from .types import ContainerRecord, GetOptions

__all__ = [
    "AgentSuperseded",
    "BaseEffect",
    "CancelRequest",
    "ClientDead",
    "CloseConnection",
    "ConnectContainer",
    "DeliverEvent",
    "DeliverPush",
    "DisconnectContainer",
    "Effect",
    "EndpointEffect",
    "Fact",
    "HubEffect",
    "Notice",
    "OpenConnection",
    "ReferenceChanged",
    "Refused",
    "RegistryEffect",
    "Reject",
    "Resolve",
    "RunRequest",
    "Send",
    "SessionEffect",
    "SetServing",
    "StartContainer",
    "StopContainer",
    "StreamEnded",
]


class BaseEffect:
    """Base of every effect class (a marker); drivers match on the unions below."""

    __slots__ = ()


@fast_init
@attrs.frozen
class Send(BaseEffect):
    """Send ``message`` on connection ``conn`` (None: the session's only connection)."""

    conn: Hashable | None
    message: Message


@fast_init
@attrs.frozen
class CloseConnection(BaseEffect):
    """Close connection ``conn`` (None: the session's connection) for ``reason``."""

    conn: Hashable | None
    reason: str


@fast_init
@attrs.frozen
class OpenConnection(BaseEffect):
    """Session: open a connection to the hub now (``attempt`` counts from 1).

    ``url``: the hub to dial, when the session knows it (a standby hub's
    redirect to the active one); None lets the driver pick (it rotates
    through the hubs it was given).
    """

    attempt: int
    url: str | None = None


@fast_init
@attrs.frozen
class Resolve(BaseEffect):
    """Session: the operation ``handle`` succeeded with ``value``."""

    handle: int
    value: Any


@fast_init
@attrs.frozen
class Reject(BaseEffect):
    """Session: the operation ``handle`` failed with ``error``."""

    handle: int
    error: HulyError


@fast_init
@attrs.frozen
class DeliverEvent(BaseEffect):
    """Session: a registry event for ``client.updates()`` listeners."""

    event: NetworkEvent


@fast_init
@attrs.frozen
class ReferenceChanged(BaseEffect):
    """Session: reference ``ref`` now points at ``record`` (None: lost, re-acquiring)."""

    ref: int
    record: ContainerRecord | None


@fast_init
@attrs.frozen
class DeliverPush(BaseEffect):
    """Session: container ``uuid`` pushed ``payload`` to this client."""

    uuid: str
    payload: bytes


@fast_init
@attrs.frozen
class StreamEnded(BaseEffect):
    """Endpoint client: the event stream from ``uuid`` ended (the container stopped there)."""

    uuid: str


@fast_init
@attrs.frozen
class StartContainer(BaseEffect):
    """Agent: start a container; answer with ``ClientSession.agent_started`` or ``_failed``."""

    agent_id: str
    uuid: str
    kind: str
    options: GetOptions


@fast_init
@attrs.frozen
class StopContainer(BaseEffect):
    """Agent: terminate container ``uuid`` (await its ``terminate()``)."""

    agent_id: str
    uuid: str


@fast_init
@attrs.frozen
class SetServing(BaseEffect):
    """Agent: stateless ``uuid`` now serves (owner) or must not serve (standby).

    ``fenced``: not serving only until the hub answers a registration (keep
    the container's streams; a demotion follows as ``serving=False`` without it).
    """

    agent_id: str
    uuid: str
    serving: bool
    epoch: int = 0
    fenced: bool = False


@fast_init
@attrs.frozen
class RunRequest(BaseEffect):
    """Agent: run ``operation`` on ``uuid``; answer with ``ClientSession.agent_reply``."""

    agent_id: str
    uuid: str
    call_id: int
    operation: str
    payload: bytes
    client_id: str | None


@fast_init
@attrs.frozen
class CancelRequest(BaseEffect):
    """Agent: the caller abandoned request ``call_id``; stop it, answer nothing.

    From a client session: the hub's request id; the session does not know
    which hosted agent runs it, so the driver asks each (ids are the hub's,
    unique on the connection).  From an ``EndpointSession``: the id of a
    request on that direct connection.
    """

    call_id: int


@fast_init
@attrs.frozen
class ConnectContainer(BaseEffect):
    """Agent: ``client_id`` connected to ``uuid`` through the hub (call its ``connect``)."""

    agent_id: str
    uuid: str
    client_id: str


@fast_init
@attrs.frozen
class DisconnectContainer(BaseEffect):
    """Agent: ``client_id`` disconnected from ``uuid`` (call its ``disconnect``)."""

    agent_id: str
    uuid: str
    client_id: str


@fast_init
@attrs.frozen
class ClientDead(BaseEffect):
    """Registry: ``client_id`` was silent past its alive timeout and is removed.

    The hub ends the session (fails what it forwarded there) and closes its
    connection.
    """

    client_id: str


@fast_init
@attrs.frozen
class AgentSuperseded(BaseEffect):
    """Registry: an agent moved from session ``old_session`` to a new one.

    ``uuids`` are the containers it ran under the old session: calls the hub
    forwarded there for them fail now, not when the old session times out.
    """

    old_session: str
    uuids: tuple[str, ...]


class Fact(enum.Enum):
    """A lifecycle fact of the hub an operator is told about (``Notice.fact``).

    The value is the log line's message.
    """

    #: an agent registered (``reason``: "registered" or "re-registered")
    AGENT_REGISTERED = "agent registered"
    #: an agent is gone; ``reason``: alive timeout, connection lost, client
    #: closed, reconnected, unregistered
    AGENT_DEAD = "agent declared dead"
    #: an agent id moved to a new session (``client_id``); ``reason`` names the old one
    AGENT_SUPERSEDED = "agent superseded"
    #: an agent answered a start; ``duration``: from the start sent to its answer
    CONTAINER_STARTED = "container started"
    #: a start failed (``reason``: the agent's error, or no answer in time)
    START_FAILED = "container start failed"
    #: the last holder let go of a container; it ends after the unused timeout
    CONTAINER_ORPHANED = "container orphaned"
    #: a container is gone from the registry; ``reason``: unused timeout,
    #: agent gone, stopped by agent, not offered on re-registration
    CONTAINER_TERMINATED = "container terminated"
    #: the agent did not say in time that a container the hub terminated has
    #: stopped (an agent of an older release, or a store that hangs): its uuid
    #: may start again now, and its last changes may be lost
    CONTAINER_STOP_LATE = "container stop not confirmed"
    #: a stateless uuid got an owner that is not a failover (offered, or a
    #: standby of an unowned uuid)
    OWNER_CHOSEN = "stateless owner chosen"
    #: a stateless owner was lost and a standby serves now; ``duration``: from
    #: the owner's last sign of life to the promotion
    STANDBY_PROMOTED = "standby promoted"
    #: a client session ended (``reason`` as for AGENT_DEAD)
    CLIENT_GONE = "client gone"
    #: a hello from a peer id the hub had a session for (or recently had)
    CLIENT_RECONNECTED = "client reconnected"


@fast_init
@attrs.frozen
class Notice(BaseEffect):
    """Hub: a lifecycle ``fact`` for the operator (a log line, a metric); nothing to send.

    Built only when the fact happens (never per request), from the ids at
    hand; fields a fact has no value for are None.
    """

    fact: Fact
    agent_id: str | None = None
    uuid: str | None = None
    kind: str | None = None
    client_id: str | None = None
    reason: str = ""
    #: seconds, for the facts that say what it measures
    duration: float | None = None
@fast_init
@attrs.frozen
class Refused(BaseEffect):
    """Hub: a peer was refused for want of a credential or a role (an audit record).

    ``peer`` is the subject of its credential (or ``"?"`` when it presented
    none that held), ``peer_id`` the id it asked for, ``what`` the message
    tag refused and ``reason`` why.  The refusal itself (an ``Error`` answer,
    a close) is in the effects beside it; drivers log this one.
    """

    conn: Hashable
    peer: str
    peer_id: str
    what: str
    reason: str


# What each machine can emit.  A driver matches on the union of the machine it
# drives and ends with ``assert_never``, so mypy strict fails a driver that
# forgets an effect.
#: The hub's outputs (``Hub.effects()``).
HubEffect: TypeAlias = Send | CloseConnection | Notice | Refused
#: The registry's outputs (``Registry.take_effects()``), for the hub only:
#: ``Send.conn`` is a client id there.
RegistryEffect: TypeAlias = Send | ClientDead | AgentSuperseded | Notice
#: A client session's outputs (``ClientSession``, with the agents it hosts).
SessionEffect: TypeAlias = (
    Send | CloseConnection | OpenConnection | Resolve | Reject | DeliverEvent
    | ReferenceChanged | DeliverPush | StartContainer | StopContainer | SetServing
    | RunRequest | ConnectContainer | DisconnectContainer | CancelRequest
)
#: A direct endpoint's outputs (``EndpointServer`` and ``EndpointClient``).
EndpointEffect: TypeAlias = (
    Send | CloseConnection | Resolve | Reject | DeliverPush | StreamEnded
    | RunRequest | ConnectContainer | DisconnectContainer | CancelRequest
)
#: Any effect of any machine.
Effect: TypeAlias = HubEffect | SessionEffect | EndpointEffect
