"""The invariants of several hubs on a lease (``[hubs]`` scenarios).

``HubInvariants`` is the single-hub checker (invariants.py) plus four
checks of issue 14, each run at the event that could break it and again at
every periodic check where a state can break it:

- ``one-active-per-term``: no two hub processes are ever active in the same
  term (checked at every activation, against every activation before);
- ``old-term-refused``: a peer never acts on a message of a hub whose term
  is older than a term it has already been welcomed in: a ``Welcome`` of an
  older term leaves the session not ready, and nothing else from such a hub
  is handled by a ready session (checked at every message a peer handles);
- ``single-serving``: at every instant at most one agent process serves
  each stateless uuid.  Serving is the ground truth: the process is alive,
  not paused, runs the uuid and has not been told to stand by or fence
  itself (``SetServing(False)``).  Checked when an agent is switched to
  serving, when it runs a request on the uuid, when a paused agent wakes
  (after its timers ran), and at every periodic check.  No grace: the
  agent's self-fencing (its fence lease, shorter than the hub's alive
  timeout) is what must keep a cut-off owner from serving beside its
  successor;
- ``at-most-once``: no request is run twice on one container instance.  A
  request is named by its payload (the workload writes ``peer#incarnation:n`` in
  ``[hubs]`` runs); an instance is (process, incarnation, uuid, how many
  times that process has started it);
- ``acts-within-lease``: an active hub machine sends or closes nothing
  once the store may have given its lease to another (a TTL lease: the
  store's expiry of its grant has passed, or someone else holds it).  This
  is the premise of the recovery window (docs/high-availability.md, "A new
  hub and stateless owners"): a pong sent past it renews an agent's fence
  lease past the new hub's first session.  Checked at every batch of
  effects of an active hub; a file lock cannot expire, so not checked there.
"""

from __future__ import annotations

from typing import Any

from ..core.effects import CloseConnection, HubEffect, RunRequest, Send, SetServing
from ..core.hub import Hub
from ..core.session import SessionState
from .hubs import HubHost, MultiHubSimulation
from .invariants import Invariants
from .links import Connection
from .process import Process
from .world import Simulation

__all__ = ["HUB_INVARIANTS", "HubInvariants"]

HUB_INVARIANTS = ("one-active-per-term", "old-term-refused", "single-serving", "at-most-once",
                  "acts-within-lease")


class HubInvariants(Invariants):
    """The invariant checker of a multi-hub world (see module docstring)."""

    def __init__(self, sim: Simulation) -> None:
        super().__init__(sim)
        assert isinstance(sim, MultiHubSimulation)
        self.world = sim
        for name in HUB_INVARIANTS:
            self.checked[name] = 0
        #: term -> the hub process active in it
        self._term_holder: dict[int, str] = {}
        #: (pid, incarnation) -> the newest term that process's session was welcomed in
        self._seen_term: dict[tuple[str, int], int] = {}
        #: (pid, incarnation, uuid) -> how many times that process started uuid
        self._instance: dict[tuple[str, int, str], int] = {}
        #: (instance..., payload) of every request run
        self._ran: dict[tuple[str, int, str, int, bytes], float] = {}
        #: host episode when a process fell silent (timely-detection skips a hub that
        #: was paused or cut meanwhile: it could not detect anything)
        self._silenced_episodes: dict[str, tuple[int, ...]] = {}
        #: processes that fell silent while a hub was paused (see ``detect``)
        self._paused_at_silence: set[str] = set()

    # --- one-active-per-term ------------------------------------------------------

    def activated(self, host: HubHost, term: int) -> None:
        """``host`` became the active hub of ``term``."""
        self.checked["one-active-per-term"] += 1
        other = self._term_holder.get(term)
        if other is not None and other != host.name:
            self.violate("one-active-per-term",
                         f"{host.name} is active in term {term}, which {other} held")
        self._term_holder[term] = host.name
        for h in self.world.hosts.values():
            if h is not host and h.role == "active" and h.term == term:
                self.violate("one-active-per-term",
                             f"{host.name} and {h.name} are both active in term {term}")

    # --- acts-within-lease ----------------------------------------------------------

    def hub_acted(self, host: HubHost, effects: list[HubEffect]) -> None:
        """Active ``host``'s hub machine produced ``effects`` now (see module docstring)."""
        store = self.world.store
        if store.mode != "ttl":
            return
        self.checked["acts-within-lease"] += 1
        now = self.sim.now
        if store.holder == (host.name, host.generation) and now < store.expires:
            return
        acts = [e for e in effects if type(e) is Send or type(e) is CloseConnection]
        if not acts:
            return
        what = type(acts[0].message).__name__ if type(acts[0]) is Send else "a close"
        if store.holder == (host.name, host.generation):
            where = f"it expired there at {store.expires:.3f}s"
        else:
            where = (f"held by {store.holder[0]} in term {store.term} now"
                     if store.holder is not None else "free now")
        self.violate("acts-within-lease",
                     f"{host.name}, active in term {host.term}, sends {what} (and "
                     f"{len(acts) - 1} more) past its lease at the store ({where})")

    # --- old-term-refused -----------------------------------------------------------

    def hub_message(self, proc: Process, conn: Connection, message: Any) -> None:
        """``proc``'s session handled ``message`` from the hub on ``conn``."""
        session = proc.session
        if session is None:
            return
        self.checked["old-term-refused"] += 1
        key = (proc.pid, proc.incarnation)
        seen = self._seen_term.get(key, 0)
        hub = conn.hub
        term = getattr(hub, "term", 0)
        welcome = self.world.welcome_term(message)
        ready = session.state is SessionState.READY and proc.conn is conn
        if welcome is not None:
            if ready and welcome < seen:
                self.violate("old-term-refused",
                             f"{proc.pid} accepted a Welcome of term {welcome} after term "
                             f"{seen}")
            elif ready:
                self._seen_term[key] = max(seen, welcome)
            return
        if ready and term < seen:
            self.violate("old-term-refused",
                         f"{proc.pid} handled {type(message).__name__} from a hub of term "
                         f"{term} after being welcomed in term {seen}")

    # --- single-serving ---------------------------------------------------------------

    def _servers(self, uuid: str) -> list[str]:
        # Welcomed (READY) by a hub machine that still exists (alive, maybe
        # paused): an agent no live hub has welcomed can be handed no
        # request, and the welcome's rebuild re-registers it, which fences
        # its offers until the hub answers (docs/simulator.md).
        return [p.pid for p in self.sim.procs.values()
                if p.is_agent and p.alive and not p.paused and uuid in p.running
                and p.serving.get(uuid, True) and p.session is not None
                and p.session.state is SessionState.READY
                and p.conn is not None and self.world.serves_conn(p.conn)]

    def _single(self, uuid: str, servers: list[str], when: str) -> None:
        self.checked["single-serving"] += 1
        if len(servers) > 1:
            self.violate("single-serving",
                         f"stateless {uuid} is served by {', '.join(servers)} at once ({when})")

    def set_serving(self, proc: Process, eff: SetServing) -> None:
        """``proc`` switches ``eff.uuid`` to serving or standby (before the driver applies it)."""
        super().set_serving(proc, eff)
        if eff.serving and eff.uuid in proc.running and proc.alive and not proc.paused:
            others = [pid for pid in self._servers(eff.uuid) if pid != proc.pid]
            self._single(eff.uuid, [proc.pid, *others], f"{proc.pid} switched to serving")

    def resumed(self, proc: Process) -> None:
        """``proc`` woke up from a pause (its timers have run)."""
        if not proc.is_agent:
            return
        for uuid in self.offering:
            if proc.pid in self._servers(uuid):
                self._single(uuid, self._servers(uuid), f"{proc.pid} woke up")

    # --- at-most-once --------------------------------------------------------------------

    def started(self, proc: Process, uuid: str) -> None:
        """``proc`` really started (a new instance of) ``uuid``."""
        key = (proc.pid, proc.incarnation, uuid)
        self._instance[key] = self._instance.get(key, 0) + 1

    def run_request(self, proc: Process, eff: RunRequest) -> None:
        """The core asks ``proc``'s driver to run a request."""
        super().run_request(proc, eff)
        uuid = eff.uuid
        if uuid in self.offering:
            self._single(uuid, self._servers(uuid), f"{proc.pid} runs a request")
        if eff.payload == b"x":
            return  # not named (a process without the [hubs] workload)
        self.checked["at-most-once"] += 1
        inst = self._instance.get((proc.pid, proc.incarnation, uuid), 0)
        key = (proc.pid, proc.incarnation, uuid, inst, eff.payload)
        first = self._ran.get(key)
        if first is not None:
            self.violate("at-most-once",
                         f"{proc.pid} runs request {eff.payload.decode(errors='replace')} on "
                         f"{uuid} again (first run at {first:.3f}s, same instance)")
            return
        self._ran[key] = self.sim.now

    # --- periodic and liveness ---------------------------------------------------------

    def periodic(self) -> None:
        """Run the state invariants, and ``single-serving`` for every stateless uuid."""
        super().periodic()
        for uuid in self.offering:
            self._single(uuid, self._servers(uuid), "periodic check")

    def _deep(self, hub: Hub) -> None:
        """The deep checks; ``orphan-deadline`` waits while the active hub process is paused.

        A frozen process runs no timer: its orphans outlive the unused
        timeout by the pause, and it removes them the moment it wakes
        (its timers run then), unless it steps down first.
        """
        host = self.world.active_host()
        if host is None or not host.paused:
            super()._deep(hub)
            return
        self.checked["registry-sound"] += 1
        problems = hub.registry.check()
        if problems:
            self.violate("registry-sound", "; ".join(problems[:5]))

    def silenced(self, proc: Process) -> None:
        """``proc`` fell silent; remember the hubs' episodes (see ``detect``)."""
        hosts = self.world.hosts.values()
        self._silenced_episodes[proc.pid] = tuple(h.episode for h in hosts)
        if any(h.paused for h in hosts):
            self._paused_at_silence.add(proc.pid)
        else:
            self._paused_at_silence.discard(proc.pid)
        super().silenced(proc)

    def detect(self, proc: Process, episode: int, hub: Any, bound: float) -> None:
        """Check ``timely-detection`` unless a hub paused, was cut or changed role meanwhile.

        A hub paused when ``proc`` fell silent counts too (its pause began
        before, so its episode did not move): a paused hub detects nothing.
        """
        hosts = self.world.hosts.values()
        now = tuple(h.episode for h in hosts)
        if self._silenced_episodes.get(proc.pid) != now:
            return
        if proc.pid in self._paused_at_silence or any(h.paused for h in hosts):
            return
        super().detect(proc, episode, hub, bound)

    def converged(self) -> bool:
        """Return whether one hub is active and serves every peer, and the rest converged."""
        why = self.world.converged_hubs()
        if why:
            self.unconverged = why
            return False
        return super().converged()

    def summary_counts(self) -> dict[str, Any]:
        """Return how often each invariant, the hub checks included, was checked and broken."""
        counts = super().summary_counts()
        broken: dict[str, int] = {}
        for v in self.violations:
            broken[v.name] = broken.get(v.name, 0) + 1
        for name in HUB_INVARIANTS:
            counts[name] = (self.checked[name], broken.get(name, 0))
        return counts
