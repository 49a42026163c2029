"""The hub's registry of agents, containers and clients, and its decisions.

Theory of operation
-------------------
Peers are addressed by client id.  A client may host agents; an agent lives
exactly as long as the client session that registered it (the client's pings
keep its agents alive).  Every operation takes ``now`` and records its
outputs: messages for peers (``outbox``, as ``(client_id, message)``) and
registry changes (``events``).  Deadlines live in ``timers``; the owner (the
``Hub``) calls ``handle_timer`` for each expired key.

Indexes keep every operation O(1) or O(log n) (timers) in the number of
containers, agents and clients, except listing:

- ``_by_selector[(kind, labels)]``: live containers per kind and exact label
  set, for reuse by ``get``;
- ``_pending_by_selector[(kind, labels)]``: pending starts likewise;
- ``_kind_agents[kind]``: agents with the kind;
- ``_kind_room[kind]``: the same agents but those found full, in round-robin
  order: an agent found full is set aside (``parked``) until it has room
  again, so a pick skips each full agent once, not on every ``get``;
- per-client holds and per-agent containers, for O(own) clean-up.

Container lifecycle (``ContainerState``)::

    get -> PENDING --started--> ACTIVE <--get-- ORPHANED
                 \\--failed--> (gone)    --release (no holders)--> ORPHANED
                 \\--start timeout--> Terminate sent, gone
    ORPHANED --unused timeout--> Terminate sent, gone
    agent gone: ACTIVE/ORPHANED -> gone, or a standby is promoted (stateless)

Rules the reference got wrong and this registry fixes are marked "fix:".
"""

from __future__ import annotations

import builtins
from collections.abc import Hashable, Iterable

from .errors import ErrorCode
from .events import ChangeKind, EventQueue
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
    Start,
    Terminate,
)
from .probes import Probes
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

__all__ = ["Registry"]

Selector = tuple[ContainerKind, tuple[str, ...]]
#: (client id, call id, kind, options) of a get waiting for recovery
_ParkedGet = tuple[ClientId, int, ContainerKind, GetOptions]


class _Container:
    __slots__ = (
        "agent_id",
        "endpoint",
        "epoch",
        "holders",
        "instance",
        "kind",
        "labels",
        "orphaned_at",
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
    ) -> None:
        self.uuid = uuid
        self.kind = kind
        self.agent_id = agent_id
        self.endpoint = endpoint
        self.labels = labels
        self.stateless = stateless
        self.epoch = 0
        self.instance = 0
        #: client id -> number of gets not yet released
        self.holders: dict[ClientId, int] = {}
        self.orphaned_at: float | None = None

    @property
    def state(self) -> ContainerState:
        return ContainerState.ACTIVE if self.orphaned_at is None else ContainerState.ORPHANED

    def record(self) -> ContainerRecord:
        return ContainerRecord(
            self.uuid, self.kind, self.agent_id, self.endpoint, self.labels,
            self.stateless, self.epoch, self.instance,
        )


class _Pending:
    __slots__ = ("agent_id", "extra", "kind", "labels", "start_id", "uuid", "waiters")

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
        self.extra: object = None
        #: (client id, call id) of every get waiting on this start
        self.waiters: list[tuple[ClientId, int]] = []


class _Agent:
    __slots__ = (
        "agent_id", "containers", "endpoint", "kinds", "max_containers", "owner",
        "parked", "pending", "standby",
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
        #: stateless offers this agent stands by for
        self.standby: dict[ContainerUuid, OfferedContainer] = {}
        #: found full and taken out of ``Registry._kind_room`` until it has room
        self.parked = False

    def info(self) -> AgentInfo:
        return AgentInfo(self.agent_id, self.kinds, self.endpoint, len(self.containers))

    def has_room(self) -> bool:
        if self.max_containers is None:
            return True
        return len(self.containers) + len(self.pending) < self.max_containers


class _Client:
    __slots__ = ("agents", "alive_timeout", "client_id", "holds", "last_seen", "parked",
                 "waiting")

    def __init__(self, client_id: ClientId, alive_timeout: float, now: float) -> None:
        self.client_id = client_id
        self.alive_timeout = alive_timeout
        self.last_seen = now
        #: uuid -> number of gets not yet released (mirrors _Container.holders)
        self.holds: dict[ContainerUuid, int] = {}
        self.agents: dict[AgentId, None] = {}
        #: pending starts and parked re-acquires this client waits on, so its
        #: removal costs what it waits for, not every pending start
        self.waiting: dict[ContainerUuid, None] = {}
        self.parked: dict[ContainerUuid, None] = {}


class Registry:
    """Agents, containers, clients and the rules that tie them together.

    ``outbox`` collects ``(client_id, message)`` pairs to deliver; ``events``
    collects registry changes to broadcast; ``timers`` holds the deadlines
    (keys: ``("alive", client_id)``, ``("orphan", uuid)``,
    ``("start", start_id)``).  ``seeded_bugs`` switches on deliberate faults
    for the simulator's self-test; production never sets it.
    """

    def __init__(
        self,
        hub_id: str,
        timeouts: Timeouts,
        *,
        probes: Probes | None = None,
        seeded_bugs: frozenset[str] = frozenset(),
    ) -> None:
        self.hub_id = hub_id
        self.timeouts = timeouts
        self.probes = probes if probes is not None else Probes()
        self.seeded_bugs = seeded_bugs
        self.outbox: list[tuple[ClientId, Message]] = []
        self.events = EventQueue()
        self.timers = Timers()
        self._agents: dict[AgentId, _Agent] = {}
        self._containers: dict[ContainerUuid, _Container] = {}
        self._clients: dict[ClientId, _Client] = {}
        self._pending: dict[ContainerUuid, _Pending] = {}
        self._pending_by_start: dict[int, ContainerUuid] = {}
        self._by_selector: dict[Selector, dict[ContainerUuid, None]] = {}
        self._pending_by_selector: dict[Selector, dict[ContainerUuid, None]] = {}
        self._kind_agents: dict[ContainerKind, dict[AgentId, None]] = {}
        self._kind_room: dict[ContainerKind, dict[AgentId, None]] = {}
        #: stateless uuid -> agents standing by for it, in offer order
        self._standbys: dict[ContainerUuid, dict[AgentId, OfferedContainer]] = {}
        #: stateless uuid -> its epoch when its record was dropped (epochs only grow)
        self._last_epoch: dict[ContainerUuid, int] = {}
        self._serial = 0
        #: clients declared dead by their alive timer, for the owner to close
        self.dead_clients: list[ClientId] = []
        #: agents that moved to a new session: (old session, the uuids the
        #: agent ran there), for the owner to fail what it forwarded there
        self.superseded: list[tuple[ClientId, tuple[ContainerUuid, ...]]] = []
        #: whether to record ``interest`` (some session takes only its own events)
        self.track_interest = False
        #: uuid -> sessions a queued container change concerns (see _container_changed)
        self.interest: dict[ContainerUuid, dict[ClientId, None]] = {}
        #: end of the window after the hub's start in which agents re-register
        self._recovery_until: float | None = None
        #: re-acquires of unknown uuids parked until an agent re-registers them
        self._parked: dict[ContainerUuid, list[_ParkedGet]] = {}

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
        return ContainerState.PENDING if uuid in self._pending else None

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
        return tuple(self._standbys.get(uuid, {}))

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

    def agent_containers(self, agent_id: AgentId) -> tuple[ContainerUuid, ...]:
        """Return the uuids the hub believes ``agent_id`` runs."""
        a = self._agents.get(agent_id)
        return () if a is None else tuple(a.containers)

    def kinds(self) -> tuple[ContainerKind, ...]:
        """Return the sorted, de-duplicated kinds of all agents (fix: de-duplicated)."""
        return tuple(sorted(k for k, agents in self._kind_agents.items() if agents))

    def clients(self) -> tuple[ClientId, ...]:
        """Return the known client ids, in arrival order."""
        return tuple(self._clients)

    def has_client(self, client_id: ClientId) -> bool:
        """Return whether ``client_id`` is registered."""
        return client_id in self._clients

    def pending_count(self) -> int:
        """Return the number of container starts awaiting their agent."""
        return len(self._pending)

    def __len__(self) -> int:
        return len(self._containers)

    # --- helpers ------------------------------------------------------------

    def _send(self, client_id: ClientId, message: Message) -> None:
        self.outbox.append((client_id, message))

    def _error(self, client_id: ClientId, call_id: int, code: ErrorCode, text: str) -> None:
        self._send(client_id, Error(call_id, code.value, text))

    def _next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def _index(self, c: _Container) -> None:
        self._by_selector.setdefault((c.kind, c.labels), {})[c.uuid] = None

    def _unindex(self, c: _Container) -> None:
        key = (c.kind, c.labels)
        bucket = self._by_selector.get(key)
        if bucket is not None:
            bucket.pop(c.uuid, None)
            if not bucket:
                del self._by_selector[key]

    def _orphan(self, c: _Container, now: float) -> None:
        if c.stateless:
            # A stateless container is pre-existing: nobody started it for a
            # client, so nobody's release may kill it.
            return
        c.orphaned_at = now
        self.timers.call_at(now + self.timeouts.unused_container, ("orphan", c.uuid))

    def _hold(self, client_id: ClientId, c: _Container) -> None:
        c.holders[client_id] = c.holders.get(client_id, 0) + 1
        cl = self._clients[client_id]
        cl.holds[c.uuid] = cl.holds.get(c.uuid, 0) + 1
        if c.orphaned_at is not None:
            self.probes.hit("orphan rescued")
            c.orphaned_at = None
            self.timers.cancel(("orphan", c.uuid))

    def _add_container(
        self,
        agent: _Agent,
        uuid: ContainerUuid,
        kind: ContainerKind,
        labels: tuple[str, ...],
        stateless: bool,
    ) -> _Container:
        c = _Container(uuid, kind, agent.agent_id, agent.endpoint, labels, stateless)
        if uuid in self._last_epoch:
            # A new owner after the record was dropped is an ownership change
            # too, also when the uuid is started afresh on an agent that hosts
            # its kind without offering it.  fix: that instance had epoch 0,
            # below the epochs the hub had already published for the uuid.
            c.epoch = self._last_epoch.pop(uuid) + 1
        self._containers[uuid] = c
        agent.containers[uuid] = None
        self._index(c)
        # Every instance gets its own number, so a uuid that is dropped and
        # registered again (folded into one "added" within an event window)
        # is told apart from the instance a client held.
        c.instance = self._next_serial()
        return c

    def _drop_container(self, c: _Container, now: float) -> None:
        """Forget ``c`` entirely: holders lose it, clients are told."""
        del self._containers[c.uuid]
        if c.stateless or c.epoch:
            # (An ordinary container has an epoch only as the successor of a
            # stateless one, so this stays one entry per stateless uuid.)
            self._last_epoch[c.uuid] = c.epoch
        self._unindex(c)
        agent = self._agents.get(c.agent_id)
        if agent is not None:
            agent.containers.pop(c.uuid, None)
            if agent.parked:
                self._unpark(agent)
        for client_id in c.holders:
            cl = self._clients.get(client_id)
            if cl is not None:
                cl.holds.pop(c.uuid, None)
        self.timers.cancel(("orphan", c.uuid))
        self._container_changed(ChangeKind.REMOVED, c)
        if c.uuid in self._standbys:
            # Offers that stood by for an instance that was not one of theirs
            # (a start of the uuid won the race with them): one serves it now.
            self._activate_standby(c.uuid)

    def _container_changed(self, change: ChangeKind, c: _Container) -> None:
        """Queue an event for ``c`` and, when asked to, note who it concerns.

        Sessions that receive only their own events (``Hello.events ==
        "own"``) are sent the changes to containers they hold or stand by
        for; ``interest`` records them per uuid until the next flush.
        """
        self.events.container(change, c.record())
        if not self.track_interest:
            return
        bucket = self.interest.setdefault(c.uuid, {})
        for client_id in c.holders:
            bucket[client_id] = None
        for agent_id in self._standbys.get(c.uuid, ()):
            agent = self._agents.get(agent_id)
            if agent is not None:
                bucket[agent.owner] = None

    def _promote_or_drop(self, c: _Container, now: float) -> None:
        """The owner of ``c`` is gone: promote a standby if it is stateless, else drop it."""
        standbys = self._standbys.get(c.uuid)
        if c.stateless and standbys:
            for agent_id in list(standbys):
                offer = standbys.pop(agent_id)
                new_owner = self._agents.get(agent_id)
                if new_owner is None:
                    continue
                new_owner.standby.pop(c.uuid, None)
                old = self._agents.get(c.agent_id)
                if old is not None:
                    old.containers.pop(c.uuid, None)
                    if old.parked:
                        self._unpark(old)
                self._unindex(c)
                c.agent_id = agent_id
                c.endpoint = new_owner.endpoint
                c.labels = offer.labels
                c.epoch += 1
                new_owner.containers[c.uuid] = None
                self._index(c)
                if not standbys:
                    del self._standbys[c.uuid]
                self.probes.hit("standby promoted")
                self._container_changed(ChangeKind.UPDATED, c)
                self.events.agent(ChangeKind.UPDATED, new_owner.info())
                self._send(new_owner.owner, Activate(agent_id, c.uuid, c.epoch))
                return
        self._drop_container(c, now)

    # --- clients ------------------------------------------------------------

    def add_client(self, client_id: ClientId, alive_timeout: float | None, now: float) -> None:
        """Register a client session; it is dead after ``alive_timeout`` of silence.

        Raises:
            ValueError: if ``client_id`` is already registered (remove it first).
        """
        if client_id in self._clients:
            raise ValueError(f"client {client_id!r} is already registered")
        timeout = alive_timeout if alive_timeout is not None else self.timeouts.alive
        self._clients[client_id] = _Client(client_id, timeout, now)
        self.timers.call_at(now + timeout, ("alive", client_id))
        if self._recovery_until is None:
            # The hub's first session opens its recovery window (see get()).
            self._recovery_until = now + self.timeouts.alive
            self.timers.call_at(self._recovery_until, ("recovery", None))

    def touch(self, client_id: ClientId, now: float) -> None:
        """Note a sign of life from ``client_id`` (O(1): the timer is re-armed lazily)."""
        cl = self._clients.get(client_id)
        if cl is not None:
            cl.last_seen = now

    def remove_client(self, client_id: ClientId, now: float) -> None:
        """Forget ``client_id``: release its holds and remove the agents it registered.

        A no-op for an unknown client.
        """
        cl = self._clients.pop(client_id, None)
        if cl is None:
            return
        self.timers.cancel(("alive", client_id))
        for agent_id in list(cl.agents):
            self._remove_agent(agent_id, now)
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
            pending = self._pending.get(uuid)
            if pending is not None:
                pending.waiters = [w for w in pending.waiters if w[0] != client_id]
        for uuid in cl.parked:
            entries = self._parked.get(uuid)
            if entries is None:
                continue
            kept = [e for e in entries if e[0] != client_id]
            if kept:
                self._parked[uuid] = kept
            else:
                del self._parked[uuid]

    def _wait(self, client_id: ClientId, call_id: int, p: _Pending) -> None:
        """``client_id``'s get ``call_id`` waits for pending start ``p``."""
        p.waiters.append((client_id, call_id))
        self._clients[client_id].waiting[p.uuid] = None

    def _client_expired(self, client_id: ClientId, now: float) -> None:
        cl = self._clients.get(client_id)
        if cl is None:
            return
        deadline = cl.last_seen + cl.alive_timeout
        if deadline > now:
            # Heard from since the timer was armed: re-arm at the real deadline.
            self.timers.call_at(deadline, ("alive", client_id))
            return
        self.probes.hit("client timed out")
        self.dead_clients.append(client_id)
        self.remove_client(client_id, now)

    # --- agents -------------------------------------------------------------

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
            self.superseded.append((existing.owner, tuple(existing.containers)))
            self._remove_agent(msg.agent_id, now)
            existing = None
        kinds = tuple(dict.fromkeys(msg.kinds))
        if existing is None:
            agent = _Agent(msg.agent_id, client_id, kinds, msg.endpoint, msg.max_containers)
            self._agents[msg.agent_id] = agent
            self._clients[client_id].agents[msg.agent_id] = None
            change = ChangeKind.ADDED
        else:
            agent = existing
            self.probes.hit("agent re-registered")
            for kind in agent.kinds:
                if kind not in kinds:
                    self._kind_agents.get(kind, {}).pop(agent.agent_id, None)
                    self._kind_room.get(kind, {}).pop(agent.agent_id, None)
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
        for kind in kinds:
            self._kind_agents.setdefault(kind, {})[agent.agent_id] = None
            self._kind_room.setdefault(kind, {})[agent.agent_id] = None

        standby: list[ContainerUuid] = []
        terminate: list[ContainerUuid] = []
        offered: dict[ContainerUuid, None] = {}
        for oc in msg.containers:
            offered[oc.uuid] = None
            outcome = self._offer(agent, oc, now)
            if outcome == "standby":
                standby.append(oc.uuid)
            elif outcome == "terminate":
                terminate.append(oc.uuid)
        if existing is not None:
            # fix: containers it still lists stay linked; the ones it no
            # longer lists are gone.
            for uuid in [u for u in agent.containers if u not in offered]:
                self._promote_or_drop(self._containers[uuid], now)
            for uuid in [u for u in agent.standby if u not in offered]:
                del agent.standby[uuid]
                self._standbys.get(uuid, {}).pop(agent.agent_id, None)
        self.events.agent(change, agent.info())
        self._send(client_id, RegisterReply(msg.id, tuple(standby), tuple(terminate)))

    def _offer(self, agent: _Agent, oc: OfferedContainer, now: float) -> str:
        """Apply one offered container; return "ok", "standby" or "terminate"."""
        if oc.kind not in agent.kinds:
            # fix: the reference accepted containers of undeclared kinds.
            return "terminate"
        c = self._containers.get(oc.uuid)
        if c is None:
            if oc.uuid in self._pending:
                # A start of this uuid is pending elsewhere; the start wins.
                # The offer stands by for it (and takes over if the start
                # fails or its instance goes: ``_activate_standby``).
                if not oc.stateless:
                    return "terminate"
                self.probes.hit("stateless offer stands by for a start")
                self._standbys.setdefault(oc.uuid, {})[agent.agent_id] = oc
                agent.standby[oc.uuid] = oc
                return "standby"
            c = self._add_container(agent, oc.uuid, oc.kind, oc.labels, oc.stateless)
            for waiter, call_id, _kind, _options in self._parked.pop(oc.uuid, ()):
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
            return "ok"
        if c.agent_id == agent.agent_id:
            if c.labels != oc.labels or c.kind != oc.kind:
                self._unindex(c)
                c.labels = oc.labels
                c.kind = oc.kind
                self._index(c)
                self._container_changed(ChangeKind.UPDATED, c)
            return "ok"
        if oc.stateless and "stateless-double-owner" in self.seeded_bugs:
            # Seeded bug for the simulator's self-test: a second agent wins.
            old_owner = self._agents[c.agent_id]
            old_owner.containers.pop(c.uuid, None)
            if old_owner.parked:
                self._unpark(old_owner)
            c.agent_id = agent.agent_id
            agent.containers[c.uuid] = None
            return "ok"
        if oc.stateless:
            self.probes.hit("stateless offer stands by")
            self._standbys.setdefault(oc.uuid, {})[agent.agent_id] = oc
            agent.standby[oc.uuid] = oc
            return "standby"
        self.probes.hit("duplicate uuid rejected")
        return "terminate"

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
        if outcome == "ok":
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
                (oc.uuid,) if outcome == "standby" else (),
                (oc.uuid,) if outcome == "terminate" else (),
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
            self._remove_agent(agent_id, now)
        self._send(client_id, Ok(call_id))

    def _remove_agent(self, agent_id: AgentId, now: float) -> None:
        agent = self._agents.pop(agent_id, None)
        if agent is None:
            return
        owner = self._clients.get(agent.owner)
        if owner is not None:
            owner.agents.pop(agent_id, None)
        for kind in agent.kinds:
            bucket = self._kind_agents.get(kind)
            if bucket is not None:
                bucket.pop(agent_id, None)
                if not bucket:
                    del self._kind_agents[kind]
            room = self._kind_room.get(kind)
            if room is not None:
                room.pop(agent_id, None)
                if not room:
                    del self._kind_room[kind]
        for uuid in agent.standby:
            bucket2 = self._standbys.get(uuid)
            if bucket2 is not None:
                bucket2.pop(agent_id, None)
                if not bucket2:
                    del self._standbys[uuid]
        for uuid in list(agent.containers):
            self._promote_or_drop(self._containers[uuid], now)
        for uuid in list(agent.pending):
            self.probes.hit("pending start lost with agent")
            self._fail_pending(uuid, ErrorCode.AGENT_GONE, f"agent {agent_id!r} went away")
        # fix: an agent with no containers still produces a removed event.
        self.events.agent(ChangeKind.REMOVED, agent.info())

    def has_agent(self, agent_id: AgentId) -> bool:
        """Return whether ``agent_id`` is registered."""
        return agent_id in self._agents

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
                if not (held_instance == c.instance and client_id in c.holders):
                    self._hold(client_id, c)
                self._send(client_id, GetReply(call_id, c.record()))
                return
            p = self._pending.get(uuid)
            if p is not None:
                if p.kind != kind:
                    self._error(client_id, call_id, ErrorCode.BAD_KIND,
                                f"container {uuid!r} is of kind {p.kind!r}, not {kind!r}")
                    return
                self._wait(client_id, call_id, p)
                return
            if (reacquire and self._recovery_until is not None
                    and now < self._recovery_until):
                # A session rebuilding after a hub restart asks for a container
                # whose agent has not re-registered yet: wait for it rather
                # than start a second instance elsewhere (state would be lost).
                self.probes.hit("re-acquire parked during recovery")
                self._parked.setdefault(uuid, []).append((client_id, call_id, kind, options))
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
            live = self._by_selector.get(selector)
            if live:
                c = self._containers[next(iter(live))]
                self._hold(client_id, c)
                self._send(client_id, GetReply(call_id, c.record()))
                return
            pending = self._pending_by_selector.get(selector)
            if pending:
                self._wait(client_id, call_id, self._pending[next(iter(pending))])
                return
        agent = self._pick_agent(kind)
        if agent is None:
            self._error(client_id, call_id, ErrorCode.NO_AGENT, f"no agent for kind {kind!r}")
            return
        serial = self._next_serial()
        if uuid is None:
            uuid = f"{kind}-{self.hub_id}-{serial}"
        p = _Pending(uuid, kind, options.labels, agent.agent_id, serial)
        self._pending[uuid] = p
        self._wait(client_id, call_id, p)
        self._pending_by_start[serial] = uuid
        self._pending_by_selector.setdefault((kind, options.labels), {})[uuid] = None
        agent.pending[uuid] = None
        self.timers.call_at(now + self.timeouts.start, ("start", serial))
        self._send(
            agent.owner,
            Start(serial, agent.agent_id, kind, uuid, options.labels, options.extra),
        )

    def _pick_agent(self, kind: ContainerKind) -> _Agent | None:
        """Round-robin over the agents with ``kind`` and room, O(1) amortised.

        An agent found full is parked (out of ``_kind_room`` for all its
        kinds) until a container or pending start of it goes, so each full
        agent is skipped once, not on every pick.
        """
        bucket = self._kind_room.get(kind)
        while bucket:
            agent_id = next(iter(bucket))
            agent = self._agents[agent_id]
            if agent.has_room():
                # Rotate: the chosen one goes to the back of the line.
                del bucket[agent_id]
                bucket[agent_id] = None
                return agent
            self._park(agent)
        return None

    def _park(self, agent: _Agent) -> None:
        agent.parked = True
        for kind in agent.kinds:
            room = self._kind_room.get(kind)
            if room is not None:
                room.pop(agent.agent_id, None)
                if not room:
                    del self._kind_room[kind]

    def _unpark(self, agent: _Agent) -> None:
        """Put a parked ``agent`` back in line if it has room again."""
        if agent.has_room():
            agent.parked = False
            for kind in agent.kinds:
                self._kind_room.setdefault(kind, {})[agent.agent_id] = None

    def _take_pending(self, uuid: ContainerUuid) -> _Pending | None:
        p = self._pending.pop(uuid, None)
        if p is None:
            return None
        for client_id, _call_id in p.waiters:
            cl = self._clients.get(client_id)
            if cl is not None:
                cl.waiting.pop(uuid, None)
        self._pending_by_start.pop(p.start_id, None)
        self.timers.cancel(("start", p.start_id))
        key = (p.kind, p.labels)
        bucket = self._pending_by_selector.get(key)
        if bucket is not None:
            bucket.pop(uuid, None)
            if not bucket:
                del self._pending_by_selector[key]
        agent = self._agents.get(p.agent_id)
        if agent is not None:
            agent.pending.pop(uuid, None)
            if agent.parked:
                self._unpark(agent)
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
        waiters = p.waiters
        c = self._activate_standby(uuid, waiters if p.kind == self._offered_kind(uuid) else ())
        if c is None or c.kind != p.kind:
            for client_id, call_id in waiters:
                self._error(client_id, call_id, code, text)

    def _offered_kind(self, uuid: ContainerUuid) -> ContainerKind | None:
        """Return the kind of the first offer standing by for ``uuid`` (None: none)."""
        for offer in self._standbys.get(uuid, {}).values():
            return offer.kind
        return None

    def _activate_standby(
        self, uuid: ContainerUuid, waiters: Iterable[tuple[ClientId, int]] = (),
    ) -> _Container | None:
        """Make the first live standby of unowned ``uuid`` its owner; returns its record.

        ``waiters`` (gets of the uuid) hold it and are answered.  The agent is
        told with ``Activate``, everyone with an added event.  Returns None,
        and forgets the standbys, if none of their agents is registered.
        """
        standbys = self._standbys.get(uuid)
        while standbys:
            agent_id = next(iter(standbys))
            offer = standbys.pop(agent_id)
            agent = self._agents.get(agent_id)
            if agent is None:
                continue
            agent.standby.pop(uuid, None)
            if not standbys:
                del self._standbys[uuid]
            self.probes.hit("standby activated for an unowned uuid")
            c = self._add_container(agent, uuid, offer.kind, offer.labels, stateless=True)
            self._send(agent.owner, Activate(agent_id, uuid, c.epoch))
            for client_id, call_id in waiters:
                if client_id in self._clients:
                    self._hold(client_id, c)
                    self._send(client_id, GetReply(call_id, c.record()))
            # After the holds, so the event concerns the clients that waited.
            self._container_changed(ChangeKind.ADDED, c)
            self.events.agent(ChangeKind.UPDATED, agent.info())
            return c
        self._standbys.pop(uuid, None)
        return None

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
        asked = self._pending_by_start.get(start_id)
        if asked is None:
            return
        p = self._pending[asked]
        agent = self._agents.get(p.agent_id)
        if agent is None or agent.owner != client_id:
            return
        self._take_pending(asked)
        if uuid != asked:
            # Started under another uuid (a misbehaving agent): an offer
            # standing by for the start of ``asked`` would wait for ever.
            self._activate_standby(asked)
        c = self._containers.get(uuid)
        added = c is None
        if c is None:
            c = self._add_container(agent, uuid, p.kind, p.labels, stateless=False)
            # fix: record the endpoint the agent reports (the reference stored '').
            c.endpoint = endpoint if endpoint is not None else agent.endpoint
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
        uuid = self._pending_by_start.get(start_id)
        if uuid is None:
            return
        agent = self._agents.get(self._pending[uuid].agent_id)
        if agent is None or agent.owner != client_id:
            return
        self.probes.hit("start failed")
        error = ErrorCode.FULL if code == ErrorCode.FULL.value else ErrorCode.START_FAILED
        self._fail_pending(uuid, error, text)

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

    def container_stopped(self, client_id: ClientId, agent_id: AgentId, uuid: ContainerUuid,
                          now: float) -> None:
        """The agent says ``uuid`` is gone: drop it (or promote a standby)."""
        agent = self._agents.get(agent_id)
        if agent is None or agent.owner != client_id:
            return
        if uuid in agent.standby:
            del agent.standby[uuid]
            self._standbys.get(uuid, {}).pop(agent_id, None)
            return
        c = self._containers.get(uuid)
        if c is None or c.agent_id != agent_id:
            return
        self.probes.hit("container stopped by agent")
        self._promote_or_drop(c, now)
        self.events.agent(ChangeKind.UPDATED, agent.info())

    # --- queries --------------------------------------------------------------

    def query(self, client_id: ClientId, call_id: int, what: str, kind: str | None) -> None:
        """Answer a ``Query``: ``ListReply``, ``AgentsReply``, ``KindsReply`` or ``Error``."""
        if what == "list":
            self._send(client_id, ListReply(call_id, self.list(kind)))
        elif what == "agents":
            self._send(client_id, AgentsReply(call_id, self.agents()))
        elif what == "kinds":
            self._send(client_id, KindsReply(call_id, self.kinds()))
        else:
            self._error(client_id, call_id, ErrorCode.PROTOCOL, f"unknown query {what!r}")

    # --- routing ----------------------------------------------------------------

    def route(self, uuid: ContainerUuid) -> tuple[AgentId, ClientId] | None:
        """Return (agent id, owning client id) serving ``uuid``, or None if unknown."""
        c = self._containers.get(uuid)
        if c is None:
            return None
        agent = self._agents.get(c.agent_id)
        if agent is None:
            return None
        return agent.agent_id, agent.owner

    # --- time -------------------------------------------------------------------

    def handle_timer(self, key: Hashable, now: float) -> None:
        """Act on one expired timer key (alive, orphan or start)."""
        assert isinstance(key, tuple)
        what, ident = key
        if what == "alive":
            self._client_expired(ident, now)
        elif what == "orphan":
            c = self._containers.get(ident)
            if c is None or c.orphaned_at is None:
                return
            self.probes.hit("orphan terminated")
            agent = self._agents.get(c.agent_id)
            if agent is not None:
                self._send(agent.owner, Terminate(agent.agent_id, c.uuid))
            self._drop_container(c, now)
            if agent is not None:
                self.events.agent(ChangeKind.UPDATED, agent.info())
        elif what == "recovery":
            parked, self._parked = self._parked, {}
            for client_id, call_id, kind, options in parked_gets(parked):
                parked_client = self._clients.get(client_id)
                if parked_client is not None:
                    parked_client.parked.clear()
                    self.get(client_id, call_id, kind, options, now)
        elif what == "start":
            uuid = self._pending_by_start.get(ident)
            if uuid is not None:
                self.probes.hit("start timed out")
                # The agent may still be starting it, or its Started may be on
                # the way (ignored: the start is forgotten).  fix: it then ran
                # for ever, unlisted; now the agent drops it either way.
                starter = self._agents.get(self._pending[uuid].agent_id)
                if starter is not None:
                    self._send(starter.owner, Terminate(starter.agent_id, uuid))
                self._fail_pending(uuid, ErrorCode.START_FAILED, "the agent did not answer in time")

    def check(self) -> builtins.list[str]:
        """Return the registry's broken internal invariants (empty when sound).

        O(size): for tests and the simulator, never the hot path.  The
        simulator runs it at every check interval: a sound registry is
        confirmed by ``_sound()`` in one pass over the containers; only one
        that fails it is walked again by ``_problems()`` to name every problem.
        """
        if self._sound():
            return []
        return self._problems()

    def _sound(self) -> bool:
        """Return whether ``_problems()`` would find nothing, at less cost.

        The per-container tests are those of ``_problems()``.  Its reverse
        walks follow from them and two counts: when every container is listed
        by its agent, the agents list nothing else exactly when they list as
        many uuids as there are containers; when every holder is mirrored by
        a client's hold, the clients hold nothing else exactly when they have
        as many holds as there are holders.
        """
        containers = self._containers
        agents = self._agents
        clients = self._clients
        by_selector = self._by_selector
        no_agents: dict[AgentId, None] = {}
        holders_seen = 0
        # The simulator runs this every 50 ms of a busy run: the lookups are
        # subscripts (no method call), and a missing agent, client, hold or
        # selector bucket, a KeyError, is an unsound registry.
        try:
            for uuid, c in containers.items():
                if uuid not in agents[c.agent_id].containers:
                    return False
                holders = c.holders
                if holders:
                    if c.orphaned_at is not None:
                        return False
                    for client_id, n in holders.items():
                        holders_seen += 1
                        if n <= 0 or clients[client_id].holds[uuid] != n:
                            return False
                elif c.orphaned_at is None and not c.stateless:
                    return False
                if uuid not in by_selector[(c.kind, c.labels)]:
                    return False
        except KeyError:
            return False
        listed = 0
        kind_room = self._kind_room
        for a in agents.values():
            if a.owner not in clients:
                return False
            listed += len(a.containers)
            if a.parked and a.has_room():
                return False
            for kind in a.kinds:
                if (a.agent_id in kind_room.get(kind, no_agents)) is a.parked:
                    return False
        if listed != len(containers):
            return False
        held = 0
        for cl in clients.values():
            held += len(cl.holds)
        return held == holders_seen

    def _problems(self) -> builtins.list[str]:
        """Walk every index and name each broken link, in a fixed order."""
        problems: builtins.list[str] = []
        report = problems.append
        containers = self._containers
        agents = self._agents
        clients = self._clients
        by_selector = self._by_selector
        no_bucket: dict[ContainerUuid, None] = {}
        for uuid, c in containers.items():
            agent = agents.get(c.agent_id)
            if agent is None or uuid not in agent.containers:
                report(f"container {uuid} not linked to agent {c.agent_id}")
            holders = c.holders
            for client_id, n in holders.items():
                if n <= 0:
                    report(f"container {uuid}: holder {client_id} count {n}")
                cl = clients.get(client_id)
                if cl is None or cl.holds.get(uuid) != n:
                    report(f"container {uuid}: holder {client_id} not mirrored")
            if holders:
                if c.orphaned_at is not None:
                    report(f"container {uuid} held but orphaned")
            elif c.orphaned_at is None and not c.stateless:
                report(f"container {uuid} unheld but not orphaned")
            if uuid not in by_selector.get((c.kind, c.labels), no_bucket):
                report(f"container {uuid} missing from its selector index")
        for agent_id, a in agents.items():
            for uuid in a.containers:
                c2 = containers.get(uuid)
                if c2 is None or c2.agent_id != agent_id:
                    report(f"agent {agent_id} lists {uuid} it does not own")
            if a.owner not in clients:
                report(f"agent {agent_id} owned by unknown client {a.owner}")
            if a.parked and a.has_room():
                report(f"agent {agent_id} set aside as full but has room")
            for kind in a.kinds:
                if (agent_id in self._kind_room.get(kind, {})) is a.parked:
                    state = "set aside as full but still" if a.parked else "not"
                    report(f"agent {agent_id} {state} in line for kind {kind}")
        for client_id, cl in clients.items():
            for uuid, n in cl.holds.items():
                c3 = containers.get(uuid)
                if c3 is None or c3.holders.get(client_id) != n:
                    report(f"client {client_id} holds {uuid} not mirrored")
        return problems



def parked_gets(
    parked: dict[ContainerUuid, list[_ParkedGet]],
) -> list[_ParkedGet]:
    """Return parked gets in the order they arrived per uuid, uuids in parking order."""
    return [entry for entries in parked.values() for entry in entries]
