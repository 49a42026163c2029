"""The agents a client session hosts, and what the hub's orders do to them.

Theory of operation
-------------------
A client may host agents (``core/agent.py``: each ``AgentState`` knows what
it runs and what it stands by for).  They live as long as the session that
registered them: its connection carries their traffic, its pings keep them
alive at the hub, and after a reconnect the session registers them again.

``Hosting`` keeps them by agent id and routes to the right one what the hub
orders (``Start``, ``Terminate``, ``Activate``: by agent id; ``Request``,
``Connect``, ``Disconnect``: by the container's uuid) and what the driver
reports (``started``, ``start_failed``, ``stopped``).  Every method returns
the effects to perform, in order; an order for an agent or a container that
is not here is answered ``not_found`` (requests and starts, so the hub and
the caller move on) or ignored (the rest: there is nothing to undo).

The session (``core/session.py``) owns it: it dispatches the hub's messages
here, sends the replies only while connected, and makes the calls an agent
needs (register, unregister, claim) in its own call table.

Runs (at most once across hub failover, ``core/answers.py``).  A forwarded
request runs under a *run id*: the hub's call id, unless a run from an
earlier connection still holds that number (a new hub numbers its calls
from 1 again), then a negative local number.  The driver answers by run id
(``reply`` / ``error``), and the answer goes to the hub calls waiting for
the run on the current connection: the first, and every resend of the same
request (same caller peer id and caller id) that arrived while it ran.  A
resend after the answer is answered from the instance's ``Answers``.  When
the connection ends, the runs stay and their waiters go (the old hub's call
ids mean nothing to the next one); the caller's resend joins them again.
"""

from __future__ import annotations

from .agent import AgentState
from .answers import Answer, Answers, Asked, CallerKey
from .effects import CancelRequest, RunRequest, Send, SessionEffect
from .errors import ErrorCode, LocalProtocolError
from .messages import (
    Activate,
    Connect,
    Disconnect,
    Error,
    RegisterReply,
    Request,
    Start,
    Terminate,
)
from .probes import Probes
from .types import AgentId, ContainerUuid, OfferedContainer

__all__ = ["Hosting"]


class _Run:
    """A forwarded request running on a container instance."""

    __slots__ = ("answers", "asked", "key", "waiting")

    def __init__(self, answers: Answers | None, key: CallerKey | None, asked: Asked,
                 call_id: int) -> None:
        #: the instance's memory (None: the request cannot be recognised on a resend)
        self.answers = answers
        self.key = key
        self.asked = asked
        #: the hub's call ids (current connection) that get the answer
        self.waiting = [call_id]


class Hosting:
    """The agents hosted in one session (see module docstring)."""

    __slots__ = ("_by_call", "_local_runs", "_runs", "agents", "probes")

    def __init__(self, probes: Probes) -> None:
        self.probes = probes
        #: agent id -> its state, in registration order (change only through methods)
        self.agents: dict[AgentId, AgentState] = {}
        #: run id -> the run, while the driver runs it
        self._runs: dict[int, _Run] = {}
        #: the hub's call id (current connection) -> the run id it waits for
        self._by_call: dict[int, int] = {}
        #: the last local (negative) run id given
        self._local_runs = 0

    def running(self) -> int:
        """Return how many forwarded requests run here."""
        return len(self._runs)

    def connection_lost(self) -> None:
        """The hub connection ended: runs go on, nobody on it waits for them any more."""
        self._by_call.clear()
        for run in self._runs.values():
            run.waiting.clear()

    def get(self, agent_id: AgentId) -> AgentState | None:
        """Return the hosted agent ``agent_id``, or None."""
        return self.agents.get(agent_id)

    def add(self, agent: AgentState) -> None:
        """Host ``agent``.

        Raises:
            LocalProtocolError: if an agent with that id is already hosted here.
        """
        if agent.agent_id in self.agents:
            raise LocalProtocolError(f"agent {agent.agent_id!r} is already registered here")
        self.agents[agent.agent_id] = agent

    def remove(self, agent_id: AgentId) -> list[SessionEffect]:
        """Stop hosting ``agent_id``; returns a ``StopContainer`` for everything it ran.

        An agent that is not hosted here returns no effects.
        """
        agent = self.agents.pop(agent_id, None)
        return [] if agent is None else agent.stop_all()

    def _for_uuid(self, uuid: ContainerUuid) -> AgentState | None:
        """Return the hosted agent that runs or stands by for ``uuid``, or None."""
        for agent in self.agents.values():
            if uuid in agent:
                return agent
        return None

    # --- what the driver reports ----------------------------------------------------

    def started(self, agent_id: AgentId, uuid: ContainerUuid,
                endpoint: str | None) -> list[SessionEffect]:
        """The driver started ``uuid`` for ``agent_id``; returns the ``Started`` to send."""
        agent = self.agents.get(agent_id)
        return [] if agent is None else agent.started(uuid, endpoint)

    def start_failed(self, agent_id: AgentId, uuid: ContainerUuid,
                     message: str) -> list[SessionEffect]:
        """The driver failed to start ``uuid`` for ``agent_id``; returns the ``Error`` to send."""
        agent = self.agents.get(agent_id)
        return [] if agent is None else agent.start_failed(uuid, message)

    def stopped(self, agent_id: AgentId, uuid: ContainerUuid) -> list[SessionEffect]:
        """``uuid`` of ``agent_id`` ended on its own; returns what tells the hub."""
        agent = self.agents.get(agent_id)
        return [] if agent is None else agent.stopped(uuid)

    def terminated(self, agent_id: AgentId, uuid: ContainerUuid) -> list[SessionEffect]:
        """``uuid`` of ``agent_id``, terminated by the hub, saved its last changes.

        Returns what tells the hub (see ``AgentState.terminated``).
        """
        agent = self.agents.get(agent_id)
        return [] if agent is None else agent.terminated(uuid)

    # --- the hub's answers to the session's calls for its agents ---------------------

    def registered(self, agent_id: AgentId, reply: RegisterReply) -> list[SessionEffect]:
        """The hub answered ``agent_id``'s registration; returns what it changes locally."""
        agent = self.agents.get(agent_id)
        return [] if agent is None else agent.on_registered(reply)

    def claimed(self, agent_id: AgentId, uuid: ContainerUuid,
                reply: RegisterReply) -> list[SessionEffect]:
        """The hub answered ``agent_id``'s claim of ``uuid``; returns what it changes locally."""
        agent = self.agents.get(agent_id)
        return [] if agent is None else agent.claimed(uuid, reply)

    def self_fence(self) -> list[SessionEffect]:
        """The hub has been silent past the fence lease: every serving stateless offer pauses.

        Returns the ``SetServing(False, fenced=True)`` effects, in agent order
        (none if no stateless offer served).
        """
        out: list[SessionEffect] = []
        for agent in self.agents.values():
            out.extend(agent.self_fence())
        return out

    def serves_stateless(self) -> bool:
        """Return whether some hosted agent serves a stateless offer now (it could fence)."""
        return any(agent.serves_stateless() for agent in self.agents.values())

    def fence_lease(self) -> float | None:
        """Return the shortest fence lease a hosted agent asks for (None: none asks)."""
        leases = [a.fence_lease for a in self.agents.values() if a.fence_lease is not None]
        return min(leases) if leases else None

    def standing_by(self, uuid: ContainerUuid) -> list[AgentId]:
        """Return the hosted agents standing by for ``uuid``, in registration order."""
        return [agent.agent_id for agent in self.agents.values() if agent.is_standby(uuid)]

    def claim_offer(self, agent_id: AgentId, uuid: ContainerUuid) -> OfferedContainer | None:
        """Return the offer ``agent_id`` would claim ``uuid`` with (None: it has none now)."""
        agent = self.agents.get(agent_id)
        return None if agent is None else agent.offer(uuid)

    # --- the hub's orders ------------------------------------------------------------

    def on_start(self, msg: Start) -> list[SessionEffect]:
        """Start a container for ``msg.agent_id``; ``not_found`` if it is not hosted here."""
        agent = self.agents.get(msg.agent_id)
        if agent is None:
            return [Send(None, Error(msg.id, ErrorCode.NOT_FOUND.value,
                                     f"agent {msg.agent_id!r} is not hosted here"))]
        return agent.on_start(msg)

    def on_terminate(self, msg: Terminate) -> list[SessionEffect]:
        """Stop ``msg.uuid`` of ``msg.agent_id`` (nothing if it is not hosted here)."""
        agent = self.agents.get(msg.agent_id)
        return [] if agent is None else agent.on_terminate(msg)

    def on_activate(self, msg: Activate) -> list[SessionEffect]:
        """Promote ``msg.agent_id``'s standby for ``msg.uuid`` (nothing if not hosted here)."""
        agent = self.agents.get(msg.agent_id)
        if agent is None:
            return []
        self.probes.hit("standby activated")
        return agent.on_activate(msg)

    def on_request(self, msg: Request, now: float) -> list[SessionEffect]:
        """Run a forwarded request at most once; returns a ``RunRequest`` or an answer.

        ``not_found`` if no hosted agent serves ``msg.uuid``; the remembered
        answer if this request (its caller's peer id and id) already ran on
        the instance; nothing if it runs now (its answer will go to this call
        too); else a ``RunRequest`` under a new run id.
        """
        agent = self._for_uuid(msg.uuid)
        if agent is None:
            return [Send(None, Error(msg.id, ErrorCode.NOT_FOUND.value,
                                     f"container {msg.uuid!r} is not running here"))]
        out = agent.on_request(msg)
        if len(out) != 1 or not isinstance(run_request := out[0], RunRequest):
            return out  # refused: not serving here
        answers: Answers | None = None
        key: CallerKey | None = None
        asked = (msg.operation, msg.payload)
        if msg.client_id is not None and msg.caller_id is not None:
            answers = agent.answers(msg.uuid)
            key = (msg.client_id, msg.caller_id)
            if answers is not None:
                seen = answers.lookup(key, asked, now)
                if isinstance(seen, int):
                    self.probes.hit("resent request joined its run")
                    run = self._runs[seen]
                    run.waiting.append(msg.id)
                    self._by_call[msg.id] = seen
                    return []
                if seen is not None:
                    self.probes.hit("resent request answered from memory")
                    return [Send(None, seen.to(msg.id))]
        run_id = msg.id
        if run_id in self._runs:
            # An older connection's run holds the hub's number: go local.
            self._local_runs -= 1
            run_id = self._local_runs
        self._runs[run_id] = _Run(answers, key, asked, msg.id)
        self._by_call[msg.id] = run_id
        if answers is not None and key is not None:
            answers.start(key, run_id, asked)
        if run_id == msg.id:
            return out
        return [RunRequest(run_request.agent_id, msg.uuid, run_id, msg.operation, msg.payload,
                           msg.client_id)]

    def reply(self, run_id: int, answer: Answer, now: float) -> list[SessionEffect]:
        """The driver's run ``run_id`` answered: remember it; returns the replies to send.

        One reply per hub call waiting for the run on the current connection
        (none after a reconnect until the caller resends).
        """
        run = self._runs.pop(run_id, None)
        if run is None:
            return []  # cancelled meanwhile, or not a forwarded request
        if run.answers is not None and run.key is not None:
            run.answers.finish(run.key, run_id, run.asked, answer, now)
        by_call = self._by_call
        out: list[SessionEffect] = []
        for call_id in run.waiting:
            by_call.pop(call_id, None)
            out.append(Send(None, answer.to(call_id)))
        return out

    def cancel(self, call_id: int) -> list[SessionEffect]:
        """The hub's call ``call_id`` was abandoned by its caller.

        Returns ``CancelRequest`` for its run when no other call waits for
        it (the run is then forgotten: a resend runs again); nothing else.
        """
        run_id = self._by_call.pop(call_id, None)
        if run_id is None:
            return []
        run = self._runs[run_id]
        run.waiting.remove(call_id)
        if run.waiting:
            return []
        del self._runs[run_id]
        if run.answers is not None and run.key is not None:
            run.answers.forget(run.key, run_id)
        return [CancelRequest(run_id)]

    def on_connect(self, msg: Connect) -> list[SessionEffect]:
        """Open an event stream; ``not_found`` if no hosted agent runs ``msg.uuid``."""
        agent = self._for_uuid(msg.uuid)
        if agent is None:
            return [Send(None, Error(msg.id, ErrorCode.NOT_FOUND.value,
                                     f"container {msg.uuid!r} is not running here"))]
        return agent.on_connect(msg)

    def on_disconnect(self, msg: Disconnect) -> list[SessionEffect]:
        """Close an event stream (nothing if no hosted agent runs ``msg.uuid``)."""
        agent = self._for_uuid(msg.uuid)
        return [] if agent is None else agent.on_disconnect(msg)
