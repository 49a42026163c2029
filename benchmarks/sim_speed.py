"""Simulator speed: core events per second, and idle clusters over long virtual times.

Usage: python -m benchmarks.sim_speed [--quick] [--compiled]

``--compiled`` measures the mypyc build in build/compiled (``make compiled``,
see tools/build_compiled.py) instead of the pure-Python working tree; the
first line printed says which build ran.

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

import os
import subprocess
import sys
import time
from pathlib import Path

import attrs

from hulytrio.sim.report import build_name, run_scenario
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

ROOT = Path(__file__).resolve().parent.parent
COMPILED_BUILD = ROOT / "build" / "compiled"


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
    sc = load_scenario(ROOT / "scenarios" / "churn.toml")
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


def run_compiled(args: list[str]) -> int:
    """Run this benchmark again in a process that imports the compiled build first."""
    sys.path.insert(0, str(ROOT / "tools"))
    from build_compiled import STAMP, stale_sources

    if not (COMPILED_BUILD / "hulytrio" / STAMP).is_file():
        print(f"no compiled build in {COMPILED_BUILD}: run `make compiled`", file=sys.stderr)
        return 2

    stale = stale_sources(COMPILED_BUILD)
    if stale:
        print(f"the compiled build is older than {', '.join(stale)}: run `make compiled`",
              file=sys.stderr)
        return 2
    # Started from inside the build, whose package then comes first on the path.
    code = (f"import sys; sys.path.append({str(ROOT)!r}); "
            "from benchmarks.sim_speed import main; sys.exit(main())")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=COMPILED_BUILD,
                          env=env, check=False).returncode


def main() -> int:
    if "--compiled" in sys.argv:
        return run_compiled([a for a in sys.argv[1:] if a != "--compiled"])
    quick = "--quick" in sys.argv
    scale = 0.1 if quick else 1.0
    print(f"simulator speed (invariant checks on), {build_name()}")
    measure("churn (faults, load, failover)", busy(120 * scale), ">= 200,000 events/s")
    measure("100 agents, 1 virtual hour", idle(100, 3600 * scale), "<= 5 s wall")
    measure("1,000 agents, 10 virtual minutes", idle(1000, 600 * scale), "<= 10 s wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
