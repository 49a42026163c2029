"""An agent's local state: what it runs, what it stands by for, what it may start.

Theory of operation
-------------------
An ``AgentState`` lives inside a client session (the session that registered
it carries its traffic and its pings).  The hub asks it to start containers
(``on_start``), terminate them (``on_terminate``), promote a standby
(``on_activate``) and run requests (``on_request``); it answers with effects:
``Send`` of replies for the hub, and ``StartContainer`` / ``StopContainer`` /
``SetServing`` / ``RunRequest`` for the driver, which calls back with the
outcome (``started``, ``start_failed``, ``stopped``).

Local container lifecycle (``LocalStatus``, table ``LOCAL_TRANSITIONS``)::

    Start -> STARTING --started--> ACTIVE --Terminate--> (gone)
                      \\--failed, Terminate or registration sent--> (gone)
    stateless offer: STANDBY --RegisterReply (not standby)--> ACTIVE
                     ACTIVE --registration sent (fence)--> STANDBY (fenced)
                     ACTIVE --hub silent past the fence lease (self_fence)--> STANDBY (fenced)
                     STANDBY --RegisterReply.standby--> STANDBY (demoted)
                     STANDBY --Activate--> ACTIVE
    draining agent:  ACTIVE or STANDBY --the hub answered Drain--> DRAINING

Draining (``AgentPhase``, table ``PHASE_TRANSITIONS``: SERVING -> DRAINING).
An agent process that shuts down sends ``Drain`` (``drain``): it cancels its
starts and refuses new ones, while its containers serve on until the hub
answers, since the hub hands them over (stateless) or stops routing to them
in that same step, so no request through the hub reaches a container after
it stopped serving.  The answer (``on_drained``) moves every running
container to DRAINING: it no longer serves (a direct call gets
``not_found`` and re-routes) and its direct streams end, while the requests
it is running finish; the driver then terminates them all.  A draining
agent's (re-)registration offers nothing and asks for no room
(``max_containers`` 0), so a restarted hub places nothing on it either.

A stateless offer serves only under a registration the hub has answered on
the current connection: it starts standing by, and every (re-)registration
fences it until the answer (``fence``), so an agent whose answer is held up
(a stalled link, a hub that chose another owner meanwhile) never serves next
to the hub's owner.  A fenced offer keeps its event streams, unless the
answer demotes it, and its endpoint answers direct calls ``Retry`` (they wait
out the round trip: ``is_fenced``).  Through the hub no call reaches it
fenced (the hub answers a registration before it forwards anything on that
connection); one that did would get ``not_found`` and be re-routed.

A STANDBY instance must not serve: requests for it are answered
``not_found`` so the caller re-routes.  The offer is never forgotten (fix:
the reference forgot it, so failover never happened): it is listed again on
every re-registration and may be claimed when its owner's removal is seen.
"""

from __future__ import annotations

import enum

from .answers import ANSWER_LIMIT, ANSWER_TTL, Answers
from .effects import (
    ConnectContainer,
    DisconnectContainer,
    RunRequest,
    Send,
    SessionEffect,
    SetServing,
    StartContainer,
    StopContainer,
)
from .errors import ErrorCode, LocalProtocolError
from .messages import (
    Activate,
    Connect,
    ContainerStopped,
    Disconnect,
    Error,
    Ok,
    RegisterAgent,
    RegisterReply,
    Request,
    Start,
    Started,
    Terminate,
)
from .transitions import TransitionTable
from .types import AgentId, ContainerKind, ContainerUuid, GetOptions, OfferedContainer

__all__ = ["LOCAL_TRANSITIONS", "PHASE_TRANSITIONS", "AgentPhase", "AgentState", "LocalStatus"]


class LocalStatus(enum.Enum):
    """Where one container stands on its agent."""

    #: The factory is running; the hub waits for ``Started``.
    STARTING = "starting"
    #: Running and serving.
    ACTIVE = "active"
    #: A stateless offer that lost to another agent: running, not serving.
    STANDBY = "standby"
    #: Its agent drains: not serving; the requests it runs finish, then it
    #: is terminated.
    DRAINING = "draining"


#: The moves a local container may make (leaving the agent is not a state:
#: the container is forgotten).  STANDBY -> STANDBY is a fenced offer the
#: hub's answer demotes; STARTING -> ACTIVE is also an ``Activate`` arriving
#: for a container still starting (the hub's input, so not an error).
LOCAL_TRANSITIONS: TransitionTable[LocalStatus] = TransitionTable("local container", {
    LocalStatus.STARTING: (LocalStatus.ACTIVE,),
    LocalStatus.ACTIVE: (LocalStatus.STANDBY, LocalStatus.DRAINING),
    LocalStatus.STANDBY: (LocalStatus.ACTIVE, LocalStatus.STANDBY, LocalStatus.DRAINING),
})

#: read once for ``on_request`` (every forwarded request): on Python 3.11 a read
#: of ``LocalStatus.ACTIVE`` costs ~1,100 instructions, a global ~10 (see
#: docs/performance.md, "Churn instructions recovered (2026-12-06)")
_LOCAL_ACTIVE = LocalStatus.ACTIVE


class AgentPhase(enum.Enum):
    """Where the agent as a whole stands."""

    #: Registered (or registering) and taking starts.
    SERVING = "serving"
    #: Shutting down: ``Drain`` sent; no starts; its containers leave.
    DRAINING = "draining"


#: The agent's phases (DRAINING is final: the agent closes after it).
PHASE_TRANSITIONS: TransitionTable[AgentPhase] = TransitionTable("agent", {
    AgentPhase.SERVING: (AgentPhase.DRAINING,),
})


class _Local:
    __slots__ = ("answers", "epoch", "fenced", "kind", "labels", "start_ids", "stateless",
                 "status")

    def __init__(self, kind: ContainerKind, labels: tuple[str, ...], stateless: bool,
                 status: LocalStatus) -> None:
        self.kind = kind
        self.labels = labels
        self.stateless = stateless
        self.status = status
        self.epoch = 0
        #: a serving stateless offer paused while its registration is answered
        self.fenced = False
        #: hub call ids waiting for this start (duplicated Starts are joined)
        self.start_ids: list[int] = []
        #: what this instance answered recently (made on its first request)
        self.answers: Answers | None = None

    def _transition(self, new: LocalStatus) -> None:
        # The one place a local container changes state (LOCAL_TRANSITIONS).
        self.status = LOCAL_TRANSITIONS.check(self.status, new)


class AgentState:
    """The state of one agent (see module docstring).

    ``kinds`` are the container kinds it can start; ``stateless`` the HA
    instances it offers from the start; ``max_containers`` caps the
    containers it runs (starts beyond it are refused with ``full``).
    """

    def __init__(
        self,
        agent_id: AgentId,
        kinds: tuple[ContainerKind, ...],
        *,
        endpoint: str | None = None,
        stateless: tuple[OfferedContainer, ...] = (),
        max_containers: int | None = None,
        fence_lease: float | None = None,
        answer_limit: int = ANSWER_LIMIT,
        answer_ttl: float = ANSWER_TTL,
    ) -> None:
        if fence_lease is not None and not fence_lease > 0:
            raise LocalProtocolError(f"fence_lease must be > 0, got {fence_lease}")
        self.agent_id = agent_id
        #: the longest silence of the hub (seconds) its stateless offers serve
        #: through; None: the session's default, a share of the hub's alive
        #: timeout (``ClientSession.fence_lease_for``)
        self.fence_lease = fence_lease
        #: the bounds of each container instance's ``Answers`` (``core/answers.py``)
        self.answer_limit = answer_limit
        self.answer_ttl = answer_ttl
        self.kinds = tuple(dict.fromkeys(kinds))
        self.endpoint = endpoint
        self.max_containers = max_containers
        self.phase = AgentPhase.SERVING
        self._containers: dict[ContainerUuid, _Local] = {}
        for oc in stateless:
            if oc.kind not in self.kinds:
                self.kinds = (*self.kinds, oc.kind)
            # Not serving until the hub's answer to the registration makes us
            # the owner (see module docstring).
            self._containers[oc.uuid] = _Local(oc.kind, oc.labels, True, LocalStatus.STANDBY)

    # --- views ---------------------------------------------------------------

    def status(self, uuid: ContainerUuid) -> LocalStatus | None:
        """Return the local status of ``uuid``, or None if this agent has no such container."""
        local = self._containers.get(uuid)
        return None if local is None else local.status

    def is_fenced(self, uuid: ContainerUuid) -> bool:
        """Return whether ``uuid`` served here and paused for an unanswered registration."""
        local = self._containers.get(uuid)
        return local is not None and local.fenced

    def serving(self) -> tuple[ContainerUuid, ...]:
        """Return the uuids this agent serves right now (ACTIVE), in start order."""
        return tuple(u for u, c in self._containers.items() if c.status is LocalStatus.ACTIVE)

    def serves_stateless(self) -> bool:
        """Return whether a stateless offer serves here (ACTIVE)."""
        return any(c.stateless and c.status is LocalStatus.ACTIVE
                   for c in self._containers.values())

    def running(self) -> tuple[ContainerUuid, ...]:
        """Return every uuid with a live instance here (ACTIVE, STANDBY or DRAINING)."""
        return tuple(u for u, c in self._containers.items() if c.status is not LocalStatus.STARTING)

    def select(self, kind: ContainerKind | None = None, labels: tuple[str, ...] = ()
               ) -> tuple[ContainerUuid, ...]:
        """Return the running uuids of ``kind`` (any if None) carrying all ``labels``.

        Label selection on the agent side (e.g. "every tenant-a container here",
        to broadcast to them or drain them); STARTING containers are left out.
        Returned in start order.
        """
        wanted = set(labels)
        return tuple(
            u for u, c in self._containers.items()
            if c.status is not LocalStatus.STARTING
            and (kind is None or c.kind == kind)
            and wanted.issubset(c.labels)
        )

    def answers(self, uuid: ContainerUuid) -> Answers | None:
        """Return the recent answers of the instance of ``uuid`` here (None: no such instance).

        Made on first use; a new instance under the same uuid starts empty.
        """
        local = self._containers.get(uuid)
        if local is None:
            return None
        if local.answers is None:
            local.answers = Answers(self.answer_limit, self.answer_ttl)
        return local.answers

    def epoch(self, uuid: ContainerUuid) -> int:
        """Return the ownership epoch this agent last heard for ``uuid`` (0 if none)."""
        local = self._containers.get(uuid)
        return 0 if local is None else local.epoch

    def is_standby(self, uuid: ContainerUuid) -> bool:
        """Return whether ``uuid`` is a stateless offer standing by here."""
        local = self._containers.get(uuid)
        return local is not None and local.status is LocalStatus.STANDBY

    def offered(self, uuid: ContainerUuid) -> OfferedContainer | None:
        """Return how ``uuid`` is offered to the hub if it is a stateless offer here, or None."""
        local = self._containers.get(uuid)
        if local is None or not local.stateless:
            return None
        return OfferedContainer(uuid, local.kind, local.labels, True)

    def offer_again(self, offer: OfferedContainer) -> bool:
        """Stand by for the stateless ``offer`` again; returns whether it was added.

        For an offer this agent stopped serving on its own (its saved state
        would not import): it is listed again, standing by, and the hub
        decides by the claim the caller sends.  Not added (False) when the
        uuid is here already, the offer is not stateless, or the agent drains.
        """
        if (offer.uuid in self._containers or not offer.stateless
                or self.phase is AgentPhase.DRAINING):
            return False
        self._containers[offer.uuid] = _Local(offer.kind, offer.labels, True,
                                              LocalStatus.STANDBY)
        return True

    def __contains__(self, uuid: object) -> bool:
        return uuid in self._containers

    # --- registration ----------------------------------------------------------

    def registration(self, call_id: int) -> RegisterAgent:
        """Return the ``RegisterAgent`` message listing everything that runs here.

        A draining agent lists neither its starting nor its draining
        containers, and asks for no room (``max_containers`` 0).  A stateless
        offer that serves here (ACTIVE) is marked ``serving``: a hub in its
        recovery window makes only such an offer the owner at once.  Call it
        before ``fence`` (which pauses those offers for the answer).
        """
        offered = tuple(
            OfferedContainer(uuid, c.kind, c.labels, c.stateless,
                             c.stateless and c.status is LocalStatus.ACTIVE)
            for uuid, c in self._containers.items()
            if c.status is not LocalStatus.STARTING and c.status is not LocalStatus.DRAINING
        )
        limit = 0 if self.phase is AgentPhase.DRAINING else self.max_containers
        return RegisterAgent(call_id, self.agent_id, self.kinds, self.endpoint, offered, limit)

    # --- draining ------------------------------------------------------------------

    def drain(self) -> list[SessionEffect]:
        """The agent shuts down (its session sends ``Drain``): return the effects to perform.

        Moves to DRAINING (the phase; a second call is a ``LocalProtocolError``)
        and cancels every start still running (``StopContainer``; the hub
        fails those gets, which are retried elsewhere).  Running containers
        serve on until the hub answers (``on_drained``).
        """
        self.phase = PHASE_TRANSITIONS.check(self.phase, AgentPhase.DRAINING)
        out: list[SessionEffect] = []
        for uuid in [u for u, c in self._containers.items()
                     if c.status is LocalStatus.STARTING]:
            del self._containers[uuid]
            out.append(StopContainer(self.agent_id, uuid))
        return out

    def on_drained(self) -> list[SessionEffect]:
        """The hub answered ``Drain``: nothing here serves any more.

        Returns ``SetServing(False)`` for each container that served (its
        direct streams end; its direct calls get ``not_found``).  Requests
        already running finish; the driver terminates the containers after.
        """
        out: list[SessionEffect] = []
        for uuid, local in self._containers.items():
            if local.status is LocalStatus.ACTIVE or local.status is LocalStatus.STANDBY:
                if local.status is LocalStatus.ACTIVE:
                    out.append(SetServing(self.agent_id, uuid, False, local.epoch))
                local._transition(LocalStatus.DRAINING)
                local.fenced = False
        return out

    def draining(self) -> tuple[ContainerUuid, ...]:
        """Return the uuids of the containers draining here, in start order."""
        return tuple(u for u, c in self._containers.items()
                     if c.status is LocalStatus.DRAINING)

    def fence(self) -> list[SessionEffect]:
        """A registration is being sent: serving stateless offers pause until it is answered.

        Returns ``SetServing(False, fenced=True)`` for each offer that served
        (the answer, ``on_registered``, resumes or demotes them), and
        ``StopContainer`` for each container still starting: a registration
        opens a new hub session, and the session that asked for those starts
        has ended (the hub failed them: nobody waits for them, and their
        ``Started`` would name a start the hub no longer knows).  fix: such a
        start ran for ever, unlisted by the hub.
        """
        out: list[SessionEffect] = []
        starting = [u for u, c in self._containers.items() if c.status is LocalStatus.STARTING]
        for uuid in starting:
            del self._containers[uuid]
            out.append(StopContainer(self.agent_id, uuid))
        out.extend(self.self_fence())
        return out

    def self_fence(self) -> list[SessionEffect]:
        """The hub has been silent past the fence lease: serving stateless offers pause.

        Returns ``SetServing(False, fenced=True)`` for each stateless offer
        that served (ACTIVE -> STANDBY, fenced); nothing else changes.  Only
        the hub's answer to a registration (``on_registered``) or its
        ``Activate`` makes them serve again: the hub may have given their
        uuids to a standby meanwhile.
        """
        out: list[SessionEffect] = []
        for uuid, local in self._containers.items():
            if local.stateless and local.status is LocalStatus.ACTIVE:
                local._transition(LocalStatus.STANDBY)
                local.fenced = True
                # A new ownership view follows (perhaps a new hub term, whose
                # epochs restart): older epochs mean nothing.
                local.epoch = 0
                out.append(SetServing(self.agent_id, uuid, False, 0, fenced=True))
        return out

    def offer(self, uuid: ContainerUuid) -> OfferedContainer | None:
        """Return the offer for a stateless ``uuid`` standing by here, or None."""
        local = self._containers.get(uuid)
        if local is None or not local.stateless or local.status is not LocalStatus.STANDBY:
            return None
        return OfferedContainer(uuid, local.kind, local.labels, True)

    def on_registered(self, reply: RegisterReply, *, full: bool = True) -> list[SessionEffect]:
        """Apply the hub's answer to a registration (``full``) or a lost claim.

        Returns ``SetServing(False)`` for offers that now stand by,
        ``SetServing(True)`` for stateless offers standing by here that a full
        registration won (e.g. the first to re-register with a restarted hub),
        and ``StopContainer`` for containers the hub refused.
        """
        out: list[SessionEffect] = []
        if full:
            for uuid, mine in self._containers.items():
                if mine.stateless:
                    # A registration starts a new ownership view (perhaps a new
                    # hub term whose epochs restart): older epochs mean nothing.
                    mine.epoch = 0
                    if mine.status is LocalStatus.STANDBY and uuid not in reply.standby \
                            and uuid not in reply.terminate:
                        # The hub made us the owner (first to register, or a
                        # fenced owner confirmed); fix: a standby that won
                        # must serve, or requests bounce off it forever.
                        mine._transition(LocalStatus.ACTIVE)
                        mine.fenced = False
                        out.append(SetServing(self.agent_id, uuid, True, 0))
        for uuid in reply.standby:
            local = self._containers.get(uuid)
            if local is None:
                continue
            if local.stateless:
                if local.status is not LocalStatus.STANDBY or local.fenced:
                    local._transition(LocalStatus.STANDBY)
                    local.fenced = False
                    out.append(SetServing(self.agent_id, uuid, False, local.epoch))
            else:
                del self._containers[uuid]
                out.append(StopContainer(self.agent_id, uuid))
        for uuid in reply.terminate:
            local = self._containers.pop(uuid, None)
            if local is not None:
                out.append(StopContainer(self.agent_id, uuid))
        return out

    def claimed(self, uuid: ContainerUuid, reply: RegisterReply) -> list[SessionEffect]:
        """Apply the answer to a ``Claim`` of ``uuid``: serve it if the claim won."""
        if uuid in reply.standby or uuid in reply.terminate:
            return self.on_registered(reply, full=False)
        local = self._containers.get(uuid)
        if local is None or local.status is not LocalStatus.STANDBY:
            return []
        local._transition(LocalStatus.ACTIVE)
        local.fenced = False
        return [SetServing(self.agent_id, uuid, True, local.epoch)]

    # --- hub orders ---------------------------------------------------------------

    def on_start(self, msg: Start) -> list[SessionEffect]:
        """Start a container as the hub asks; a start of a uuid already here is joined.

        Returns a ``StartContainer`` effect, or a reply: ``Started`` (already
        running), ``Error`` ``bad_kind`` (kind not hosted) or ``full``.
        """
        if self.phase is AgentPhase.DRAINING:
            # (A hub that lost our Drain, e.g. one restarted meanwhile.)
            return [Send(None, Error(msg.id, ErrorCode.FULL.value,
                                     f"agent {self.agent_id!r} is draining"))]
        local = self._containers.get(msg.uuid)
        if local is not None:
            if local.status is LocalStatus.STARTING:
                local.start_ids.append(msg.id)
                return []
            if local.status is LocalStatus.STANDBY:
                # "Started" would have the hub route to an instance that does
                # not serve: every request bounces back not_found, is
                # re-acquired and resent at once, forever.
                return [Send(None, Error(msg.id, ErrorCode.START_FAILED.value,
                                         f"container {msg.uuid!r} stands by on agent "
                                         f"{self.agent_id!r}"))]
            return [Send(None, Started(msg.id, msg.uuid, self.endpoint))]
        if msg.kind not in self.kinds:
            return [Send(None, Error(msg.id, ErrorCode.BAD_KIND.value,
                                     f"agent {self.agent_id!r} does not host {msg.kind!r}"))]
        if self.max_containers is not None and len(self._containers) >= self.max_containers:
            return [Send(None, Error(msg.id, ErrorCode.FULL.value,
                                     f"agent {self.agent_id!r} runs its maximum of "
                                     f"{self.max_containers} containers"))]
        local = _Local(msg.kind, tuple(msg.labels), False, LocalStatus.STARTING)
        local.start_ids.append(msg.id)
        self._containers[msg.uuid] = local
        options = GetOptions(msg.uuid, msg.labels, msg.extra)
        return [StartContainer(self.agent_id, msg.uuid, msg.kind, options)]

    def started(self, uuid: ContainerUuid, endpoint: str | None = None) -> list[SessionEffect]:
        """The driver started ``uuid``: answer every waiting ``Start``.

        ``endpoint`` overrides the agent's endpoint for this container (a
        container with its own server).  Returns the replies to send; none if
        the start was cancelled meanwhile.
        """
        local = self._containers.get(uuid)
        if local is None or local.status is not LocalStatus.STARTING:
            return []
        local._transition(LocalStatus.ACTIVE)
        ids, local.start_ids = local.start_ids, []
        where = endpoint if endpoint is not None else self.endpoint
        return [Send(None, Started(i, uuid, where)) for i in ids]

    def start_failed(self, uuid: ContainerUuid, message: str) -> list[SessionEffect]:
        """The driver could not start ``uuid``: answer every waiting ``Start`` with an error."""
        local = self._containers.get(uuid)
        if local is None or local.status is not LocalStatus.STARTING:
            return []
        del self._containers[uuid]
        return [Send(None, Error(i, ErrorCode.START_FAILED.value, message))
                for i in local.start_ids]

    def on_terminate(self, msg: Terminate) -> list[SessionEffect]:
        """The hub orders ``msg.uuid`` terminated; returns ``StopContainer`` if it runs here."""
        local = self._containers.pop(msg.uuid, None)
        if local is None:
            return []
        out: list[SessionEffect] = [StopContainer(self.agent_id, msg.uuid)]
        if local.status is LocalStatus.STARTING:
            out.extend(Send(None, Error(i, ErrorCode.START_FAILED.value, "terminated"))
                       for i in local.start_ids)
        return out

    def on_activate(self, msg: Activate) -> list[SessionEffect]:
        """The hub promoted this agent's standby for ``msg.uuid``.

        Returns ``SetServing(True)``; an activation with an epoch older than
        one already seen is stale and ignored.
        """
        local = self._containers.get(msg.uuid)
        if local is None or local.status is LocalStatus.DRAINING:
            # We no longer run it (or it is on its way out): tell the hub so
            # it can promote someone else.
            return [Send(None, ContainerStopped(self.agent_id, msg.uuid))]
        if msg.epoch < local.epoch:
            return []
        local.epoch = msg.epoch
        if local.status is LocalStatus.ACTIVE:
            return []
        local._transition(LocalStatus.ACTIVE)
        local.fenced = False
        return [SetServing(self.agent_id, msg.uuid, True, msg.epoch)]

    def on_request(self, msg: Request) -> list[SessionEffect]:
        """Run a forwarded request, or answer ``not_found`` if ``msg.uuid`` does not serve here."""
        local = self._containers.get(msg.uuid)
        if local is None or local.status is not _LOCAL_ACTIVE:
            why = ("is not running" if local is None
                   else "is draining" if local.status is LocalStatus.DRAINING else "stands by")
            return [Send(None, Error(msg.id, ErrorCode.NOT_FOUND.value,
                                     f"container {msg.uuid!r} {why} on agent {self.agent_id!r}"))]
        return [RunRequest(self.agent_id, msg.uuid, msg.id, msg.operation, msg.payload,
                           msg.client_id)]

    def on_connect(self, msg: Connect) -> list[SessionEffect]:
        """A client connects to ``msg.uuid`` through the hub: ``Ok`` and ``ConnectContainer``."""
        local = self._containers.get(msg.uuid)
        if local is None or local.status is not LocalStatus.ACTIVE or msg.client_id is None:
            return [Send(None, Error(msg.id, ErrorCode.NOT_FOUND.value,
                                     f"container {msg.uuid!r} does not serve here"))]
        return [ConnectContainer(self.agent_id, msg.uuid, msg.client_id), Send(None, Ok(msg.id))]

    def on_disconnect(self, msg: Disconnect) -> list[SessionEffect]:
        """A client's stream from ``msg.uuid`` ended: ``DisconnectContainer``."""
        if msg.uuid not in self._containers or msg.client_id is None:
            return []
        return [DisconnectContainer(self.agent_id, msg.uuid, msg.client_id)]

    def stopped(self, uuid: ContainerUuid) -> list[SessionEffect]:
        """``uuid`` ended on its own (crashed, finished): tell the hub."""
        if self._containers.pop(uuid, None) is None:
            return []
        return [Send(None, ContainerStopped(self.agent_id, uuid))]

    def terminated(self, uuid: ContainerUuid) -> list[SessionEffect]:
        """The driver ended ``uuid`` after the hub's ``Terminate`` and saved its last changes.

        Returns ``ContainerStopped`` for the hub, which starts the uuid again
        (anywhere) only after it: a start elsewhere would claim the uuid in
        the state store before the last write and fence it.  Nothing when
        ``uuid`` is here again (started anew: the hub stopped waiting).
        """
        if uuid in self._containers:
            return []
        return [Send(None, ContainerStopped(self.agent_id, uuid))]

    def stop_all(self) -> list[SessionEffect]:
        """The agent shuts down: ``StopContainer`` for everything here."""
        out: list[SessionEffect] = [StopContainer(self.agent_id, u) for u in self._containers]
        self._containers.clear()
        return out
