"""Several hubs on a leader lease: the world of ``[hubs]`` scenarios.

Theory of operation
-------------------
``MultiHubSimulation`` is the ``Simulation`` (world.py) with N hub
*processes* instead of one hub that is always active.  Each ``HubHost``
runs one core ``Hub`` at a time and plays what ``transport/leadership.py``
and ``transport/server.py`` do around it:

- it starts as a **standby**: a ``Hub`` whose ``redirect`` is set, so every
  hello is answered "standby; the active hub is URL" and closed;
- it **campaigns** every ``hubs.poll`` at the lease store (sim/lease.py, a
  process of its own reached over a link of ``hubs.store_latency``); a
  refusal names the holder, which becomes its redirect;
- when a campaign wins term *t* it **activates**: every connection it had
  is closed (their peers come back and are welcomed) and a new ``Hub`` of
  term *t* serves (its stateless epochs start at ``term_epoch_base(t)``);
- with a TTL lease it sends a keep-alive every ``ttl / 3`` and **steps
  down** (a new standby ``Hub``, every connection closed) when one is
  answered "lost" or none has been answered for ``ttl x (1 - margin)``
  since it was sent (``lease/etcd.py``'s rule); a file lock is held until
  the hub process dies and released at that instant.

Peers (``ClientSession``) are given every hub's URL (``sim://hub-1``, ...)
and move between them as ``transport/client.py``'s ``_pick_url`` does: a
standby's redirect at once, otherwise the next hub of the list.

Faults on hubs (``hub-crash``, ``hub-restart``, ``hub-pause``,
``hub-resume``, ``hub-partition``, ``hub-heal``) and on the store
(``lease-pause``, ``lease-resume``) are methods here; ``sim/hubfaults.py``
schedules them.  A paused hub reads nothing and runs no timer; when it
wakes it first reads what waited in its sockets, then runs its lease and
hub timers: the worst order a real scheduler may pick, in which a deposed
hub still acts on its backlog before it notices the lease is gone.

``self.hub`` (what the single-hub invariants look at) is the ``Hub`` of
the newest active hub process: the alive one that won the highest term and
has not stepped down.  The hub checks proper (one active hub per term, no
older term obeyed, one server per stateless uuid, no request run twice on
one instance) are in ``sim/hubchecks.py``; they are told through
``HubObserver``.
"""

from __future__ import annotations

import fnmatch
import random
from collections.abc import Callable
from typing import IO, Any, Protocol, assert_never, cast

from ..core.effects import CloseConnection, HubEffect, Notice, Refused, Send, StartContainer
from ..core.hub import Hub
from ..core.messages import Welcome
from ..core.session import SessionState
from .clock import Event
from .lease import Grant, LeaseStore
from .links import CLOSE, OPENED, Connection
from .process import Process
from .scenario import HubsSpec, Scenario, hub_names
from .world import FaultLayer, Observer, Simulation

__all__ = ["HubHost", "HubObserver", "MultiHubSimulation"]


class HubObserver(Protocol):
    """What the multi-hub world tells the hub checks (``hubchecks.HubInvariants``)."""

    def activated(self, host: HubHost, term: int) -> None:
        """``host`` became the active hub of ``term``."""

    def hub_message(self, proc: Process, conn: Connection, message: Any) -> None:
        """``proc``'s session has just handled ``message`` from the hub on ``conn``."""

    def resumed(self, proc: Process) -> None:
        """``proc`` runs again after a pause (its timers have run)."""

    def started(self, proc: Process, uuid: str) -> None:
        """``proc`` really started (a new instance of) ``uuid``."""

    def hub_acted(self, host: HubHost, effects: list[HubEffect]) -> None:
        """Active ``host``'s hub machine produced ``effects`` (sends, closes) now."""


class HubHost:
    """One hub process (see module docstring)."""

    __slots__ = (
        "armed", "conns", "cut", "deferred", "episode", "generation", "hub", "incarnation",
        "last_ok", "lease_cut", "mark", "mark_timers", "name", "paused", "role", "term", "url",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.url = f"sim://{name}"
        #: "down", "standby" or "active"
        self.role = "down"
        self.paused = False
        self.incarnation = 0
        #: bumped at every role change: answers to an older campaign are stale
        self.generation = 0
        #: the core machine serving now (None while down)
        self.hub: Hub | None = None
        #: the term this process was last active in (0: never)
        self.term = 0
        #: when the last keep-alive the store answered was sent
        self.last_ok = 0.0
        #: cut from the lease store (its requests and answers are lost)
        self.lease_cut = False
        #: peers cut from it: pid -> "hold" or "hang"
        self.cut: dict[str, str] = {}
        #: events that came due while paused, fired when it wakes
        self.deferred: list[Event] = []
        #: bumped whenever it falls silent or changes role (the checks compare)
        self.episode = 0
        #: the connections its current ``hub`` accepted
        self.conns: dict[Connection, None] = {}
        self.armed: float | None = None
        self.mark = -1
        self.mark_timers: object | None = None

    @property
    def alive(self) -> bool:
        """Return whether the process runs (paused or not)."""
        return self.role != "down"


class MultiHubSimulation(Simulation):
    """A ``Simulation`` with several hub processes on a lease (see module docstring)."""

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
        if scenario.hubs is None:
            raise ValueError("a MultiHubSimulation needs a scenario with a [hubs] table")
        self.hubs_spec: HubsSpec = scenario.hubs
        self.hosts: dict[str, HubHost] = {n: HubHost(n) for n in hub_names(scenario.hubs)}
        self.urls = tuple(h.url for h in self.hosts.values())
        self._by_url = {h.url: h for h in self.hosts.values()}
        self._host_of_hub: dict[Hub, HubHost] = {}
        self._conn_host: dict[Connection, HubHost] = {}
        #: pid -> the index of the next hub to dial (``transport/client.py``'s ``_next_url``)
        self._next_url: dict[str, int] = {}
        self.store = LeaseStore(scenario.hubs.lease, float(scenario.hubs.ttl))
        #: requests that reached the paused store, answered when it wakes
        self._store_backlog: list[Event] = []
        self._store_rng = random.Random(f"{scenario.seed if seed is None else seed}:lease")
        self._hub_serial = 0
        super().__init__(scenario, observe=observe, faults=faults, seed=seed, trace=trace,
                         keep_trace=keep_trace, progress=progress)
        # The term check sees every message a session handles from a hub.
        self.hub_message_seen = self.hub_checks.hub_message

    @property
    def hub_checks(self) -> HubObserver:
        """Return the invariant checker's hub side."""
        return cast(HubObserver, self.invariants)

    # --- hub processes --------------------------------------------------------

    def start_hub(self) -> None:
        """Start every hub process that is down, as a standby campaigning for the lease."""
        for host in self.hosts.values():
            self.boot_host(host)

    def boot_host(self, host: HubHost) -> None:
        """Start ``host`` if it is down: a standby campaigning for the lease."""
        if host.alive:
            return
        host.incarnation += 1
        host.paused = False
        host.lease_cut = False
        host.cut.clear()
        self.trace("hub-up", host.name, str(host.incarnation))
        self._stand_by(host, "started")

    def drop_hub(self) -> None:
        """Crash the active hub process (the single-hub fault ``hub-crash`` without a target)."""
        host = self.active_host()
        if host is not None:
            self.crash_host(host)

    def active_host(self) -> HubHost | None:
        """Return the newest active hub process (the highest term), or None."""
        best: HubHost | None = None
        for host in self.hosts.values():
            if host.role == "active" and (best is None or host.term > best.term):
                best = host
        return best

    def _refresh_active(self) -> None:
        host = self.active_host()
        self.hub = host.hub if host is not None else None
        self.hub_term = host.term if host is not None else 0

    def _new_hub(self, host: HubHost, term: int, redirect: str | None) -> None:
        """Replace ``host``'s hub machine: every connection it had is closed."""
        self._close_all(host)
        self._hub_serial += 1
        hub = Hub(f"{host.name}.{self._hub_serial}", self.timeouts, term=max(term, 1),
                  probes=self.probes, seeded_bugs=frozenset(self.scenario.hub.seeded_bugs))
        hub.redirect = redirect
        if host.hub is not None:
            self._host_of_hub.pop(host.hub, None)
        host.hub = hub
        self._host_of_hub[hub] = host
        host.armed = None
        host.mark = -1
        host.episode += 1
        self.trace("hub-start", host.name, f"{hub.hub_id} {host.role} term {term}")

    def _close_all(self, host: HubHost) -> None:
        hub = host.hub
        for conn in list(host.conns):
            if conn.hub is hub and conn.hub_open:
                conn.hub_open = False
                # Its driver cancels the connection: the peer sees a close.
                conn.down.dead = False
                conn.down.close()
        host.conns.clear()

    def _stand_by(self, host: HubHost, reason: str) -> None:
        host.role = "standby"
        host.generation += 1
        self.note("hub", f"{host.name} is a standby ({reason})")
        self._new_hub(host, host.term, "")
        self._refresh_active()
        self.clock.at(self.clock.now, _LeaseTick(self, host, host.incarnation, host.generation))

    def _activate(self, host: HubHost, term: int, sent: float) -> None:
        host.role = "active"
        host.term = term
        host.last_ok = sent
        self.note("hub", f"{host.name} is the active hub of term {term}")
        self._new_hub(host, term, None)
        self.hub_checks.activated(host, term)
        self._refresh_active()
        if self.store.mode == "ttl":
            spec = self.hubs_spec
            self.clock.at(self.clock.now + float(spec.ttl) / 3,
                          _LeaseTick(self, host, host.incarnation, host.generation))
            self.clock.at(max(self.clock.now, sent + self._step_down_after()),
                          _StepDown(self, host, host.incarnation, host.generation, sent))

    def _step_down_after(self) -> float:
        spec = self.hubs_spec
        return float(spec.ttl) * (1.0 - spec.margin)

    def _lease_expired(self, host: HubHost, now: float) -> bool:
        """Return whether active ``host`` is past its lease by its own clock (the gate).

        ``lease.valid_until`` of the real hub: the send time of the last
        answered keep-alive + ttl x (1 - margin); a file lock never expires
        while its holder lives.  Off under the seeded bug ``no-lease-gate``.
        """
        return (host.role == "active" and self.store.mode == "ttl"
                and now >= host.last_ok + self._step_down_after()
                and "no-lease-gate" not in self.hubs_spec.seeded_bugs)

    # --- the lease driver -------------------------------------------------------

    def lease_tick(self, host: HubHost, inc: int, gen: int, event: Event) -> None:
        """``host``'s lease driver is due: a standby campaigns, an active hub keeps alive."""
        if inc != host.incarnation or gen != host.generation or not host.alive:
            return
        if host.paused:
            host.deferred.append(event)
            return
        now = self.clock.now
        if host.role == "standby":
            self._to_store(host, "campaign", now)
            self.clock.at(now + float(self.hubs_spec.poll),
                          _LeaseTick(self, host, inc, gen))
        elif host.role == "active" and self.store.mode == "ttl":
            self._to_store(host, "keep-alive", now)
            self.clock.at(now + float(self.hubs_spec.ttl) / 3,
                          _LeaseTick(self, host, inc, gen))

    def step_down_check(self, host: HubHost, inc: int, gen: int, since: float,
                        event: Event) -> None:
        """No keep-alive answered since ``since``: ``host`` steps down (unless renewed since)."""
        if inc != host.incarnation or gen != host.generation or host.role != "active":
            return
        if host.paused:
            host.deferred.append(event)
            return
        if host.last_ok > since:
            return  # renewed: a later check is on the clock
        self.trace("lease-lost", host.name, f"term {host.term}")
        self._stand_by(host, f"no keep-alive answered for {self._step_down_after():.3f}s")

    def _to_store(self, host: HubHost, kind: str, sent: float) -> None:
        if host.lease_cut:
            return  # lost on the way (the client times out and tries again)
        delay = self.hubs_spec.store_latency.draw(self._store_rng)
        self.clock.at(self.clock.now + delay,
                      _AtStore(self, host, host.incarnation, host.generation, kind, sent))

    def at_store(self, host: HubHost, inc: int, gen: int, kind: str, sent: float,
                 event: Event) -> None:
        """A hub's request reaches the lease store."""
        if inc != host.incarnation or not host.alive:
            return  # the asker died meanwhile: its socket is gone, and its request
        if self.store.paused:
            self._store_backlog.append(event)
            return
        now = self.clock.now
        if kind == "campaign":
            grant = self.store.campaign(host.name, gen, host.url, now)
            if grant.term:
                self.trace("lease-granted", host.name, f"term {grant.term}")
        else:
            held = self.store.keep_alive(host.name, gen, now)
            grant = Grant(host.term if held else 0, self.store.holder_url)
        if host.lease_cut:
            return
        delay = self.hubs_spec.store_latency.draw(self._store_rng)
        self.clock.at(now + delay, _StoreAnswer(self, host, inc, gen, kind, sent, grant))

    def store_answer(self, host: HubHost, inc: int, gen: int, kind: str, sent: float,
                     grant: Grant, event: Event) -> None:
        """The store's answer reaches ``host``."""
        if inc != host.incarnation or gen != host.generation or not host.alive:
            return
        if host.lease_cut:
            return
        if host.paused:
            host.deferred.append(event)
            return
        if kind == "campaign":
            if host.role != "standby":
                return
            if grant.term:
                self._activate(host, grant.term, sent)
            elif host.hub is not None:
                # The redirect follows the holder (our own URL: a stale record).
                host.hub.redirect = grant.holder_url if grant.holder_url != host.url else ""
        elif host.role == "active":
            if grant.term:
                if sent > host.last_ok:
                    host.last_ok = sent
                    self.clock.at(max(self.clock.now, sent + self._step_down_after()),
                                  _StepDown(self, host, inc, gen, sent))
            else:
                self.trace("lease-lost", host.name, f"term {host.term}")
                self._stand_by(host, "the store says the lease is lost")

    # --- faults (scheduled by hubfaults.HubFaults) ----------------------------------

    def crash_host(self, host: HubHost) -> None:
        """``host``'s process dies: its peers see resets; a file lock is released at once."""
        if not host.alive:
            return
        self.trace("hub-crash", host.name, host.hub.hub_id if host.hub is not None else "")
        self.note("fault", f"hub {host.name} crashes")
        self._close_all(host)
        if host.hub is not None:
            self._host_of_hub.pop(host.hub, None)
        host.hub = None
        host.role = "down"
        host.paused = False
        host.deferred = []
        host.episode += 1
        host.incarnation += 1
        host.armed = None
        self.store.holder_died(host.name)
        self._refresh_active()

    def pause_host(self, host: HubHost) -> None:
        """``host`` stops: it reads nothing, runs no timer, answers nobody."""
        if host.alive and not host.paused:
            self.trace("hub-pause", host.name, "")
            self.note("fault", f"hub {host.name} paused")
            host.paused = True
            host.episode += 1

    def resume_host(self, host: HubHost) -> None:
        """``host`` wakes: it reads its sockets' backlog first, then its timers fire."""
        if not host.alive or not host.paused:
            return
        self.trace("hub-resume", host.name, "")
        self.note("fault", f"hub {host.name} wakes up")
        host.paused = False
        now = self.clock.now
        if self._lease_expired(host, now):
            # transport/server.py's lease gate: checked before any read, so
            # the backlog goes to the standby machine (redirects), unanswered.
            self.trace("lease-lost", host.name, f"term {host.term} (woke past it)")
            self._stand_by(host, "woke past its lease: stepped down before reading")
        # Its backlog is read now, in order, before its timers run.
        for conn in list(host.conns):
            conn.up.release(now)
            conn.up.reschedule()
        deferred, host.deferred = host.deferred, []
        # Connections waiting in its listen queue are sockets too: accepted
        # before its timers run (a deposed hub may welcome a peer in its old
        # term: the peer's term check is what refuses it).
        for event in deferred:
            if isinstance(event, _Arrive):
                self.clock.at(now, event)
        for event in deferred:
            if not isinstance(event, _Arrive):
                self.clock.at(now, event)
        if host.hub is not None:
            host.armed = None
            host.mark = -1
            self._hub_effects(host.hub)

    def cut_host(self, host: HubHost, peers: str | None, mode: str) -> None:
        """Cut ``host`` from the lease store and/or the peers ``peers`` names (None: all)."""
        if not host.alive:
            return
        self.trace("hub-cut", host.name, f"{peers or '*'} {mode}")
        self.note("fault", f"hub {host.name} cut from {peers or 'everything'} ({mode})")
        host.episode += 1
        if peers is None or peers == "lease":
            host.lease_cut = True
        if peers == "lease":
            return
        for proc in self.faults_targets(peers or "*"):
            host.cut[proc.pid] = mode
            conn = proc.conn
            if conn is not None and self._conn_host.get(conn) is host:
                conn.cut(mode)

    def heal_host(self, host: HubHost) -> None:
        """End every cut of ``host``."""
        if not host.lease_cut and not host.cut:
            return
        self.trace("hub-heal", host.name, "")
        self.note("fault", f"hub {host.name} reachable again")
        host.lease_cut = False
        cut, host.cut = host.cut, {}
        for pid in cut:
            proc = self.procs.get(pid)
            conn = proc.conn if proc is not None else None
            if proc is None or conn is None or proc.partition is not None:
                continue
            if self._conn_host.get(conn) is not host:
                continue
            conn.heal(self.clock.now + proc.link.draw())

    def pause_store(self) -> None:
        """The lease store stops answering (requests wait in its buffers)."""
        if not self.store.paused:
            self.trace("lease-pause", "lease", "")
            self.note("fault", "the lease store is paused")
            self.store.paused = True

    def resume_store(self) -> None:
        """The lease store runs again and answers what waited, in order."""
        if not self.store.paused:
            return
        self.trace("lease-resume", "lease", "")
        self.note("fault", "the lease store runs again")
        self.store.paused = False
        backlog, self._store_backlog = self._store_backlog, []
        for event in backlog:
            self.clock.at(self.clock.now, event)

    def faults_targets(self, pattern: str) -> list[Process]:
        """Return the peer processes ``pattern`` (names, globs, comma list) names."""
        parts = pattern.split(",")
        return [p for n, p in self.procs.items()
                if any(fnmatch.fnmatchcase(n, part) for part in parts)]

    def end_fault_phase(self) -> None:
        """Faults stop: the store and every hub run, reachable; crashed hubs come back."""
        if not self.in_liveness:
            self.resume_store()
            for host in self.hosts.values():
                self.heal_host(host)
                self.resume_host(host)
            self.start_hub()
        super().end_fault_phase()

    # --- connections -------------------------------------------------------------

    def _open(self, proc: Process, url: str | None = None) -> None:
        # transport/client.py's _pick_url: a redirect, else the next hub of the list.
        urls = self.urls
        nxt = self._next_url.get(proc.pid, 0)
        if url is not None and url in self._by_url:
            self._next_url[proc.pid] = urls.index(url) + 1
        else:
            url = urls[nxt % len(urls)]
            self._next_url[proc.pid] = nxt + 1
        super()._open(proc, url)
        conn = proc.conn
        assert conn is not None
        host = self._by_url[url]
        self._conn_host[conn] = host
        # What it sends goes to the hub process it dialled, not to ``self.hub``.
        conn.up.wake = _DeliverToHost(self, conn, host)
        self.trace("dial", proc.pid, f"conn{conn.cid} {host.name}")

    def start_process(self, proc: Process) -> None:
        """Start ``proc``; a new process dials the first hub of its list first."""
        if not proc.alive:
            self._next_url[proc.pid] = 0
        super().start_process(proc)
        if proc.load is not None:
            proc.load.unique_payloads = True

    def start_done(self, proc: Process, inc: int, eff: StartContainer) -> None:
        """A container start finished in ``proc``; a new instance is told to the checks."""
        before = eff.uuid in proc.running
        super().start_done(proc, inc, eff)
        if not before and eff.uuid in proc.running:
            self.hub_checks.started(proc, eff.uuid)

    def arrive(self, conn: Connection, proc: Process) -> None:
        """``proc``'s connection attempt reaches the hub process it dialled (or fails to)."""
        if proc.conn is not conn or not proc.alive:
            return
        host = self._conn_host[conn]
        timeout = float(self.scenario.links.connect_timeout)
        if proc.partition is not None or proc.pid in host.cut:
            self.clock.at(self.clock.now + timeout, _Fail(self, conn, proc, "timed out"))
            return
        hub = host.hub
        if hub is None:
            self.clock.at(self.clock.now + proc.link.draw(), _Fail(self, conn, proc, "refused"))
            return
        if host.paused:
            # The kernel accepts; the handshake waits until the hub wakes.
            host.deferred.append(_Arrive(self, conn, proc))
            return
        conn.hub = hub
        conn.hub_open = True
        conn.last_arrival = self.clock.now
        host.conns[conn] = None
        self.trace("accept", host.name, f"{proc.pid}:conn{conn.cid}")
        hub.connection_made(conn, self.clock.now)
        self._hub_effects(hub)
        conn.down.push(OPENED)

    def deliver_to_host(self, conn: Connection, host: HubHost) -> None:
        """Deliver what is ready from a process to the hub process ``host`` it dialled."""
        if host.paused:
            # Read when it wakes (resume_host puts the wake-up back on the clock).
            conn.up.scheduled = False
            return
        hub = host.hub
        self.deliver_to_hub(conn, hub, hub.hub_id if hub is not None else "")

    def _hub_effects(self, hub: Hub, closed: list[Connection] | None = None) -> None:
        """Perform ``hub``'s effects and wake its process at the hub's next deadline."""
        effects: list[HubEffect] = hub.effects()
        for eff in effects:
            match eff:
                case Send():
                    conn = cast(Connection, eff.conn)
                    if conn.hub_open and not conn.down.closed:
                        conn.down.push(eff.message)
                case CloseConnection():
                    conn = cast(Connection, eff.conn)
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
                    pass  # the simulated hubs run without authentication: nothing is refused
                case _:
                    assert_never(eff)
        host = self._host_of_hub.get(hub)
        if effects and host is not None and host.role == "active":
            self.hub_checks.hub_acted(host, effects)
        if host is None or host.hub is not hub or host.paused:
            return
        timers = hub.timers
        armings = timers.armings
        if host.armed is not None and armings == host.mark and timers is host.mark_timers:
            return
        host.mark = armings
        host.mark_timers = timers
        d = timers.next_deadline()
        if d is not None and (host.armed is None or d < host.armed):
            host.armed = d
            # (A deadline that passed while the hub was paused is due now.)
            self.clock.at(max(d, self.clock.now), _HostWake(self, host, hub, d))

    def hub_wake(self, hub: Hub, d: float) -> None:
        """``hub``'s timers are due (``d``: the deadline this wake-up was armed for)."""
        host = self._host_of_hub.get(hub)
        if host is None or host.hub is not hub or host.armed != d:
            return
        if host.paused:
            host.deferred.append(_HostWake(self, host, hub, d))
            return
        host.armed = None
        self.record.pending.append((self.clock.now, "timer", host.name, ""))
        hub.handle_timers(self.clock.now)
        self._hub_effects(hub)

    # --- views for the checks ------------------------------------------------------

    def converged_hubs(self) -> list[str]:
        """Return why the hubs have not converged (empty: one active hub serving every peer)."""
        why: list[str] = []
        active = [h for h in self.hosts.values() if h.role == "active"]
        if len(active) != 1:
            why.append(f"{len(active)} hubs believe they are active")
            return why
        hub = active[0].hub
        for proc in self.live_processes():
            conn = proc.conn
            if proc.session is not None and proc.session.state is SessionState.READY and \
                    (conn is None or conn.hub is not hub):
                why.append(f"{proc.pid} is connected to a hub other than the active one")
                break
        return why

    def serves_conn(self, conn: Connection) -> bool:
        """Return whether the hub machine that accepted ``conn`` still runs (paused or not)."""
        host = self._conn_host.get(conn)
        return host is not None and host.alive and conn.hub is host.hub

    def host_of(self, conn: Connection) -> HubHost | None:
        """Return the hub process ``conn`` dialled."""
        return self._conn_host.get(conn)

    def welcome_term(self, message: Any) -> int | None:
        """Return the term of a real ``Welcome`` (None for anything else or a redirect)."""
        if type(message) is Welcome and message.redirect is None:
            return message.term
        return None


# --- events -------------------------------------------------------------------------


class _LeaseTick(Event):
    """A hub's lease driver is due (campaign or keep-alive)."""

    __slots__ = ("gen", "host", "inc", "world")

    def __init__(self, world: MultiHubSimulation, host: HubHost, inc: int, gen: int) -> None:
        self.world = world
        self.host = host
        self.inc = inc
        self.gen = gen

    def fire(self) -> None:
        """Hand it to the world."""
        self.world.lease_tick(self.host, self.inc, self.gen, self)


class _StepDown(Event):
    """An active hub's deadline for an answered keep-alive."""

    __slots__ = ("gen", "host", "inc", "since", "world")

    def __init__(self, world: MultiHubSimulation, host: HubHost, inc: int, gen: int,
                 since: float) -> None:
        self.world = world
        self.host = host
        self.inc = inc
        self.gen = gen
        self.since = since

    def fire(self) -> None:
        """Hand it to the world."""
        self.world.step_down_check(self.host, self.inc, self.gen, self.since, self)


class _AtStore(Event):
    """A hub's request reaches the lease store."""

    __slots__ = ("gen", "host", "inc", "kind", "sent", "world")

    def __init__(self, world: MultiHubSimulation, host: HubHost, inc: int, gen: int, kind: str,
                 sent: float) -> None:
        self.world = world
        self.host = host
        self.inc = inc
        self.gen = gen
        self.kind = kind
        self.sent = sent

    def fire(self) -> None:
        """Hand it to the world."""
        self.world.at_store(self.host, self.inc, self.gen, self.kind, self.sent, self)


class _StoreAnswer(Event):
    """The lease store's answer reaches a hub."""

    __slots__ = ("gen", "grant", "host", "inc", "kind", "sent", "world")

    def __init__(self, world: MultiHubSimulation, host: HubHost, inc: int, gen: int, kind: str,
                 sent: float, grant: Grant) -> None:
        self.world = world
        self.host = host
        self.inc = inc
        self.gen = gen
        self.kind = kind
        self.sent = sent
        self.grant = grant

    def fire(self) -> None:
        """Hand it to the world."""
        self.world.store_answer(self.host, self.inc, self.gen, self.kind, self.sent,
                                self.grant, self)


class _HostWake(Event):
    """A hub process's hub timers are due."""

    __slots__ = ("deadline", "host", "hub", "world")

    def __init__(self, world: MultiHubSimulation, host: HubHost, hub: Hub, deadline: float
                 ) -> None:
        self.world = world
        self.host = host
        self.hub = hub
        self.deadline = deadline

    def fire(self) -> None:
        """Hand it to the world."""
        self.world.hub_wake(self.hub, self.deadline)


class _DeliverToHost(Event):
    """Messages from a process are ready at the hub process it dialled."""

    __slots__ = ("conn", "host", "world")

    def __init__(self, world: MultiHubSimulation, conn: Connection, host: HubHost) -> None:
        self.world = world
        self.conn = conn
        self.host = host

    def fire(self) -> None:
        """Hand it to the world."""
        self.world.deliver_to_host(self.conn, self.host)


class _Arrive(Event):
    """A connection attempt waiting in a paused hub's listen queue is handled."""

    __slots__ = ("conn", "proc", "world")

    def __init__(self, world: MultiHubSimulation, conn: Connection, proc: Process) -> None:
        self.world = world
        self.conn = conn
        self.proc = proc

    def fire(self) -> None:
        """Hand it to the world."""
        self.world.arrive(self.conn, self.proc)


class _Fail(Event):
    """A connection attempt to a hub process fails."""

    __slots__ = ("conn", "proc", "why", "world")

    def __init__(self, world: MultiHubSimulation, conn: Connection, proc: Process, why: str
                 ) -> None:
        self.world = world
        self.conn = conn
        self.proc = proc
        self.why = why

    def fire(self) -> None:
        """Hand it to the world."""
        self.world.connect_failed(self.conn, self.proc, self.why)
