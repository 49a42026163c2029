"""Faults: what goes wrong in a run, when, and how long the system takes to recover.

Theory of operation
-------------------
The scenario's faults are known before the run: the ones it lists, and the
ones drawn from the seed's ``faults`` stream (``random_faults``: a rate, the
processes it may hit, the actions and durations).  ``Faults.scripted()``
hands them to the world as scripted events, which run after every other
event due at the same instant, exactly as when a test calls ``inject()``
between steps, so a chaos run written out as a scenario replays the same way.

A fault acts on the world only through what the world shows publicly: a
process is started (``Simulation.start_process``) or killed (its driver's
work and its connection's queues go), paused (its events wait in
``Process.deferred`` until ``resume``), partitioned (its link directions
are held or dead until ``heal``), slowed (its ``LinkProfile`` latency until
``unslow``); a container exits; the hub crashes (``Simulation.drop_hub``)
or restarts (``Simulation.start_hub``).  Lasting faults end by their own
events (``_Resume``, ``_Heal``, ``_Unslow``), and all of them end with the
fault phase (``release``).

Failover tracking: whenever a fault silences the owner of a stateless uuid
(or the hub that knew it), a ``Failover`` opens; it closes when a live,
unpaused process serves the uuid as the hub's owner (``failover_progress``,
called when an agent switches to serving and at every periodic check).
The report's ``failover_within`` expectation reads them.

The world does not import this module: ``report.simulation`` wires it in,
and the world calls it through its ``FaultLayer`` protocol.
"""

from __future__ import annotations

import fnmatch
import functools
import random

import attrs

from ..core.agent import AgentPhase
from .clock import Event
from .process import Process
from .scenario import STORE_ACTIONS, FaultSpec, Span, process_names
from .world import Simulation

#: Seconds a draining agent (fault "drain") lets its requests finish before it
#: leaves, unless the fault says otherwise (``duration``).
DRAIN_GRACE = 1.0

__all__ = ["Failover", "Faults"]


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


class Faults:
    """The fault layer of one simulation (see module docstring)."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self._rng = random.Random(f"{sim.seed}:faults")
        #: every scheduled fault of the run (the scenario's and the drawn ones), by time
        self.schedule = list(sim.scenario.faults) + self._draw_random_faults()
        self.schedule.sort(key=lambda f: f.at)
        #: every failover opened so far, in the order the faults opened them
        self.failovers: list[Failover] = []

    # --- the schedule -------------------------------------------------------------

    def _draw_random_faults(self) -> list[FaultSpec]:
        sc = self.sim.scenario
        rf = sc.random_faults
        if rf is None or rf.rate <= 0:
            return []
        names: list[str] = []
        for a in sc.agents:
            names.extend(process_names(a.name, a.count))
        for c in sc.clients:
            names.extend(process_names(c.name, c.count))
        targets = [n for n in names if any(fnmatch.fnmatchcase(n, p)
                                           for p in rf.targets.split(","))]
        if not targets:
            return []
        out: list[FaultSpec] = []
        t = 0.0
        rng = self._rng
        end = self.sim.fault_phase_end
        while True:
            t += rng.expovariate(rf.rate)
            if t >= end:
                break
            action = rng.choice(rf.actions)
            target = rng.choice(targets)
            duration = rf.duration.draw(rng)
            if action in STORE_ACTIONS:
                target = ""  # the store is not a process
            if action == "crash":
                # A random crash comes back: otherwise a long run kills everyone.
                out.append(FaultSpec(t, "crash", target))  # type: ignore[arg-type]
                out.append(FaultSpec(t + duration, "restart", target))  # type: ignore[arg-type]
            else:
                out.append(FaultSpec(t, action, target, duration, rf.mode))  # type: ignore[arg-type]
        return out

    def scripted(self) -> list[tuple[float, Event]]:
        """Return the schedule as scripted events for the clock, in time order."""
        return [(float(fault.at), _FaultAt(self, fault)) for fault in self.schedule]

    # --- applying -----------------------------------------------------------------

    def inject(self, fault: FaultSpec) -> None:
        """Apply ``fault`` now (its ``at`` is ignored; skipped in the liveness phase)."""
        sim = self.sim
        if sim.in_liveness:
            return
        action = fault.action
        if action == "hub-crash":
            self._hub_crash("hub-crash")
            return
        if action == "hub-restart":
            if sim.hub is not None:
                self._hub_crash("hub-restart")
            sim.note("fault", "hub restarts")
            sim.start_hub()
            return
        if action in STORE_ACTIONS:
            if sim.state is not None:
                sim.note("fault", action)
                sim.state.store_fault(fault)
            return
        procs = self.targets(fault.target)
        if not procs:
            sim.note("fault", f"{action} {fault.target}: no such process now (skipped)")
            return
        for proc in procs:
            self.apply(fault, proc)

    def targets(self, pattern: str) -> list[Process]:
        """Return the processes ``pattern`` names, in scenario order.

        ``owner:UUID`` is the process the hub lists as the owner of UUID now.
        """
        sim = self.sim
        out: list[Process] = []
        for part in pattern.split(","):
            if part.startswith("owner:"):
                rec = sim.hub.registry.container(part[6:]) if sim.hub is not None else None
                if rec is not None and rec.agent_id in sim.procs:
                    out.append(sim.procs[rec.agent_id])
                continue
            out.extend(p for name, p in sim.procs.items() if fnmatch.fnmatchcase(name, part))
        seen: dict[str, Process] = {}
        for p in out:
            seen.setdefault(p.pid, p)
        return list(seen.values())

    def apply(self, fault: FaultSpec, proc: Process) -> None:
        """Apply one fault to one process."""
        sim = self.sim
        clock = sim.clock
        action = fault.action
        sim.trace("fault", proc.pid, action)
        label = f"{action} {proc.pid}"
        if action == "crash":
            if proc.alive:
                sim.note("fault", label)
                self._silence(proc, "crash")
                self._kill(proc)
        elif action == "restart":
            sim.note("fault", label)
            if proc.alive:
                self._silence(proc, "restart")
                self._kill(proc)
            sim.start_process(proc)
        elif action == "join":
            if not proc.alive:
                sim.note("fault", label)
                sim.start_process(proc)
        elif action == "leave":
            self.leave(proc)
        elif action == "drain":
            session = proc.session
            agent = session.agent(proc.pid) if session is not None else None
            # A paused process does nothing, a SIGTERM included (it is
            # handled when it runs again... or never: the fault is skipped).
            if proc.alive and not proc.paused and agent is not None \
                    and agent.phase is AgentPhase.SERVING:
                sim.note("fault", label)
                grace = fault.duration if fault.duration is not None else DRAIN_GRACE
                drain = functools.partial(self._drain_now, proc, proc.incarnation, grace)
                # With state, the last checkpoint goes first (as the trio agent's).
                if sim.state is None or not sim.state.draining(proc, drain, grace):
                    drain()
        elif action == "pause":
            if proc.alive and not proc.paused:
                sim.note("fault", label + (f" for {fault.duration:.3f}s"
                                           if fault.duration else ""))
                self._silence(proc, "pause")
                proc.paused = True
                sim.record_state(proc, "paused")
                if fault.duration is not None:
                    clock.at(clock.now + fault.duration, _Resume(self, proc, proc.incarnation))
        elif action == "resume":
            self.resume(proc, proc.incarnation)
        elif action == "partition":
            if proc.partition is None:
                sim.note("fault", label + f" ({fault.mode})" +
                         (f" for {fault.duration:.3f}s" if fault.duration else ""))
                self._silence(proc, "partition")
                proc.partition = fault.mode
                sim.record_state(proc, "partitioned")
                if proc.conn is not None:
                    proc.conn.cut(fault.mode)
                if fault.duration is not None:
                    clock.at(clock.now + fault.duration, _Heal(self, proc, proc.episode))
        elif action == "heal":
            self.heal(proc, None)
        elif action == "drop-connection":
            conn = proc.conn
            if conn is not None and proc.alive:
                sim.note("fault", label)
                conn.up.close()
                conn.down.close()
        elif action == "container-exit":
            # A container ends on its own (it crashed; its agent lives on):
            # the driver tells the session, as the trio driver does.
            session = proc.session
            if proc.alive and not proc.paused and session is not None and proc.is_agent:
                uuids = [fault.uuid] if fault.uuid is not None else list(proc.running)
                for uuid in uuids:
                    if uuid not in proc.running:
                        continue
                    sim.note("fault", f"{label} {uuid}")
                    self._failovers_for(proc, "container-exit", uuid)
                    if sim.state is not None:
                        sim.state.exited(proc, uuid)
                    del proc.running[uuid]
                    proc.serving.pop(uuid, None)
                    sim.trace("exit", proc.pid, uuid)
                    session.agent_stopped(proc.pid, uuid)
                sim.perform(proc)
        elif action == "terminate":
            # An admin ends containers whoever runs them (``hulytrio terminate``):
            # the target's session asks the hub, as the CLI's would.
            session = proc.session
            if proc.alive and not proc.paused and session is not None:
                uuids = [fault.uuid] if fault.uuid is not None else list(proc.running)
                for uuid in uuids:
                    sim.note("fault", f"{label} {uuid}")
                    session.terminate_any(uuid)
                sim.perform(proc)
        elif action == "slow-link":
            span = fault.latency if fault.latency is not None else Span(0.5, 0.5)
            sim.note("fault", f"{label} to {span}" +
                     (f" for {fault.duration:.3f}s" if fault.duration else ""))
            proc.link.latency = span
            sim.max_latency = max(sim.max_latency, span.high)
            if fault.duration is not None:
                clock.at(clock.now + fault.duration, _Unslow(self, proc))

    def _silence(self, proc: Process, cause: str) -> None:
        """``proc`` stops talking: the hub must notice in time; its stateless uuids fail over."""
        proc.episode += 1
        self._failovers_for(proc, cause)
        self.sim.invariants.silenced(proc)

    def _kill(self, proc: Process) -> None:
        """``proc`` dies: its driver's work, its workload's requests and its connection go."""
        if self.sim.state is not None:
            self.sim.state.crashed(proc)
        proc.alive = False
        proc.paused = False
        proc.partition = None
        proc.link.latency = None
        proc.incarnation += 1
        proc.forget()
        if proc.load is not None:
            proc.load.process_died()
        conn = proc.conn
        if conn is not None:
            conn.client_open = False
            conn.down.queue.clear()
            conn.up.blocked = False
            conn.up.dead = False
            conn.up.reschedule()
        proc.conn = None
        self.sim.record_state(proc, "down")

    def _hub_crash(self, cause: str) -> None:
        sim = self.sim
        hub = sim.hub
        if hub is None:
            return
        sim.trace("hub-crash", "hub", hub.hub_id)
        sim.note("fault", f"{cause}: hub {hub.hub_id} goes down")
        for proc in sim.procs.values():
            if proc.alive and proc.is_agent:
                for uuid in hub.registry.agent_containers(proc.pid):
                    rec = hub.registry.container(uuid)
                    if rec is not None and rec.stateless:
                        self.failovers.append(Failover(uuid, cause, proc.pid, sim.clock.now))
        sim.drop_hub()

    # --- ending -------------------------------------------------------------------

    def resume(self, proc: Process, inc: int) -> None:
        """A paused ``proc`` (of incarnation ``inc``) runs again: what came due meanwhile fires."""
        if inc != proc.incarnation or not proc.paused or not proc.alive:
            return
        sim = self.sim
        sim.trace("resume", proc.pid, "")
        sim.note("fault", f"resume {proc.pid}")
        proc.paused = False
        sim.record_state(proc, "partitioned" if proc.partition else "up")
        deferred, proc.deferred = proc.deferred, []
        for event in deferred:
            event.fire()
        conn = proc.conn
        if conn is not None:
            conn.down.reschedule()
        if proc.session is not None:
            proc.session.handle_timers(sim.clock.now)
            sim.perform(proc)

    def heal(self, proc: Process, episode: int | None) -> None:
        """``proc``'s partition (of silence ``episode``; None: any) heals."""
        if proc.partition is None or (episode is not None and episode != proc.episode):
            return
        sim = self.sim
        sim.trace("heal", proc.pid, "")
        sim.note("fault", f"heal {proc.pid}")
        proc.partition = None
        sim.record_state(proc, "paused" if proc.paused else "up")
        conn = proc.conn
        if conn is not None:
            conn.heal(sim.clock.now + proc.link.draw())

    def unslow(self, proc: Process) -> None:
        """``proc``'s slow link is back to the scenario's latency."""
        if proc.link.latency is not None:
            self.sim.note("fault", f"link of {proc.pid} back to normal")
        proc.link.latency = None

    def release(self, proc: Process) -> None:
        """The fault phase is over: ``proc`` runs again, reachable, at the scenario's latency."""
        if proc.paused:
            self.resume(proc, proc.incarnation)
        if proc.partition is not None:
            self.heal(proc, None)
        proc.link.latency = None

    # --- failover tracking --------------------------------------------------------

    def leave(self, proc: Process) -> None:
        """``proc`` stops gracefully (fault "leave", or the end of a drain): it closes."""
        sim = self.sim
        if proc.alive and proc.session is not None:
            if sim.state is not None and sim.state.leaving(
                    proc, functools.partial(self._leave_now, proc, proc.incarnation)):
                return  # its last checkpoint first: it leaves when that is written
            self._leave_now(proc, proc.incarnation)

    def _drain_now(self, proc: Process, inc: int, grace: float) -> None:
        """``proc`` (incarnation ``inc``) asks the hub to move its containers; it
        leaves ``grace`` seconds later."""
        sim = self.sim
        session = proc.session
        if inc != proc.incarnation or not proc.alive or session is None:
            return
        agent = session.agent(proc.pid)
        if agent is None or agent.phase is not AgentPhase.SERVING:
            return  # re-registered or closing meanwhile: nothing to drain
        self._failovers_for(proc, "drain")
        session.drain_agent(proc.pid)
        sim.perform(proc)
        clock = sim.clock
        clock.at(clock.now + grace, _Leave(self, proc, inc))

    def _leave_now(self, proc: Process, inc: int) -> None:
        """``proc`` (incarnation ``inc``) closes and exits."""
        sim = self.sim
        if inc == proc.incarnation and proc.alive and proc.session is not None:
            sim.note("fault", f"leave {proc.pid}")
            self._failovers_for(proc, "leave")
            proc.session.close(sim.clock.now)
            sim.perform(proc)
            proc.left = True
            self._kill(proc)

    def _failovers_for(self, proc: Process, cause: str, only: str | None = None) -> None:
        hub = self.sim.hub
        if hub is None or not proc.is_agent:
            return
        for uuid in hub.registry.agent_containers(proc.pid):
            if only is not None and uuid != only:
                continue
            rec = hub.registry.container(uuid)
            if rec is not None and rec.stateless and not any(
                    f.uuid == uuid and f.ended is None and f.needed for f in self.failovers):
                self.failovers.append(Failover(uuid, cause, proc.pid, self.sim.clock.now))

    def failover_progress(self, uuid: str | None = None) -> None:
        """Close the failovers that are done: a live, unpaused process serves as the hub's owner."""
        sim = self.sim
        hub = sim.hub
        if hub is None:
            return
        for f in self.failovers:
            if f.ended is not None or not f.needed or (uuid is not None and f.uuid != uuid):
                continue
            rec = hub.registry.container(f.uuid)
            owner = sim.procs.get(rec.agent_id) if rec is not None else None
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
            f.ended = sim.clock.now
            f.by = owner.pid
            sim.note("reaction", f"failover {f.uuid}: {owner.pid} serves, "
                                 f"{f.ended - f.started:.3f}s after the {f.cause} of {f.failed}")

    def failover_rows(self) -> tuple[tuple[str, str, float, float | None], ...]:
        """Return (uuid, failed process, start, duration or None) of each needed failover."""
        return tuple((f.uuid, f.failed, f.started, f.took) for f in self.failovers if f.needed)

    def slow_failovers(self, within: float) -> list[str]:
        """Return one line per needed failover not done within ``within`` seconds."""
        out: list[str] = []
        for f in self.failovers:
            if not f.needed:
                continue
            if f.ended is None:
                out.append(f"failover_within: {f.uuid} was never served again after the "
                           f"{f.cause} of {f.failed} at {f.started:.3f}s")
            elif f.ended - f.started > within:
                out.append(f"failover_within: {f.uuid} took {f.ended - f.started:.3f}s "
                           f"(> {within}s) after the {f.cause} of {f.failed}")
        return out


# --- the fault layer's events ---------------------------------------------------------


class _FaultAt(Event):
    """A scheduled fault is due."""

    __slots__ = ("fault", "faults",)

    def __init__(self, faults: Faults, fault: FaultSpec) -> None:
        self.faults = faults
        self.fault = fault

    def fire(self) -> None:
        """Hand it to the fault layer."""
        self.faults.inject(self.fault)


class _Leave(Event):
    """A draining agent's grace is over: it leaves (unless it was restarted meanwhile)."""

    __slots__ = ("faults", "inc", "proc",)

    def __init__(self, faults: Faults, proc: Process, inc: int) -> None:
        self.faults = faults
        self.proc = proc
        self.inc = inc

    def fire(self) -> None:
        """Hand it to the fault layer."""
        if self.proc.incarnation == self.inc:
            self.faults.sim.trace("fault", self.proc.pid, "leave")
            self.faults.leave(self.proc)


class _Resume(Event):
    """A pause ends."""

    __slots__ = ("faults", "inc", "proc",)

    def __init__(self, faults: Faults, proc: Process, inc: int) -> None:
        self.faults = faults
        self.proc = proc
        self.inc = inc

    def fire(self) -> None:
        """Hand it to the fault layer."""
        self.faults.resume(self.proc, self.inc)


class _Heal(Event):
    """A partition heals."""

    __slots__ = ("episode", "faults", "proc",)

    def __init__(self, faults: Faults, proc: Process, episode: int) -> None:
        self.faults = faults
        self.proc = proc
        self.episode = episode

    def fire(self) -> None:
        """Hand it to the fault layer."""
        self.faults.heal(self.proc, self.episode)


class _Unslow(Event):
    """A slow link is back to normal."""

    __slots__ = ("faults", "proc",)

    def __init__(self, faults: Faults, proc: Process) -> None:
        self.faults = faults
        self.proc = proc

    def fire(self) -> None:
        """Hand it to the fault layer."""
        self.faults.unslow(self.proc)
