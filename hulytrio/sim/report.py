"""The outcome of a run: verdict, expectations and the readable summary."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO, Any

import attrs

from . import world
from .faults import Faults
from .hubchecks import HubInvariants
from .hubfaults import HubFaults
from .hubs import MultiHubSimulation
from .invariants import Invariants, Violation
from .scenario import Scenario
from .world import Simulation

__all__ = ["RunResult", "run_scenario", "simulation", "summarize"]


def simulation(
    scenario: Scenario,
    seed: int | None = None,
    *,
    trace: IO[str] | None = None,
    keep_trace: bool = False,
    progress: Callable[[float, float], None] | None = None,
) -> Simulation:
    """Return a world for ``scenario`` with ``seed`` (None: the scenario's), not yet run.

    This is where the layers are wired: the world drives the core machines
    on its clock, the invariant checker (``Invariants``) observes it, the
    fault layer (``Faults``) breaks it on schedule and tracks the failovers,
    and each process's workload is made by the world from its client spec.
    """
    if scenario.hubs is not None:
        # Several hubs on a lease: the multi-hub world, its checks and faults
        # (sim/hubs.py, hubchecks.py, hubfaults.py).
        return MultiHubSimulation(scenario, observe=HubInvariants, faults=HubFaults, seed=seed,
                                  trace=trace, keep_trace=keep_trace, progress=progress)
    return Simulation(scenario, observe=Invariants, faults=Faults, seed=seed, trace=trace,
                      keep_trace=keep_trace, progress=progress)


@attrs.frozen
class RunResult:
    """What one run of one seed showed; picklable, so campaigns can ship it back."""

    scenario: str
    seed: int
    ok: bool
    violations: tuple[Violation, ...]
    #: broken invariants the scenario expects (seeded-bug scenarios)
    expected_violations: tuple[Violation, ...]
    unmet: tuple[str, ...]
    trace_hash: str
    events: int
    wall: float
    virtual: float
    probes: dict[str, int]
    failovers: tuple[tuple[str, str, float, float | None], ...]
    requests: dict[str, Any]
    converged_at: float | None
    context: tuple[str, ...]
    summary: str


def _expectations(sim: Simulation) -> list[str]:
    sc = sim.scenario
    ex = sc.expect
    unmet: list[str] = []
    if ex.failover_within is not None:
        unmet.extend(sim.faults.slow_failovers(ex.failover_within))
    stats = sim.invariants.requests
    lost = stats.pending - sim.waiting_requests()
    if ex.no_lost_requests and lost > 0:
        unmet.append(f"no_lost_requests: {lost} requests never ended")
    if ex.requests_succeed and stats.failed:
        unmet.append(f"requests_succeed: failures {dict(sorted(stats.failed.items()))}")
    if ex.requests_within is not None and stats.latencies:
        slowest = max(stats.latencies)
        if slowest > ex.requests_within:
            unmet.append(f"requests_within: the slowest request took {slowest:.3f}s "
                         f"(> {ex.requests_within}s)")
    for probe in ex.required_probes:
        if probe not in sim.probes.counts:
            unmet.append(f"required_probes: {probe!r} was never reached")
    broken = {v.name for v in sim.invariants.violations}
    for name in ex.broken_invariants:
        if name not in broken:
            unmet.append(f"broken_invariants: {name!r} was expected to break and held")
    return unmet


def run_scenario(
    scenario: Scenario,
    seed: int | None = None,
    *,
    trace: IO[str] | None = None,
    keep_trace: bool = False,
    progress: Callable[[float, float], None] | None = None,
) -> tuple[RunResult, Simulation]:
    """Run ``scenario`` with ``seed`` (None: the scenario's); returns the result and the world."""
    sim = simulation(scenario, seed, trace=trace, keep_trace=keep_trace, progress=progress)
    start = time.perf_counter()
    sim.run()
    wall = time.perf_counter() - start
    expected = set(scenario.expect.broken_invariants)
    violations = tuple(v for v in sim.invariants.violations if v.name not in expected)
    expected_v = tuple(v for v in sim.invariants.violations if v.name in expected)
    unmet = tuple(_expectations(sim))
    stats = sim.invariants.requests
    lat = sorted(stats.latencies)
    requests = {
        "issued": stats.issued, "ok": stats.ok, "failed_injected": stats.failed_injected,
        "failed_after_release": stats.failed_after_release,
        "failed": dict(sorted(stats.failed.items())), "pending": stats.pending,
        "lost_with_process": stats.lost_with_process,
        "p50": lat[len(lat) // 2] if lat else None,
        "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None,
        "max": lat[-1] if lat else None,
    }
    result = RunResult(
        scenario=scenario.name, seed=sim.seed, ok=not violations and not unmet,
        violations=violations, expected_violations=expected_v, unmet=unmet,
        trace_hash=sim.trace_hash(), events=sim.events, wall=wall, virtual=sim.now,
        probes=dict(sorted(sim.probes.counts.items())),
        failovers=sim.faults.failover_rows(),
        requests=requests, converged_at=sim.converged_at,
        context=tuple(sim.invariants.context), summary="",
    )
    return attrs.evolve(result, summary=summarize(sim, result)), sim


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.1f}ms"


def build_name() -> str:
    """Return which build of the simulator runs: "compiled" (``make compiled``) or "pure Python"."""
    return "compiled" if world.__file__.endswith((".so", ".pyd")) else "pure Python"


def summarize(sim: Simulation, r: RunResult) -> str:
    """Return the readable summary of a run."""
    sc = sim.scenario
    out: list[str] = []
    agents = sum(1 for p in sim.procs.values() if p.is_agent)
    clients = len(sim.procs) - agents
    out.append(f"scenario {sc.name} (seed {r.seed}): {sc.duration:g}s of faults and load, "
               f"then a liveness phase of at most {sc.liveness:g}s")
    if sc.description:
        out.append(f"  {sc.description}")
    rate = r.events / r.wall if r.wall > 0 else 0.0
    out.append(f"{agents} agent and {clients} client processes; {r.events} core events in "
               f"{r.wall:.2f}s wall ({rate:,.0f}/s, {build_name()}), {r.virtual:.1f}s virtual")
    out.append("")
    out.append("timeline:")
    shown = sim.timeline if len(sim.timeline) <= 60 else sim.timeline[:40] + sim.timeline[-15:]
    for i, e in enumerate(shown):
        if len(sim.timeline) > 60 and i == 40:
            out.append(f"  ... {len(sim.timeline) - 55} more ...")
        out.append(f"  {e.time:10.3f}s  {e.kind:<9} {e.text}")
    out.append("")
    if r.failovers:
        out.append("failovers:")
        for uuid, lost_owner, started, took in r.failovers:
            done = f"served again after {took:.3f}s" if took is not None else "NOT served again"
            out.append(f"  {uuid}: owner {lost_owner} hit at {started:.3f}s, {done}")
    q = r.requests
    failed = sum(q["failed"].values())
    out.append(f"requests: {q['issued']} issued, {q['ok']} ok, {q['failed_injected']} failed "
               f"by design, {q['failed_after_release']} failed after their reference was released, "
               f"{failed} failed otherwise {q['failed'] or ''}, {q['pending']} "
               f"pending, {q['lost_with_process']} died with their process")
    out.append(f"  latency p50 {_ms(q['p50'])}, p99 {_ms(q['p99'])}, max {_ms(q['max'])}")
    out.append("invariants:")
    counts = sim.invariants.summary_counts()
    expected = set(sc.expect.broken_invariants)
    for name, (checked, broken) in counts.items():
        state = "held" if not broken else f"BROKEN {broken}x"
        if name in expected:
            state += " (expected to break)"
        out.append(f"  {name:<22} {state:<26} ({checked} checks)")
    for v in r.violations[:10] + r.expected_violations[:3]:
        out.append(f"  ! {v.time:.3f}s {v.name}: {v.text}")
    if sim.state is not None:
        out.append("state: " + sim.state.checks.tally())
    if r.converged_at is not None:
        out.append(f"liveness: converged at {r.converged_at:.3f}s "
                   f"({r.converged_at - sc.duration:.3f}s after the faults stopped)")
    hits = ", ".join(f"{k} x{n}" for k, n in r.probes.items())
    out.append(f"probes: {hits or 'none'}")
    out.append("expectations: " + ("all met" if not r.unmet else "UNMET"))
    for u in r.unmet:
        out.append(f"  ! {u}")
    out.append(f"trace sha256: {r.trace_hash}")
    out.append("result: " + ("OK" if r.ok else "FAILED"))
    return "\n".join(out)
