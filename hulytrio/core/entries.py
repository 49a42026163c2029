"""The registry's own entries: containers, pending starts, agents, clients.

Theory of operation
-------------------
The ``Registry`` keeps one mutable entry per container, pending start, agent
and client session; the records it hands out (``ContainerRecord``,
``AgentInfo``) are frozen copies made from them.  Three of the entries have
a lifecycle, and their legal moves are the tables right below (h11's
``_state.py`` model): an entry changes state only through its
``transition()``, which asks the table first, so an illegal move is a
``LocalProtocolError`` at once.

Container (``ContainerState``)::

    start asked --> PENDING --agent answers Started--> ACTIVE
                       |                                 ^  |
                       | start failed / timed out        |  | last holder released
                       v                           get   |  v
                   TERMINATED <--unused timeout------ ORPHANED
                       ^
                       '--- ACTIVE or ORPHANED: stopped by its agent, or its
                            agent went away with no standby to promote;
                            DRAINING: the requests forwarded to it are answered

    ACTIVE or ORPHANED --its agent drains (no standby to hand it to)--> DRAINING

An offered container (an agent's registration) is born ACTIVE; a start is
born PENDING.  A pending start keeps its own entry (``PendingStart``) until
its agent answers; the container entry made from it takes the PENDING ->
ACTIVE move.  TERMINATED is final: the entry is out of every index.
ORPHANED -> ORPHANED restarts the unused timeout (a start answered with the
uuid of an orphan the agent runs).

Client session (``PeerState``)::

    ALIVE --removed (closed, superseded, alive timeout)--> DEAD

An agent lives at most as long as the client session that registered it.
While it lives it may drain (``AgentStatus``)::

    SERVING --Drain (its agent process is shutting down)--> DRAINING

A draining agent is out of the placement line for good (``has_room`` is
False: no new starts), its containers were moved or removed when it began to
drain, and it stays registered until it unregisters or its session ends, so
the requests already forwarded to it are still answered through the hub.
A repeated ``Drain`` finds the agent DRAINING already and changes nothing.
"""

from __future__ import annotations

import enum

from .transitions import TransitionTable
from .types import (
    AgentId,
    AgentInfo,
    ClientId,
    ContainerKind,
    ContainerRecord,
    ContainerState,
    ContainerUuid,
    OfferedContainer,
)

__all__ = [
    "AGENT_TRANSITIONS",
    "CONTAINER_TRANSITIONS",
    "PEER_TRANSITIONS",
    "AgentEntry",
    "AgentStatus",
    "ClientEntry",
    "ContainerEntry",
    "PeerState",
    "PendingStart",
]

_PENDING = ContainerState.PENDING
_ACTIVE = ContainerState.ACTIVE
_ORPHANED = ContainerState.ORPHANED
_TERMINATED = ContainerState.TERMINATED
_DRAINING = ContainerState.DRAINING

#: The container lifecycle's legal moves (see the diagram above).
CONTAINER_TRANSITIONS: TransitionTable[ContainerState] = TransitionTable("container", {
    _PENDING: {_ACTIVE, _TERMINATED},
    _ACTIVE: {_ORPHANED, _TERMINATED, _DRAINING},
    # ORPHANED -> ORPHANED: an agent answered a start with the uuid of an
    # orphan it runs already; the orphan's unused timeout starts again.
    _ORPHANED: {_ACTIVE, _ORPHANED, _TERMINATED, _DRAINING},
    _DRAINING: {_TERMINATED},
})


class PeerState(enum.Enum):
    """Lifecycle of a client session in the registry."""

    #: Registered; its pings keep it (and the agents it hosts) alive.
    ALIVE = "alive"
    #: Removed: its holds are released and its agents are gone (final).
    DEAD = "dead"


#: The client session lifecycle's legal moves.
PEER_TRANSITIONS: TransitionTable[PeerState] = TransitionTable("peer", {
    PeerState.ALIVE: {PeerState.DEAD},
})


class AgentStatus(enum.Enum):
    """Lifecycle of a registered agent in the registry."""

    #: In line for new starts of its kinds (when it has room).
    SERVING = "serving"
    #: Shutting down: no new starts; its containers were moved or removed.
    DRAINING = "draining"


#: The agent lifecycle's legal moves (leaving the registry is not a state:
#: the entry is forgotten, so DRAINING is final).
AGENT_TRANSITIONS: TransitionTable[AgentStatus] = TransitionTable("agent", {
    AgentStatus.SERVING: {AgentStatus.DRAINING},
})


class ContainerEntry:
    """A live container: its record's fields, its holders and its state."""

    __slots__ = (
        "agent_id",
        "endpoint",
        "epoch",
        "holders",
        "instance",
        "kind",
        "labels",
        "orphaned_at",
        "state",
        "stateless",
        "uuid",
    )

    def __init__(
        self,
        uuid: ContainerUuid,
        kind: ContainerKind,
        agent_id: AgentId,
        endpoint: str | None,
        labels: tuple[str, ...],
        stateless: bool,
        state: ContainerState,
    ) -> None:
        self.uuid = uuid
        self.kind = kind
        self.agent_id = agent_id
        self.endpoint = endpoint
        self.labels = labels
        self.stateless = stateless
        self.epoch = 0
        self.instance = 0
        self.state = state
        #: client id -> number of gets not yet released
        self.holders: dict[ClientId, int] = {}
        #: when it became ORPHANED (None in every other state)
        self.orphaned_at: float | None = None

    def transition(self, new: ContainerState) -> None:
        """Move to ``new``.

        Raises:
            LocalProtocolError: ``CONTAINER_TRANSITIONS`` does not allow the move.
        """
        self.state = CONTAINER_TRANSITIONS.check(self.state, new)

    def record(self) -> ContainerRecord:
        """Return the frozen record clients see."""
        return ContainerRecord(
            self.uuid, self.kind, self.agent_id, self.endpoint, self.labels,
            self.stateless, self.epoch, self.instance,
        )


class PendingStart:
    """A start an agent was asked for and has not answered (state PENDING)."""

    __slots__ = ("agent_id", "kind", "labels", "start_id", "uuid", "waiters")

    def __init__(
        self,
        uuid: ContainerUuid,
        kind: ContainerKind,
        labels: tuple[str, ...],
        agent_id: AgentId,
        start_id: int,
    ) -> None:
        self.uuid = uuid
        self.kind = kind
        self.labels = labels
        self.agent_id = agent_id
        self.start_id = start_id
        #: (client id, call id) of every get waiting on this start
        self.waiters: list[tuple[ClientId, int]] = []


class AgentEntry:
    """A registered agent: its kinds, limit, containers and pending starts."""

    __slots__ = (
        "agent_id", "containers", "endpoint", "kinds", "max_containers", "owner",
        "parked", "pending", "standby", "status", "stopping",
    )

    def __init__(
        self,
        agent_id: AgentId,
        owner: ClientId,
        kinds: tuple[ContainerKind, ...],
        endpoint: str | None,
        max_containers: int | None,
    ) -> None:
        self.agent_id = agent_id
        self.owner = owner
        self.kinds = kinds
        self.endpoint = endpoint
        self.max_containers = max_containers
        self.containers: dict[ContainerUuid, None] = {}
        self.pending: dict[ContainerUuid, None] = {}
        #: stateless offers this agent stands by for (kept by ``standby.Standbys``)
        self.standby: dict[ContainerUuid, OfferedContainer] = {}
        #: containers the hub told it to terminate, until it says they stopped
        #: (``Registry._terminate``)
        self.stopping: dict[ContainerUuid, None] = {}
        #: found full and out of line (``placement.AgentLine``) until it has room
        self.parked = False
        self.status = AgentStatus.SERVING

    def transition(self, new: AgentStatus) -> None:
        """Move to ``new``.

        Raises:
            LocalProtocolError: ``AGENT_TRANSITIONS`` does not allow the move.
        """
        self.status = AGENT_TRANSITIONS.check(self.status, new)

    def info(self) -> AgentInfo:
        """Return the frozen record clients see."""
        return AgentInfo(self.agent_id, self.kinds, self.endpoint, len(self.containers))

    def has_room(self) -> bool:
        """Return whether it may be asked for one more container (never while draining)."""
        if self.status is AgentStatus.DRAINING:
            return False
        if self.max_containers is None:
            return True
        return len(self.containers) + len(self.pending) < self.max_containers


class ClientEntry:
    """A client session: liveness, holds, agents and what it waits for."""

    __slots__ = ("agents", "alive_timeout", "client_id", "holds", "last_seen", "parked",
                 "state", "waiting")

    def __init__(self, client_id: ClientId, alive_timeout: float, now: float) -> None:
        self.client_id = client_id
        self.alive_timeout = alive_timeout
        self.last_seen = now
        self.state = PeerState.ALIVE
        #: uuid -> number of gets not yet released (mirrors ContainerEntry.holders)
        self.holds: dict[ContainerUuid, int] = {}
        self.agents: dict[AgentId, None] = {}
        #: pending starts and parked re-acquires this client waits on, so its
        #: removal costs what it waits for, not every pending start
        self.waiting: dict[ContainerUuid, None] = {}
        self.parked: dict[ContainerUuid, None] = {}

    def transition(self, new: PeerState) -> None:
        """Move to ``new``.

        Raises:
            LocalProtocolError: ``PEER_TRANSITIONS`` does not allow the move.
        """
        self.state = PEER_TRANSITIONS.check(self.state, new)
