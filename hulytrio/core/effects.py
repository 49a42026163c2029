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
    "ClientDead",
    "CloseConnection",
    "ConnectContainer",
    "DeliverEvent",
    "DeliverPush",
    "DisconnectContainer",
    "Effect",
    "EndpointEffect",
    "HubEffect",
    "OpenConnection",
    "ReferenceChanged",
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


# What each machine can emit.  A driver matches on the union of the machine it
# drives and ends with ``assert_never``, so mypy strict fails a driver that
# forgets an effect.
#: The hub's outputs (``Hub.effects()``).
HubEffect: TypeAlias = Send | CloseConnection
#: The registry's outputs (``Registry.take_effects()``), for the hub only:
#: ``Send.conn`` is a client id there.
RegistryEffect: TypeAlias = Send | ClientDead | AgentSuperseded
#: A client session's outputs (``ClientSession``, with the agents it hosts).
SessionEffect: TypeAlias = (
    Send | CloseConnection | OpenConnection | Resolve | Reject | DeliverEvent
    | ReferenceChanged | DeliverPush | StartContainer | StopContainer | SetServing
    | RunRequest | ConnectContainer | DisconnectContainer
)
#: A direct endpoint's outputs (``EndpointServer`` and ``EndpointClient``).
EndpointEffect: TypeAlias = (
    Send | CloseConnection | Resolve | Reject | DeliverPush | StreamEnded
    | RunRequest | ConnectContainer | DisconnectContainer
)
#: Any effect of any machine.
Effect: TypeAlias = HubEffect | SessionEffect | EndpointEffect
