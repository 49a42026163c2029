"""Invariants checked against two views: the hub's registry and the ground truth.

Each invariant has a name (used in reports, expectations and tests); what
each one means precisely is written in docs/simulator.md.  Event-driven ones
run at the event that could break them (O(1) each); state ones run every
``checks.interval`` of virtual time (``Registry.check()`` and the orphan
deadlines, which are O(size), every ``checks.registry_every`` checks).

- ``no-false-death``: the hub declares a peer dead only after a full alive
  timeout with nothing received from it;
- ``timely-detection``: a crashed, paused or cut-off peer is declared dead
  within alive timeout + ping interval + link latency;
- ``supersede``: a Hello with a known peer id closes the old connection;
- ``late-message-ignored``: a message arriving on a connection the hub has
  closed produces nothing for anyone else;
- ``single-owner``: the hub never lists the owner of a stateless uuid among
  its standbys;
- ``exclusive-serving``: a process whose agent is registered at the hub
  through its current connection and that really serves a stateless uuid is
  the hub's owner of it (a grace of a few link latencies covers the reply in
  flight after a re-register);
- ``epoch-monotonic``: within one hub term the epoch of a stateless uuid only
  grows; an agent never switches to serving on an epoch older than one it saw;
- ``serves-what-runs``: the core never has the driver run a request on a
  container the process does not run or that stands by;
- ``orphan-deadline``: an unreferenced container is gone within the unused
  timeout plus one check interval;
- ``registry-sound``: ``Registry.check()`` finds nothing;
- ``request-ends-once``: no request ends twice;
- ``liveness``: after the fault phase the system converges within the bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from ..core.effects import CloseConnection, Effect, RunRequest, Send, SetServing
from ..core.hub import Hub
from .clock import Event
from .links import Connection
from .process import Process
from .state import STATE_INVARIANTS
from .workload import RequestStats
from .world import Simulation

__all__ = ["INVARIANTS", "Invariants", "Violation"]

INVARIANTS = (
    "no-false-death", "timely-detection", "supersede", "late-message-ignored",
    "single-owner", "exclusive-serving", "epoch-monotonic", "serves-what-runs",
    "orphan-deadline", "registry-sound", "request-ends-once", "liveness",
)

_EPS = 1e-6


@attrs.frozen
class Violation:
    """One broken invariant at one virtual time."""

    time: float
    name: str
    text: str


class Invariants:
    """The invariant checker of one simulation (see module docstring)."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.violations: list[Violation] = []
        #: the trace lines leading to the first violation
        self.context: list[str] = []
        self.checked: dict[str, int] = dict.fromkeys(INVARIANTS, 0)
        if sim.scenario.state is not None:
            # Container state's checks (sim/state.py), counted here too.
            self.checked.update(dict.fromkeys(STATE_INVARIANTS, 0))
        self.requests = RequestStats()
        #: stateless uuid -> processes offering it
        self.offering: dict[str, dict[str, None]] = {}
        self._suspect: dict[tuple[str, str], float] = {}
        self._hub_epochs: dict[tuple[str, str], int] = {}
        self._proc_epochs: dict[tuple[str, int, str], int] = {}
        self._owners: dict[str, str] = {}
        self._checks = 0
        self.unconverged: list[str] = []
        self._max_violations = 50

    # --- reporting ------------------------------------------------------------

    def violate(self, name: str, text: str) -> None:
        """Record that invariant ``name`` broke now."""
        if not self.violations:
            self.context = self.sim.recent_lines()
            self.sim.note("violation", f"{name}: {text}")
        if len(self.violations) < self._max_violations:
            self.violations.append(Violation(self.sim.now, name, text))

    # --- event-driven ------------------------------------------------------------

    def offered(self, uuid: str, proc: Process) -> None:
        """``proc`` offers stateless ``uuid``."""
        self.offering.setdefault(uuid, {})[proc.pid] = None

    def declared_dead(self, conn: Connection) -> None:
        """The hub closed ``conn`` for its alive timeout."""
        self.checked["no-false-death"] += 1
        sim = self.sim
        silent = sim.now - conn.last_arrival
        alive = sim.timeouts.alive
        if silent + _EPS < alive:
            self.violate("no-false-death",
                         f"hub declared {conn.name} dead after {silent:.3f}s of silence "
                         f"(alive timeout {alive}s)")
        sim.note("reaction", f"hub declares {conn.name} dead "
                             f"({silent:.3f}s after its last message arrived)")

    def late_message(self, conn: Connection, effects: Sequence[Effect]) -> None:
        """The hub was handed a message on ``conn`` after it had closed it."""
        self.checked["late-message-ignored"] += 1
        for eff in effects:
            target = eff.conn if isinstance(eff, Send | CloseConnection) else None
            if target is not conn:
                self.violate("late-message-ignored",
                             f"a late message from {conn.name} on closed conn{conn.cid} "
                             f"made the hub do {type(eff).__name__} elsewhere")
                return

    def hello(self, conn: Connection, old: Connection | None, closed: list[Connection]) -> None:
        """The hub processed a Hello on ``conn``; ``old`` was the peer's previous connection."""
        self.checked["supersede"] += 1
        if old is None or old is conn or old.hub is not conn.hub:
            return
        if old.hub_open:
            self.violate("supersede", f"{conn.name} said hello on conn{conn.cid} but the "
                                      f"hub kept its old conn{old.cid} open")

    def set_serving(self, proc: Process, eff: SetServing) -> None:
        """``proc``'s agent switches ``eff.uuid`` to serving or standby."""
        self.checked["epoch-monotonic"] += 1
        # Epochs are compared within one connection: a registration starts a
        # new ownership view (and a restarted hub a new term).
        key = (proc.pid, proc.conn.cid if proc.conn is not None else 0, eff.uuid)
        last = self._proc_epochs.get(key, -1)
        if eff.serving and eff.epoch < last:
            self.violate("epoch-monotonic", f"{proc.pid} serves {eff.uuid} on epoch "
                                            f"{eff.epoch} after seeing epoch {last}")
        self._proc_epochs[key] = max(last, eff.epoch)

    def run_request(self, proc: Process, eff: RunRequest) -> None:
        """The core asks ``proc``'s driver to run a request."""
        self.checked["serves-what-runs"] += 1
        if eff.uuid not in proc.running or not proc.serving.get(eff.uuid, True):
            where = "stands by" if eff.uuid in proc.running else "does not run"
            self.violate("serves-what-runs",
                         f"{proc.pid} was asked to run a request on {eff.uuid}, which {where} "
                         f"there")

    def silenced(self, proc: Process) -> None:
        """``proc`` fell silent; the hub must declare it dead in time."""
        sim = self.sim
        t = sim.timeouts
        bound = t.alive + t.ping_interval + sim.max_latency
        sim.clock.at(sim.now + bound + _EPS, _Detect(self, proc, proc.episode, sim.hub, bound))

    def detect(self, proc: Process, episode: int, hub: Hub | None, bound: float) -> None:
        sim = self.sim
        if hub is None or hub is not sim.hub or episode != proc.episode:
            return
        still = (not proc.alive and not proc.left) or proc.paused or proc.partition is not None
        if not still:
            return
        self.checked["timely-detection"] += 1
        if hub.registry.has_client(proc.peer):
            self.violate("timely-detection",
                         f"{proc.pid} silent since {sim.now - bound:.3f}s is still registered "
                         f"{bound:.3f}s later")

    # --- periodic ----------------------------------------------------------------

    def periodic(self) -> None:
        """Run the state invariants (every ``checks.interval`` of virtual time)."""
        sim = self.sim
        hub = sim.hub
        self._checks += 1
        if hub is None:
            return
        reg = hub.registry
        every = sim.scenario.checks.registry_every
        for uuid, pids in self.offering.items():
            rec = reg.container(uuid)
            owner = rec.agent_id if rec is not None else ""
            if self._owners.get(uuid) != owner:
                self._owners[uuid] = owner
                sim.ownership.append((sim.now, uuid, owner))
            self.checked["single-owner"] += 1
            if rec is not None:
                if owner in reg.standbys(uuid):
                    self.violate("single-owner", f"{uuid}: owner {owner} is also a standby")
                self.checked["epoch-monotonic"] += 1
                key = (hub.hub_id, uuid)
                last = self._hub_epochs.get(key, 0)
                if rec.epoch < last:
                    self.violate("epoch-monotonic",
                                 f"{uuid}: epoch went from {last} to {rec.epoch} in {hub.hub_id}")
                self._hub_epochs[key] = rec.epoch
            self._exclusive(uuid, owner, pids)
        sim.faults.failover_progress()
        if every > 0 and self._checks % every == 0:
            self._deep(hub)

    def _exclusive(self, uuid: str, owner: str, pids: dict[str, None]) -> None:
        sim = self.sim
        reg = sim.hub.registry  # type: ignore[union-attr]
        self.checked["exclusive-serving"] += 1
        now = sim.now
        procs = sim.procs
        suspects = self._suspect
        for pid in pids:
            proc = procs[pid]
            # Registered *by this incarnation*: a restarted process shares its
            # peer id (or, with a fresh peer id, its agent id) with the dead
            # one the hub may not have dropped yet.
            # (Every offering process is examined at every check; the cheap
            # test that clears a standby comes first.)
            # One the hub told to terminate its instance and has not heard
            # from since serves until the Terminate reaches it (a partition
            # may hold it): the hub starts the uuid nowhere else meanwhile.
            conn = proc.conn
            rogue = (proc.serving.get(uuid, False) and pid != owner and proc.alive
                     and not proc.paused and reg.agent_owner(pid) == proc.peer
                     and conn is not None and conn.hub_open
                     and sim.hub_conn_of.get(proc.peer) is conn
                     and reg.stopping(uuid) != pid)
            if not rogue:
                if suspects:
                    suspects.pop((uuid, pid), None)
                continue
            key = (uuid, pid)
            since = self._suspect.setdefault(key, now)
            slow = proc.link.latency
            latency = slow.high if slow is not None else sim.max_latency
            grace = 4 * latency + 2 * float(sim.scenario.checks.interval) + \
                sim.timeouts.event_window + 0.05
            if now - since > grace:
                self.violate("exclusive-serving",
                             f"{pid} serves stateless {uuid} since {since:.3f}s while the hub "
                             f"routes it to {owner or 'nobody'}")
                self._suspect[key] = float("inf")  # report each episode once

    def _deep(self, hub: Hub) -> None:
        sim = self.sim
        reg = hub.registry
        self.checked["registry-sound"] += 1
        problems = reg.check()
        if problems:
            self.violate("registry-sound", "; ".join(problems[:5]))
        self.checked["orphan-deadline"] += 1
        limit = sim.timeouts.unused_container + float(sim.scenario.checks.interval) + _EPS
        now = sim.now
        for uuid, orphaned in reg.orphans():
            if now - orphaned > limit:
                self.violate("orphan-deadline", f"{uuid} orphaned at {orphaned:.3f}s still "
                                                f"lives at {now:.3f}s")

    # --- liveness ----------------------------------------------------------------

    def converged(self) -> bool:
        """Return whether the system has converged; ``unconverged`` says why not."""
        why = self.unconverged = []
        sim = self.sim
        hub = sim.hub
        if hub is None:
            why.append("the hub is down")
            return False
        reg = hub.registry
        live = sim.live_processes()
        servable = sim.servable()
        for proc in live:
            if not sim.session_ready(proc):
                why.append(f"{proc.pid} is not connected")
            elif proc.is_agent and reg.agent_owner(proc.pid) != proc.peer:
                why.append(f"agent {proc.pid} is not registered")
            elif not sim.can_be_served(proc, servable):
                continue  # nobody can serve it: its gets and requests rightly wait
            elif proc.load is not None and proc.load.outstanding:
                why.append(f"{proc.pid} has {len(proc.load.outstanding)} requests pending")
            elif not sim.refs_ready(proc):
                why.append(f"{proc.pid} has references not ready")
            if len(why) > 5:
                return False
        if why:
            return False
        live_agents = [p for p in live if p.is_agent]
        for uuid, pids in self.offering.items():
            # A live process whose instance has not exited (container-exit).
            eligible = [p for p in pids if sim.procs[p].alive and uuid in sim.procs[p].running]
            if not eligible:
                continue
            rec = reg.container(uuid)
            if rec is None:
                why.append(f"stateless {uuid} has no owner while {eligible[0]} could serve")
                continue
            # Whoever really serves it, by the ground truth: an offer the hub
            # made the owner, or an ordinary instance of the uuid (its start
            # won over an offer, or it was started afresh after the offer's
            # instance ended: docs/design.md); offers stand by behind it.
            servers = [p.pid for p in live_agents if uuid in p.active()]
            if servers != [rec.agent_id]:
                why.append(f"stateless {uuid}: hub owner {rec.agent_id}, really served by "
                           f"{servers or 'nobody'}")
        for proc in live:
            if proc.is_agent:
                hub_view = set(reg.agent_containers(proc.pid))
                truth = proc.active()
                if hub_view != truth:
                    extra = sorted(hub_view - truth)[:3]
                    missing = sorted(truth - hub_view)[:3]
                    why.append(f"agent {proc.pid}: hub lists {extra} it does not run, "
                               f"runs {missing} the hub does not list")
            if len(why) > 5:
                return False
        if why:
            return False
        # Only sessions that take every event keep a view to compare.
        sample = [p for p in live if p.load is not None and p.session is not None
                  and p.session.events == "all"][: sim.scenario.checks.view_sample]
        if sample:
            containers = {c.uuid: c for c in reg.list()}
            agents = {a.agent_id: a for a in reg.agents()}
            for proc in sample:
                s = proc.session
                assert s is not None
                if s.view_containers != containers:
                    why.append(f"{proc.pid}'s view of the containers differs from the hub's")
                elif s.view_agents != agents:
                    why.append(f"{proc.pid}'s view of the agents differs from the hub's")
                if why:
                    return False
        return True

    def finish(self) -> None:
        """End of run: the liveness verdict and a last deep check."""
        sim = self.sim
        self.checked["liveness"] += 1
        if sim.converged_at is None:
            reasons = "; ".join(self.unconverged[:5]) or "not converged"
            self.violate("liveness", f"no convergence within {sim.scenario.liveness}s after "
                                     f"the fault phase: {reasons}")
        if sim.hub is not None:
            self._deep(sim.hub)

    def summary_counts(self) -> dict[str, Any]:
        """Return how often each invariant was checked and broken."""
        broken: dict[str, int] = {}
        for v in self.violations:
            broken[v.name] = broken.get(v.name, 0) + 1
        return {name: (self.checked[name], broken.get(name, 0)) for name in self.checked}


class _Detect(Event):
    """Time to check that the hub noticed ``proc`` fall silent."""

    __slots__ = ("bound", "episode", "hub", "invariants", "proc")

    def __init__(self, invariants: Invariants, proc: Process, episode: int, hub: Hub | None,
                 bound: float) -> None:
        self.invariants = invariants
        self.proc = proc
        self.episode = episode
        self.hub = hub
        self.bound = bound

    def fire(self) -> None:
        """Check ``timely-detection``."""
        self.invariants.detect(self.proc, self.episode, self.hub, self.bound)
