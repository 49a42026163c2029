"""Records the registry keeps and hands out: ids, get options, containers, agents.

Everything here is a frozen, slotted attrs class so it can be shared between
the core, the drivers and user code without defensive copies.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from .fastinit import fast_init

__all__ = [
    "AgentId",
    "AgentInfo",
    "ClientId",
    "ClientInfo",
    "ContainerKind",
    "ContainerRecord",
    "ContainerState",
    "ContainerUuid",
    "GetOptions",
    "OfferedContainer",
    "labels_key",
]

AgentId = str
ClientId = str
ContainerKind = str
ContainerUuid = str


def labels_key(value: Any) -> tuple[str, ...]:
    """Return the canonical form of labels: a sorted tuple without duplicates.

    Labels select containers by their *set*, so order and repetition carry no
    meaning; one canonical form makes them usable as dict keys.
    """
    if value is None or (type(value) is tuple and not value):
        return ()  # the usual case (records of unlabelled containers), at once
    if type(value) is tuple and len(value) == 1 and type(value[0]) is str:
        return value  # one label (a record of a labelled container): canonical already
    if isinstance(value, str):
        return (value,)
    return tuple(sorted(dict.fromkeys(str(v) for v in value)))


class ContainerState(enum.Enum):
    """Lifecycle of a container as the hub sees it.

    PENDING -> ACTIVE -> ORPHANED -> TERMINATED (gone from the registry);
    ORPHANED -> ACTIVE when a client gets it again before its deadline;
    ACTIVE or ORPHANED -> DRAINING -> TERMINATED when its agent drains.  The
    registry's table of legal moves is ``entries.CONTAINER_TRANSITIONS``.
    """

    #: An agent was asked to start it and has not answered yet.
    PENDING = "pending"
    #: Running on its agent; at least one client holds it, or it is stateless.
    ACTIVE = "active"
    #: Running, held by nobody; terminated at ``orphaned_at + unused timeout``.
    ORPHANED = "orphaned"
    #: Its agent is draining: it takes no new gets or requests (callers are
    #: told to retry) and is dropped once the requests forwarded to it are answered.
    DRAINING = "draining"
    #: Gone from the registry (final): stopped, failed, timed out or its agent left.
    TERMINATED = "terminated"


@fast_init
@attrs.frozen
class GetOptions:
    """What a client asks for in ``get``: a fixed uuid, labels and extra data.

    ``labels`` select by exact set (see docs/design.md, "Labels"); ``extra``
    is passed to the agent's factory untouched.
    """

    uuid: ContainerUuid | None = None
    labels: tuple[str, ...] = attrs.field(default=(), converter=labels_key)
    extra: dict[str, Any] | None = None


@fast_init
@attrs.frozen
class OfferedContainer:
    """A container an agent reports when it registers.

    ``stateless`` marks a pre-existing HA instance that several agents may
    offer under one uuid; the first offer wins and the rest stand by.
    ``serving`` says the agent served this stateless offer (locally ACTIVE)
    when it registered: in a hub's recovery window only such an offer
    becomes the owner at once (``registry.Registry._offer``).
    """

    uuid: ContainerUuid
    kind: ContainerKind
    labels: tuple[str, ...] = attrs.field(default=(), converter=labels_key)
    stateless: bool = False
    serving: bool = False


@fast_init
@attrs.frozen
class ContainerRecord:
    """A container as listed by the hub and carried in events.

    ``epoch`` counts ownership changes of a stateless uuid (0 for ordinary
    containers); it only grows within one hub term.  ``instance`` numbers
    this instance of the uuid within one hub's life: a uuid dropped and
    started again gets a new, larger one (a promoted standby keeps it, as
    the holds carry over).
    """

    uuid: ContainerUuid
    kind: ContainerKind
    agent_id: AgentId
    endpoint: str | None = None
    labels: tuple[str, ...] = attrs.field(default=(), converter=labels_key)
    stateless: bool = False
    epoch: int = 0
    instance: int = 0


@fast_init
@attrs.frozen
class ClientInfo:
    """A session as an admin sees it (``Query("clients")``)."""

    client_id: ClientId
    #: the principal's subject ("anonymous" with authentication off)
    subject: str
    #: the uuids it holds references to, sorted
    holds: tuple[ContainerUuid, ...] = ()
    #: the agent ids it registered, sorted
    agents: tuple[AgentId, ...] = ()


@fast_init
@attrs.frozen
class AgentInfo:
    """An agent as listed by the hub and carried in events."""

    agent_id: AgentId
    kinds: tuple[ContainerKind, ...]
    endpoint: str | None = None
    containers: int = 0
