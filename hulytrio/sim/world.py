"""The simulated world: the real core machines on a virtual clock.

Theory of operation
-------------------
One ``Hub`` and one ``ClientSession`` per simulated process (a client, or
an agent process: a session hosting one ``AgentState``) are driven exactly
as the trio transport drives them: feed an input, drain the effects,
perform them, and wake the machine at its ``next_deadline()``.  Nothing
here decides what the system does; it only moves messages, keeps time and
plays the part of the container code.

Time is an event queue: a heap of the distinct due times, and for each time
its events in the order they were scheduled (exactly the order of a heap of
``(time, seq, action, args)``, at one heap operation per instant rather than
per event: timers and fixed latencies put many events on one instant).  The
clock jumps from one instant to the next, so idle virtual time costs
nothing.  Each machine has at most one live wake-up in the queue (a stale one
is skipped when it surfaces), so a step costs O(log instants) and timeouts
cost what expires, never O(machines).

Ground truth: each process records which containers its driver really
runs and which stateless instances really serve (applying
``StartContainer`` after the agent's start delay, ``StopContainer`` and
``SetServing``); the invariants compare it with the hub's registry.

Randomness comes from ``random.Random`` streams derived from the seed by
name (``links``, ``faults``, ``workload``, ``agents``, ``sessions``), per
process where it matters, so adding a client reshuffles nothing else.
"""

from __future__ import annotations

import fnmatch
import gc
import hashlib
import heapq
import random
from collections import deque
from collections.abc import Callable
from typing import IO, Any

import attrs

from ..core.agent import AgentState
from ..core.effects import (
    CloseConnection,
    DeliverEvent,
    OpenConnection,
    Reject,
    Resolve,
    RunRequest,
    Send,
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
from ..core.timers import Timers
from ..core.types import OfferedContainer
from .invariants import Invariants
from .links import CLOSE, OPENED, Connection, Direction
from .scenario import AgentSpec, ClientSpec, FaultSpec, Scenario, Span, process_names
from .workload import Workload

__all__ = ["Failover", "Process", "Simulation", "TimelineEntry"]


@attrs.define
class Failover:
    """A stateless uuid whose owner was hit by a fault, and when it was served again."""

    uuid: str
    cause: str
    failed: str
    started: float
    ended: float | None = None
    by: str | None = None
    needed: bool = True

    @property
    def took(self) -> float | None:
        """Return how long the failover took, or None while it is not done."""
        return None if self.ended is None else self.ended - self.started


@attrs.frozen
class TimelineEntry:
    """One line of the run's story: a fault, or the system's reaction to one."""

    time: float
    kind: str
    text: str


class Process:
    """A simulated OS process: one session, maybe one agent, and its ground truth."""

    __slots__ = (
        "agent", "agent_spec", "alive", "armed", "client_spec", "conn", "deferred",
        "episode", "incarnation", "latency", "left", "load", "mark", "mark_timers",
        "partition", "paused", "peer", "pid",
        "rng_agent", "rng_link", "running", "serving", "session", "started", "starting", "starts",
    )

    def __init__(self, pid: str, agent_spec: AgentSpec | None, client_spec: ClientSpec | None
                 ) -> None:
        self.pid = pid
        #: the peer id of the current (or last) session: ``pid``, or a new one
        #: per start with ``fresh_peer_id``
        self.peer = pid
        self.agent_spec = agent_spec
        self.client_spec = client_spec
        self.session: ClientSession | None = None
        self.agent: AgentState | None = None
        self.load: Workload | None = None
        self.alive = False
        self.started = False
        self.left = False
        self.paused = False
        self.partition: str | None = None
        self.latency: Span | None = None
        self.incarnation = 0
        #: how many times the process has started
        self.starts = 0
        #: bumped whenever the process falls silent (crash, pause, partition)
        self.episode = 0
        self.conn: Connection | None = None
        self.armed: float | None = None
        #: the session timers' ``armings`` when ``armed`` was last decided
        self.mark = -1
        self.mark_timers: Timers | None = None
        #: driver callbacks that came due while paused, replayed on resume
        self.deferred: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
        #: ground truth: uuid -> kind of every container really running here
        self.running: dict[str, str] = {}
        #: ground truth: stateless uuid -> whether this instance really serves
        self.serving: dict[str, bool] = {}
        #: starts the driver is performing (uuid -> kind)
        self.starting: dict[str, str] = {}
        self.rng_agent = random.Random(0)
        self.rng_link = random.Random(0)

    @property
    def is_agent(self) -> bool:
        """Return whether this process hosts an agent."""
        return self.agent_spec is not None

    def active(self) -> set[str]:
        """Return the uuids this process really runs and serves."""
        return {u for u in self.running if self.serving.get(u, True)}


class Simulation:
    """One run of a scenario with one seed (see module docstring).

    ``trace`` (a text file) receives every event as a JSON line; the SHA-256
    of those lines is ``trace_hash()`` whether or not they are written.
    ``keep_trace`` keeps them in memory (for ``--check-determinism``).
    """

    def __init__(
        self,
        scenario: Scenario,
        *,
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
        self.now = 0.0
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
        self.events = 0
        #: the event queue: a heap of distinct due times, and per due time its
        #: events in scheduling order (see the module docstring)
        self._times: list[float] = []
        self._due: dict[float, _Event | list[_Event]] = {}
        #: leave the instant being run now: converged, or an event was
        #: scheduled before it (a queue whose items came due while held or
        #: paused), which a heap would run next
        self._yield = False
        self._cid = 0
        self._rng_faults = random.Random(f"{self.seed}:faults")
        self._trace_file = trace
        self._hasher = hashlib.sha256()
        self.kept: list[str] | None = [] if keep_trace else None
        self.recent: deque[str] = deque(maxlen=40)
        self._buf: list[tuple[float, str, str, str]] = []
        self._progress = progress
        self.timeline: list[TimelineEntry] = []
        self.failovers: list[Failover] = []
        #: (time, pid, state) for the picture: up / paused / partitioned / down
        self.history: list[tuple[float, str, str]] = []
        #: (time, uuid, owner agent id or "") whenever a stateless owner changes
        self.ownership: list[tuple[float, str, str]] = []
        #: (time, containers the hub lists) at every periodic check, for the picture
        self.container_samples: list[tuple[float, int]] = []
        #: peer id -> the connection on which the hub last accepted its Hello
        self.hub_conn_of: dict[str, Connection] = {}
        self.max_latency = max(scenario.links.latency.high, 0.0)
        self._link_latency = scenario.links.latency
        self.faults = list(scenario.faults) + self._draw_random_faults()
        self.faults.sort(key=lambda f: f.at)
        self.invariants = Invariants(self)
        self._build()

    # --- building --------------------------------------------------------------

    def _draw_random_faults(self) -> list[FaultSpec]:
        rf = self.scenario.random_faults
        if rf is None or rf.rate <= 0:
            return []
        names = self._process_names()
        targets = [n for n in names if any(fnmatch.fnmatchcase(n, p)
                                           for p in rf.targets.split(","))]
        if not targets:
            return []
        out: list[FaultSpec] = []
        t = 0.0
        rng = self._rng_faults
        while True:
            t += rng.expovariate(rf.rate)
            if t >= self.fault_phase_end:
                break
            action = rng.choice(rf.actions)
            target = rng.choice(targets)
            duration = rf.duration.draw(rng)
            if action == "crash":
                # A random crash comes back: otherwise a long run kills everyone.
                out.append(FaultSpec(t, "crash", target))  # type: ignore[arg-type]
                out.append(FaultSpec(t + duration, "restart", target))  # type: ignore[arg-type]
            else:
                out.append(FaultSpec(t, action, target, duration, rf.mode))  # type: ignore[arg-type]
        return out

    def _process_names(self) -> list[str]:
        names: list[str] = []
        for a in self.scenario.agents:
            names.extend(_names(a.name, a.count))
        for c in self.scenario.clients:
            names.extend(_names(c.name, c.count))
        return names

    def _build(self) -> None:
        sc = self.scenario
        self._start_hub()
        for a in sc.agents:
            for pid in _names(a.name, a.count):
                self._add_process(Process(pid, a, None), a.join_at)
        for c in sc.clients:
            for pid in _names(c.name, c.count):
                self._add_process(Process(pid, None, c), c.join_at)
        # Scheduled faults and operations run after every other event due at
        # the same time, exactly as when a test injects them between steps,
        # so a chaos run written out as a scenario replays the same way.
        explicit: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        for op in sc.operations:
            if op.client not in self.procs:
                self.procs[op.client] = Process(op.client, None, None)
                self._at(0.0, self._start_process, self.procs[op.client])
            explicit.append((float(op.at), len(explicit), self._operation,
                             (op.client, op.op, op.ref)))
        for fault in self.faults:
            explicit.append((float(fault.at), len(explicit), self._fault, (fault,)))
        explicit.append((self.fault_phase_end, len(explicit), self._end_fault_phase, ()))
        explicit.sort(key=lambda x: (x[0], x[1]))
        self._explicit = explicit
        self._next_explicit = 0
        self._at(0.0, self._periodic_check)

    def _add_process(self, proc: Process, join_at: float) -> None:
        if proc.pid in self.procs:
            raise ValueError(f"two processes are named {proc.pid!r}")
        self.procs[proc.pid] = proc
        self._at(float(join_at), self._start_process, proc)

    # --- the event queue ------------------------------------------------------------

    def _at(self, t: float, fn: Callable[..., None], *args: Any) -> None:
        # An instant holds its one event as is (most instants have one: link
        # latencies are drawn), and a list once a second one comes.
        due = self._due.get(t)
        if due is None:
            self._due[t] = (fn, args)
            _heappush(self._times, t)
            if t < self.now:
                self._yield = True
        elif type(due) is list:
            due.append((fn, args))
        else:
            self._due[t] = [due, (fn, args)]  # type: ignore[list-item]

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
            self._run_until(limit)
        finally:
            gc.set_threshold(*thresholds)

    def _run_until(self, limit: float) -> None:
        times = self._times
        dues = self._due
        next_report = self.now
        step = self.end / 100.0 if self.end > 0 else 1.0
        pop = heapq.heappop
        progress = self._progress
        explicit = self._explicit
        i = self._next_explicit
        nx = explicit[i][0] if i < len(explicit) else _NEVER
        buf_limit = _TRACE_BATCH
        while self.converged_at is None:
            if len(self._buf) >= buf_limit:
                self._flush_trace()  # checked per instant; the hot paths only append
            t = times[0] if times else _NEVER
            if nx < t and nx <= limit:
                when, _, fn, args = explicit[i]
                i += 1
                self._next_explicit = i
                nx = explicit[i][0] if i < len(explicit) else _NEVER
                self.now = when
                fn(*args)
                continue
            if t > limit:
                break
            # Every event due at t, in scheduling order.  One scheduled at t
            # meanwhile opens a new entry for t that runs right after this
            # one, exactly where a heap would put it.
            pop(times)
            batch: Any = dues.pop(t)  # one event, or a list of them
            self.now = t
            if type(batch) is tuple:
                fn, args = batch
                fn(*args)
            else:
                self._yield = False
                events = iter(batch)
                for fn, args in events:
                    fn(*args)
                    if self._yield:
                        break
                if self._yield:
                    # Left early: the rest of t runs before anything scheduled at t since.
                    rest = list(events)
                    if rest:
                        later = dues.get(t)
                        if later is None:
                            _heappush(times, t)
                        elif type(later) is list:
                            rest += later
                        else:
                            rest.append(later)
                        dues[t] = rest
                    continue
            if progress is not None and t >= next_report:
                progress(t, self.end)
                next_report = t + step
        if self.converged_at is None and limit > self.now:
            self.now = limit

    def finish_now(self) -> None:
        """End the fault phase now, then run the liveness phase and the final checks."""
        self.fault_phase_end = self.now
        self.end = self.now + float(self.scenario.liveness)
        self._end_fault_phase()
        self.run()

    def inject(self, fault: FaultSpec) -> None:
        """Apply ``fault`` now (its ``at`` is ignored)."""
        self._fault(fault)

    def operate(self, client: str, op: str, slot: int) -> None:
        """Run client operation ``op`` on reference ``slot`` now."""
        self._operation(client, op, slot)

    # --- tracing -------------------------------------------------------------------

    def trace(self, kind: str, who: str, what: str) -> None:
        """Record one event: hashed always, written/kept when asked (formatted in batches)."""
        buf = self._buf
        buf.append((self.now, kind, who, what))
        if len(buf) >= _TRACE_BATCH:
            self._flush_trace()

    def _flush_trace(self) -> None:
        buf = self._buf
        if not buf:
            return
        self.events += len(buf)
        # Many events share an instant (timers and fixed latencies line up):
        # the time, the costly part of a line, is formatted once per instant.
        lines: list[str] = []
        add = lines.append
        last = None
        head = ""
        for t, k, w, x in buf:
            if t != last:
                last = t
                # %-formatting: faster than an f-string with a format spec,
                # which the compiled build turns into a str.format call.
                head = '{"t":%.9f,"ev":"' % t  # noqa: UP031
            add(f'{head}{k}","at":"{w}","what":"{x}"}}\n')
        self._buf = []
        self._hasher.update("".join(lines).encode())
        self.recent.extend(lines[-40:])
        if self._trace_file is not None:
            self._trace_file.writelines(lines)
        if self.kept is not None:
            self.kept.extend(lines)

    def recent_lines(self) -> list[str]:
        """Return the last trace lines (the events leading to now)."""
        self._flush_trace()
        return list(self.recent)

    def trace_hash(self) -> str:
        """Return the SHA-256 of the trace lines so far."""
        self._flush_trace()
        return self._hasher.hexdigest()

    def note(self, kind: str, text: str) -> None:
        """Add a line to the run's timeline (faults and reactions)."""
        self.timeline.append(TimelineEntry(self.now, kind, text))

    def _state(self, proc: Process, state: str) -> None:
        self.history.append((self.now, proc.pid, state))

    # --- the hub ---------------------------------------------------------------------

    def _start_hub(self) -> None:
        self.hub_term += 1
        self.hub = Hub(f"hub{self.hub_term}", self.timeouts, term=self.hub_term,
                       probes=self.probes, seeded_bugs=frozenset(self.scenario.hub.seeded_bugs))
        self._hub_armed = None
        self.hub_conn_of.clear()
        self.trace("hub-start", "hub", self.hub.hub_id)

    def _hub_timer(self, hub: Hub, d: float) -> None:
        if hub is not self.hub or self._hub_armed != d:
            return
        self._hub_armed = None
        self.trace("timer", "hub", "")
        hub.handle_timers(self.now)
        self._hub_effects(hub)

    def _hub_effects(self, hub: Hub) -> list[Connection]:
        """Perform the hub's effects and wake it at its next deadline.

        Returns the connections it closed.
        """
        closed: list[Connection] = []
        for eff in hub.effects():
            if type(eff) is Send:
                conn: Connection = eff.conn  # type: ignore[assignment]
                link = conn.down
                if conn.hub_open and not link.closed and not link.dead:
                    # _push, inlined: every message the hub sends passes here.
                    proc = conn.proc
                    span = proc.latency if proc.latency is not None else self._link_latency
                    low = span.low
                    high = span.high
                    now = self.now
                    ready = now + (low if low == high else
                                   low + (high - low) * proc.rng_link.random())
                    if ready < link.last:
                        ready = link.last
                    link.last = ready
                    link.queue.append((ready, eff.message))
                    if not link.scheduled and not link.blocked:
                        link.scheduled = True
                        due = self._due.get(ready)  # _at, inlined
                        if due is None:
                            self._due[ready] = link.wake
                            _heappush(self._times, ready)
                            if ready < now:
                                self._yield = True
                        elif type(due) is list:
                            due.append(link.wake)
                        else:
                            self._due[ready] = [due, link.wake]  # type: ignore[list-item]
            elif type(eff) is CloseConnection:
                conn = eff.conn  # type: ignore[assignment]
                closed.append(conn)
                if not conn.hub_open:
                    continue
                if eff.reason == "alive timeout":
                    self.invariants.declared_dead(conn)
                conn.hub_open = False
                hub.connection_lost(conn, self.now)
                self._push(conn, conn.down, CLOSE)
                conn.down.closed = True
                self.trace("hub-close", conn.proc.pid, eff.reason)
        # Arm the hub's wake-up.  Only arming can bring its next deadline
        # forward: while nothing was armed, the wake-up we have still holds.
        current = self.hub
        if current is None:
            return closed
        timers = current.timers
        armed = self._hub_armed
        if armed is not None and timers.armings == self._hub_mark \
                and timers is self._hub_mark_timers:
            return closed
        self._hub_mark = timers.armings
        self._hub_mark_timers = timers
        d = timers.next_deadline()
        if d is not None and (armed is None or d < armed):
            self._hub_armed = d
            self._at(d, self._hub_timer, current, d)
        return closed

    # --- links ---------------------------------------------------------------------------

    def _latency(self, proc: Process) -> float:
        span = proc.latency if proc.latency is not None else self._link_latency
        if span.low == span.high:
            return span.low
        return proc.rng_link.uniform(span.low, span.high)

    def _push(self, conn: Connection, d: Direction, item: Any) -> None:
        # Direction.push and _latency inlined; _hub_effects and _proc_effects
        # inline this in turn for their sends (keep the three in step).
        if d.dead:
            return
        proc = conn.proc
        span = proc.latency if proc.latency is not None else self._link_latency
        low = span.low
        high = span.high
        # Random.uniform(low, high), inlined: the same draw and arithmetic.
        ready = self.now + (low if low == high else low + (high - low) * proc.rng_link.random())
        if ready < d.last:
            ready = d.last
        d.last = ready
        d.queue.append((ready, item))
        if not d.scheduled and not d.blocked:
            d.scheduled = True
            due = self._due.get(ready)  # _at, inlined
            if due is None:
                self._due[ready] = d.wake
                _heappush(self._times, ready)
                if ready < self.now:
                    self._yield = True
            elif type(due) is list:
                due.append(d.wake)
            else:
                self._due[ready] = [due, d.wake]  # type: ignore[list-item]

    def _reschedule(self, conn: Connection, d: Direction) -> None:
        if d.queue and not d.scheduled and not d.blocked:
            d.scheduled = True
            fn, args = d.wake
            self._at(d.queue[0][0], fn, *args)

    def _pump_up(self, conn: Connection) -> None:
        """Deliver what is ready from a process to the hub."""
        d = conn.up
        d.scheduled = False
        if d.blocked:
            return
        now = self.now
        queue = d.queue
        pid = conn.proc.pid
        while queue and queue[0][0] <= now:
            item = queue.popleft()[1]
            hub = self.hub
            if hub is None or conn.hub is not hub:
                continue  # the hub that had this connection is gone
            if item is CLOSE:
                if conn.hub_open:
                    conn.hub_open = False
                    self.trace("closed", "hub", pid)
                    hub.connection_lost(conn, now)
                    self._hub_effects(hub)
                continue
            self._buf.append((now, "hub-recv", pid, item.TAG))
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
                closed = self._hub_effects(hub)
                self.invariants.hello(conn, old, closed)
                self.hub_conn_of[peer] = conn
            else:
                hub.receive(conn, item, now)
                self._hub_effects(hub)
        if queue and not d.scheduled and not d.blocked:
            self._reschedule(conn, d)

    def _pump_down(self, conn: Connection) -> None:
        """Deliver what is ready from the hub to a process."""
        d = conn.down
        d.scheduled = False
        proc = conn.proc
        if d.blocked or proc.paused:
            return
        now = self.now
        queue = d.queue
        session = proc.session
        pid = proc.pid
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
                self._buf.append((now, "recv", pid, item.TAG))
                session.receive(item, now)
            self._proc_effects(proc)
        if queue and not d.scheduled and not d.blocked:
            self._reschedule(conn, d)

    # --- processes -------------------------------------------------------------------

    def _start_process(self, proc: Process) -> None:
        if proc.alive:
            return
        proc.alive = True
        proc.started = True
        proc.left = False
        proc.paused = False
        proc.incarnation += 1
        proc.episode += 1
        proc.armed = None
        proc.deferred = []
        proc.running = {}
        proc.serving = {}
        proc.starting = {}
        inc = proc.incarnation
        seed = self.seed
        proc.rng_agent = random.Random(f"{seed}:agents:{proc.pid}:{inc}")
        proc.rng_link = random.Random(f"{seed}:links:{proc.pid}:{inc}")
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
        self._state(proc, "up")
        session.connect(self.now)
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
        proc.load = None
        if proc.client_spec is not None or proc.agent_spec is None:
            proc.load = Workload(self, proc, proc.client_spec,
                                 random.Random(f"{seed}:workload:{proc.pid}:{inc}"))
            proc.load.start()
        self._proc_effects(proc)

    def _proc_timer(self, proc: Process, inc: int, d: float) -> None:
        if inc != proc.incarnation or proc.armed != d or not proc.alive:
            return
        proc.armed = None
        if proc.paused or proc.session is None:
            return
        self._buf.append((self.now, "timer", proc.pid, ""))
        proc.session.handle_timers(self.now)
        self._proc_effects(proc)

    def _proc_effects(self, proc: Process) -> None:
        """Perform ``proc``'s session's effects and wake it at its next deadline."""
        session = proc.session
        if session is None:
            return
        for eff in session.effects():
            t = type(eff)
            if t is Send:
                conn = proc.conn
                if conn is not None and conn.client_open:
                    link = conn.up
                    if link.closed or link.dead:
                        continue
                    # _push, inlined: every message a process sends passes here.
                    span = proc.latency if proc.latency is not None else self._link_latency
                    low = span.low
                    high = span.high
                    now = self.now
                    ready = now + (low if low == high else
                                   low + (high - low) * proc.rng_link.random())
                    if ready < link.last:
                        ready = link.last
                    link.last = ready
                    link.queue.append((ready, eff.message))  # type: ignore[union-attr]
                    if not link.scheduled and not link.blocked:
                        link.scheduled = True
                        due = self._due.get(ready)  # _at, inlined
                        if due is None:
                            self._due[ready] = link.wake
                            _heappush(self._times, ready)
                            if ready < now:
                                self._yield = True
                        elif type(due) is list:
                            due.append(link.wake)
                        else:
                            self._due[ready] = [due, link.wake]  # type: ignore[list-item]
            elif t is Resolve or t is Reject:
                if proc.load is not None:
                    proc.load.on_result(eff)  # type: ignore[arg-type]
            elif t is DeliverEvent:
                pass
            elif t is RunRequest:
                self._run_request(proc, eff)  # type: ignore[arg-type]
            elif t is OpenConnection:
                self._open(proc)
            elif t is CloseConnection:
                conn = proc.conn
                if conn is not None and conn.client_open:
                    conn.client_open = False
                    self._push(conn, conn.up, CLOSE)
                    conn.up.closed = True
                    self.trace("client-close", proc.pid, eff.reason)  # type: ignore[union-attr]
            elif t is StartContainer:
                self._start_container(proc, eff)  # type: ignore[arg-type]
            elif t is StopContainer:
                uuid = eff.uuid  # type: ignore[union-attr]
                proc.starting.pop(uuid, None)
                proc.running.pop(uuid, None)
                proc.serving.pop(uuid, None)
                self.trace("stop", proc.pid, uuid)
            elif t is SetServing:
                self._set_serving(proc, eff)  # type: ignore[arg-type]
        # Arm the session's wake-up (no effect replaces the session).  Only
        # arming can bring its next deadline forward: while nothing was armed,
        # the wake-up we have still holds (the common case: a pong).
        if proc.paused or not proc.alive:
            return
        timers = session.timers
        armed = proc.armed
        if armed is not None and timers.armings == proc.mark and timers is proc.mark_timers:
            return
        proc.mark = timers.armings
        proc.mark_timers = timers
        d = timers.next_deadline()
        if d is not None and (armed is None or d < armed):
            proc.armed = d
            event = (self._proc_timer, (proc, proc.incarnation, d))
            due = self._due.get(d)  # _at, inlined
            if due is None:
                self._due[d] = event
                _heappush(self._times, d)
                if d < self.now:
                    self._yield = True
            elif type(due) is list:
                due.append(event)
            else:
                self._due[d] = [due, event]  # type: ignore[list-item]

    def _open(self, proc: Process) -> None:
        self._cid += 1
        conn = Connection(self._cid, proc)
        conn.up.wake = (self._pump_up, (conn,))
        conn.down.wake = (self._pump_down, (conn,))
        proc.conn = conn
        self.trace("connect", proc.pid, f"conn{conn.cid}")
        self._at(self.now + self._latency(proc), self._connect_arrive, conn)
        # The driver gives up on a handshake that never completes (a hang).
        self._at(self.now + float(self.scenario.links.connect_timeout), self._connect_timeout,
                 conn)

    def _connect_timeout(self, conn: Connection) -> None:
        if not conn.established and conn.proc.conn is conn:
            conn.established = True  # given up: a late OPENED is ignored
            conn.down.dead = True
            self._connect_failed(conn, "handshake timed out")

    def _connect_arrive(self, conn: Connection) -> None:
        proc = conn.proc
        if proc.conn is not conn or not proc.alive:
            return
        hub = self.hub
        if proc.partition is not None:
            self._at(self.now + float(self.scenario.links.connect_timeout),
                     self._connect_failed, conn, "timed out")
            return
        if hub is None:
            self._at(self.now + self._latency(proc), self._connect_failed, conn, "refused")
            return
        conn.hub = hub
        conn.hub_open = True
        conn.last_arrival = self.now
        self.trace("accept", "hub", f"{proc.pid}:conn{conn.cid}")
        hub.connection_made(conn, self.now)
        self._hub_effects(hub)
        self._push(conn, conn.down, OPENED)

    def _connect_failed(self, conn: Connection, why: str) -> None:
        proc = conn.proc
        if proc.conn is not conn or not proc.alive or proc.session is None:
            return
        if proc.paused:
            proc.deferred.append((self._connect_failed, (conn, why)))
            return
        self.trace("connect-failed", proc.pid, why)
        proc.session.connection_lost(self.now)
        self._proc_effects(proc)

    # --- the container driver (ground truth) -----------------------------------------

    def _start_container(self, proc: Process, eff: StartContainer) -> None:
        proc.starting[eff.uuid] = eff.kind
        spec = proc.agent_spec
        delay = spec.start_delay.draw(proc.rng_agent) if spec is not None else 0.0
        self._at(self.now + delay, self._start_done, proc, proc.incarnation, eff)

    def _start_done(self, proc: Process, inc: int, eff: StartContainer) -> None:
        if inc != proc.incarnation or not proc.alive or proc.session is None:
            return
        if proc.paused:
            proc.deferred.append((self._start_done, (proc, inc, eff)))
            return
        if proc.starting.pop(eff.uuid, None) is None:
            return  # terminated while starting
        spec = proc.agent_spec
        if spec is not None and spec.start_failure_rate > 0 and \
                proc.rng_agent.random() < spec.start_failure_rate:
            self.trace("start-failed", proc.pid, eff.uuid)
            proc.session.agent_start_failed(eff.agent_id, eff.uuid, "simulated start failure")
        else:
            proc.running[eff.uuid] = eff.kind
            self.trace("started", proc.pid, eff.uuid)
            proc.session.agent_started(eff.agent_id, eff.uuid)
        self._proc_effects(proc)

    def _set_serving(self, proc: Process, eff: SetServing) -> None:
        self.trace("serving" if eff.serving else "standby", proc.pid, eff.uuid)
        self.invariants.set_serving(proc, eff)
        if eff.uuid in proc.running:
            proc.serving[eff.uuid] = eff.serving
        if eff.serving:
            self.failover_progress(eff.uuid)

    def _run_request(self, proc: Process, eff: RunRequest) -> None:
        self.invariants.run_request(proc, eff)
        spec = proc.agent_spec
        delay = 0.0
        if spec is not None:
            # Span.draw and Random.uniform, inlined: the same draw.
            span = spec.request_latency
            low = span.low
            high = span.high
            delay = low if low == high else low + (high - low) * proc.rng_agent.random()
        self._at(self.now + delay, self._request_done, proc, proc.incarnation, eff)

    def _request_done(self, proc: Process, inc: int, eff: RunRequest) -> None:
        if inc != proc.incarnation or not proc.alive or proc.session is None:
            return
        if proc.paused:
            proc.deferred.append((self._request_done, (proc, inc, eff)))
            return
        spec = proc.agent_spec
        if spec is not None and spec.request_failure_rate > 0 and \
                proc.rng_agent.random() < spec.request_failure_rate:
            self.trace("reply-error", proc.pid, str(eff.call_id))
            proc.session.agent_error(eff.call_id, ErrorCode.REMOTE.value,
                                     "simulated container failure", "SimulatedFailure")
        else:
            self._buf.append((self.now, "reply", proc.pid, str(eff.call_id)))
            proc.session.agent_reply(eff.call_id, eff.payload)
        self._proc_effects(proc)

    # --- workload operations ------------------------------------------------------------

    def _operation(self, pid: str, op: str, slot: int) -> None:
        proc = self.procs[pid]
        if not proc.alive or proc.paused or proc.load is None:
            return
        self.trace("op", pid, f"{op}:{slot}")
        proc.load.explicit(op, slot)
        self._proc_effects(proc)

    # --- faults ------------------------------------------------------------------

    def targets(self, pattern: str) -> list[Process]:
        """Return the processes ``pattern`` names, in scenario order.

        ``owner:UUID`` is the process the hub lists as the owner of UUID now.
        """
        out: list[Process] = []
        for part in pattern.split(","):
            if part.startswith("owner:"):
                rec = self.hub.registry.container(part[6:]) if self.hub is not None else None
                if rec is not None and rec.agent_id in self.procs:
                    out.append(self.procs[rec.agent_id])
                continue
            out.extend(p for name, p in self.procs.items() if fnmatch.fnmatchcase(name, part))
        seen: dict[str, Process] = {}
        for p in out:
            seen.setdefault(p.pid, p)
        return list(seen.values())

    def _fault(self, fault: FaultSpec) -> None:
        if self.in_liveness:
            return
        action = fault.action
        if action == "hub-crash":
            self._hub_crash("hub-crash")
            return
        if action == "hub-restart":
            if self.hub is not None:
                self._hub_crash("hub-restart")
            self.note("fault", "hub restarts")
            self._start_hub()
            return
        procs = self.targets(fault.target)
        if not procs:
            self.note("fault", f"{action} {fault.target}: no such process now (skipped)")
            return
        for proc in procs:
            self.apply(fault, proc)

    def apply(self, fault: FaultSpec, proc: Process) -> None:
        """Apply one fault to one process."""
        action = fault.action
        self.trace("fault", proc.pid, action)
        label = f"{action} {proc.pid}"
        if action == "crash":
            if proc.alive:
                self.note("fault", label)
                self._silence(proc, "crash")
                self._kill(proc)
        elif action == "restart":
            self.note("fault", label)
            if proc.alive:
                self._silence(proc, "restart")
                self._kill(proc)
            self._start_process(proc)
        elif action == "join":
            if not proc.alive:
                self.note("fault", label)
                self._start_process(proc)
        elif action == "leave":
            if proc.alive and proc.session is not None:
                self.note("fault", label)
                self._failovers_for(proc, "leave")
                proc.session.close(self.now)
                self._proc_effects(proc)
                proc.left = True
                self._kill(proc)
        elif action == "pause":
            if proc.alive and not proc.paused:
                self.note("fault", label + (f" for {fault.duration:.3f}s"
                                            if fault.duration else ""))
                self._silence(proc, "pause")
                proc.paused = True
                self._state(proc, "paused")
                if fault.duration is not None:
                    self._at(self.now + fault.duration, self._resume, proc, proc.incarnation)
        elif action == "resume":
            self._resume(proc, proc.incarnation)
        elif action == "partition":
            if proc.partition is None:
                self.note("fault", label + f" ({fault.mode})" +
                          (f" for {fault.duration:.3f}s" if fault.duration else ""))
                self._silence(proc, "partition")
                proc.partition = fault.mode
                self._state(proc, "partitioned")
                conn = proc.conn
                if conn is not None:
                    for d in (conn.up, conn.down):
                        if fault.mode == "hang":
                            d.dead = True
                            d.queue.clear()
                        else:
                            d.blocked = True
                if fault.duration is not None:
                    self._at(self.now + fault.duration, self._heal, proc, proc.episode)
        elif action == "heal":
            self._heal(proc, None)
        elif action == "drop-connection":
            conn = proc.conn
            if conn is not None and proc.alive:
                self.note("fault", label)
                for d in (conn.up, conn.down):
                    if not d.closed:
                        self._push(conn, d, CLOSE)
                        d.closed = True
        elif action == "container-exit":
            # A container ends on its own (it crashed; its agent lives on):
            # the driver tells the session, as the trio driver does.
            session = proc.session
            if proc.alive and not proc.paused and session is not None and proc.is_agent:
                uuids = [fault.uuid] if fault.uuid is not None else list(proc.running)
                for uuid in uuids:
                    if uuid not in proc.running:
                        continue
                    self.note("fault", f"{label} {uuid}")
                    self._failovers_for(proc, "container-exit", uuid)
                    del proc.running[uuid]
                    proc.serving.pop(uuid, None)
                    self.trace("exit", proc.pid, uuid)
                    session.agent_stopped(proc.pid, uuid)
                self._proc_effects(proc)
        elif action == "slow-link":
            span = fault.latency if fault.latency is not None else Span(0.5, 0.5)
            self.note("fault", f"{label} to {span}" +
                      (f" for {fault.duration:.3f}s" if fault.duration else ""))
            proc.latency = span
            self.max_latency = max(self.max_latency, span.high)
            if fault.duration is not None:
                self._at(self.now + fault.duration, self._unslow, proc)

    def _silence(self, proc: Process, cause: str) -> None:
        """``proc`` stops talking: the hub must notice in time; its stateless uuids fail over."""
        proc.episode += 1
        self._failovers_for(proc, cause)
        self.invariants.silenced(proc)

    def _failovers_for(self, proc: Process, cause: str, only: str | None = None) -> None:
        hub = self.hub
        if hub is None or not proc.is_agent:
            return
        for uuid in hub.registry.agent_containers(proc.pid):
            if only is not None and uuid != only:
                continue
            rec = hub.registry.container(uuid)
            if rec is not None and rec.stateless and not any(
                    f.uuid == uuid and f.ended is None and f.needed for f in self.failovers):
                self.failovers.append(Failover(uuid, cause, proc.pid, self.now))

    def failover_progress(self, uuid: str | None = None) -> None:
        """Close the failovers that are done: a live, unpaused process serves as the hub's owner."""
        hub = self.hub
        if hub is None:
            return
        for f in self.failovers:
            if f.ended is not None or not f.needed or (uuid is not None and f.uuid != uuid):
                continue
            rec = hub.registry.container(f.uuid)
            owner = self.procs.get(rec.agent_id) if rec is not None else None
            if owner is None or not owner.alive or owner.paused or \
                    not owner.serving.get(f.uuid, False):
                continue
            if owner.pid == f.failed and f.cause not in ("hub-crash", "hub-restart"):
                if owner.partition is None and hub.registry.agent_owner(owner.pid) == owner.peer:
                    # The same process serves as owner again: the hub never
                    # noticed the fault (shorter than the alive timeout), or
                    # it came back first; no failover was needed.
                    f.needed = False
                continue
            f.ended = self.now
            f.by = owner.pid
            self.note("reaction", f"failover {f.uuid}: {owner.pid} serves, "
                                  f"{f.ended - f.started:.3f}s after the {f.cause} of {f.failed}")

    def _kill(self, proc: Process) -> None:
        proc.alive = False
        proc.paused = False
        proc.partition = None
        proc.latency = None
        proc.incarnation += 1
        proc.running = {}
        proc.serving = {}
        proc.starting = {}
        proc.deferred = []
        if proc.load is not None:
            proc.load.process_died()
        conn = proc.conn
        if conn is not None:
            conn.client_open = False
            conn.down.queue.clear()
            conn.up.blocked = False
            conn.up.dead = False
            self._reschedule(conn, conn.up)
        proc.conn = None
        self._state(proc, "down")

    def _resume(self, proc: Process, inc: int) -> None:
        if inc != proc.incarnation or not proc.paused or not proc.alive:
            return
        self.trace("resume", proc.pid, "")
        self.note("fault", f"resume {proc.pid}")
        proc.paused = False
        self._state(proc, "partitioned" if proc.partition else "up")
        deferred, proc.deferred = proc.deferred, []
        for fn, args in deferred:
            fn(*args)
        conn = proc.conn
        if conn is not None:
            self._reschedule(conn, conn.down)
        if proc.session is not None:
            proc.session.handle_timers(self.now)
            self._proc_effects(proc)

    def _heal(self, proc: Process, episode: int | None) -> None:
        if proc.partition is None or (episode is not None and episode != proc.episode):
            return
        self.trace("heal", proc.pid, "")
        self.note("fault", f"heal {proc.pid}")
        proc.partition = None
        self._state(proc, "paused" if proc.paused else "up")
        conn = proc.conn
        if conn is not None:
            earliest = self.now + self._latency(proc)
            for d in (conn.up, conn.down):
                if d.blocked:
                    d.blocked = False
                    d.release(earliest)
                    self._reschedule(conn, d)

    def _unslow(self, proc: Process) -> None:
        if proc.latency is not None:
            self.note("fault", f"link of {proc.pid} back to normal")
        proc.latency = None

    def _hub_crash(self, cause: str) -> None:
        hub = self.hub
        if hub is None:
            return
        self.trace("hub-crash", "hub", hub.hub_id)
        self.note("fault", f"{cause}: hub {hub.hub_id} goes down")
        for proc in self.procs.values():
            if proc.alive and proc.is_agent:
                for uuid in hub.registry.agent_containers(proc.pid):
                    rec = hub.registry.container(uuid)
                    if rec is not None and rec.stateless:
                        self.failovers.append(Failover(uuid, cause, proc.pid, self.now))
        self.hub = None
        self._hub_armed = None
        for proc in self.procs.values():
            conn = proc.conn
            if conn is not None and conn.hub is hub and conn.hub_open:
                conn.hub_open = False
                # The peer's OS answers with a reset: the client sees a close.
                conn.down.dead = False
                if not conn.down.closed:
                    self._push(conn, conn.down, CLOSE)
                    conn.down.closed = True

    # --- phases and checks -------------------------------------------------------

    def _end_fault_phase(self) -> None:
        if self.in_liveness:
            return
        self.in_liveness = True
        self.trace("liveness", "sim", "")
        self.note("phase", "fault phase over: faults stop, the workload stops issuing")
        for proc in self.procs.values():
            if proc.load is not None:
                proc.load.stop()
            if proc.paused:
                self._resume(proc, proc.incarnation)
            if proc.partition is not None:
                self._heal(proc, None)
            proc.latency = None
        if self.hub is None:
            self.note("phase", "the hub comes back")
            self._start_hub()

    def _periodic_check(self) -> None:
        if self.hub is not None:
            self.container_samples.append((self.now, len(self.hub.registry)))
        self.invariants.periodic()
        if self.in_liveness and self.converged_at is None and self.invariants.converged():
            self.converged_at = self.now
            self._yield = True
            self.note("phase", f"converged {self.now - self.fault_phase_end:.3f}s into the "
                               f"liveness phase")
            return
        self._at(self.now + float(self.scenario.checks.interval), self._periodic_check)

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
        return all(s.ref_status(r) is RefStatus.READY for r in s.references())

    def waiting_requests(self) -> int:
        """Return the requests still pending that no live agent could serve."""
        servable = self.servable()
        return sum(len(p.load.outstanding) for p in self.procs.values()
                   if p.alive and p.load is not None and not self.can_be_served(p, servable))


_NEVER = float("inf")
_heappush = heapq.heappush
#: one entry of the event queue: a callback and its arguments
_Event = tuple[Callable[..., None], tuple[Any, ...]]
#: trace lines formatted, hashed and written per batch
_TRACE_BATCH = 8192
#: the garbage collector's young-generation threshold while a run goes on
_GC_YOUNG = 50_000


_names = process_names

