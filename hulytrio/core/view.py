"""A client's view of the registry, built from the hub's events.

Theory of operation
-------------------
The hub broadcasts numbered ``NetworkEvent``s.  A session that asked for
"all" events keeps a copy of the agents and containers they describe, so
``client.list()``-like questions and the simulator's convergence check can
be answered without a round trip.  Events apply in order; one that skips a
number (``gap``) means some were missed, and the view is rebuilt from a
snapshot: the answers to two queries (``agents`` and ``list``), each
replacing its half of the view and yielding the difference as an event of
its own.  A session that asked for its "own" events keeps no view, only the
event numbers.

The view decides nothing about references or calls; the session
(``core/session.py``) sends the snapshot queries and acts on the events.
"""

from __future__ import annotations

from .events import AgentEvent, ChangeKind, ContainerEvent, NetworkEvent
from .messages import AgentsReply, KindsReply, ListReply
from .types import AgentId, AgentInfo, ContainerRecord, ContainerUuid

__all__ = ["RegistryView"]

#: read once for ``apply`` (every session, every event): on Python 3.11 a read
#: of ``ChangeKind.REMOVED`` costs ~1,100 instructions, a global ~10 (see
#: docs/performance.md, "Churn instructions recovered (2026-12-06)")
_CHANGE_REMOVED = ChangeKind.REMOVED


class RegistryView:
    """The agents and containers a session has heard of, and the last event number."""

    __slots__ = ("agents", "containers", "resyncing", "seq")

    def __init__(self) -> None:
        self.agents: dict[AgentId, AgentInfo] = {}
        self.containers: dict[ContainerUuid, ContainerRecord] = {}
        #: the number of the last event applied
        self.seq = 0
        #: snapshot answers still awaited (0: no resync running)
        self.resyncing = 0

    def restart(self, seq: int) -> None:
        """A new hub session: events continue from ``seq``; no snapshot is awaited."""
        self.seq = seq
        self.resyncing = 0

    def follow(self, event: NetworkEvent) -> bool:
        """Note the number of a new ``event`` (one newer than ``seq``).

        Returns whether numbers were skipped before it (events were missed;
        in "own" mode skipped numbers are expected).
        """
        gap = event.seq != self.seq + 1
        self.seq = event.seq
        return gap

    def apply(self, event: NetworkEvent) -> None:
        """Apply ``event``'s changes to the view ("all" mode; ``follow`` notes its number)."""
        # Every session applies every event: after a hub start that is
        # sessions x agents updates, so the loops bind what they use once.
        removed = _CHANGE_REMOVED
        agents = self.agents
        for ae in event.agents:
            if ae.change is removed:
                agents.pop(ae.agent.agent_id, None)
            else:
                agents[ae.agent.agent_id] = ae.agent
        containers = self.containers
        for ce in event.containers:
            if ce.change is removed:
                containers.pop(ce.container.uuid, None)
            else:
                containers[ce.container.uuid] = ce.container

    def snapshot_done(self) -> None:
        """One snapshot answer arrived, or will never arrive (its call failed)."""
        self.resyncing = max(0, self.resyncing - 1)

    def replace(self, msg: AgentsReply | ListReply | KindsReply) -> NetworkEvent | None:
        """Replace the half of the view ``msg`` answers for with its snapshot.

        Returns the difference as an event (numbered as the last one applied),
        or None when the snapshot changed nothing (a ``KindsReply`` answers
        for no half: it only counts as an answer).
        """
        self.snapshot_done()
        agents: list[AgentEvent] = []
        containers: list[ContainerEvent] = []
        if isinstance(msg, AgentsReply):
            fresh = {a.agent_id: a for a in msg.agents}
            for agent_id, info in self.agents.items():
                if agent_id not in fresh:
                    agents.append(AgentEvent(ChangeKind.REMOVED, info))
            for agent_id, info in fresh.items():
                old = self.agents.get(agent_id)
                if old != info:
                    change = ChangeKind.ADDED if old is None else ChangeKind.UPDATED
                    agents.append(AgentEvent(change, info))
            self.agents = fresh
        elif isinstance(msg, ListReply):
            fresh_c = {c.uuid: c for c in msg.containers}
            for uuid, rec in self.containers.items():
                if uuid not in fresh_c:
                    containers.append(ContainerEvent(ChangeKind.REMOVED, rec))
            for uuid, rec in fresh_c.items():
                old_c = self.containers.get(uuid)
                if old_c != rec:
                    change = ChangeKind.ADDED if old_c is None else ChangeKind.UPDATED
                    containers.append(ContainerEvent(change, rec))
            self.containers = fresh_c
        if not agents and not containers:
            return None
        return NetworkEvent(self.seq, tuple(agents), tuple(containers))
