"""Faults on hub processes and on the lease store (``[hubs]`` scenarios).

``HubFaults`` is the fault layer (faults.py) of a ``MultiHubSimulation``:
the peers' faults are the base class's; the hubs' are applied through the
world's hub methods (sim/hubs.py).  Targets: a hub name (``hub-2``), a
comma list, ``active`` (the default): whichever hub process is the
newest active one at that instant, or ``down``: every hub process that is
down then (``hub-restart`` them).

- ``hub-crash``: the hub process dies: its peers see resets; a file lock
  is released at once, a TTL lease expires after the TTL;
- ``hub-restart``: crash if alive, then start as a standby;
- ``hub-pause`` (``duration``) / ``hub-resume``: the process stops (SIGSTOP,
  a VM freeze) and keeps what it believes while its lease runs out; on
  waking it reads its backlog first;
- ``hub-partition`` (``peers``, ``mode``, ``duration``) / ``hub-heal``: cut
  the hub from the lease store (``peers = "lease"``), from the peers a
  pattern names, or from everything (no ``peers``);
- ``lease-pause`` (``duration``) / ``lease-resume``: the lease store stops
  answering / runs again.

Hub faults open no failover records (``failover_within`` measures the
peers' faults): after a hub fault the same agent usually keeps its uuid.
"""

from __future__ import annotations

from .clock import Event
from .faults import Faults
from .hubs import HubHost, MultiHubSimulation
from .process import Process
from .scenario import FaultSpec
from .world import Simulation

__all__ = ["HubFaults"]

_HUB_ACTIONS = ("hub-crash", "hub-restart", "hub-pause", "hub-resume", "hub-partition",
                "hub-heal", "lease-pause", "lease-resume")


class HubFaults(Faults):
    """The fault layer of a multi-hub world (see module docstring)."""

    def __init__(self, sim: Simulation) -> None:
        super().__init__(sim)
        assert isinstance(sim, MultiHubSimulation)
        self.world = sim

    def hub_targets(self, pattern: str) -> list[HubHost]:
        """Return the hub processes ``pattern`` names (``active``: the newest active one now;
        ``down``: every one that is down)."""
        world = self.world
        out: list[HubHost] = []
        for part in (pattern or "active").split(","):
            if part == "down":
                found = [h for h in world.hosts.values() if not h.alive]
            else:
                one = world.active_host() if part == "active" else world.hosts.get(part)
                found = [one] if one is not None else []
            for host in found:
                if host not in out:
                    out.append(host)
        return out

    def inject(self, fault: FaultSpec) -> None:
        """Apply ``fault`` now (skipped in the liveness phase)."""
        world = self.world
        if world.in_liveness:
            return
        action = fault.action
        if action not in _HUB_ACTIONS:
            super().inject(fault)
            return
        clock = world.clock
        if action == "lease-pause":
            world.pause_store()
            if fault.duration is not None:
                clock.at(clock.now + fault.duration, _StoreResume(world))
            return
        if action == "lease-resume":
            world.resume_store()
            return
        hosts = self.hub_targets(fault.target)
        if not hosts:
            world.note("fault", f"{action} {fault.target or 'active'}: no such hub now "
                                f"(skipped)")
            return
        for host in hosts:
            if action == "hub-crash":
                world.crash_host(host)
            elif action == "hub-restart":
                world.crash_host(host)
                world.boot_host(host)
            elif action == "hub-pause":
                if host.alive and not host.paused:
                    world.pause_host(host)
                    if fault.duration is not None:
                        clock.at(clock.now + fault.duration,
                                 _HubResume(world, host, host.incarnation))
            elif action == "hub-resume":
                world.resume_host(host)
            elif action == "hub-partition":
                if host.alive:
                    world.cut_host(host, fault.peers, fault.mode)
                    if fault.duration is not None:
                        clock.at(clock.now + fault.duration,
                                 _HubHeal(world, host, host.incarnation))
            elif action == "hub-heal":
                world.heal_host(host)

    def resume(self, proc: Process, inc: int) -> None:
        """A paused ``proc`` runs again; the hub checks look at what it serves then."""
        was = proc.paused and proc.alive and inc == proc.incarnation
        super().resume(proc, inc)
        if was:
            self.world.hub_checks.resumed(proc)


class _HubResume(Event):
    """A hub's pause ends."""

    __slots__ = ("host", "inc", "world")

    def __init__(self, world: MultiHubSimulation, host: HubHost, inc: int) -> None:
        self.world = world
        self.host = host
        self.inc = inc

    def fire(self) -> None:
        """Wake the hub (if it is still the same process)."""
        if self.inc == self.host.incarnation:
            self.world.resume_host(self.host)


class _HubHeal(Event):
    """A hub's cut ends."""

    __slots__ = ("host", "inc", "world")

    def __init__(self, world: MultiHubSimulation, host: HubHost, inc: int) -> None:
        self.world = world
        self.host = host
        self.inc = inc

    def fire(self) -> None:
        """Heal the hub (if it is still the same process)."""
        if self.inc == self.host.incarnation:
            self.world.heal_host(self.host)


class _StoreResume(Event):
    """The lease store's pause ends."""

    __slots__ = ("world",)

    def __init__(self, world: MultiHubSimulation) -> None:
        self.world = world

    def fire(self) -> None:
        """Wake the store."""
        self.world.resume_store()
