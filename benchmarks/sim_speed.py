"""Simulator speed: core events per second, and idle clusters over long virtual times.

Usage: python -m benchmarks.sim_speed [--quick]

Prints, for each case, the virtual time, wall time, core events and events
per second (all invariant checks on, at the scenarios' default interval),
next to the issue's targets:

- at least 200,000 core events per second per process;
- 100 agents for one virtual hour in at most 5 s wall;
- 1,000 agents for 10 virtual minutes in at most 10 s wall;
- timeouts cost O(expired), not O(agents): the wall time per event stays flat
  from 100 to 1,000 agents (the "per event" column).

A *core event* is one input fed to a core machine or one driver callback:
a message delivered, a timer firing, a container started or a request run
(one line of the trace).
"""

from __future__ import annotations

import sys
import time

import attrs

from hulytrio.sim.report import run_scenario
from hulytrio.sim.scenario import (
    AgentSpec,
    CheckSpec,
    ClientSpec,
    Scenario,
    Seconds,
    Span,
    StatelessSpec,
    load_scenario,
)


def idle(agents: int, seconds: float) -> Scenario:
    """``agents`` agent processes (one stateless uuid among them) and one client, pinging."""
    return Scenario(
        name=f"idle-{agents}", duration=Seconds(seconds), liveness=Seconds(10),
        agents=(AgentSpec("agent", ("echo", "db"), count=agents,
                          stateless=(StatelessSpec("db-main", "db"),)),),
        clients=(ClientSpec("client", "echo", request_interval=Span(1.0, 1.0)),),
        checks=CheckSpec(interval=Seconds(1.0), registry_every=10),
    )


def busy(seconds: float) -> Scenario:
    """The churn scenario (faults, load, failovers) for ``seconds`` of virtual time."""
    sc = load_scenario("scenarios/churn.toml")
    return attrs.evolve(sc, duration=Seconds(seconds))


def measure(label: str, scenario: Scenario, target: str) -> tuple[float, float]:
    start = time.perf_counter()
    result, _ = run_scenario(scenario)
    wall = time.perf_counter() - start
    rate = result.events / wall
    per_event = wall / result.events * 1e6
    status = "ok" if result.ok else "INVARIANTS BROKEN"
    print(f"{label:<34} {result.virtual:8.0f}s virtual {wall:7.2f}s wall "
          f"{result.events:10,d} events {rate:10,.0f}/s {per_event:6.2f}us/event  "
          f"target: {target}  [{status}]", flush=True)
    return wall, rate


def main() -> int:
    quick = "--quick" in sys.argv
    scale = 0.1 if quick else 1.0
    print("simulator speed (invariant checks on)")
    measure("churn (faults, load, failover)", busy(120 * scale), ">= 200,000 events/s")
    measure("100 agents, 1 virtual hour", idle(100, 3600 * scale), "<= 5 s wall")
    measure("1,000 agents, 10 virtual minutes", idle(1000, 600 * scale), "<= 10 s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
