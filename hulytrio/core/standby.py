"""The hub side of stateless standby: who waits to take over which uuid.

Theory of operation
-------------------
A stateless (HA) container is a pre-existing instance that several agents
offer under one uuid.  The first offer the registry sees owns the uuid; every
later offer *stands by* (the agent is told so in its ``RegisterReply``) in a
group kept per uuid, in offer order.  In the hub's recovery window (its
first session + one alive timeout, ``recovery``) only an offer its agent
*served* (``OfferedContainer.serving``) owns an unknown uuid at once: the
agent that served it under the previous hub may still serve it, through a
woken old hub or a direct connection, until its fence lease runs out.  Any
other offer stands by *behind recovery* until a serving offer comes or the
window closes.  A group is in one of these states::

                 offer while a start of the uuid is pending (the start wins)
    (no group) ----------------------------------------------> BEHIND_START
      |  |                                                      |  |  |
      |  | offer while another agent owns the uuid  started ---'  |  | offer,
      |  v                                                         |  | withdrawal
      | BEHIND_OWNER <----------- start failed: first standby owns -'  |
      |  |  ^   ^  |               it, others left                     |
      |  |  |   '--'  offer, withdrawal, owner gone: first standby     |
      |  |  |         promoted (others left)                           |
      |  |  | a serving offer owns the uuid, or the window closed:     |
      |  |  | first standby activated (others left behind it)          v
      |  '--+--- last standby withdrawn or taken over ------------> DISBANDED
      |     |                                                         ^
      v     |                                                         |
    BEHIND_RECOVERY --- last standby withdrawn or activated ----------'
      |  ^
      '--'  offer, withdrawal

(no group -> BEHIND_RECOVERY: the recovery window is open, nobody owns or
starts the uuid, and the offer's agent did not serve it.)

"Owner gone" is one of: its agent left or re-registered without it, it
stopped, the hub terminated it and its agent has stopped it (until then an
offer or claim of the uuid stands by behind it: ``Registry._terminate``).  Then the registry asks
``next_standby()`` for the first standby whose agent is still registered:
a stateless owner is *promoted* (its record moves to that agent, epoch + 1,
holds carry over); an ordinary instance that won a race with the offers is
dropped and the standby is *activated* (a new record).  A start of the uuid
that fails or times out activates a standby the same way, and the gets that
waited for the start hold it.  When the recovery window closes, the first
live standby of each group behind recovery is activated the same way, and
the gets parked for the uuid (re-acquires, and gets of a uuid behind
recovery) hold it.

``Standbys`` keeps the groups and each agent's own list of offers
(``AgentEntry.standby``) in step; the registry decides when an owner is gone
(see ``registry.Registry``: ``_offer``, ``claim``, ``_promote_or_drop``,
``_activate_standby``, ``_fail_pending``, ``container_stopped``) and does the
ownership change.  DISBANDED is final: the uuid leaves the table, and a later
offer starts a new group.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

from .entries import AgentEntry
from .transitions import TransitionTable
from .types import AgentId, ContainerKind, ContainerUuid, OfferedContainer

__all__ = ["STANDBY_TRANSITIONS", "StandbyState", "Standbys"]


class StandbyState(enum.Enum):
    """Lifecycle of the group of standbys of one stateless uuid."""

    #: Standbys wait for a pending start of the uuid (it raced them and won).
    BEHIND_START = "behind-start"
    #: Standbys wait behind the agent that owns the uuid.
    BEHIND_OWNER = "behind-owner"
    #: Nobody owns the uuid and the hub's recovery window is open: standbys
    #: wait for an offer its agent served, or for the window to close.
    BEHIND_RECOVERY = "behind-recovery"
    #: Nobody stands by any more (final: the group is forgotten).
    DISBANDED = "disbanded"


_START = StandbyState.BEHIND_START
_OWNER = StandbyState.BEHIND_OWNER
_RECOVERY = StandbyState.BEHIND_RECOVERY
_DISBANDED = StandbyState.DISBANDED

#: The group lifecycle's legal moves (see the diagram above).
STANDBY_TRANSITIONS: TransitionTable[StandbyState] = TransitionTable("standby", {
    _START: {_START, _OWNER, _DISBANDED},
    _OWNER: {_OWNER, _DISBANDED},
    _RECOVERY: {_RECOVERY, _OWNER, _DISBANDED},
})


class _Group:
    __slots__ = ("offers", "state")

    def __init__(self, state: StandbyState) -> None:
        self.state = state
        #: agent id -> its offer, in offer order (the promotion order)
        self.offers: dict[AgentId, OfferedContainer] = {}


class Standbys:
    """The standby groups of every stateless uuid that has one."""

    __slots__ = ("_groups",)

    def __init__(self) -> None:
        self._groups: dict[ContainerUuid, _Group] = {}

    def __contains__(self, uuid: ContainerUuid) -> bool:
        return uuid in self._groups

    def state(self, uuid: ContainerUuid) -> StandbyState:
        """Return the state of ``uuid``'s group (DISBANDED when it has none)."""
        group = self._groups.get(uuid)
        return _DISBANDED if group is None else group.state

    def agents(self, uuid: ContainerUuid) -> Iterable[AgentId]:
        """Return the agents standing by for ``uuid``, in promotion order (a live view)."""
        group = self._groups.get(uuid)
        return () if group is None else group.offers

    def first_kind(self, uuid: ContainerUuid) -> ContainerKind | None:
        """Return the kind of the first offer standing by for ``uuid`` (None: none)."""
        group = self._groups.get(uuid)
        if group is None:
            return None
        for offer in group.offers.values():
            return offer.kind
        return None

    def stand_by(self, agent: AgentEntry, offer: OfferedContainer, behind: StandbyState) -> None:
        """``agent``'s ``offer`` stands by ``behind`` a pending start or an owner.

        A repeated offer of the same agent replaces its earlier one in place.

        Raises:
            LocalProtocolError: the group cannot move to ``behind``.
        """
        uuid = offer.uuid
        group = self._groups.get(uuid)
        if group is None:
            group = self._groups[uuid] = _Group(behind)
        else:
            self._transition(group, behind)
        group.offers[agent.agent_id] = offer
        agent.standby[uuid] = offer

    def owner_arrived(self, uuid: ContainerUuid) -> None:
        """``uuid``'s standbys have an owner now (the start they waited behind
        answered, or a serving offer came in the recovery window): they wait
        behind it."""
        group = self._groups.get(uuid)
        if group is not None:
            self._transition(group, _OWNER)

    def behind_recovery(self) -> list[ContainerUuid]:
        """Return the uuids whose groups wait behind recovery, in the order they formed.

        O(groups); called once, when the recovery window closes.
        """
        return [uuid for uuid, group in self._groups.items() if group.state is _RECOVERY]

    def withdraw(self, agent: AgentEntry, uuid: ContainerUuid) -> None:
        """``agent`` no longer stands by for ``uuid`` (a no-op if it did not)."""
        agent.standby.pop(uuid, None)
        self._leave(agent.agent_id, uuid)

    def withdraw_agent(self, agent: AgentEntry) -> None:
        """``agent`` is gone: it leaves every group it stood by in."""
        for uuid in agent.standby:
            self._leave(agent.agent_id, uuid)

    def next_standby(
        self, uuid: ContainerUuid, agents: Mapping[AgentId, AgentEntry],
    ) -> tuple[AgentEntry, OfferedContainer] | None:
        """Take the first standby of ``uuid`` whose agent is in ``agents`` out of its group.

        Returns that agent and its offer, the new owner's to be; None when
        no standby's agent is registered.  Standbys of agents that are gone
        are dropped on the way; a group left empty is disbanded.
        """
        group = self._groups.get(uuid)
        if group is None:
            return None
        offers = group.offers
        found: tuple[AgentEntry, OfferedContainer] | None = None
        while offers:
            agent_id = next(iter(offers))
            offer = offers.pop(agent_id)
            agent = agents.get(agent_id)
            if agent is not None:
                agent.standby.pop(uuid, None)
                found = (agent, offer)
                break
        if offers:
            # The others stand behind the new owner.
            self._transition(group, _OWNER)
        else:
            self._disband(uuid, group)
        return found

    def _leave(self, agent_id: AgentId, uuid: ContainerUuid) -> None:
        group = self._groups.get(uuid)
        if group is None:
            return
        group.offers.pop(agent_id, None)
        if group.offers:
            self._transition(group, group.state)
        else:
            self._disband(uuid, group)

    def _disband(self, uuid: ContainerUuid, group: _Group) -> None:
        self._transition(group, _DISBANDED)
        del self._groups[uuid]

    @staticmethod
    def _transition(group: _Group, new: StandbyState) -> None:
        group.state = STANDBY_TRANSITIONS.check(group.state, new)
