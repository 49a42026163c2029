"""The hub's registry of agents, containers and clients, and its decisions.

Theory of operation
-------------------
Peers are addressed by client id.  A client may host agents; an agent lives
exactly as long as the client session that registered it (the client's pings
keep its agents alive).  Every operation takes ``now`` and records its
outputs in one list, ``take_effects()``: messages for peers (``Send`` with a
client id for ``conn``) and what only the hub can act on (``ClientDead``,
``AgentSuperseded``); registry changes go to ``events``.  Its deadlines live
in its own ``timers``; the owner (the ``Hub``) calls ``handle_timers`` when
``timers.next_deadline()`` is due.

The registry is a facade over units that each keep one concern:

- ``entries``: the container, pending start, agent and client entries, and
  the container and peer lifecycles (their transition tables);
- ``placement``: the selector index of live containers (reuse by ``get``)
  and the round-robin line of agents per kind;
- ``starts``: the pending starts, found by uuid, start id or selector;
- ``standby``: the hub side of stateless standby (groups of offers per uuid);
- ``recovery``: re-acquires parked while agents re-register after a start;
- ``seeded_bugs``: deliberate faults for the simulator's self-test;
- ``check``: the self-check of every index.

Indexes keep every operation O(1) or O(log n) (timers) in the number of
containers, agents and clients, except listing; per-client holds and
per-agent containers make clean-up O(own).

Container lifecycle: see ``entries`` (PENDING -> ACTIVE <-> ORPHANED ->
TERMINATED).  Every state change goes through ``ContainerEntry.transition``.

Rules the reference got wrong and this registry fixes are marked "fix:".
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import Iterable

from . import check, seeded_bugs
from .effects import AgentSuperseded, ClientDead, Fact, Notice, RegistryEffect, Send
from .entries import (
    AgentEntry,
    AgentStatus,
    ClientEntry,
    ContainerEntry,
    PeerState,
    PendingStart,
)
from .errors import ErrorCode
from .events import ChangeKind, EventQueue, NetworkEvent
from .messages import (
    Activate,
    AgentsReply,
    Error,
    GetReply,
    KindsReply,
    ListReply,
    Message,
    Ok,
    RegisterAgent,
    RegisterReply,
    Retry,
    Start,
    Terminate,
)
from .placement import AgentLine, SelectorIndex
from .probes import Probes
from .recovery import Recovery
from .standby import Standbys, StandbyState
from .starts import PendingStarts
from .timeouts import Timeouts
from .timers import Timers
from .types import (
    AgentId,
    AgentInfo,
    ClientId,
    ContainerKind,
    ContainerRecord,
    ContainerState,
    ContainerUuid,
    GetOptions,
    OfferedContainer,
)

__all__ = ["Offer", "Registry", "RegistryTimer"]

_PENDING = ContainerState.PENDING
_ACTIVE = ContainerState.ACTIVE
_ORPHANED = ContainerState.ORPHANED
_TERMINATED = ContainerState.TERMINATED
_DRAINING = ContainerState.DRAINING


class Offer(enum.Enum):
    """What became of one container an agent offered (registration or claim)."""

    #: It is the agent's: registered, or already its own.
    OK = "ok"
    #: A stateless uuid somebody else owns (or starts): the agent stands by.
    STANDBY = "standby"
    #: The agent must drop it (another agent owns the uuid, or a kind it lacks).
    TERMINATE = "terminate"


class RegistryTimer(enum.IntEnum):
    """The kinds of the registry's deadlines; a key is ``(kind, what)``.

    An ``IntEnum`` so the key tuples hash and compare in C (the timer wheel
    does both on every arming).
    """

    #: ``(ALIVE, client_id)``: the client has been silent for its alive timeout
    ALIVE = 1
    #: ``(ORPHAN, uuid)``: the unused timeout of an orphaned container
    ORPHAN = 2
    #: ``(START, start_id)``: the agent did not answer a start in time
    START = 3
    #: ``(RECOVERY, None)``: the recovery window after the hub's start closes
    RECOVERY = 4
    #: ``(STOP, uuid)``: the agent did not say in time that it stopped ``uuid``
    STOP = 5

    # Enum's own __hash__ is Python code; an int's is C (every key is hashed
    # on every arming and lookup).
    __hash__ = int.__hash__


class Registry:
    """Agents, containers, clients and the rules that tie them together.

    ``events`` collects registry changes to broadcast; ``timers`` holds the
    registry's deadlines (``RegistryTimer`` keys).  ``epoch_base`` is the
    first ownership epoch of a stateless uuid (the hub's term in the high
    bits, so epochs only grow across hubs).  ``seeded_bugs`` switches
    on deliberate faults for the simulator's self-test; production never
    sets it.  ``max_remembered_epochs`` bounds the dropped stateless uuids
    whose last epoch is kept (a class default; an instance may lower it).
    """

    max_remembered_epochs = 100_000

    def __init__(
        self,
        hub_id: str,
        timeouts: Timeouts,
        *,
        probes: Probes | None = None,
        seeded_bugs: frozenset[str] = frozenset(),
        epoch_base: int = 0,
    ) -> None:
        self.hub_id = hub_id
        self.timeouts = timeouts
        self.epoch_base = epoch_base
        self.probes = probes if probes is not None else Probes()
        self.seeded_bugs = seeded_bugs
        #: outputs in order, taken by the hub (``take_effects``)
        self.effects: list[RegistryEffect] = []
        self.events = EventQueue()
        self.timers = Timers()
        self._agents: dict[AgentId, AgentEntry] = {}
        self._containers: dict[ContainerUuid, ContainerEntry] = {}
        self._clients: dict[ClientId, ClientEntry] = {}
        self._starts = PendingStarts()
        #: live containers per selector, for reuse by ``get``
        self._live = SelectorIndex()
        self._line = AgentLine()
        self._standbys = Standbys()
        #: stateless uuid -> its epoch when its record was dropped (epochs only grow);
        #: at most ``max_remembered_epochs``, the oldest forgotten first
        self._last_epoch: dict[ContainerUuid, int] = {}
        #: one above every forgotten epoch (0: none forgotten): where a uuid the
        #: registry has no record of starts once any was forgotten, so that
        #: its epochs still only grow
        self._epoch_floor = 0
        self._serial = 0
        #: whether to record ``_interest`` (some session takes only its own events)
        self._track_interest = False
        #: uuid -> sessions a queued container change concerns (see _container_changed)
        self._interest: dict[ContainerUuid, dict[ClientId, None]] = {}
        self._recovery = Recovery()
        #: uuid -> the agent told to terminate it, until it says it stopped (its
        #: last changes are saved then) or ``timeouts.stop`` passes; see ``_terminate``
        self._stopping: dict[ContainerUuid, AgentId] = {}
        #: while a client that timed out is removed: its last sign of life
        #: (a failover's duration counts from it)
        self._lost_since: float | None = None

    # --- the seam with the hub -------------------------------------------------

    def take_effects(self) -> builtins.list[RegistryEffect]:
        """Return and clear the effects produced since the last call, in order."""
        out = self.effects
        self.effects = []
        return out

    def track_interest(self) -> None:
        """Some session takes only its own events: note whom each change concerns."""
        self._track_interest = True

    def flush_events(self) -> tuple[NetworkEvent | None, dict[ContainerUuid, dict[ClientId, None]]]:
        """Return the coalesced event of the window (None: nothing changed) and its interest.

        The interest maps each changed uuid to the sessions it concerns
        (holders and standbys), recorded once ``track_interest()`` was called.
        """
        interest, self._interest = self._interest, {}
        return self.events.flush(), interest

    # --- read-only views ----------------------------------------------------

    def container(self, uuid: ContainerUuid) -> ContainerRecord | None:
        """Return the record of ``uuid``, or None if it is not live."""
        c = self._containers.get(uuid)
        return None if c is None else c.record()

    def container_state(self, uuid: ContainerUuid) -> ContainerState | None:
        """Return the lifecycle state of ``uuid`` (PENDING included), or None."""
        c = self._containers.get(uuid)
        if c is not None:
            return c.state
        return _PENDING if uuid in self._starts.by_uuid else None

    def holders(self, uuid: ContainerUuid) -> dict[ClientId, int]:
        """Return a copy of the holders of ``uuid`` (client id -> count)."""
        c = self._containers.get(uuid)
        return {} if c is None else dict(c.holders)

    def holds(self, client_id: ClientId) -> dict[ContainerUuid, int]:
        """Return a copy of what ``client_id`` holds (uuid -> count)."""
        cl = self._clients.get(client_id)
        return {} if cl is None else dict(cl.holds)

    def orphaned_at(self, uuid: ContainerUuid) -> float | None:
        """Return when ``uuid`` was orphaned, or None if it is held (or unknown)."""
        c = self._containers.get(uuid)
        return None if c is None else c.orphaned_at

    def orphans(self) -> builtins.list[tuple[ContainerUuid, float]]:
        """Return ``(uuid, orphaned_at)`` of every orphaned container, in registration order.

        O(containers) without building records: the simulator's orphan check.
        """
        return [(uuid, c.orphaned_at) for uuid, c in self._containers.items()
                if c.orphaned_at is not None]

    def standbys(self, uuid: ContainerUuid) -> tuple[AgentId, ...]:
        """Return the agents standing by for stateless ``uuid``, in promotion order."""
        return tuple(self._standbys.agents(uuid))

    def stopping(self, uuid: ContainerUuid) -> AgentId | None:
        """Return the agent the hub told to terminate ``uuid`` and has not heard
        from since (None: ``uuid`` is not stopping; see ``_terminate``)."""
        return self._stopping.get(uuid)

    def recovery_until(self) -> float | None:
        """Return when the recovery window closes (None: no session has opened it yet)."""
        return self._recovery.until

    def standby_state(self, uuid: ContainerUuid) -> StandbyState:
        """Return the state of ``uuid``'s standby group (DISBANDED: it has none)."""
        return self._standbys.state(uuid)

    def list(self, kind: ContainerKind | None = None) -> tuple[ContainerRecord, ...]:
        """Return the live containers (of ``kind`` if given), in registration order."""
        return tuple(
            c.record() for c in self._containers.values() if kind is None or c.kind == kind
        )

    def agents(self) -> tuple[AgentInfo, ...]:
        """Return every registered agent, in registration order."""
        return tuple(a.info() for a in self._agents.values())

    def agent_owner(self, agent_id: AgentId) -> ClientId | None:
        """Return the client that registered ``agent_id``, or None."""
        a = self._agents.get(agent_id)
        return None if a is None else a.owner

    def registered_agents(self, client_id: ClientId) -> int:
        """Return how many agents ``client_id`` has registered (0 for an unknown client)."""
        c = self._clients.get(client_id)
        return 0 if c is None else len(c.agents)

    def agent_containers(self, agent_id: AgentId) -> tuple[ContainerUuid, ...]:
        """Return the uuids the hub believes ``agent_id`` runs."""
        a = self._agents.get(agent_id)
        return () if a is None else tuple(a.containers)

    def kinds(self) -> tuple[ContainerKind, ...]:
        """Return the sorted, de-duplicated kinds of all agents (fix: de-duplicated)."""
        return tuple(sorted(self._line.kinds()))

    def clients(self) -> tuple[ClientId, ...]:
        """Return the known client ids, in arrival order."""
        return tuple(self._clients)

    def has_client(self, client_id: ClientId) -> bool:
        """Return whether ``client_id`` is registered."""
        return client_id in self._clients

    def has_agent(self, agent_id: AgentId) -> bool:
        """Return whether ``agent_id`` is registered."""
        return agent_id in self._agents

    def pending_count(self) -> int:
        """Return the number of container starts awaiting their agent."""
        return len(self._starts)

    def __len__(self) -> int:
        return len(self._containers)

    def route(self, uuid: ContainerUuid) -> tuple[AgentId, ClientId] | None:
        """Return (agent id, owning client id) serving ``uuid``, or None if unknown."""
        c = self._containers.get(uuid)
        if c is None:
            return None
        agent = self._agents.get(c.agent_id)
        if agent is None:
            return None
        return agent.agent_id, agent.owner

    # --- helpers ------------------------------------------------------------

    def _send(self, client_id: ClientId, message: Message) -> None:
        self.effects.append(Send(client_id, message))

    def _error(self, client_id: ClientId, call_id: int, code: ErrorCode, text: str) -> None:
        self._send(client_id, Error(call_id, code.value, text))

    def _next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def _orphan(self, c: ContainerEntry, now: float) -> None:
        if c.stateless or c.state is _DRAINING:
            # A stateless container is pre-existing: nobody started it for a
            # client, so nobody's release may kill it.  A draining one is
            # dropped once its requests are answered, held or not.
            return
        c.transition(_ORPHANED)
        c.orphaned_at = now
        self.effects.append(Notice(Fact.CONTAINER_ORPHANED, c.agent_id, c.uuid, c.kind))
        self.timers.call_at(now + self.timeouts.unused_container, (RegistryTimer.ORPHAN, c.uuid))

    def _hold(self, client_id: ClientId, c: ContainerEntry) -> None:
        c.holders[client_id] = c.holders.get(client_id, 0) + 1
        cl = self._clients[client_id]
        cl.holds[c.uuid] = cl.holds.get(c.uuid, 0) + 1
        if c.state is _ORPHANED:
            self.probes.hit("orphan rescued")
            c.transition(_ACTIVE)
            c.orphaned_at = None
            self.timers.cancel((RegistryTimer.ORPHAN, c.uuid))

    def _add_container(
        self,
        agent: AgentEntry,
        uuid: ContainerUuid,
        kind: ContainerKind,
        labels: tuple[str, ...],
        stateless: bool,
        state: ContainerState = _ACTIVE,
    ) -> ContainerEntry:
        """Register a container of ``agent`` born in ``state`` (PENDING: move it on)."""
        c = ContainerEntry(uuid, kind, agent.agent_id, agent.endpoint, labels, stateless, state)
        if uuid in self._last_epoch:
            # A new owner after the record was dropped is an ownership change
            # too, also when the uuid is started afresh on an agent that hosts
            # its kind without offering it.  fix: that instance had epoch 0,
            # below the epochs the hub had already published for the uuid.
            c.epoch = self._last_epoch.pop(uuid) + 1
        elif stateless or self._epoch_floor:
            # A stateless uuid starts at its hub term's first epoch; any uuid
            # may be one whose last epoch was forgotten (bounded memory).
            c.epoch = max(self.epoch_base if stateless else 0, self._epoch_floor)
        self._containers[uuid] = c
        agent.containers[uuid] = None
        self._live.add((kind, labels), uuid)
        # Every instance gets its own number, so a uuid that is dropped and
        # registered again (folded into one "added" within an event window)
        # is told apart from the instance a client held.
        c.instance = self._next_serial()
        return c

    def _leave_agent(self, agent: AgentEntry, uuid: ContainerUuid) -> None:
        """``uuid`` is no longer ``agent``'s: it may have room again."""
        agent.containers.pop(uuid, None)
        if agent.parked:
            self._line.unpark(agent)

    def _drop_container(self, c: ContainerEntry, now: float, reason: str) -> None:
        """Forget ``c`` entirely (for ``reason``): holders lose it, clients are told."""
        c.transition(_TERMINATED)
        self.effects.append(Notice(Fact.CONTAINER_TERMINATED, c.agent_id, c.uuid, c.kind,
                                   None, reason))
        del self._containers[c.uuid]
        if c.stateless or c.epoch:
            # (An ordinary container has an epoch only as the successor of a
            # stateless one, so this stays one entry per stateless uuid.)
            self._last_epoch[c.uuid] = c.epoch
            if len(self._last_epoch) > self.max_remembered_epochs:
                oldest = next(iter(self._last_epoch))
                self._epoch_floor = max(self._epoch_floor, self._last_epoch.pop(oldest) + 1)
        self._live.remove((c.kind, c.labels), c.uuid)
        agent = self._agents.get(c.agent_id)
        if agent is not None:
            self._leave_agent(agent, c.uuid)
        for client_id in c.holders:
            cl = self._clients.get(client_id)
            if cl is not None:
                cl.holds.pop(c.uuid, None)
        self.timers.cancel((RegistryTimer.ORPHAN, c.uuid))
        self._container_changed(ChangeKind.REMOVED, c)
        if c.uuid in self._standbys and c.uuid not in self._stopping:
            # Offers that stood by for an instance that was not one of theirs
            # (a start of the uuid won the race with them): one serves it now.
            self._activate_standby(c.uuid)

    def _container_changed(self, change: ChangeKind, c: ContainerEntry) -> None:
        """Queue an event for ``c`` and, when asked to, note who it concerns.

        Sessions that receive only their own events (``Hello.events ==
        "own"``) are sent the changes to containers they hold or stand by
        for; ``_interest`` records them per uuid until the next flush.
        """
        self.events.container(change, c.record())
        if not self._track_interest:
            return
        bucket = self._interest.setdefault(c.uuid, {})
        for client_id in c.holders:
            bucket[client_id] = None
        for agent_id in self._standbys.agents(c.uuid):
            agent = self._agents.get(agent_id)
            if agent is not None:
                bucket[agent.owner] = None

    # --- stateless standby: the registry's side of ``standby`` -------------------

    def _promote_or_drop(self, c: ContainerEntry, now: float, reason: str) -> None:
        """The owner of ``c`` is gone (``reason``): promote a standby if it is stateless,
        else drop it.

        A DRAINING container is dropped (a standby that came meanwhile is then
        activated by ``_drop_container``).
        """
        if c.stateless and c.uuid in self._standbys and c.state is not _DRAINING:
            taken = self._standbys.next_standby(c.uuid, self._agents)
            if taken is not None:
                new_owner, offer = taken
                self.effects.append(Notice(
                    Fact.STANDBY_PROMOTED, new_owner.agent_id, c.uuid, c.kind, new_owner.owner,
                    f"owner {c.agent_id!r}: {reason}",
                    now - (now if self._lost_since is None else self._lost_since)))
                old = self._agents.get(c.agent_id)
                if old is not None:
                    self._leave_agent(old, c.uuid)
                self._live.remove((c.kind, c.labels), c.uuid)
                c.agent_id = new_owner.agent_id
                c.endpoint = new_owner.endpoint
                c.labels = offer.labels
                c.epoch += 1
                new_owner.containers[c.uuid] = None
                self._live.add((c.kind, c.labels), c.uuid)
                self.probes.hit("standby promoted")
                self._container_changed(ChangeKind.UPDATED, c)
                self.events.agent(ChangeKind.UPDATED, new_owner.info())
                self._send(new_owner.owner, Activate(new_owner.agent_id, c.uuid, c.epoch))
                return
        self._drop_container(c, now, reason)

    def _activate_standby(
        self, uuid: ContainerUuid, waiters: Iterable[tuple[ClientId, int]] = (),
        reason: str = "a standby of an unowned uuid",
    ) -> ContainerEntry | None:
        """Make the first live standby of unowned ``uuid`` its owner (``reason``
        goes in its notice); returns its entry.

        ``waiters`` (gets of the uuid) hold it and are answered.  The agent is
        told with ``Activate``, everyone with an added event.  Returns None
        if none of the standbys' agents is registered.
        """
        taken = self._standbys.next_standby(uuid, self._agents)
        if taken is None:
            return None
        agent, offer = taken
        self.probes.hit("standby activated for an unowned uuid")
        self.effects.append(Notice(Fact.OWNER_CHOSEN, agent.agent_id, uuid, offer.kind,
                                   agent.owner, reason))
        c = self._add_container(agent, uuid, offer.kind, offer.labels, stateless=True)
        self._send(agent.owner, Activate(agent.agent_id, uuid, c.epoch))
        for client_id, call_id in waiters:
            if client_id in self._clients:
                self._hold(client_id, c)
                self._send(client_id, GetReply(call_id, c.record()))
        # After the holds, so the event concerns the clients that waited.
        self._container_changed(ChangeKind.ADDED, c)
        self.events.agent(ChangeKind.UPDATED, agent.info())
        return c

    # --- clients: liveness ----------------------------------------------------

    def add_client(self, client_id: ClientId, alive_timeout: float | None, now: float) -> None:
        """Register a client session; it is dead after ``alive_timeout`` of silence.

        Raises:
            ValueError: if ``client_id`` is already registered (remove it first).
        """
        if client_id in self._clients:
            raise ValueError(f"client {client_id!r} is already registered")
        timeout = alive_timeout if alive_timeout is not None else self.timeouts.alive
        self._clients[client_id] = ClientEntry(client_id, timeout, now)
        self.timers.call_at(now + timeout, (RegistryTimer.ALIVE, client_id))
        # The hub's first session opens its recovery window (see get()).
        until = self._recovery.open(now, self.timeouts.alive)
        if until is not None:
            self.timers.call_at(until, (RegistryTimer.RECOVERY, None))

    def touch(self, client_id: ClientId, now: float) -> None:
        """Note a sign of life from ``client_id`` (O(1): the timer is re-armed lazily)."""
        cl = self._clients.get(client_id)
        if cl is not None:
            cl.last_seen = now

    def remove_client(self, client_id: ClientId, now: float,
                      reason: str = "connection lost") -> None:
        """Forget ``client_id`` (gone for ``reason``): release its holds and remove the
        agents it registered.

        A no-op for an unknown client.
        """
        cl = self._clients.pop(client_id, None)
        if cl is None:
            return
        cl.transition(PeerState.DEAD)
        self.effects.append(Notice(Fact.CLIENT_GONE, None, None, None, client_id, reason))
        self.timers.cancel((RegistryTimer.ALIVE, client_id))
        for agent_id in list(cl.agents):
            self._remove_agent(agent_id, now, reason)
        for uuid in list(cl.holds):
            c = self._containers.get(uuid)
            if c is None:
                continue
            c.holders.pop(client_id, None)
            if not c.holders:
                self._orphan(c, now)
        # Gets this client is still waiting for: the start goes on, but the
        # container must not be held for a client that is gone.
        for uuid in cl.waiting:
            pending = self._starts.by_uuid.get(uuid)
            if pending is not None:
                pending.waiters = [w for w in pending.waiters if w[0] != client_id]
        self._recovery.forget_client(client_id, cl.parked)

    def _client_expired(self, client_id: ClientId, now: float) -> None:
        cl = self._clients.get(client_id)
        if cl is None:
            return
        deadline = cl.last_seen + cl.alive_timeout
        if deadline > now:
            # Heard from since the timer was armed: re-arm at the real deadline.
            self.timers.call_at(deadline, (RegistryTimer.ALIVE, client_id))
            return
        self.probes.hit("client timed out")
        self.effects.append(ClientDead(client_id))
        self._lost_since = cl.last_seen
        self.remove_client(client_id, now, "alive timeout")
        self._lost_since = None

    # --- agents: registration -------------------------------------------------

    def register(self, client_id: ClientId, msg: RegisterAgent, now: float) -> None:
        """Register or re-register agent ``msg.agent_id`` for ``client_id``.

        Answers ``RegisterReply`` with the stateless offers that stand by and
        the containers the agent must terminate (another agent owns the uuid,
        or its kind is not among the agent's kinds).
        """
        if client_id not in self._clients:
            return
        existing = self._agents.get(msg.agent_id)
        if existing is not None and existing.owner != client_id:
            # The agent id moved to another session (a restarted process whose
            # old session is not yet timed out): the new session supersedes.
            self.probes.hit("agent superseded by new session")
            self.effects.append(AgentSuperseded(existing.owner, tuple(existing.containers)))
            self.effects.append(Notice(Fact.AGENT_SUPERSEDED, msg.agent_id, None, None,
                                       client_id, f"moved from session {existing.owner!r}"))
            self._remove_agent(msg.agent_id, now, None)
            existing = None
        kinds = tuple(dict.fromkeys(msg.kinds))
        if existing is None:
            agent = AgentEntry(msg.agent_id, client_id, kinds, msg.endpoint, msg.max_containers)
            self._agents[msg.agent_id] = agent
            self._clients[client_id].agents[msg.agent_id] = None
            change = ChangeKind.ADDED
        else:
            agent = existing
            self.probes.hit("agent re-registered")
            for kind in agent.kinds:
                if kind not in kinds:
                    self._line.drop_kind(agent.agent_id, kind)
            agent.kinds = kinds
            agent.parked = False  # its limit may have changed: looked at again
            agent.max_containers = msg.max_containers
            if agent.endpoint != msg.endpoint:
                agent.endpoint = msg.endpoint
                for uuid in agent.containers:
                    c = self._containers[uuid]
                    c.endpoint = msg.endpoint
                    self._container_changed(ChangeKind.UPDATED, c)
            change = ChangeKind.UPDATED
        self._line.join(agent)

        standby: builtins.list[ContainerUuid] = []
        terminate: builtins.list[ContainerUuid] = []
        offered: dict[ContainerUuid, None] = {}
        for oc in msg.containers:
            offered[oc.uuid] = None
            match self._offer(agent, oc, now):
                case Offer.STANDBY:
                    standby.append(oc.uuid)
                case Offer.TERMINATE:
                    terminate.append(oc.uuid)
                case Offer.OK:
                    pass
        if existing is not None:
            # fix: containers it still lists stay linked; the ones it no
            # longer lists are gone.
            for uuid in [u for u in agent.containers if u not in offered]:
                self._promote_or_drop(self._containers[uuid], now,
                                      "not offered on re-registration")
            for uuid in [u for u in agent.standby if u not in offered]:
                self._standbys.withdraw(agent, uuid)
        self.events.agent(change, agent.info())
        self.effects.append(Notice(Fact.AGENT_REGISTERED, agent.agent_id, None, ",".join(kinds),
                                   client_id, "registered" if existing is None
                                   else "re-registered"))
        self._send(client_id, RegisterReply(msg.id, tuple(standby), tuple(terminate)))

    def _offer(self, agent: AgentEntry, oc: OfferedContainer, now: float) -> Offer:
        """Apply one offered container; return what became of it."""
        if oc.kind not in agent.kinds:
            # fix: the reference accepted containers of undeclared kinds.
            return Offer.TERMINATE
        c = self._containers.get(oc.uuid)
        if c is None:
            if oc.uuid in self._starts.by_uuid:
                # A start of this uuid is pending elsewhere; the start wins.
                # The offer stands by for it (and takes over if the start
                # fails or its instance goes: ``_activate_standby``).
                if not oc.stateless:
                    return Offer.TERMINATE
                self.probes.hit("stateless offer stands by for a start")
                self._standbys.stand_by(agent, oc, StandbyState.BEHIND_START)
                return Offer.STANDBY
            if oc.stateless and oc.uuid in self._stopping:
                # The hub terminated its owner, whose last changes are still
                # on their way to the state store: owning it now, this agent
                # would claim first and fence that write.  It stands by, and
                # the first standby is activated once the owner has stopped
                # (``_stopped``).
                self.probes.hit("stateless offer stands by for a stop")
                self._standbys.stand_by(agent, oc, StandbyState.BEHIND_OWNER)
                return Offer.STANDBY
            if oc.stateless and not oc.serving and self._recovery.is_open(now):
                # A new hub (restarted, or a standby that just took the lease)
                # cannot tell who served the uuid before it: that agent may
                # still serve (a woken old hub forwards to it, a client calls
                # it directly) until its fence lease runs out, which the window
                # outlasts.  So an offer that did not serve waits for one that
                # did, or for the window's end (``_recovery_ended``).
                self.probes.hit("stateless offer stands by for recovery")
                self._standbys.stand_by(agent, oc, StandbyState.BEHIND_RECOVERY)
                return Offer.STANDBY
            c = self._add_container(agent, oc.uuid, oc.kind, oc.labels, oc.stateless)
            if oc.stateless:
                self.effects.append(Notice(Fact.OWNER_CHOSEN, agent.agent_id, oc.uuid, oc.kind,
                                           agent.owner, "offered"))
            if oc.uuid in self._standbys:
                # Offers stood by behind recovery: they stand behind this owner
                # now (its own offer among them, if any, is withdrawn).
                self.probes.hit("serving offer owns a uuid behind recovery")
                self._standbys.withdraw(agent, oc.uuid)
                self._standbys.owner_arrived(oc.uuid)
            for waiter, call_id, _kind, _options in self._recovery.take(oc.uuid):
                parked_client = self._clients.get(waiter)
                if parked_client is not None:
                    parked_client.parked.pop(oc.uuid, None)
                    self._hold(waiter, c)
                    self._send(waiter, GetReply(call_id, c.record()))
            # After the parked holds, so the event concerns those clients too.
            self._container_changed(ChangeKind.ADDED, c)
            if not c.holders and not oc.stateless:
                # A container nobody holds is an orphan from the start: after a
                # hub restart, holders have the unused timeout to re-acquire it.
                self._orphan(c, now)
            return Offer.OK
        if c.agent_id == agent.agent_id:
            if c.labels != oc.labels or c.kind != oc.kind:
                self._live.remove((c.kind, c.labels), c.uuid)
                c.labels = oc.labels
                c.kind = oc.kind
                self._live.add((c.kind, c.labels), c.uuid)
                self._container_changed(ChangeKind.UPDATED, c)
            return Offer.OK
        if oc.stateless and seeded_bugs.STATELESS_DOUBLE_OWNER in self.seeded_bugs:
            self._leave_agent(self._agents[c.agent_id], c.uuid)
            seeded_bugs.second_owner_wins(c, agent)
            return Offer.OK
        if oc.stateless:
            self.probes.hit("stateless offer stands by")
            self._standbys.stand_by(agent, oc, StandbyState.BEHIND_OWNER)
            return Offer.STANDBY
        self.probes.hit("duplicate uuid rejected")
        return Offer.TERMINATE

    def claim(
        self, client_id: ClientId, call_id: int, agent_id: AgentId, oc: OfferedContainer,
        now: float,
    ) -> None:
        """A standby asks to own stateless ``oc.uuid``; answers ``RegisterReply``.

        The claim wins when nobody owns the uuid, and is answered the same
        when the claimer owns it already; otherwise the offer is kept as a
        standby (``standby`` lists the uuid).
        """
        agent = self._agents.get(agent_id)
        if agent is None or agent.owner != client_id:
            self._error(client_id, call_id, ErrorCode.UNAUTHORIZED,
                        f"agent {agent_id!r} is not registered by this client")
            return
        held = self._containers.get(oc.uuid)
        owned_already = held is not None and held.agent_id == agent_id
        outcome = self._offer(agent, oc, now)
        if outcome is Offer.OK:
            if owned_already:
                # The claimer's registration, ahead of the claim on its
                # connection, made it the owner: the claim changes nothing.
                self.probes.hit("standby claim by the owner")
            else:
                self.probes.hit("standby claim won")
            self.events.agent(ChangeKind.UPDATED, agent.info())
        self._send(
            client_id,
            RegisterReply(
                call_id,
                (oc.uuid,) if outcome is Offer.STANDBY else (),
                (oc.uuid,) if outcome is Offer.TERMINATE else (),
            ),
        )

    def unregister(self, client_id: ClientId, call_id: int, agent_id: AgentId, now: float) -> None:
        """Remove ``agent_id`` if ``client_id`` registered it; answers ``Ok`` or an error.

        An unknown agent id is a no-op answered with ``Ok``.
        """
        agent = self._agents.get(agent_id)
        if agent is not None and agent.owner != client_id:
            # fix: anyone could unregister anything.
            self._error(client_id, call_id, ErrorCode.UNAUTHORIZED,
                        f"agent {agent_id!r} was registered by another client")
            return
        if agent is not None:
            self._remove_agent(agent_id, now, "unregistered")
        self._send(client_id, Ok(call_id))

    def drain(self, client_id: ClientId, call_id: int, agent_id: AgentId, now: float
              ) -> builtins.list[ContainerUuid]:
        """Agent ``agent_id`` shuts down: move its containers first; answers ``Ok`` or an error.

        The agent moves to DRAINING and leaves the placement line (no new
        starts) and stops standing by.  Each stateless container it owns is
        handed to its first live standby (``Activate`` goes out before the
        ``Ok``); every other container of it moves to DRAINING: it takes no
        new gets (answered ``Retry``) and leaves the selector index.  Its
        pending starts fail with ``agent_gone`` (the gets are retried; the
        agent cancels its own starts).  The agent stays registered, so the
        requests already forwarded to it are answered; the hub then drops
        each draining container (``drop_drained``).

        Returns the uuids now DRAINING (empty for a repeated drain, which
        answers ``Ok`` and changes nothing).  Errors: ``unauthorized`` if
        another client registered the agent, ``not_found`` if nobody did.
        """
        agent = self._agents.get(agent_id)
        if agent is None or agent.owner != client_id:
            code = ErrorCode.NOT_FOUND if agent is None else ErrorCode.UNAUTHORIZED
            self._error(client_id, call_id, code,
                        f"agent {agent_id!r} is not registered by this client")
            return []
        draining: builtins.list[ContainerUuid] = []
        if agent.status is not AgentStatus.DRAINING:
            self.probes.hit("agent drained")
            agent.transition(AgentStatus.DRAINING)
            self._line.park(agent)
            for uuid in list(agent.standby):
                self._standbys.withdraw(agent, uuid)
            for uuid in list(agent.containers):
                c = self._containers[uuid]
                if c.stateless and self._standbys.agents(uuid):
                    # Handed over, or dropped if none of its standbys is alive.
                    self._promote_or_drop(c, now, "agent draining")
                    continue
                self._start_draining(c)
                draining.append(uuid)
            for uuid in list(agent.pending):
                self._fail_pending(uuid, ErrorCode.AGENT_GONE,
                                   f"agent {agent_id!r} is draining")
            self.events.agent(ChangeKind.UPDATED, agent.info())
        self._send(client_id, Ok(call_id))
        return draining

    def _start_draining(self, c: ContainerEntry) -> None:
        """``c``'s agent drains: no new gets or requests reach it (see ``drain``)."""
        c.transition(_DRAINING)
        if c.orphaned_at is not None:
            c.orphaned_at = None
            self.timers.cancel((RegistryTimer.ORPHAN, c.uuid))
        self._live.remove((c.kind, c.labels), c.uuid)

    def drop_drained(self, uuid: ContainerUuid, now: float) -> None:
        """The requests forwarded to draining ``uuid`` are answered: drop it.

        Its holders see it removed and re-acquire it (on another agent);
        its agent terminates it on its own.  A no-op unless ``uuid`` is DRAINING.
        """
        c = self._containers.get(uuid)
        if c is None or c.state is not _DRAINING:
            return
        self.probes.hit("drained container dropped")
        self._drop_container(c, now, "drained")
        agent = self._agents.get(c.agent_id)
        if agent is not None:
            self.events.agent(ChangeKind.UPDATED, agent.info())

    def _remove_agent(self, agent_id: AgentId, now: float, reason: str | None) -> None:
        """Remove ``agent_id``; ``reason`` why it is dead (None: superseded, told already)."""
        agent = self._agents.pop(agent_id, None)
        if agent is None:
            return
        if reason is not None:
            self.effects.append(Notice(Fact.AGENT_DEAD, agent_id, None, ",".join(agent.kinds),
                                       agent.owner, reason))
        owner = self._clients.get(agent.owner)
        if owner is not None:
            owner.agents.pop(agent_id, None)
        self._line.leave(agent)
        self._standbys.withdraw_agent(agent)
        for uuid in list(agent.stopping):
            # Its last changes are saved by now or never will be.
            self._stopped(uuid)
        for uuid in list(agent.containers):
            self._promote_or_drop(self._containers[uuid], now, "agent gone")
        for uuid in list(agent.pending):
            self.probes.hit("pending start lost with agent")
            self._fail_pending(uuid, ErrorCode.AGENT_GONE, f"agent {agent_id!r} went away")
        # fix: an agent with no containers still produces a removed event.
        self.events.agent(ChangeKind.REMOVED, agent.info())

    def container_stopped(self, client_id: ClientId, agent_id: AgentId, uuid: ContainerUuid,
                          now: float) -> None:
        """The agent says ``uuid`` is gone: drop it (or promote a standby).

        For a uuid the hub told it to terminate, this is the answer: the
        uuid may be started again (see ``_terminate``).
        """
        agent = self._agents.get(agent_id)
        if agent is None or agent.owner != client_id:
            return
        if uuid in agent.stopping:
            # The answer to our ``Terminate``: its last changes are saved.
            self.probes.hit("stop acknowledged")
            self._stopped(uuid)
            return
        if uuid in agent.standby:
            self._standbys.withdraw(agent, uuid)
            return
        c = self._containers.get(uuid)
        if c is None or c.agent_id != agent_id:
            return
        self.probes.hit("container stopped by agent")
        self._promote_or_drop(c, now, "stopped by agent")
        self.events.agent(ChangeKind.UPDATED, agent.info())

    # --- get / start / release ------------------------------------------------

    def get(
        self, client_id: ClientId, call_id: int, kind: ContainerKind, options: GetOptions,
        now: float, *, reacquire: bool = False, held_instance: int | None = None,
    ) -> None:
        """Acquire a container for ``client_id``; answers ``GetReply`` or ``Error``.

        With ``held_instance``, the instance a reference held: if that very
        instance is still live and the client holds it, no second hold is
        taken (the hold survived, e.g. a promoted stateless container).  With
        ``reacquire``, an unknown uuid is parked during the recovery window
        instead of started.

        Order: live uuid -> pending uuid -> live container of the same kind and
        label set -> pending start of the same kind and label set -> start one on
        the next agent (round-robin) with room.  Errors: ``bad_kind`` (uuid of
        another kind), ``no_agent`` (nobody hosts the kind).
        """
        if client_id not in self._clients:
            return
        uuid = options.uuid
        if uuid is not None:
            c = self._containers.get(uuid)
            if c is not None:
                if c.kind != kind:
                    self._error(client_id, call_id, ErrorCode.BAD_KIND,
                                f"container {uuid!r} is of kind {c.kind!r}, not {kind!r}")
                    return
                if c.state is _DRAINING:
                    # Its agent drains: once its last requests are answered it
                    # is dropped, and the get then starts it on another agent.
                    self.probes.hit("get retried: container draining")
                    self._send(client_id, Retry(call_id, self.timeouts.drain_retry))
                    return
                if not (held_instance == c.instance and client_id in c.holders):
                    self._hold(client_id, c)
                self._send(client_id, GetReply(call_id, c.record()))
                return
            p = self._starts.by_uuid.get(uuid)
            if p is not None:
                if p.kind != kind:
                    self._error(client_id, call_id, ErrorCode.BAD_KIND,
                                f"container {uuid!r} is of kind {p.kind!r}, not {kind!r}")
                    return
                self._wait(client_id, call_id, p)
                return
            if uuid in self._stopping:
                # Terminated a moment ago and still saving its last changes:
                # started now (on another agent) it would lose them.
                self.probes.hit("get retried: container stopping")
                self._send(client_id, Retry(call_id, self.timeouts.drain_retry))
                return
            if reacquire and self._recovery.is_open(now):
                # A session rebuilding after a hub restart asks for a container
                # whose agent has not re-registered yet: wait for it rather
                # than start a second instance elsewhere (state would be lost).
                self.probes.hit("re-acquire parked during recovery")
                self._recovery.park(uuid, (client_id, call_id, kind, options))
                self._clients[client_id].parked[uuid] = None
                return
            if self._standbys.state(uuid) is StandbyState.BEHIND_RECOVERY:
                offered = self._standbys.first_kind(uuid)
                if offered != kind:
                    self._error(client_id, call_id, ErrorCode.BAD_KIND,
                                f"container {uuid!r} is of kind {offered!r}, not {kind!r}")
                    return
                # Its owner is chosen when a serving offer comes or the window
                # closes (both answer the parked gets): wait for it rather
                # than be told "no owner" and retry with a growing delay.
                self.probes.hit("get parked behind recovery")
                self._recovery.park(uuid, (client_id, call_id, kind, options))
                self._clients[client_id].parked[uuid] = None
                return
            if uuid in self._standbys:
                # A stateless uuid whose owner is gone and whose standbys are
                # being promoted; it is not ours to start.
                self._error(client_id, call_id, ErrorCode.NOT_FOUND,
                            f"stateless container {uuid!r} has no owner right now")
                return
        else:
            selector = (kind, options.labels)
            live = self._live.first(selector)
            if live is not None:
                c = self._containers[live]
                self._hold(client_id, c)
                self._send(client_id, GetReply(call_id, c.record()))
                return
            starting = self._starts.first(selector)
            if starting is not None:
                self._wait(client_id, call_id, starting)
                return
        agent = self._line.pick(kind, self._agents)
        if agent is None:
            self._error(client_id, call_id, ErrorCode.NO_AGENT, f"no agent for kind {kind!r}")
            return
        serial = self._next_serial()
        if uuid is None:
            uuid = f"{kind}-{self.hub_id}-{serial}"
        p = PendingStart(uuid, kind, options.labels, agent.agent_id, serial)
        self._starts.add(p)
        self._wait(client_id, call_id, p)
        agent.pending[uuid] = None
        self.timers.call_at(now + self.timeouts.start, (RegistryTimer.START, serial))
        self._send(
            agent.owner,
            Start(serial, agent.agent_id, kind, uuid, options.labels, options.extra),
        )

    def cancel_get(self, client_id: ClientId, call_id: int) -> bool:
        """``client_id`` abandoned its get ``call_id``: stop it waiting for a start.

        Returns whether it was waiting; then it is answered ``Error(call_id,
        "cancelled")`` (no hold follows).  The start goes on: nobody else
        waiting, the container it brings is orphaned like any unheld one.
        Otherwise (answered already, or never a wait) nothing happens.
        """
        cl = self._clients.get(client_id)
        if cl is None:
            return False
        waiter = (client_id, call_id)
        for uuid in cl.waiting:
            p = self._starts.by_uuid.get(uuid)
            if p is None or waiter not in p.waiters:
                continue
            p.waiters.remove(waiter)
            if not any(w[0] == client_id for w in p.waiters):
                del cl.waiting[uuid]
            self.probes.hit("get cancelled while its start was pending")
            self._error(client_id, call_id, ErrorCode.CANCELLED,
                        f"get cancelled while container {uuid!r} was starting")
            return True
        return False

    def _wait(self, client_id: ClientId, call_id: int, p: PendingStart) -> None:
        """``client_id``'s get ``call_id`` waits for pending start ``p``."""
        p.waiters.append((client_id, call_id))
        self._clients[client_id].waiting[p.uuid] = None

    def _take_pending(self, uuid: ContainerUuid) -> PendingStart | None:
        p = self._starts.pop(uuid)
        if p is None:
            return None
        for client_id, _call_id in p.waiters:
            cl = self._clients.get(client_id)
            if cl is not None:
                cl.waiting.pop(uuid, None)
        self.timers.cancel((RegistryTimer.START, p.start_id))
        agent = self._agents.get(p.agent_id)
        if agent is not None:
            agent.pending.pop(uuid, None)
            if agent.parked:
                self._line.unpark(agent)
        return p

    def _fail_pending(self, uuid: ContainerUuid, code: ErrorCode, text: str) -> None:
        """A start of ``uuid`` failed (``code``, ``text``): its waiters get an error.

        Unless a stateless offer of ``uuid`` stood by for that start (it
        registered while the start was pending): then that offer becomes the
        owner and the waiters hold it.  Without this the offer would stand by
        for an owner that never comes, and every later get of the uuid would
        be told "no owner right now".
        """
        p = self._take_pending(uuid)
        if p is None:
            return
        self.effects.append(Notice(Fact.START_FAILED, p.agent_id, uuid, p.kind, None, text))
        waiters = p.waiters
        c = self._activate_standby(
            uuid, waiters if p.kind == self._standbys.first_kind(uuid) else ())
        if c is None or c.kind != p.kind:
            for client_id, call_id in waiters:
                self._error(client_id, call_id, code, text)

    def started(
        self, client_id: ClientId, start_id: int, uuid: ContainerUuid, endpoint: str | None,
        now: float,
    ) -> None:
        """The agent answered ``Start`` ``start_id``: the container runs as ``uuid``.

        Every waiting get is answered; the waiting clients hold it (fix: the
        client set is kept even when the agent answers with another uuid).  A
        start nobody waits for any more leaves an orphan.  Answers from a
        client that does not own the agent are ignored.
        """
        p = self._starts.for_start(start_id)
        if p is None:
            return
        asked = p.uuid
        agent = self._agents.get(p.agent_id)
        if agent is None or agent.owner != client_id:
            return
        sent = self.timers.deadline((RegistryTimer.START, start_id))
        self._take_pending(asked)
        if uuid != asked:
            # Started under another uuid (a misbehaving agent): an offer
            # standing by for the start of ``asked`` would wait for ever.
            self._activate_standby(asked)
        c = self._containers.get(uuid)
        added = c is None
        if c is None:
            c = self._add_container(agent, uuid, p.kind, p.labels, stateless=False,
                                    state=_PENDING)
            c.transition(_ACTIVE)
            # fix: record the endpoint the agent reports (the reference stored '').
            c.endpoint = endpoint if endpoint is not None else agent.endpoint
            if uuid in self._standbys:
                self._standbys.owner_arrived(uuid)
            self.effects.append(Notice(
                Fact.CONTAINER_STARTED, agent.agent_id, uuid, p.kind, None, "",
                None if sent is None else now - (sent - self.timeouts.start)))
        elif c.agent_id != agent.agent_id:
            # The uuid the agent answered with belongs to another agent: this
            # start cannot be honoured; tell the agent to drop it.
            self._send(client_id, Terminate(agent.agent_id, uuid))
            for waiter, call_id in p.waiters:
                self._error(waiter, call_id, ErrorCode.START_FAILED,
                            f"agent {agent.agent_id!r} answered with uuid {uuid!r} "
                            f"owned by {c.agent_id!r}")
            return
        for waiter, call_id in p.waiters:
            self._hold(waiter, c)
            self._send(waiter, GetReply(call_id, c.record()))
        if added:
            # After the holds, so the event concerns the clients it was started for.
            self._container_changed(ChangeKind.ADDED, c)
            self.events.agent(ChangeKind.UPDATED, agent.info())
        if not c.holders:
            self._orphan(c, now)

    def start_failed(
        self, client_id: ClientId, start_id: int, code: str, text: str, now: float
    ) -> None:
        """The agent could not start ``start_id``: every waiting get fails.

        fix: a failed start leaves nothing behind, so later starts are not
        poisoned.
        """
        p = self._starts.for_start(start_id)
        if p is None:
            return
        agent = self._agents.get(p.agent_id)
        if agent is None or agent.owner != client_id:
            return
        self.probes.hit("start failed")
        error = ErrorCode.FULL if code == ErrorCode.FULL.value else ErrorCode.START_FAILED
        self._fail_pending(p.uuid, error, text)

    def release(self, client_id: ClientId, call_id: int, uuid: ContainerUuid, now: float) -> None:
        """Drop one of ``client_id``'s holds on ``uuid``; answers ``Ok`` or ``Error``.

        Releasing a container that is gone answers ``Ok`` (there is nothing left
        to hold).  fix: only a holder may release (``unauthorized`` otherwise).
        """
        if client_id not in self._clients:
            return
        c = self._containers.get(uuid)
        if c is None:
            self._send(client_id, Ok(call_id))
            return
        count = c.holders.get(client_id)
        if count is None:
            self._error(client_id, call_id, ErrorCode.UNAUTHORIZED,
                        f"client {client_id!r} does not hold {uuid!r}")
            return
        cl = self._clients[client_id]
        if count > 1:
            c.holders[client_id] = count - 1
            cl.holds[uuid] = count - 1
        else:
            del c.holders[client_id]
            del cl.holds[uuid]
            if not c.holders:
                if c.agent_id not in self._agents:
                    self.probes.hit("release while owner dead")
                self._orphan(c, now)
        self._send(client_id, Ok(call_id))

    # --- queries --------------------------------------------------------------

    def terminate_any(self, client_id: ClientId, call_id: int, uuid: ContainerUuid, now: float
                      ) -> None:
        """Terminate ``uuid`` for an admin, whoever hosts and holds it; answers ``Ok``.

        Its agent is told ``Terminate``, its holders lose it (their
        references re-acquire, as when an agent dies) and clients see it
        removed.  Errors: ``not_found`` if there is no such container, or it
        is still starting (a pending start has no instance to terminate yet).
        """
        c = self._containers.get(uuid)
        if c is None or c.state is _PENDING:
            self._error(client_id, call_id, ErrorCode.NOT_FOUND,
                        f"container {uuid!r} " + ("is still starting" if c else "not found"))
            return
        self.probes.hit("terminated by an admin")
        self._terminate(c, now, f"terminated by {client_id}")
        self._send(client_id, Ok(call_id))

    def query(self, client_id: ClientId, call_id: int, what: str, kind: str | None) -> None:
        """Answer a ``Query``: ``ListReply``, ``AgentsReply``, ``KindsReply`` or ``Error``."""
        match what:
            case "list":
                self._send(client_id, ListReply(call_id, self.list(kind)))
            case "agents":
                self._send(client_id, AgentsReply(call_id, self.agents()))
            case "kinds":
                self._send(client_id, KindsReply(call_id, self.kinds()))
            case _:
                self._error(client_id, call_id, ErrorCode.PROTOCOL, f"unknown query {what!r}")

    # --- time -------------------------------------------------------------------

    def handle_timers(self, now: float, due: float | None = None) -> None:
        """Act on every deadline up to ``due`` (default: ``now``); handlers see ``now``.

        The hub passes ``due`` to run the registry's deadlines and its own in
        one order of time.
        """
        for key in self.timers.expired(now if due is None else due):
            match key:
                case (RegistryTimer.ALIVE, str() as client_id):
                    self._client_expired(client_id, now)
                case (RegistryTimer.ORPHAN, str() as uuid):
                    self._orphan_expired(uuid, now)
                case (RegistryTimer.RECOVERY, None):
                    self._recovery_ended(now)
                case (RegistryTimer.START, int() as start_id):
                    self._start_expired(start_id)
                case (RegistryTimer.STOP, str() as uuid):
                    self._stop_expired(uuid, now)
                case _:
                    raise AssertionError(f"not a registry timer key: {key!r}")

    def _orphan_expired(self, uuid: ContainerUuid, now: float) -> None:
        c = self._containers.get(uuid)
        if c is None or c.state is not _ORPHANED:
            return
        self.probes.hit("orphan terminated")
        self._terminate(c, now, "unused timeout")

    def _terminate(self, c: ContainerEntry, now: float, reason: str) -> None:
        """Order ``c``'s agent to terminate it (for ``reason``) and drop it.

        Its uuid is STOPPING until the agent says it stopped (``ContainerStopped``,
        sent once its last changes are saved), the agent is gone, or
        ``timeouts.stop`` passes (an agent of an older release never says):
        gets of the uuid are answered ``Retry`` meanwhile, and a standby of a
        stateless uuid is activated only then.  fix (our own, #15): the uuid
        was free at once, a get started it on another agent, and that
        agent's claim reached the state store before this agent's last
        checkpoint, which the store then refused as stale: the changes were
        lost.  (On the same agent the order was already kept.)
        """
        agent = self._agents.get(c.agent_id)
        if agent is None:
            self._drop_container(c, now, reason)
            return
        self._send(agent.owner, Terminate(agent.agent_id, c.uuid))
        if seeded_bugs.RESTART_BEFORE_STOPPED in self.seeded_bugs:
            self._drop_container(c, now, reason)
            self.events.agent(ChangeKind.UPDATED, agent.info())
            return
        if c.uuid in self._stopping:
            self._stopped(c.uuid)  # an earlier instance's stop: superseded
        self._stopping[c.uuid] = agent.agent_id
        agent.stopping[c.uuid] = None
        self.timers.call_at(now + self.timeouts.stop, (RegistryTimer.STOP, c.uuid))
        self._drop_container(c, now, reason)
        self.events.agent(ChangeKind.UPDATED, agent.info())

    def _stopped(self, uuid: ContainerUuid) -> None:
        """``uuid`` is STOPPING no more: it may start again; a standby may serve it."""
        agent_id = self._stopping.pop(uuid, None)
        if agent_id is None:
            return
        agent = self._agents.get(agent_id)
        if agent is not None:
            agent.stopping.pop(uuid, None)
        self.timers.cancel((RegistryTimer.STOP, uuid))
        if uuid in self._standbys and uuid not in self._containers:
            self._activate_standby(uuid, reason="its owner was terminated")

    def _stop_expired(self, uuid: ContainerUuid, now: float) -> None:
        agent_id = self._stopping.get(uuid)
        if agent_id is not None:
            self.probes.hit("stop not acknowledged in time")
            self.effects.append(Notice(
                Fact.CONTAINER_STOP_LATE, agent_id, uuid, None, None,
                f"no answer in {self.timeouts.stop:g} s: its last changes may be lost",
                self.timeouts.stop))
            self._stopped(uuid)

    def _recovery_ended(self, now: float) -> None:
        # No agent that served a uuid behind recovery came: one that did
        # could not re-register in the window, so its fence lease is over
        # (docs/high-availability.md).  The first live standby owns it,
        # before the parked gets run again, so that those find the owner.
        for uuid in self._standbys.behind_recovery():
            self.probes.hit("standby activated at the end of recovery")
            self._activate_standby(uuid, reason="the recovery window closed")
        for client_id, call_id, kind, options in self._recovery.close():
            parked_client = self._clients.get(client_id)
            if parked_client is not None:
                parked_client.parked.clear()
                self.get(client_id, call_id, kind, options, now)

    def _start_expired(self, start_id: int) -> None:
        p = self._starts.for_start(start_id)
        if p is None:
            return
        self.probes.hit("start timed out")
        # The agent may still be starting it, or its Started may be on the
        # way (ignored: the start is forgotten).  fix: it then ran for ever,
        # unlisted; now the agent drops it either way.
        starter = self._agents.get(p.agent_id)
        if starter is not None:
            self._send(starter.owner, Terminate(starter.agent_id, p.uuid))
        self._fail_pending(p.uuid, ErrorCode.START_FAILED, "the agent did not answer in time")

    def check(self) -> builtins.list[str]:
        """Return the registry's broken internal invariants (empty when sound).

        O(size): for tests and the simulator, never the hot path (``check.problems``).
        """
        found = check.problems(self._containers, self._agents, self._clients,
                               self._live.buckets, self._line.room)
        for uuid, agent_id in self._stopping.items():
            stopper = self._agents.get(agent_id)
            if stopper is None or uuid not in stopper.stopping:
                found.append(f"stopping {uuid} not linked to agent {agent_id}")
            if (RegistryTimer.STOP, uuid) not in self.timers:
                found.append(f"stopping {uuid} has no deadline")
        for agent_id, stopper in self._agents.items():
            for uuid in stopper.stopping:
                if self._stopping.get(uuid) != agent_id:
                    found.append(f"agent {agent_id} stops {uuid} unknown as stopping")
        return found
