"""Registry change events and the queue that coalesces them.

Theory of operation: the registry records every change as it happens
(``EventQueue.agent`` / ``EventQueue.container``); the hub flushes the queue
at most once per batching window and broadcasts one combined
``NetworkEvent`` to every client.  Within a window the changes to one agent
id or one container uuid are folded into a single change that leaves a
client in the same state as replaying all of them would:

==========  ==========  ===========================================
earlier     later       folded
==========  ==========  ===========================================
ADDED       UPDATED     ADDED (with the later record)
ADDED       REMOVED     REMOVED (a client that never saw it ignores it)
UPDATED     UPDATED     UPDATED (later record)
UPDATED     REMOVED     REMOVED
REMOVED     ADDED       ADDED  (the reference dropped this: a re-add was lost)
REMOVED     UPDATED     ADDED
==========  ==========  ===========================================

Every flushed event carries a sequence number that grows by one per flush, so
a client that sees a gap knows it missed something and resyncs from a
snapshot (``list`` + ``agents``).
"""

from __future__ import annotations

import enum

import attrs

from .fastinit import fast_init
from .types import AgentId, AgentInfo, ContainerRecord, ContainerUuid

__all__ = ["AgentEvent", "ChangeKind", "ContainerEvent", "EventQueue", "NetworkEvent"]


class ChangeKind(enum.Enum):
    """What happened to one agent or container."""

    #: It appeared (or reappeared) in the registry.
    ADDED = "added"
    #: It is still there with a new record (endpoint, owner, counts).
    UPDATED = "updated"
    #: It is gone.
    REMOVED = "removed"


@fast_init
@attrs.frozen
class AgentEvent:
    """One agent's change within a ``NetworkEvent``."""

    change: ChangeKind
    agent: AgentInfo


@fast_init
@attrs.frozen
class ContainerEvent:
    """One container's change within a ``NetworkEvent``."""

    change: ChangeKind
    container: ContainerRecord


@fast_init
@attrs.frozen
class NetworkEvent:
    """A batch of coalesced registry changes, numbered by ``seq``."""

    seq: int
    agents: tuple[AgentEvent, ...] = ()
    containers: tuple[ContainerEvent, ...] = ()


def _fold(earlier: ChangeKind, later: ChangeKind) -> ChangeKind:
    if later is ChangeKind.REMOVED:
        return ChangeKind.REMOVED
    if earlier is ChangeKind.UPDATED and later is ChangeKind.UPDATED:
        return ChangeKind.UPDATED
    # Anything that was added or removed earlier in the window and is present
    # now must look added to a client, whatever it saw before the window.
    return ChangeKind.ADDED


class EventQueue:
    """Collects registry changes and folds them per agent id / container uuid.

    Insertion order of the first change to a key is kept, so the flushed event
    is deterministic.
    """

    __slots__ = ("_agents", "_containers", "dirty", "seq")

    def __init__(self) -> None:
        self._agents: dict[AgentId, AgentEvent] = {}
        self._containers: dict[ContainerUuid, ContainerEvent] = {}
        #: Sequence number of the last flushed event (0: none yet).
        self.seq = 0
        #: Whether a change is queued (a plain attribute: the hub reads it
        #: after every message, so it must cost no call).
        self.dirty = False

    def __len__(self) -> int:
        return len(self._agents) + len(self._containers)

    def agent(self, change: ChangeKind, agent: AgentInfo) -> None:
        """Record a change to ``agent``."""
        old = self._agents.get(agent.agent_id)
        if old is not None:
            change = _fold(old.change, change)
        self._agents[agent.agent_id] = AgentEvent(change, agent)
        self.dirty = True

    def container(self, change: ChangeKind, container: ContainerRecord) -> None:
        """Record a change to ``container``."""
        old = self._containers.get(container.uuid)
        if old is not None:
            change = _fold(old.change, change)
        self._containers[container.uuid] = ContainerEvent(change, container)
        self.dirty = True

    def flush(self) -> NetworkEvent | None:
        """Return the folded event and empty the queue; None when nothing is queued."""
        if not self._agents and not self._containers:
            return None
        self.seq += 1
        event = NetworkEvent(
            self.seq, tuple(self._agents.values()), tuple(self._containers.values())
        )
        self._agents = {}
        self._containers = {}
        self.dirty = False
        return event
