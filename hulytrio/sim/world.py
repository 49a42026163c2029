"""The simulated world: the real core machines on a virtual clock.

Theory of operation
-------------------
One ``Hub`` and one ``ClientSession`` per simulated process (a client, or
an agent process: a session hosting one ``AgentState``) are driven exactly
as the trio transport drives them: feed an input, drain the effects,
perform them, and wake the machine at its ``next_deadline()``.  Nothing
here decides what the system does; it only moves messages, keeps time and
plays the part of the container code.

Layers (docs/simulator.md has the module map): the ``Clock`` (clock.py) runs
typed events in time order; links (links.py) own latency, order, holds and
closes; the ``Trace`` (trace.py) records; this world drives the core machines
through ``next_deadline()`` / ``handle_timers(now)`` and performs their
effects; the invariant checker (invariants.py) and the fault layer
(faults.py: scheduled and drawn faults, failover tracking) plug in where
``report.simulation`` wires them, through the ``Observer`` and
``FaultLayer`` protocols below (this module imports neither them nor the
report); each process's workload (workload.py) is made here.  Each
machine has at most one live wake-up on the clock (a stale one is skipped
when it surfaces), so a step costs O(log instants) and timeouts cost what
expires, never O(machines).

Ground truth: each process records which containers its driver really
runs and which stateless instances really serve (applying
``StartContainer`` after the agent's start delay, ``StopContainer`` and
``SetServing``); the invariants compare it with the hub's registry.

Randomness comes from ``random.Random`` streams derived from the seed by
name (``links``, ``faults``, ``workload``, ``agents``, ``sessions``), per
process where it matters, so adding a client reshuffles nothing else.
"""

from __future__ import annotations

import functools
import gc
import random
from collections.abc import Callable, Sequence
from typing import IO, Any, Protocol, assert_never

from ..core.agent import AgentState
from ..core.effects import (
    CancelRequest,
    CloseConnection,
    ConnectContainer,
    DeliverEvent,
    DeliverPush,
    DisconnectContainer,
    Effect,
    HubEffect,
    Notice,
    OpenConnection,
    ReferenceChanged,
    Refused,
    Reject,
    Resolve,
    RunRequest,
    Send,
    SessionEffect,
    SetServing,
    StartContainer,
    StopContainer,
)
from ..core.errors import ErrorCode
from ..core.hub import Hub, HubTimers
from ..core.messages import Hello
from ..core.probes import Probes
from ..core.session import ClientSession, RefStatus, SessionState
from ..core.timeouts import Timeouts
from ..core.types import OfferedContainer
from .clock import Clock, Event
from .links import CLOSE, OPENED, Connection, LinkProfile
from .process import Process
from .scenario import FaultSpec, Scenario, process_names
from .state import StateLayer
from .trace import TimelineEntry, Trace
from .workload import RequestStats, Workload

__all__ = ["FaultLayer", "Observer", "Process", "Simulation", "TimelineEntry"]


class Observer(Protocol):
    """What the world tells the invariant checker (``invariants.Invariants``), and asks it."""

    requests: RequestStats
    checked: dict[str, int]
    offering: dict[str, dict[str, None]]
    violations: list[Any]
    context: list[str]

    def violate(self, name: str, text: str) -> None:
        """Record that invariant ``name`` broke now."""

    def offered(self, uuid: str, proc: Process) -> None:
        """``proc`` offers stateless ``uuid``."""

    def declared_dead(self, conn: Connection) -> None:
        """The hub closed ``conn`` for its alive timeout."""

    def late_message(self, conn: Connection, effects: Sequence[Effect]) -> None:
        """The hub was handed a message on ``conn`` after it had closed it."""

    def hello(self, conn: Connection, old: Connection | None, closed: list[Connection]) -> None:
        """The hub processed a Hello on ``conn``."""

    def set_serving(self, proc: Process, eff: SetServing) -> None:
        """``proc``'s agent switches a stateless uuid to serving or standby."""

    def run_request(self, proc: Process, eff: RunRequest) -> None:
        """The core asks ``proc``'s driver to run a request."""

    def silenced(self, proc: Process) -> None:
        """``proc`` fell silent."""

    def periodic(self) -> None:
        """Run the state invariants."""

    def converged(self) -> bool:
        """Return whether the system has converged."""

    def finish(self) -> None:
        """End of run."""

    def summary_counts(self) -> dict[str, Any]:
        """Return how often each invariant was checked and broken."""


class FaultLayer(Protocol):
    """What the world asks of its fault layer (``faults.Faults``)."""

    def scripted(self) -> list[tuple[float, Event]]:
        """Return the scheduled faults as scripted events, in time order."""

    def inject(self, fault: FaultSpec) -> None:
        """Apply ``fault`` now."""

    def failover_progress(self, uuid: str | None = None) -> None:
        """Close the failovers that are done (of ``uuid``; None: of any uuid)."""

    def release(self, proc: Process) -> None:
        """The fault phase is over: ``proc`` runs again, reachable, at the scenario's latency."""

    def failover_rows(self) -> tuple[tuple[str, str, float, float | None], ...]:
        """Return (uuid, failed process, start, duration or None) of each needed failover."""

    def slow_failovers(self, within: float) -> list[str]:
        """Return one line per needed failover not done within ``within`` seconds."""


class Simulation:
    """One run of a scenario with one seed (see module docstring).

    ``observe`` makes the invariant checker for this world, ``faults`` its
    fault layer (which draws its schedule when it is made).  ``trace`` (a
    text file) receives every event as a JSON line; the SHA-256 of those
    lines is ``trace_hash()`` whether or not they are written.
    ``keep_trace`` keeps them in memory (for ``--check-determinism``).
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
        observe: Callable[[Simulation], Observer],
        faults: Callable[[Simulation], FaultLayer],
        seed: int | None = None,
        trace: IO[str] | None = None,
        keep_trace: bool = False,
        progress: Callable[[float, float], None] | None = None,
    ) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        h = scenario.hub
        self.timeouts = Timeouts(alive=h.alive, unused_container=h.unused_container,
                                 ping_interval=h.ping_interval, event_window=h.event_window,
                                 start=h.start)
        self.clock = Clock()
        self.record = Trace(self.clock, trace, keep_trace)
        self.fault_phase_end = float(scenario.duration)
        self.end = self.fault_phase_end + float(scenario.liveness)
        self.in_liveness = False
        self.converged_at: float | None = None
        self.probes = Probes()
        self.hub: Hub | None = None
        self.hub_term = 0
        self._hub_armed: float | None = None
        #: the hub timers' ``armings`` when ``_hub_armed`` was last decided
        self._hub_mark = -1
        self._hub_mark_timers: HubTimers | None = None
        self.procs: dict[str, Process] = {}
        self._cid = 0
        self._progress = progress
        self._next_report = 0.0
        #: (time, pid, state) for the picture: up / paused / partitioned / down
        self.history: list[tuple[float, str, str]] = []
        #: (time, uuid, owner agent id or "") whenever a stateless owner changes
        self.ownership: list[tuple[float, str, str]] = []
        #: (time, containers the hub lists) at every periodic check, for the picture
        self.container_samples: list[tuple[float, int]] = []
        #: peer id -> the connection on which the hub last accepted its Hello
        self.hub_conn_of: dict[str, Connection] = {}
        #: told ``(proc, conn, message)`` after a session handled a message from the
        #: hub (the multi-hub world's term check); None: nobody is (an attribute, not
        #: a method to override: it is asked per message)
        self.hub_message_seen: Callable[[Process, Connection, Any], None] | None = None
        self.max_latency = max(scenario.links.latency.high, 0.0)
        #: container state and its store (None without a [state] table)
        self.state: StateLayer | None = None
        self.faults = faults(self)
        #: the periodic check's event, scheduled again after each check (one is due at a time)
        self._check_event = _Check(self)
        self.invariants = observe(self)
        if scenario.state is not None:
            self.state = StateLayer(self, scenario.state)
        self._build()

    # --- building --------------------------------------------------------------

    def _build(self) -> None:
        sc = self.scenario
        self.start_hub()
        for a in sc.agents:
            for pid in process_names(a.name, a.count):
                self._add_process(Process(pid, a, None, self._link()), a.join_at)
        for c in sc.clients:
            for pid in process_names(c.name, c.count):
                self._add_process(Process(pid, None, c, self._link()), c.join_at)
        # Scheduled faults and operations run after every other event due at
        # the same time, exactly as when a test injects them between steps,
        # so a chaos run written out as a scenario replays the same way.
        scripted: list[tuple[float, Event]] = []
        for op in sc.operations:
            if op.client not in self.procs:
                self.procs[op.client] = Process(op.client, None, None, self._link())
                self.clock.at(0.0, _Start(self, self.procs[op.client]))
            scripted.append((float(op.at), _Operation(self, op.client, op.op, op.ref)))
        scripted.extend(self.faults.scripted())
        scripted.append((self.fault_phase_end, _EndFaultPhase(self)))
        self.clock.script(scripted)
        self.clock.at(0.0, self._check_event)

    def _link(self) -> LinkProfile:
        return LinkProfile(self.scenario.links.latency, codec=self.scenario.links.codec)

    def _add_process(self, proc: Process, join_at: float) -> None:
        if proc.pid in self.procs:
            raise ValueError(f"two processes are named {proc.pid!r}")
        self.procs[proc.pid] = proc
        self.clock.at(float(join_at), _Start(self, proc))

    # --- running ------------------------------------------------------------------

    @property
    def now(self) -> float:
        """Return the virtual time now."""
        return self.clock.now

    def run(self) -> None:
        """Run the scenario to its end (or to convergence in the liveness phase)."""
        self.run_until(self.end)
        self.invariants.finish()
        if self._progress is not None:
            self._progress(self.end, self.end)

    def run_until(self, limit: float) -> None:
        """Process every event due by ``limit`` (stopping early once converged)."""
        # A run allocates many short-lived tuples (queue entries, deadlines,
        # messages) that live a few virtual seconds: with the default young
        # generation (700) they are promoted, and the full collections that
        # follow walk every session's registry view.  At 1,000 agents that
        # was a quarter to a half of the run.  A larger young generation lets
        # them die young.
        thresholds = gc.get_threshold()
        gc.set_threshold(max(_GC_YOUNG, thresholds[0]), *thresholds[1:])
        try:
            self.clock.run_until(limit, self._between if self._progress is not None else None)
        finally:
            gc.set_threshold(*thresholds)

    def _between(self, t: float) -> None:
        if self._progress is not None and t >= self._next_report:
            self._progress(t, self.end)
            self._next_report = t + (self.end / 100.0 if self.end > 0 else 1.0)

    def finish_now(self) -> None:
        """End the fault phase now, then run the liveness phase and the final checks."""
        self.fault_phase_end = self.clock.now
        self.end = self.clock.now + float(self.scenario.liveness)
        self.end_fault_phase()
        self.run()

    def operate(self, client: str, op: str, slot: int) -> None:
        """Run client operation ``op`` on reference ``slot`` now."""
        self.operation(client, op, slot)

    # --- tracing -------------------------------------------------------------------

    def trace(self, kind: str, who: str, what: str) -> None:
        """Record one event now in the trace."""
        self.record.pending.append((self.clock.now, kind, who, what))

    @property
    def events(self) -> int:
        """Return how many events the trace holds."""
        self.record.flush()
        return self.record.events

    @property
    def kept(self) -> list[str] | None:
        """Return the trace lines kept in memory (``keep_trace``), or None."""
        self.record.flush()
        return self.record.kept

    @property
    def timeline(self) -> list[TimelineEntry]:
        """Return the run's story so far."""
        return self.record.timeline

    def recent_lines(self) -> list[str]:
        """Return the last trace lines (the events leading to now)."""
        return self.record.recent_lines()

    def trace_hash(self) -> str:
        """Return the SHA-256 of the trace lines so far."""
        return self.record.hash()

    def note(self, kind: str, text: str) -> None:
        """Add a line to the run's timeline (faults and reactions)."""
        self.record.note(kind, text)

    def record_state(self, proc: Process, state: str) -> None:
        """Record that ``proc`` is now up, paused, partitioned or down (for the picture)."""
        self.history.append((self.clock.now, proc.pid, state))

    # --- the hub ---------------------------------------------------------------------

    def start_hub(self) -> None:
        """Start a new hub (the next term); every connection it had is forgotten."""
        self.hub_term += 1
        self.hub = Hub(f"hub{self.hub_term}", self.timeouts, term=self.hub_term,
                       probes=self.probes, seeded_bugs=frozenset(self.scenario.hub.seeded_bugs))
        self._hub_armed = None
        self.hub_conn_of.clear()
        self.trace("hub-start", "hub", self.hub.hub_id)

    def drop_hub(self) -> None:
        """The hub is gone (crashed): every connection it accepted is reset under its peer."""
        hub = self.hub
        self.hub = None
        self._hub_armed = None
        for proc in self.procs.values():
            conn = proc.conn
            if conn is not None and conn.hub is hub and conn.hub_open:
                conn.hub_open = False
                # The peer's OS answers with a reset: the client sees a close.
                conn.down.dead = False
                conn.down.close()

    def hub_wake(self, hub: Hub, d: float) -> None:
        """The hub's timers are due (``d``: the deadline this wake-up was armed for)."""
        if hub is not self.hub or self._hub_armed != d:
            return
        self._hub_armed = None
        self.record.pending.append((self.clock.now, "timer", "hub", ""))  # trace(), inlined
        hub.handle_timers(self.clock.now)
        self._hub_effects(hub)

    def _hub_effects(self, hub: Hub, closed: list[Connection] | None = None) -> None:
        """Perform the hub's effects and wake it at its next deadline.

        ``closed``, if given, receives the connections it closed (a Hello's check).
        """
        # The hub emits only HubEffects; Hub.effects() is typed wider (list[Effect]).
        # (Annotations, not cast() calls: this loop runs per message.)
        effects: list[HubEffect] = hub.effects()
        for eff in effects:
            match eff:
                case Send():
                    conn: Connection = eff.conn  # type: ignore[assignment]
                    link = conn.down
                    if conn.hub_open and not link.closed:
                        link.push(eff.message)
                case CloseConnection():
                    conn = eff.conn  # type: ignore[assignment]
                    if closed is not None:
                        closed.append(conn)
                    if not conn.hub_open:
                        continue
                    if eff.reason == "alive timeout":
                        self.invariants.declared_dead(conn)
                    conn.hub_open = False
                    hub.connection_lost(conn, self.clock.now)
                    conn.down.push(CLOSE)
                    conn.down.closed = True
                    self.trace("hub-close", conn.name, eff.reason)
                case Notice():
                    pass  # an operator's log line; the trace and probes already record the facts
                case Refused():
                    pass  # the simulated hub runs without authentication: nothing is refused
                case _:
                    assert_never(eff)
        # Arm the hub's wake-up.  Only arming can bring its next deadline
        # forward: while nothing was armed, the wake-up we have still holds.
        current = self.hub
        if current is None:
            return
        timers = current.timers
        armed = self._hub_armed
        armings = timers.armings  # (a sum the hub computes: asked once)
        if armed is not None and armings == self._hub_mark \
                and timers is self._hub_mark_timers:
            return
        self._hub_mark = armings
        self._hub_mark_timers = timers
        d = timers.next_deadline()
        if d is not None and (armed is None or d < armed):
            self._hub_armed = d
            self.clock.at(d, _HubWake(self, current, d))

    # --- links ---------------------------------------------------------------------------

    def deliver_to_hub(self, conn: Connection, hub: Hub | None, name: str) -> None:
        """Deliver what is ready from a process to ``hub`` (traced as ``name``).

        ``hub`` is the hub that runs now where ``conn`` leads (None: none
        runs); what reaches a hub that did not accept ``conn`` is lost.
        """
        d = conn.up
        d.scheduled = False
        if d.blocked:
            return
        now = self.clock.now
        queue = d.queue
        pid = conn.name
        pending = self.record.pending
        while queue and queue[0][0] <= now:
            item = queue.popleft()[1]
            if hub is None or conn.hub is not hub:
                continue  # the hub that had this connection is gone
            if item is CLOSE:
                if conn.hub_open:
                    conn.hub_open = False
                    self.trace("closed", name, pid)
                    hub.connection_lost(conn, now)
                    self._hub_effects(hub)
                continue
            pending.append((now, "hub-recv", pid, item.TAG))  # trace(), inlined: per message
            if not conn.hub_open:
                # A late message on a connection the hub already closed.
                hub.receive(conn, item, now)
                self.invariants.late_message(conn, hub.effects())
                continue
            conn.last_arrival = now
            if type(item) is Hello:
                # Keyed by peer id: a Hello supersedes only its own peer's
                # connection (a process with a fresh peer id per start has several).
                peer = item.peer_id
                old = self.hub_conn_of.get(peer)
                hub.receive(conn, item, now)
                closed: list[Connection] = []
                self._hub_effects(hub, closed)
                self.invariants.hello(conn, old, closed)
                self.hub_conn_of[peer] = conn
            else:
                hub.receive(conn, item, now)
                self._hub_effects(hub)
        d.reschedule()

    def deliver_to_process(self, conn: Connection, proc: Process) -> None:
        """Deliver what is ready from the hub to a process (and tell ``hub_message_seen``)."""
        d = conn.down
        d.scheduled = False
        if d.blocked or proc.paused:
            return
        now = self.clock.now
        queue = d.queue
        session = proc.session
        pid = proc.pid
        pending = self.record.pending
        seen = self.hub_message_seen
        while queue and queue[0][0] <= now:
            item = queue.popleft()[1]
            if not proc.alive or proc.conn is not conn or session is None:
                continue
            if item is OPENED:
                conn.client_open = True
                conn.established = True
                self.trace("opened", proc.pid, f"conn{conn.cid}")
                session.connection_made(now)
            elif item is CLOSE:
                if not conn.client_open and conn.established:
                    continue
                # A close before the handshake completed is a failed connect.
                conn.client_open = False
                conn.established = True
                conn.up.closed = True
                self.trace("closed", proc.pid, f"conn{conn.cid}")
                session.connection_lost(now)
            elif not conn.client_open:
                continue
            else:
                pending.append((now, "recv", pid, item.TAG))  # trace(), inlined: per message
                session.receive(item, now)
                if seen is not None:
                    seen(proc, conn, item)
            self.perform(proc)
        d.reschedule()

    # --- processes -------------------------------------------------------------------

    def start_process(self, proc: Process) -> None:
        """Start ``proc`` (a no-op while it is alive): a new session, agent and workload."""
        if proc.alive:
            return
        proc.alive = True
        proc.started = True
        proc.left = False
        proc.paused = False
        proc.incarnation += 1
        proc.episode += 1
        proc.armed = None
        proc.forget()
        inc = proc.incarnation
        seed = self.seed
        proc.rng_agent = random.Random(f"{seed}:agents:{proc.pid}:{inc}")
        proc.link.rng = random.Random(f"{seed}:links:{proc.pid}:{inc}")
        spec_bugs: tuple[str, ...] = ()
        events = "all"
        fresh = False
        if proc.agent_spec is not None:
            spec_bugs = proc.agent_spec.seeded_bugs
            events = proc.agent_spec.events
            fresh = proc.agent_spec.fresh_peer_id
        elif proc.client_spec is not None:
            spec_bugs = proc.client_spec.seeded_bugs
            events = proc.client_spec.events
            fresh = proc.client_spec.fresh_peer_id
        proc.starts += 1
        proc.peer = f"{proc.pid}#{proc.starts}" if fresh and proc.starts > 1 else proc.pid
        session = ClientSession(
            proc.peer, rng=random.Random(f"{seed}:sessions:{proc.pid}:{inc}"),
            probes=self.probes, seeded_bugs=frozenset(spec_bugs), events=events,
        )
        proc.session = session
        self.trace("start", proc.pid, str(inc))
        self.record_state(proc, "up")
        session.connect(self.clock.now)
        if proc.agent_spec is not None:
            a = proc.agent_spec
            offers = tuple(OfferedContainer(s.uuid, s.kind, s.labels, True) for s in a.stateless)
            proc.agent = AgentState(proc.pid, a.kinds, endpoint=f"sim://{proc.pid}",
                                    stateless=offers, max_containers=a.max_containers)
            for s in a.stateless:
                # Pre-existing instances, standing by until the hub's answer
                # to the registration makes one the owner (as AgentState does).
                proc.running[s.uuid] = s.kind
                proc.serving[s.uuid] = False
                self.invariants.offered(s.uuid, proc)
            session.register_agent(proc.agent)
            if self.state is not None:
                self.state.process_started(proc)
        proc.load = None
        if proc.client_spec is not None or proc.agent_spec is None:
            proc.load = Workload(proc, proc.client_spec,
                                 random.Random(f"{seed}:workload:{proc.pid}:{inc}"),
                                 clock=self.clock, ledger=self.invariants,
                                 perform=functools.partial(self.perform, proc))
            proc.load.start()
        self.perform(proc)

    def process_wake(self, proc: Process, inc: int, d: float) -> None:
        """``proc``'s session timers are due (``d``: the deadline this wake-up was armed for)."""
        if inc != proc.incarnation or proc.armed != d or not proc.alive:
            return
        proc.armed = None
        if proc.paused or proc.session is None:
            return
        self.record.pending.append((self.clock.now, "timer", proc.pid, ""))  # trace(), inlined
        proc.session.handle_timers(self.clock.now)
        self.perform(proc)

    def perform(self, proc: Process) -> None:
        """Perform ``proc``'s session's effects and wake it at its next deadline."""
        session = proc.session
        if session is None:
            return
        # A session emits only SessionEffects; its effects() is typed wider.
        effects: list[SessionEffect] = session.effects()
        stopped_now: list[str] = []
        for eff in effects:
            match eff:
                case Send():
                    conn = proc.conn
                    if conn is not None and conn.client_open and not conn.up.closed:
                        conn.up.push(eff.message)
                case Resolve() | Reject():
                    if proc.load is not None:
                        proc.load.on_result(eff)
                case DeliverEvent():
                    pass  # the session keeps its registry view; no listener to feed here
                case ReferenceChanged():
                    if proc.load is not None:
                        record = eff.record
                        proc.load.reference_changed(eff.ref, record.uuid if record else None)
                case DeliverPush():
                    if proc.load is not None:
                        proc.load.delivered(eff.uuid)
                case RunRequest():
                    self._run_request(proc, eff)
                case OpenConnection():
                    # ``url`` is a standby's redirect: with one hub (always the
                    # active one) it has no meaning; sim/hubs.py follows it.
                    self._open(proc, eff.url)
                case CloseConnection():
                    conn = proc.conn
                    if conn is not None and conn.client_open:
                        conn.client_open = False
                        conn.up.push(CLOSE)
                        conn.up.closed = True
                        self.trace("client-close", proc.pid, eff.reason)
                case StartContainer():
                    self._start_container(proc, eff)
                case StopContainer():
                    uuid = eff.uuid
                    # The hub hears it stopped once its last write is answered
                    # (a start elsewhere waits for that), at once without one.
                    said = functools.partial(self.terminated, proc, proc.incarnation, uuid)
                    if self.state is None or not self.state.stopped(proc, uuid, said):
                        stopped_now.append(uuid)
                    proc.starting.pop(uuid, None)
                    proc.running.pop(uuid, None)
                    proc.serving.pop(uuid, None)
                    for key in [k for k in proc.connected if k[0] == uuid]:
                        del proc.connected[key]
                    self.trace("stop", proc.pid, uuid)
                case SetServing():
                    self._set_serving(proc, eff)
                case ConnectContainer():
                    proc.connected[(eff.uuid, eff.client_id)] = None
                case DisconnectContainer():
                    proc.connected.pop((eff.uuid, eff.client_id), None)
                case CancelRequest():
                    pass  # the simulated workload never abandons a call: no Cancel is sent
                case _:
                    assert_never(eff)
        if stopped_now:
            for uuid in stopped_now:
                session.agent_terminated(proc.pid, uuid)
            self.perform(proc)  # (arms the wake-up)
            return
        # Arm the session's wake-up (no effect replaces the session).  Only
        # arming can bring its next deadline forward: while nothing was armed,
        # the wake-up we have still holds (the common case: a pong).
        if proc.paused or not proc.alive:
            return
        timers = session.timers
        armed = proc.armed
        armings = timers.armings
        if armed is not None and armings == proc.mark and timers is proc.mark_timers:
            return
        proc.mark = armings
        proc.mark_timers = timers
        d = timers.next_deadline()
        if d is not None and (armed is None or d < armed):
            proc.armed = d
            self.clock.at(d, _Wake(self, proc, proc.incarnation, d))

    def _open(self, proc: Process, url: str | None = None) -> None:
        self._cid += 1
        conn = Connection(self._cid, proc.pid, self.clock, proc.link)
        conn.up.wake = _DeliverToHub(self, conn)
        conn.down.wake = _DeliverToProcess(self, conn, proc)
        proc.conn = conn
        self.trace("connect", proc.pid, f"conn{conn.cid}")
        self.clock.at(self.clock.now + proc.link.draw(), _Arrive(self, conn, proc))
        # The driver gives up on a handshake that never completes (a hang).
        self.clock.at(self.clock.now + float(self.scenario.links.connect_timeout),
                      _HandshakeTimeout(self, conn, proc))

    def handshake_timeout(self, conn: Connection, proc: Process) -> None:
        """``proc``'s driver gives up on ``conn``'s handshake if it has not completed."""
        if not conn.established and proc.conn is conn:
            conn.established = True  # given up: a late OPENED is ignored
            conn.down.dead = True
            self.connect_failed(conn, proc, "handshake timed out")

    def arrive(self, conn: Connection, proc: Process) -> None:
        """``proc``'s connection attempt ``conn`` reaches the hub (or fails to)."""
        if proc.conn is not conn or not proc.alive:
            return
        hub = self.hub
        if proc.partition is not None:
            self.clock.at(self.clock.now + float(self.scenario.links.connect_timeout),
                          _ConnectFailed(self, conn, proc, "timed out"))
            return
        if hub is None:
            self.clock.at(self.clock.now + proc.link.draw(),
                          _ConnectFailed(self, conn, proc, "refused"))
            return
        conn.hub = hub
        conn.hub_open = True
        conn.last_arrival = self.clock.now
        self.trace("accept", "hub", f"{proc.pid}:conn{conn.cid}")
        hub.connection_made(conn, self.clock.now)
        self._hub_effects(hub)
        conn.down.push(OPENED)

    def connect_failed(self, conn: Connection, proc: Process, why: str) -> None:
        """``proc``'s connection attempt ``conn`` failed (``why``): the session hears it."""
        if proc.conn is not conn or not proc.alive or proc.session is None:
            return
        if proc.paused:
            proc.deferred.append(_ConnectFailed(self, conn, proc, why))
            return
        self.trace("connect-failed", proc.pid, why)
        proc.session.connection_lost(self.clock.now)
        self.perform(proc)

    # --- the container driver (ground truth) -----------------------------------------

    def _start_container(self, proc: Process, eff: StartContainer) -> None:
        proc.starting[eff.uuid] = eff.kind
        spec = proc.agent_spec
        delay = spec.start_delay.draw(proc.rng_agent) if spec is not None else 0.0
        self.clock.at(self.clock.now + delay, _Started(self, proc, proc.incarnation, eff))

    def start_done(self, proc: Process, inc: int, eff: StartContainer) -> None:
        """The container ``eff`` asked for has started (or failed to) in ``proc``."""
        if inc != proc.incarnation or not proc.alive or proc.session is None:
            return
        if proc.paused:
            proc.deferred.append(_Started(self, proc, inc, eff))
            return
        if proc.starting.pop(eff.uuid, None) is None:
            return  # terminated while starting
        spec = proc.agent_spec
        if spec is not None and spec.start_failure_rate > 0 and \
                proc.rng_agent.random() < spec.start_failure_rate:
            self.trace("start-failed", proc.pid, eff.uuid)
            proc.session.agent_start_failed(eff.agent_id, eff.uuid, "simulated start failure")
        elif self.state is not None and self.state.has_state(eff.kind):
            # Its saved state is restored before the start is reported.
            proc.starting[eff.uuid] = eff.kind
            self.state.restore_for_start(proc, eff)
            return
        else:
            proc.running[eff.uuid] = eff.kind
            self.trace("started", proc.pid, eff.uuid)
            proc.session.agent_started(eff.agent_id, eff.uuid)
        self.perform(proc)

    def start_finished(self, proc: Process, eff: StartContainer, error: str | None) -> None:
        """The restore before ``eff``'s start ended (``error``: it failed); report the start."""
        if proc.session is None or proc.starting.pop(eff.uuid, None) is None:
            if error is None and self.state is not None:
                self.state.stopped(proc, eff.uuid)  # terminated while restoring
            return
        if error is not None:
            self.trace("start-failed", proc.pid, eff.uuid)
            proc.session.agent_start_failed(eff.agent_id, eff.uuid, error)
        else:
            proc.running[eff.uuid] = eff.kind
            self.trace("started", proc.pid, eff.uuid)
            proc.session.agent_started(eff.agent_id, eff.uuid)
        self.perform(proc)

    def _set_serving(self, proc: Process, eff: SetServing) -> None:
        self.trace("serving" if eff.serving else "standby", proc.pid, eff.uuid)
        self.invariants.set_serving(proc, eff)
        if eff.uuid in proc.running:
            proc.serving[eff.uuid] = eff.serving
        if eff.serving:
            self.faults.failover_progress(eff.uuid)
        if self.state is not None:
            self.state.set_serving(proc, eff)

    def _run_request(self, proc: Process, eff: RunRequest) -> None:
        self.invariants.run_request(proc, eff)
        if self.state is not None and not self.state.admit(proc, eff):
            self.trace("held", proc.pid, str(eff.call_id))
            return
        self.schedule_request(proc, eff)

    def schedule_request(self, proc: Process, eff: RunRequest) -> None:
        """Run ``eff`` in ``proc``'s container now: its reply comes after the request latency."""
        spec = proc.agent_spec
        delay = 0.0
        if spec is not None:
            # Span.draw and Random.uniform, inlined: the same draw.
            span = spec.request_latency
            low = span.low
            high = span.high
            delay = low if low == high else low + (high - low) * proc.rng_agent.random()
        self.clock.at(self.clock.now + delay, _Replied(self, proc, proc.incarnation, eff))

    def request_done(self, proc: Process, inc: int, eff: RunRequest) -> None:
        """The container code in ``proc`` finished the request ``eff``: the session replies."""
        if inc != proc.incarnation or not proc.alive or proc.session is None:
            return
        if proc.paused:
            proc.deferred.append(_Replied(self, proc, inc, eff))
            return
        spec = proc.agent_spec
        if spec is not None and spec.request_failure_rate > 0 and \
                proc.rng_agent.random() < spec.request_failure_rate:
            self.trace("reply-error", proc.pid, str(eff.call_id))
            proc.session.agent_error(eff.call_id, ErrorCode.REMOTE.value,
                                     "simulated container failure", "SimulatedFailure",
                                     now=self.clock.now)
            if self.state is not None:
                self.state.request_done(proc, eff, False)
        else:
            self.record.pending.append((self.clock.now, "reply", proc.pid, str(eff.call_id)))
            if self.state is not None:
                self.state.request_done(proc, eff, True)
            proc.session.agent_reply(eff.call_id, eff.payload, now=self.clock.now)
        self.perform(proc)

    def terminated(self, proc: Process, inc: int, uuid: str) -> None:
        """``proc``'s last write of ``uuid``, which the hub terminated, was answered."""
        session = proc.session
        if inc != proc.incarnation or not proc.alive or session is None:
            return
        session.agent_terminated(proc.pid, uuid)
        self.perform(proc)

    def stopped_here(self, proc: Process, uuid: str) -> None:
        """``proc`` stops serving ``uuid`` on its own (its state is stale or unreadable)."""
        session = proc.session
        if session is None or uuid not in proc.running:
            return
        del proc.running[uuid]
        proc.serving.pop(uuid, None)
        self.trace("exit", proc.pid, uuid)
        session.agent_stopped(proc.pid, uuid)
        self.perform(proc)

    def violate(self, name: str, text: str) -> None:
        """Record that invariant ``name`` broke now (the state layer's checks)."""
        self.invariants.violate(name, text)

    def count_check(self, name: str) -> None:
        """Count one check of invariant ``name`` (the state layer's checks)."""
        checked = self.invariants.checked
        checked[name] = checked.get(name, 0) + 1

    def invariants_checked(self, name: str) -> int:
        """Return how often invariant ``name`` was checked."""
        return self.invariants.checked.get(name, 0)

    # --- workload operations ------------------------------------------------------------

    def operation(self, pid: str, op: str, slot: int) -> None:
        """Run the scenario's client operation ``op`` on reference ``slot`` of ``pid``."""
        proc = self.procs[pid]
        if not proc.alive or proc.paused or proc.load is None:
            return
        self.trace("op", pid, f"{op}:{slot}")
        proc.load.explicit(op, slot)
        self.perform(proc)

    # --- phases and checks -------------------------------------------------------

    def end_fault_phase(self) -> None:
        """Faults stop, workloads stop issuing, every process is reachable again."""
        if self.in_liveness:
            return
        self.in_liveness = True
        self.trace("liveness", "sim", "")
        self.note("phase", "fault phase over: faults stop, the workload stops issuing")
        for proc in self.procs.values():
            if proc.load is not None:
                proc.load.stop()
            self.faults.release(proc)
        if self.state is not None:
            self.state.end_faults()
        if self.hub is None:
            self.note("phase", "the hub comes back")
            self.start_hub()

    def check(self) -> None:
        """Run the periodic invariant checks; stop the run once converged in the liveness phase."""
        if self.hub is not None:
            self.container_samples.append((self.clock.now, len(self.hub.registry)))
        self.record.flush_if_full()  # the hot paths only append
        self.invariants.periodic()
        if self.in_liveness and self.converged_at is None and self.invariants.converged():
            self.converged_at = self.clock.now
            self.clock.stop()
            self.note("phase", f"converged {self.clock.now - self.fault_phase_end:.3f}s into the "
                               f"liveness phase")
            return
        self.clock.at(self.clock.now + float(self.scenario.checks.interval), self._check_event)

    # --- views for invariants and reports ----------------------------------------------

    def live_processes(self) -> list[Process]:
        """Return the processes alive now, in scenario order."""
        return [p for p in self.procs.values() if p.alive]

    def session_ready(self, proc: Process) -> bool:
        """Return whether ``proc``'s session is welcomed by the hub."""
        return proc.session is not None and proc.session.state is SessionState.READY

    def servable(self) -> tuple[set[str], set[str]]:
        """Return the kinds and the stateless uuids some live agent process can serve now."""
        kinds: set[str] = set()
        uuids: set[str] = set()
        for p in self.procs.values():
            if p.alive and p.agent_spec is not None:
                kinds.update(p.agent_spec.kinds)
                for st in p.agent_spec.stateless:
                    kinds.add(st.kind)
                    if st.uuid in p.running:  # its instance may have exited
                        uuids.add(st.uuid)
        return kinds, uuids

    def can_be_served(self, proc: Process, servable: tuple[set[str], set[str]]) -> bool:
        """Return whether some live agent can serve what ``proc``'s workload asks for.

        A reference whose kind (or stateless uuid) no live agent offers keeps
        retrying, and its requests wait, as they should: they are not
        required to finish.
        """
        load = proc.load
        if load is None:
            return True
        kinds, uuids = servable
        kind = load.kind or "echo"
        uuid = load.options.uuid
        stateless = {st.uuid for a in self.scenario.agents for st in a.stateless}
        return kind in kinds and (uuid is None or uuid not in stateless or uuid in uuids)

    def refs_ready(self, proc: Process) -> bool:
        """Return whether every reference ``proc`` holds is ready."""
        s = proc.session
        if s is None:
            return True
        ready = RefStatus.READY  # (an enum class read is dear: once, not per reference)
        return all(s.ref_status(r) is ready for r in s.references())

    def waiting_requests(self) -> int:
        """Return the requests still pending that no live agent could serve."""
        servable = self.servable()
        return sum(len(p.load.outstanding) for p in self.procs.values()
                   if p.alive and p.load is not None and not self.can_be_served(p, servable))


#: the garbage collector's young-generation threshold while a run goes on
_GC_YOUNG = 50_000


# --- the world's events (each fires one handler above) ----------------------------


class _Start(Event):
    """A process starts (or joins)."""

    __slots__ = ("proc", "world",)

    def __init__(self, world: Simulation, proc: Process) -> None:
        self.world = world
        self.proc = proc

    def fire(self) -> None:
        """Hand it to the world."""
        self.world.start_process(self.proc)


class _Check(Event):
    """The periodic invariant checks are due."""

    __slots__ = ("world",)

    def __init__(self, world: Simulation) -> None:
        self.world = world

    def fire(self) -> None:
        """Hand it to the world."""
        self.world.check()


class _Operation(Event):
    """A scripted client operation is due."""

    __slots__ = ("op", "pid", "slot", "world",)

    def __init__(self, world: Simulation, pid: str, op: str, slot: int) -> None:
        self.world = world
        self.pid = pid
        self.op = op
        self.slot = slot

    def fire(self) -> None:
        """Hand it to the world."""
        self.world.operation(self.pid, self.op, self.slot)


class _EndFaultPhase(Event):
    """The fault phase ends."""

    __slots__ = ("world",)

    def __init__(self, world: Simulation) -> None:
        self.world = world

    def fire(self) -> None:
        """Hand it to the world."""
        self.world.end_fault_phase()


class _HubWake(Event):
    """The hub's timers are due."""

    __slots__ = ("deadline", "hub", "world",)

    def __init__(self, world: Simulation, hub: Hub, deadline: float) -> None:
        self.world = world
        self.hub = hub
        self.deadline = deadline

    def fire(self) -> None:
        """Hand it to the world."""
        self.world.hub_wake(self.hub, self.deadline)


class _Wake(Event):
    """A session's timers are due."""

    __slots__ = ("deadline", "inc", "proc", "world",)

    def __init__(self, world: Simulation, proc: Process, inc: int, deadline: float) -> None:
        self.world = world
        self.proc = proc
        self.inc = inc
        self.deadline = deadline

    def fire(self) -> None:
        """Hand it to the world."""
        self.world.process_wake(self.proc, self.inc, self.deadline)


class _DeliverToHub(Event):
    """Messages from a process are ready at the hub."""

    __slots__ = ("conn", "world",)

    def __init__(self, world: Simulation, conn: Connection) -> None:
        self.world = world
        self.conn = conn

    def fire(self) -> None:
        """Hand them to the hub that runs now."""
        world = self.world
        world.deliver_to_hub(self.conn, world.hub, "hub")


class _DeliverToProcess(Event):
    """Messages from the hub are ready at a process."""

    __slots__ = ("conn", "proc", "world",)

    def __init__(self, world: Simulation, conn: Connection, proc: Process) -> None:
        self.world = world
        self.conn = conn
        self.proc = proc

    def fire(self) -> None:
        """Hand it to the world."""
        self.world.deliver_to_process(self.conn, self.proc)


class _Arrive(Event):
    """A connection attempt reaches the hub's side."""

    __slots__ = ("conn", "proc", "world",)

    def __init__(self, world: Simulation, conn: Connection, proc: Process) -> None:
        self.world = world
        self.conn = conn
        self.proc = proc

    def fire(self) -> None:
        """Hand it to the world."""
        self.world.arrive(self.conn, self.proc)


class _HandshakeTimeout(Event):
    """The driver's connect timeout for a handshake."""

    __slots__ = ("conn", "proc", "world",)

    def __init__(self, world: Simulation, conn: Connection, proc: Process) -> None:
        self.world = world
        self.conn = conn
        self.proc = proc

    def fire(self) -> None:
        """Hand it to the world."""
        self.world.handshake_timeout(self.conn, self.proc)


class _ConnectFailed(Event):
    """A connection attempt fails."""

    __slots__ = ("conn", "proc", "why", "world",)

    def __init__(self, world: Simulation, conn: Connection, proc: Process, why: str) -> None:
        self.world = world
        self.conn = conn
        self.proc = proc
        self.why = why

    def fire(self) -> None:
        """Hand it to the world."""
        self.world.connect_failed(self.conn, self.proc, self.why)


class _Started(Event):
    """A container start finishes."""

    __slots__ = ("eff", "inc", "proc", "world",)

    def __init__(self, world: Simulation, proc: Process, inc: int, eff: StartContainer) -> None:
        self.world = world
        self.proc = proc
        self.inc = inc
        self.eff = eff

    def fire(self) -> None:
        """Hand it to the world."""
        self.world.start_done(self.proc, self.inc, self.eff)


class _Replied(Event):
    """A container finishes a request."""

    __slots__ = ("eff", "inc", "proc", "world",)

    def __init__(self, world: Simulation, proc: Process, inc: int, eff: RunRequest) -> None:
        self.world = world
        self.proc = proc
        self.inc = inc
        self.eff = eff

    def fire(self) -> None:
        """Hand it to the world."""
        self.world.request_done(self.proc, self.inc, self.eff)
