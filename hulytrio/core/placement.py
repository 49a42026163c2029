"""Where a ``get`` finds or starts a container: the selector index and the agent line.

Theory of operation
-------------------
Both keep ``get`` O(1) in the number of containers and agents.

``SelectorIndex`` maps a selector, ``(kind, exact label set)``, to the uuids
that match it, in insertion order: a get without a uuid reuses the first
live one, else joins the first pending start.  The registry keeps one for
live containers and one for pending starts.

``AgentLine`` is the round-robin of agents per kind.  It keeps every agent
that has the kind (``has_kind``, for ``kinds()``) and, apart, the ones in
line for a new start.  An agent found full is *parked*: taken out of line
for all its kinds until a container or pending start of it goes
(``unpark``), so a pick skips each full agent once, not on every get.
"""

from __future__ import annotations

from collections.abc import Mapping

from .entries import AgentEntry
from .types import AgentId, ContainerKind, ContainerUuid

__all__ = ["AgentLine", "Selector", "SelectorIndex"]

#: (kind, canonical labels)
Selector = tuple[ContainerKind, tuple[str, ...]]


class SelectorIndex:
    """uuids per selector, in insertion order."""

    __slots__ = ("buckets",)

    def __init__(self) -> None:
        #: selector -> uuids (read by the self-check; change only through methods)
        self.buckets: dict[Selector, dict[ContainerUuid, None]] = {}

    def add(self, selector: Selector, uuid: ContainerUuid) -> None:
        """File ``uuid`` under ``selector``."""
        self.buckets.setdefault(selector, {})[uuid] = None

    def remove(self, selector: Selector, uuid: ContainerUuid) -> None:
        """Take ``uuid`` out of ``selector`` (a no-op if it is not there)."""
        bucket = self.buckets.get(selector)
        if bucket is not None:
            bucket.pop(uuid, None)
            if not bucket:
                del self.buckets[selector]

    def first(self, selector: Selector) -> ContainerUuid | None:
        """Return the oldest uuid filed under ``selector``, or None."""
        bucket = self.buckets.get(selector)
        if bucket:
            return next(iter(bucket))
        return None


class AgentLine:
    """Agents per kind, and the round-robin line of those with room."""

    __slots__ = ("_kind_agents", "room")

    def __init__(self) -> None:
        self._kind_agents: dict[ContainerKind, dict[AgentId, None]] = {}
        #: kind -> agents in line for it (read by the self-check; change only
        #: through methods)
        self.room: dict[ContainerKind, dict[AgentId, None]] = {}

    def kinds(self) -> list[ContainerKind]:
        """Return the kinds some agent has, in first-registration order."""
        return [k for k, agents in self._kind_agents.items() if agents]

    def join(self, agent: AgentEntry) -> None:
        """``agent`` has (at least) its ``kinds``: put it in line for each."""
        for kind in agent.kinds:
            self._kind_agents.setdefault(kind, {})[agent.agent_id] = None
            self.room.setdefault(kind, {})[agent.agent_id] = None

    def drop_kind(self, agent_id: AgentId, kind: ContainerKind) -> None:
        """``agent_id`` no longer has ``kind`` (it re-registered without it)."""
        self._kind_agents.get(kind, {}).pop(agent_id, None)
        self.room.get(kind, {}).pop(agent_id, None)

    def leave(self, agent: AgentEntry) -> None:
        """``agent`` is gone: out of every kind and every line."""
        agent_id = agent.agent_id
        for kind in agent.kinds:
            bucket = self._kind_agents.get(kind)
            if bucket is not None:
                bucket.pop(agent_id, None)
                if not bucket:
                    del self._kind_agents[kind]
            room = self.room.get(kind)
            if room is not None:
                room.pop(agent_id, None)
                if not room:
                    del self.room[kind]

    def pick(self, kind: ContainerKind, agents: Mapping[AgentId, AgentEntry]) -> AgentEntry | None:
        """Return the next agent in line for ``kind`` with room, or None; O(1) amortised.

        The one picked goes to the back of the line; the full ones met on
        the way are parked.
        """
        bucket = self.room.get(kind)
        while bucket:
            agent_id = next(iter(bucket))
            agent = agents[agent_id]
            if agent.has_room():
                del bucket[agent_id]
                bucket[agent_id] = None
                return agent
            self.park(agent)
        return None

    def park(self, agent: AgentEntry) -> None:
        """Take full ``agent`` out of line for all its kinds."""
        agent.parked = True
        for kind in agent.kinds:
            room = self.room.get(kind)
            if room is not None:
                room.pop(agent.agent_id, None)
                if not room:
                    del self.room[kind]

    def unpark(self, agent: AgentEntry) -> None:
        """Put a parked ``agent`` back in line if it has room again."""
        if agent.has_room():
            agent.parked = False
            for kind in agent.kinds:
                self.room.setdefault(kind, {})[agent.agent_id] = None
