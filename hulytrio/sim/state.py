"""Container state in the simulator: the checkpoint policy driven, the store, the checks.

Theory of operation
-------------------
With a ``[state]`` table, containers of its ``kinds`` have state: a counter
that every request they answer changes (``Instance.counter``, its
``state_version`` too).  Each agent process drives the core's
``CheckpointPolicy`` (``core/checkpoints.py``) exactly as the trio agent
does (``transport/checkpoints.py``, ``transport/agent.py``), against the
simulated store (``store.py``):

- a container starting on an agent is restored (claim at epoch 0, import)
  before the driver reports it started; a stateless offer promoted to
  serving is restored before its first request (the policy holds them);
- every ``interval`` the changed containers are written in one batch;
- a container stopped by the hub, a demoted stateless owner and an agent
  leaving cleanly (``leave``) get a final write; a leaving or draining agent
  first holds new requests and lets running ones end (at most 2 s, as the
  trio agent), writes, and only then tells the hub (``leaving``,
  ``draining``: a drain that told the hub first lost what its stateless
  owners changed since their last checkpoint, the standby's claim fencing
  their last write; seeded bug ``drain-hands-over-first``);
- a write the store refuses as stale stops the container there (the hub is
  told), as does a restore that fails (the store cut off).

The checks (``StateChecks``, reported through the world's invariant checker
under the names of ``STATE_INVARIANTS``; docs/simulator.md states each one):
``store-fenced``, ``state-regression``, ``clean-stop-saves-all``,
``crash-loss-bounded`` and ``import-before-serve``.
"""

from __future__ import annotations

import bisect
import functools
import random
from collections.abc import Callable
from typing import Protocol

from ..core.checkpoints import CheckpointPolicy, StateRecord, StateWrite
from ..core.effects import RunRequest, SetServing, StartContainer
from ..core.errors import ErrorCode
from .clock import Clock, Event
from .process import Process
from .scenario import FaultSpec, Scenario, Span, StateSpec
from .store import SimStore, StoreReply

__all__ = ["STATE_INVARIANTS", "Instance", "StateChecks", "StateLayer", "StateWorld"]

STATE_INVARIANTS = (
    "store-fenced", "state-regression", "clean-stop-saves-all", "crash-loss-bounded",
    "import-before-serve",
)

#: Seconds a leaving agent lets its running requests end before its last checkpoint
#: (``transport/agent.py``'s ``FINAL_CHECKPOINT_WAIT``).
FINAL_CHECKPOINT_WAIT = 2.0

#: Seconds between tries of a leave's or drain's last checkpoint while the store
#: fails (``transport/agent.py``'s ``LAST_CHECKPOINT_RETRY``; the drain's grace
#: bounds them, a leave's ``CLOSE_CHECKPOINT_RETRY_FOR``, as there).
LAST_CHECKPOINT_RETRY = 0.5
CLOSE_CHECKPOINT_RETRY_FOR = 5.0

#: Seeded bug (test-only): a drain tells the hub first and writes after, as the
#: trio agent once did; ``clean-stop-saves-all`` must catch it.
DRAIN_HANDS_OVER_FIRST = "drain-hands-over-first"

_EPS = 1e-9


class StateWorld(Protocol):
    """What the state layer uses of the world (``world.Simulation``)."""

    clock: Clock
    scenario: Scenario
    seed: int
    procs: dict[str, Process]
    history: list[tuple[float, str, str]]

    def trace(self, kind: str, who: str, what: str) -> None:
        """Record one event now in the trace."""

    def violate(self, name: str, text: str) -> None:
        """Record that invariant ``name`` broke now."""

    def count_check(self, name: str) -> None:
        """Count one check of invariant ``name``."""

    def invariants_checked(self, name: str) -> int:
        """Return how often invariant ``name`` was checked."""

    def perform(self, proc: Process) -> None:
        """Perform ``proc``'s session's effects."""

    def start_finished(self, proc: Process, eff: StartContainer, error: str | None) -> None:
        """The restore before a start ended (``error``: it failed)."""

    def schedule_request(self, proc: Process, eff: RunRequest) -> None:
        """Run ``eff`` in ``proc``'s container now (its reply comes after the latency)."""

    def stopped_here(self, proc: Process, uuid: str) -> None:
        """``proc`` stops serving ``uuid`` on its own (the hub is told)."""


class Instance:
    """One container with state in one process: its counter and what the checks need."""

    __slots__ = ("acked", "history", "imported", "issued", "kind", "uuid")

    def __init__(self, uuid: str, kind: str) -> None:
        self.uuid = uuid
        self.kind = kind
        #: (time, counter) from the import on; the last is the counter now
        self.history: list[tuple[float, int]] = [(0.0, 0)]
        #: its saved state is in (False while restoring, and for a standby)
        self.imported = False
        #: the highest value written for it that the store accepted (or restored)
        self.acked = 0
        #: the highest value of it the driver has sent to the store
        self.issued = 0

    @property
    def counter(self) -> int:
        """Return the state now (the number of changes, restored ones included)."""
        return self.history[-1][1]

    def counter_at(self, t: float) -> int:
        """Return the state at time ``t`` (its imported value before the import)."""
        i = bisect.bisect_right(self.history, (t, float("inf"))) - 1
        return self.history[max(i, 0)][1]


class _ProcState:
    """One agent process incarnation's policy, instances and held requests."""

    __slots__ = ("client", "closed", "closing", "draining", "held", "inc", "instances",
                 "policy", "running", "started", "stop_started", "write_until")

    def __init__(self, policy: CheckpointPolicy, inc: int, client: str, started: float
                 ) -> None:
        self.policy = policy
        self.inc = inc
        #: when this incarnation started
        self.started = started
        #: the store client name of this incarnation (its connection: FIFO)
        self.client = client
        self.instances: dict[str, Instance] = {}
        #: requests waiting for a restore (or, closing, for the agent to go)
        self.held: dict[str, list[RunRequest]] = {}
        #: requests running in containers with state
        self.running = 0
        #: set while a clean leave waits for its last checkpoint
        self.closing: Callable[[], None] | None = None
        #: the clean leave (or drain) finished its last checkpoint
        self.closed = False
        #: the agent drains: the hub is (about to be) moving its containers
        self.draining = False
        #: a leave's or drain's last checkpoint is tried again until then
        self.write_until = 0.0
        #: when the clean leave or drain began (None: it has not)
        self.stop_started: float | None = None


class StateChecks:
    """The state invariants, fed by the store and the layer (see module docstring)."""

    def __init__(self, world: StateWorld, store_health: Callable[[float], bool],
                 spec: StateSpec) -> None:
        self.world = world
        self._healthy_since = store_health
        self.spec = spec
        #: uuid -> the highest epoch the store accepted a write at or claimed
        self._epochs: dict[str, int] = {}
        #: uuid -> value of the last final write (clean handoff) the store accepted
        self.floor: dict[str, int] = {}
        #: crashes not judged by crash-loss-bounded (store outage or pause in the window)
        self.unjudged = 0
        #: what the store did: writes accepted and refused as stale, claims of saved
        #: state, claims of a uuid with nothing saved
        self.accepted = 0
        self.refused = 0
        self.claims = 0
        self.fresh_claims = 0
        #: changes lost by judged crashes (the counters' differences)
        self.lost = 0

    def tally(self) -> str:
        """Return one line: what the store accepted, refused and handed over, what crashes lost."""
        return (f"{self.accepted} writes accepted, {self.refused} refused as stale, "
                f"{self.claims} saved states claimed, {self.fresh_claims} uuids claimed "
                f"with nothing saved; crashes judged "
                f"{self.world.invariants_checked('crash-loss-bounded')}, not judged (store "
                f"or agent down in the window) {self.unjudged}, changes they lost {self.lost}")

    # --- the store reports --------------------------------------------------------------

    def store_claimed(self, client: str, uuid: str, epoch: int, claimed: int,
                      saved: int | None) -> None:
        """A claim was applied: it got epoch ``claimed`` and the value ``saved``."""
        w = self.world
        # Every claim fences every earlier owner, saved state or not: its
        # epoch is above every epoch written or claimed before.
        w.count_check("store-fenced")
        highest = self._epochs.get(uuid)
        if highest is not None and claimed <= highest:
            w.violate("store-fenced", f"{client} claimed {uuid} at epoch {claimed}, not above "
                                      f"epoch {highest} written or claimed before: an "
                                      f"earlier owner's writes are not refused")
        self._epochs[uuid] = claimed if highest is None else max(highest, claimed)
        w.count_check("state-regression")
        floor = self.floor.get(uuid)
        if saved is None:
            self.fresh_claims += 1
            if floor is not None:
                w.violate("state-regression", f"{client} claimed {uuid}: nothing saved, "
                                              f"after a clean handoff saved {floor}")
            return
        self.claims += 1
        if floor is not None and saved < floor:
            w.violate("state-regression", f"{client} restores {uuid} at {saved}, older "
                                          f"than {floor} saved by the last clean handoff")

    def store_write(self, client: str, uuid: str, value: int, epoch: int, stored: int | None,
                    accepted: bool) -> None:
        """A write was applied (``accepted`` or refused)."""
        self.world.count_check("store-fenced")
        if not accepted:
            self.refused += 1
            return
        self.accepted += 1
        highest = self._epochs.get(uuid, 0)
        if epoch < highest:
            self.world.violate("store-fenced", f"the store accepted {client}'s write of "
                                               f"{uuid} at epoch {epoch} after epoch {highest}")
        self._epochs[uuid] = max(highest, epoch)

    # --- the layer reports -----------------------------------------------------------------

    def final_accepted(self, uuid: str, value: int) -> None:
        """A clean handoff's final write of ``uuid`` (``value``) was accepted."""
        self.floor[uuid] = value

    def clean_write_answered(self, proc: Process, started: float, stopping: float, uuid: str,
                             version: int, refused: bool) -> None:
        """The store answered a clean stop's last write of ``uuid`` (a process up since
        ``started``, stopping since ``stopping``): refused as stale, the next owner
        restores without its changes."""
        w = self.world
        if _disturbed_since(w, proc.pid, started):
            return  # paused or cut off once: a newer owner may rightly exist
        if not self._healthy_since(stopping):
            return  # the stop's own writes may have failed: the loss is the outage's
        w.count_check("clean-stop-saves-all")
        if refused:
            w.violate("clean-stop-saves-all",
                      f"{proc.pid} stops {uuid} cleanly but its last write (state {version}) "
                      f"was refused as stale: a new owner claimed it first and restores "
                      f"without those changes")

    def clean_stop(self, proc: Process, inst: Instance) -> None:
        """``inst`` stops cleanly in ``proc``: everything it changed is on its way to the store."""
        self.world.count_check("clean-stop-saves-all")
        if inst.imported and inst.issued < inst.counter:
            self.world.violate("clean-stop-saves-all",
                               f"{proc.pid} stops {inst.uuid} cleanly at state {inst.counter} "
                               f"but wrote only {inst.issued}")

    def serves(self, proc: Process, inst: Instance, restoring: bool) -> None:
        """A request starts to run on ``inst`` in ``proc``."""
        self.world.count_check("import-before-serve")
        if not inst.imported or restoring:
            self.world.violate("import-before-serve",
                               f"{proc.pid} served a request on {inst.uuid} before its "
                               f"saved state was imported")

    def crashed(self, proc: Process, inst: Instance, interval: float, latency: float) -> None:
        """``inst`` died with ``proc`` (or alone): at most one interval of changes is lost."""
        w = self.world
        now = w.clock.now
        since = now - interval - latency
        if not inst.imported:
            return
        if not self._healthy_since(since - latency) or _paused_since(w, proc.pid, since):
            self.unjudged += 1
            return
        w.count_check("crash-loss-bounded")
        self.lost += max(0, inst.counter - inst.acked)
        old = inst.counter_at(since - _EPS)
        if old > inst.acked:
            w.violate("crash-loss-bounded",
                      f"{proc.pid} lost {inst.uuid}'s changes older than one interval: state "
                      f"{old} at {since:.3f}s, only {inst.acked} in the store at the crash")


def _disturbed_since(world: StateWorld, pid: str, since: float) -> bool:
    """Return whether process ``pid`` was anything but up at any time from ``since`` until now."""
    state = "up"
    for t, who, what in world.history:
        if who != pid:
            continue
        if t >= since and what != "up":
            return True
        if t < since:
            state = what
    return state != "up"


def _paused_since(world: StateWorld, pid: str, since: float) -> bool:
    """Return whether process ``pid`` was paused at any time from ``since`` until now."""
    state = "up"
    for t, who, what in world.history:
        if who != pid:
            continue
        if t >= since and what == "paused":
            return True
        if t < since:
            state = what
    return state == "paused"


class StateLayer:
    """Drives each agent's checkpoint policy against the simulated store (module docstring)."""

    def __init__(self, world: StateWorld, spec: StateSpec) -> None:
        self.world = world
        self.spec = spec
        self.kinds = frozenset(spec.kinds)
        self.interval = float(spec.interval)
        bugs = frozenset(spec.seeded_bugs)
        self.bugs = bugs
        self.store = SimStore(world.clock, spec.store_latency, float(spec.store_timeout),
                              random.Random(f"{world.seed}:store"), self._observer(),
                              world.trace, seeded_bugs=bugs)
        self.checks = StateChecks(world, self.store.healthy_since, spec)
        self._procs: dict[str, _ProcState] = {}

    def _observer(self) -> _Observer:
        return _Observer(self)

    def has_state(self, kind: str) -> bool:
        """Return whether containers of ``kind`` have state."""
        return kind in self.kinds

    def _ps(self, proc: Process) -> _ProcState | None:
        ps = self._procs.get(proc.pid)
        if ps is None or ps.inc != proc.incarnation or not proc.alive:
            return None
        return ps

    # --- processes -------------------------------------------------------------------

    def process_started(self, proc: Process) -> None:
        """An agent process (re)starts: a fresh policy; its stateless offers stand by, empty."""
        spec = proc.agent_spec
        if spec is None:
            return
        clock = self.world.clock
        policy = CheckpointPolicy(self.interval, seeded_bugs=self.bugs)
        ps = self._procs[proc.pid] = _ProcState(policy, proc.incarnation,
                                                f"{proc.pid}#{proc.incarnation}", clock.now)
        for offer in spec.stateless:
            if offer.kind in self.kinds:
                ps.instances[offer.uuid] = Instance(offer.uuid, offer.kind)
        policy.start(clock.now)
        self._arm(proc, ps)

    def _arm(self, proc: Process, ps: _ProcState) -> None:
        d = ps.policy.next_deadline()
        if d is not None:
            self.world.clock.at(d, _CheckpointWake(self, proc, ps.inc))

    def checkpoint_wake(self, proc: Process, inc: int, event: Event) -> None:
        """``proc``'s interval checkpoint may be due."""
        ps = self._ps(proc)
        if ps is None or ps.inc != inc:
            return
        if proc.paused:
            proc.deferred.append(event)
            return
        if ps.policy.checkpoint_due(self.world.clock.now) and ps.closing is None:
            self._write(proc, ps, self._due(ps), final=False)
        self._arm(proc, ps)

    def _due(self, ps: _ProcState) -> list[StateWrite]:
        instances = ps.instances
        return ps.policy.due((u, instances[u].counter) for u in ps.policy.uuids()
                             if u in instances)

    # --- writes --------------------------------------------------------------------------

    def _write(self, proc: Process, ps: _ProcState, writes: list[StateWrite], *, final: bool,
               then: Callable[[], None] | None = None,
               leaving: Instance | None = None, clean: bool = False) -> None:
        """Send ``writes`` (of ``ps.instances``, or of ``leaving``, gone from them);
        ``clean``: a clean stop's last writes, which must not be refused."""
        if not writes:
            if then is not None:
                then()
            return
        items = []
        insts: list[Instance | None] = []
        for write in writes:
            inst = leaving if leaving is not None else ps.instances.get(write.uuid)
            if inst is not None:
                inst.issued = max(inst.issued, write.version)
            insts.append(inst)
            items.append((write.uuid, write.version, write.epoch))
        self.store.put_many(ps.client, items, _WriteAnswer(self, proc, ps, writes, insts, final,
                                                           then, clean).answer)

    def written(self, proc: Process, ps: _ProcState, writes: list[StateWrite],
                insts: list[Instance | None], final: bool, then: Callable[[], None] | None,
                reply: StoreReply, clean: bool = False) -> None:
        """The store applied (or failed) a batch: the ground truth first, then the driver."""
        if reply.ok:
            for write, inst in zip(writes, insts, strict=True):
                if clean:
                    stopping = self.world.clock.now if ps.stop_started is None else \
                        ps.stop_started
                    self.checks.clean_write_answered(proc, ps.started, stopping, write.uuid,
                                                     write.version, write.uuid in reply.refused)
                if write.uuid in reply.refused:
                    continue
                if inst is not None:
                    inst.acked = max(inst.acked, write.version)
                if final:
                    self.checks.final_accepted(write.uuid, write.version)
        self._deliver(proc, ps, _Written(self, proc, ps, writes, reply, then))

    def _deliver(self, proc: Process, ps: _ProcState, event: Event) -> None:
        if self._ps(proc) is not ps:
            return  # the process died meanwhile
        if proc.paused:
            proc.deferred.append(event)
            return
        event.fire()

    def written_here(self, proc: Process, ps: _ProcState, writes: list[StateWrite],
                     reply: StoreReply, then: Callable[[], None] | None) -> None:
        """The agent's driver hears the store's answer to a batch."""
        if self._ps(proc) is not ps:
            return
        if reply.ok:
            for uuid in ps.policy.written(writes, reply.refused):
                # A newer owner exists: stop serving it here.
                self.world.trace("state-stale", proc.pid, uuid)
                ps.instances.pop(uuid, None)
                self._fail_held(proc, ps, uuid)
                self.world.stopped_here(proc, uuid)
        else:
            self.world.trace("checkpoint-failed", proc.pid, str(len(writes)))
        if then is not None:
            then()

    def _final(self, proc: Process, ps: _ProcState, inst: Instance,
               record: StateRecord | None, *, clean: bool,
               then: Callable[[], None] | None = None) -> bool:
        """Write ``inst``'s last changes, if any; returns whether a write went out
        (then ``then`` runs once it is answered, else not at all)."""
        write = ps.policy.final_write(record, inst.counter)
        if write is not None:
            self._write(proc, ps, [write], final=True, then=then, leaving=inst, clean=clean)
        self.checks.clean_stop(proc, inst)
        return write is not None

    # --- restores ------------------------------------------------------------------------

    def restore_for_start(self, proc: Process, eff: StartContainer) -> None:
        """A container of a kind with state started: claim and import before it is reported."""
        ps = self._ps(proc)
        if ps is None:
            return
        ps.policy.forget(eff.uuid)  # a restart raced a stop: this restore replaces it
        inst = ps.instances[eff.uuid] = Instance(eff.uuid, eff.kind)
        record = ps.policy.restore_started(eff.uuid, 0)
        self.store.claim(ps.client, eff.uuid, 0,
                         _ClaimAnswer(self, proc, ps, record, inst, eff).answer)

    def claimed(self, proc: Process, ps: _ProcState, record: StateRecord, inst: Instance,
                start: StartContainer | None, reply: StoreReply) -> None:
        """The store applied a claim: the ground truth first, then the driver hears it."""
        self._deliver(proc, ps, _Claimed(self, proc, ps, record, inst, start, reply))

    def claimed_here(self, proc: Process, ps: _ProcState, record: StateRecord, inst: Instance,
                     start: StartContainer | None, reply: StoreReply) -> None:
        """The agent's driver hears the claim's answer: import, then serve (or fail)."""
        if self._ps(proc) is not ps:
            return
        policy = ps.policy
        uuid = record.uuid
        current = policy.current(record) and ps.instances.get(uuid) is inst
        if not reply.ok:
            policy.restore_failed(record)
            if current:
                ps.instances.pop(uuid, None)
            self.world.trace("restore-failed", proc.pid, uuid)
            if start is not None:
                self.world.start_finished(proc, start, "reading the saved state of "
                                          f"{uuid} failed: the store is unreachable")
            elif current:
                self._fail_held(proc, ps, uuid)
                self.world.stopped_here(proc, uuid)
            return
        if not current:
            # Stopped or demoted while restoring: nothing serves here.
            self._fail_held(proc, ps, uuid)
            if start is not None:
                self.world.start_finished(proc, start, None)
            return
        value = 0 if reply.saved is None else reply.saved
        now = self.world.clock.now
        inst.history = [(now, value)]
        inst.acked = value
        inst.issued = value
        inst.imported = True
        policy.restored(record, reply.epoch, value)
        self.world.trace("restored", proc.pid, f"{uuid}={value}")
        if start is not None:
            self.world.start_finished(proc, start, None)
        for eff in ps.held.pop(uuid, []):
            self.checks.serves(proc, inst, policy.restoring(uuid))
            ps.running += 1
            self.world.schedule_request(proc, eff)

    def _fail_held(self, proc: Process, ps: _ProcState, uuid: str) -> None:
        held = ps.held.pop(uuid, None)
        session = proc.session
        if not held or session is None:
            return
        for eff in held:
            session.agent_error(eff.call_id, ErrorCode.NOT_FOUND.value,
                                f"container {uuid!r} is gone", "",
                                now=self.world.clock.now)
        self.world.perform(proc)

    # --- the hub's orders ---------------------------------------------------------------

    def set_serving(self, proc: Process, eff: SetServing) -> None:
        """A stateless instance serves (restore it unless it served all along) or stands by."""
        ps = self._ps(proc)
        if ps is None or eff.fenced:
            return
        inst = ps.instances.get(eff.uuid)
        if inst is None:
            return
        policy = ps.policy
        if not eff.serving:
            record = policy.forget(eff.uuid)
            if record is not None:
                # Demoted by a drain: a clean handoff.  (Demoted by the
                # hub's answer to a registration, it was paused first: not.)
                self._final(proc, ps, inst, record, clean=ps.draining)
            inst.imported = False  # a standby again: it imports when promoted
            self._fail_held(proc, ps, eff.uuid)
            return
        if policy.tracks(eff.uuid):
            policy.resume(eff.uuid, eff.epoch)
        elif not policy.restoring(eff.uuid):
            record = policy.restore_started(eff.uuid, eff.epoch)
            self.store.claim(ps.client, eff.uuid, eff.epoch,
                             _ClaimAnswer(self, proc, ps, record, inst, None).answer)

    def stopped(self, proc: Process, uuid: str,
                then: Callable[[], None] | None = None) -> bool:
        """The hub stopped ``uuid`` here (``StopContainer``): its final write.

        Returns True when ``then`` runs later: once the store answered that
        write (the agent tells the hub the container stopped only then).
        """
        ps = self._ps(proc)
        if ps is None:
            return False
        inst = ps.instances.pop(uuid, None)
        record = ps.policy.forget(uuid)
        later = False
        if inst is not None and record is not None:
            later = self._final(proc, ps, inst, record, clean=True, then=then)
        self._fail_held(proc, ps, uuid)
        return later

    def admit(self, proc: Process, eff: RunRequest) -> bool:
        """Return whether ``eff`` runs now (False: held until the restore, or the leave, ends)."""
        ps = self._ps(proc)
        if ps is None or eff.uuid not in ps.instances:
            return True
        if not ps.policy.may_serve(eff.uuid):
            ps.held.setdefault(eff.uuid, []).append(eff)
            return False
        self.checks.serves(proc, ps.instances[eff.uuid], ps.policy.restoring(eff.uuid))
        ps.running += 1
        return True

    def request_done(self, proc: Process, eff: RunRequest, ok: bool) -> None:
        """A request ended in ``proc``'s container (``ok``: it succeeded and changed it)."""
        ps = self._ps(proc)
        if ps is None:
            return
        inst = ps.instances.get(eff.uuid)
        if inst is None:
            return
        ps.running -= 1
        if ok:
            inst.history.append((self.world.clock.now, inst.counter + 1))
        if ps.closing is not None and ps.running <= 0:
            self._last_checkpoint(proc, ps)

    # --- leaving and dying ---------------------------------------------------------------

    def leaving(self, proc: Process, then: Callable[[], None]) -> bool:
        """``proc`` stops cleanly; returns True when ``then`` (the leave) runs later.

        New requests to its containers with state are held, running ones
        get ``FINAL_CHECKPOINT_WAIT``, the last checkpoint is written (tried
        again while the store fails, for ``CLOSE_CHECKPOINT_RETRY_FOR``, or
        a drain's grace), and only then does ``then`` tell the hub.
        """
        ps = self._ps(proc)
        if ps is None or ps.closed:
            return False  # (closed: a drain wrote its last checkpoint, it leaves now)
        if ps.closing is not None:
            return True  # leaving already
        ps.closing = then
        if ps.stop_started is None:
            ps.stop_started = self.world.clock.now
        ps.policy.hold_all()
        if ps.running <= 0:
            self._last_checkpoint(proc, ps)
        else:
            clock = self.world.clock
            clock.at(clock.now + FINAL_CHECKPOINT_WAIT, _Quiet(self, proc, ps))
        return True

    def draining(self, proc: Process, then: Callable[[], None], grace: float) -> bool:
        """``proc`` drains; returns True when ``then`` (the hub hears of it) runs later.

        As a leave (``leaving``): new requests to its containers with state
        are held, running ones get ``FINAL_CHECKPOINT_WAIT``, the last
        checkpoint is written (tried again every ``LAST_CHECKPOINT_RETRY``
        while the store fails, for ``grace`` seconds), and only then does
        ``then`` ask the hub to move them; the held requests are answered
        ``not_found`` when the hub has (``set_serving``), and the leave at
        the drain's end writes nothing more.
        """
        ps = self._ps(proc)
        if ps is None:
            return False
        ps.draining = True
        ps.write_until = self.world.clock.now + grace
        if DRAIN_HANDS_OVER_FIRST in self.bugs:
            return False
        return self.leaving(proc, functools.partial(self._drained, proc, ps, then))

    def _last_written(self, proc: Process, ps: _ProcState, then: Callable[[], None]) -> None:
        """A leave's or drain's last checkpoint was answered: go on, or try again if
        the store failed."""
        if self._ps(proc) is not ps:
            return
        clock = self.world.clock
        if not ps.draining and not ps.write_until:
            # A leave's tries are bounded from its first answer on (``aclose``).
            ps.write_until = clock.now + CLOSE_CHECKPOINT_RETRY_FOR
        if self._due(ps) and clock.now + LAST_CHECKPOINT_RETRY < ps.write_until:
            clock.at(clock.now + LAST_CHECKPOINT_RETRY, _LastRetry(self, proc, ps))
            return
        then()

    def last_retry(self, proc: Process, ps: _ProcState, event: Event) -> None:
        """Try a leaving or draining agent's last checkpoint again."""
        if self._ps(proc) is not ps or ps.closing is None:
            return
        if proc.paused:
            proc.deferred.append(event)
            return
        ps.closed = False
        self._last_checkpoint(proc, ps)

    def _drained(self, proc: Process, ps: _ProcState, then: Callable[[], None]) -> None:
        if self._ps(proc) is ps:
            ps.closing = None  # ``closed`` stays: nothing is left to write
            then()

    def quiet_timeout(self, proc: Process, ps: _ProcState) -> None:
        """Running requests had their time: the last checkpoint goes anyway."""
        if self._ps(proc) is ps and ps.closing is not None:
            if proc.paused:
                proc.deferred.append(_Quiet(self, proc, ps))
                return
            self._last_checkpoint(proc, ps)

    def _last_checkpoint(self, proc: Process, ps: _ProcState) -> None:
        then = ps.closing
        if then is None or ps.closed:
            return
        ps.closed = True  # from here on the leave is clean
        writes = self._due(ps)
        leaving = [ps.instances[u] for u in ps.policy.uuids() if u in ps.instances]
        then = functools.partial(self._last_written, proc, ps, then)
        self._write(proc, ps, writes, final=True, then=then, clean=True)
        for inst in leaving:
            self.checks.clean_stop(proc, inst)

    def crashed(self, proc: Process) -> None:
        """``proc`` dies: the changes after its last accepted checkpoint are lost."""
        ps = self._procs.pop(proc.pid, None)
        if ps is None or ps.inc != proc.incarnation or ps.closed:
            return
        latency = self.spec.store_latency.high
        for inst in ps.instances.values():
            if ps.policy.tracks(inst.uuid):
                self.checks.crashed(proc, inst, self.interval, latency)

    def exited(self, proc: Process, uuid: str) -> None:
        """``uuid`` ended on its own in ``proc`` (no final write): a crash of one container."""
        ps = self._ps(proc)
        if ps is None:
            return
        inst = ps.instances.pop(uuid, None)
        tracked = ps.policy.tracks(uuid)
        ps.policy.forget(uuid)
        if inst is not None and tracked:
            self.checks.crashed(proc, inst, self.interval, self.spec.store_latency.high)

    # --- store faults --------------------------------------------------------------------

    def store_fault(self, fault: FaultSpec) -> None:
        """Apply a ``store-*`` fault."""
        store = self.store
        clock = self.world.clock
        action = fault.action
        self.world.trace("fault", "store", action)
        if action == "store-pause":
            store.pause()
            if fault.duration is not None:
                clock.at(clock.now + fault.duration, _StoreCall(store.resume))
        elif action == "store-resume":
            store.resume()
        elif action == "store-cut":
            store.cut_off()
            if fault.duration is not None:
                clock.at(clock.now + fault.duration, _StoreCall(store.heal))
        elif action == "store-heal":
            store.heal()
        elif action == "store-slow":
            store.slow(fault.latency if fault.latency is not None else Span(0.5, 0.5))
            if fault.duration is not None:
                clock.at(clock.now + fault.duration, _StoreCall(store.unslow))

    def end_faults(self) -> None:
        """The fault phase is over: the store runs, reachable, at its latency."""
        self.store.resume()
        self.store.heal()
        self.store.unslow()


class _Observer:
    """The store's observer: the checks (kept apart so the store sees only this)."""

    __slots__ = ("layer",)

    def __init__(self, layer: StateLayer) -> None:
        self.layer = layer

    def store_claimed(self, client: str, uuid: str, epoch: int, claimed: int,
                      saved: int | None) -> None:
        self.layer.checks.store_claimed(client, uuid, epoch, claimed, saved)

    def store_write(self, client: str, uuid: str, value: int, epoch: int, stored: int | None,
                    accepted: bool) -> None:
        self.layer.checks.store_write(client, uuid, value, epoch, stored, accepted)


class _WriteAnswer:
    """Where a batch's answer goes."""

    __slots__ = ("clean", "final", "insts", "layer", "proc", "ps", "then", "writes")

    def __init__(self, layer: StateLayer, proc: Process, ps: _ProcState,
                 writes: list[StateWrite], insts: list[Instance | None], final: bool,
                 then: Callable[[], None] | None, clean: bool) -> None:
        self.layer = layer
        self.proc = proc
        self.ps = ps
        self.writes = writes
        self.insts = insts
        self.final = final
        self.then = then
        self.clean = clean

    def answer(self, reply: StoreReply) -> None:
        self.layer.written(self.proc, self.ps, self.writes, self.insts, self.final, self.then,
                           reply, self.clean)


class _ClaimAnswer:
    """Where a claim's answer goes."""

    __slots__ = ("inst", "layer", "proc", "ps", "record", "start")

    def __init__(self, layer: StateLayer, proc: Process, ps: _ProcState, record: StateRecord,
                 inst: Instance, start: StartContainer | None) -> None:
        self.layer = layer
        self.proc = proc
        self.ps = ps
        self.record = record
        self.inst = inst
        self.start = start

    def answer(self, reply: StoreReply) -> None:
        self.layer.claimed(self.proc, self.ps, self.record, self.inst, self.start, reply)


# --- events ------------------------------------------------------------------------------


class _LastRetry(Event):
    """A leaving or draining agent tries its last checkpoint again."""

    __slots__ = ("layer", "proc", "ps")

    def __init__(self, layer: StateLayer, proc: Process, ps: _ProcState) -> None:
        self.layer = layer
        self.proc = proc
        self.ps = ps

    def fire(self) -> None:
        """Hand it to the layer."""
        self.layer.last_retry(self.proc, self.ps, self)


class _CheckpointWake(Event):
    """An agent's interval checkpoint may be due."""

    __slots__ = ("inc", "layer", "proc")

    def __init__(self, layer: StateLayer, proc: Process, inc: int) -> None:
        self.layer = layer
        self.proc = proc
        self.inc = inc

    def fire(self) -> None:
        """Hand it to the layer."""
        self.layer.checkpoint_wake(self.proc, self.inc, self)


class _Written(Event):
    """An agent hears the answer to a batch (deferred while it is paused)."""

    __slots__ = ("layer", "proc", "ps", "reply", "then", "writes")

    def __init__(self, layer: StateLayer, proc: Process, ps: _ProcState,
                 writes: list[StateWrite], reply: StoreReply,
                 then: Callable[[], None] | None) -> None:
        self.layer = layer
        self.proc = proc
        self.ps = ps
        self.writes = writes
        self.reply = reply
        self.then = then

    def fire(self) -> None:
        """Hand it to the layer."""
        self.layer.written_here(self.proc, self.ps, self.writes, self.reply, self.then)


class _Claimed(Event):
    """An agent hears the answer to a claim (deferred while it is paused)."""

    __slots__ = ("inst", "layer", "proc", "ps", "record", "reply", "start")

    def __init__(self, layer: StateLayer, proc: Process, ps: _ProcState, record: StateRecord,
                 inst: Instance, start: StartContainer | None, reply: StoreReply) -> None:
        self.layer = layer
        self.proc = proc
        self.ps = ps
        self.record = record
        self.inst = inst
        self.start = start
        self.reply = reply

    def fire(self) -> None:
        """Hand it to the layer."""
        self.layer.claimed_here(self.proc, self.ps, self.record, self.inst, self.start,
                                self.reply)


class _Quiet(Event):
    """A leaving agent's running requests had their time."""

    __slots__ = ("layer", "proc", "ps")

    def __init__(self, layer: StateLayer, proc: Process, ps: _ProcState) -> None:
        self.layer = layer
        self.proc = proc
        self.ps = ps

    def fire(self) -> None:
        """Hand it to the layer."""
        self.layer.quiet_timeout(self.proc, self.ps)


class _StoreCall(Event):
    """A store fault ends."""

    __slots__ = ("call",)

    def __init__(self, call: Callable[[], None]) -> None:
        self.call = call

    def fire(self) -> None:
        """End it."""
        self.call()
