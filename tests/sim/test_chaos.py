"""Chaos: Hypothesis draws faults, client operations and time steps over the simulator.

A ``hypothesis.stateful`` machine drives one ``Simulation`` step by step:
every rule is a fault, a client operation or a jump of virtual time, applied
at the current virtual time.  At the end the fault phase stops and the
liveness phase must converge with every invariant held.  On failure the
machine writes the run out as a seed-free scenario (every fault and
operation explicit, fixed latencies) that ``hulytrio simulate`` replays; the
last file written is the shrunk, minimal one.  Such files are kept under
``regressions/`` and replayed by ``test_regressions``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from hulytrio.sim.report import run_scenario, simulation
from hulytrio.sim.scenario import (
    FaultSpec,
    OperationSpec,
    Scenario,
    Seconds,
    Span,
    dump_scenario,
    load_scenario,
    parse_scenario,
)

HERE = Path(__file__).resolve().parent
REGRESSIONS = HERE / "regressions"

BASE = """
name = "chaos"
description = "written by tests/sim/test_chaos.py"
duration = "1h"
liveness = "15s"
seed = 0

[links]
latency = "2ms"

[[agents]]
name = "a"
count = 2
kinds = ["kv", "echo"]
stateless = [{ uuid = "s", kind = "kv" }]
start_delay = "20ms"
request_latency = "3ms"

# restarts under a new peer id, as a real process does (the hub sees its
# agent id registered from a second session: "agent superseded")
[[agents]]
name = "f"
kinds = ["kv", "echo"]
stateless = [{ uuid = "s", kind = "kv" }]
start_delay = "20ms"
request_latency = "3ms"
fresh_peer_id = true

[[clients]]
name = "c"
kind = "kv"
uuid = "s"

[[clients]]
name = "w"
kind = "echo"
references = 2

[expect]
no_lost_requests = true
"""

PROCESSES = ("a-1", "a-2", "f", "c", "w")
CLIENTS = ("c", "w")


class ChaosMachine(RuleBasedStateMachine):
    """Faults, operations and time steps over one simulation (see module docstring)."""

    #: hub seeded bugs for the self-test (empty: the real core)
    hub_bugs: ClassVar[tuple[str, ...]] = ()
    #: session seeded bugs for the self-test
    session_bugs: ClassVar[tuple[str, ...]] = ()
    #: where the failing run is written as a scenario
    out_dir: ClassVar[Path | None] = None
    #: the scenario the machine starts from
    base_text: ClassVar[str] = BASE

    def __init__(self) -> None:
        super().__init__()
        base = parse_scenario(self.base_text)
        self.scenario = attrs.evolve(
            base,
            hub=attrs.evolve(base.hub, seeded_bugs=self.hub_bugs),
            clients=tuple(attrs.evolve(c, seeded_bugs=self.session_bugs)
                          for c in base.clients),
        )
        self.sim = simulation(self.scenario)
        self.faults: list[FaultSpec] = []
        self.ops: list[OperationSpec] = []

    def _now(self) -> Seconds:
        return Seconds(self.sim.now)

    @rule(dt=st.sampled_from([0.001, 0.01, 0.1, 0.5, 1.0, 2.0, 3.5, 6.0]))
    def advance(self, dt: float) -> None:
        self.sim.run_until(self.sim.now + dt)

    @rule(action=st.sampled_from(["crash", "restart", "leave", "join", "drop-connection",
                                  "resume", "heal", "container-exit", "terminate"]),
          who=st.sampled_from(PROCESSES))
    def instant_fault(self, action: str, who: str) -> None:
        self._inject(FaultSpec(self._now(), action, who))  # type: ignore[arg-type]

    @rule(action=st.sampled_from(["pause", "partition"]), who=st.sampled_from(PROCESSES),
          duration=st.sampled_from([None, 0.5, 2.0, 4.0, 8.0]),
          mode=st.sampled_from(["hold", "hang"]))
    def lasting_fault(self, action: str, who: str, duration: float | None, mode: str) -> None:
        self._inject(FaultSpec(self._now(), action, who,  # type: ignore[arg-type]
                               None if duration is None else Seconds(duration), mode))  # type: ignore[arg-type]

    @rule(who=st.sampled_from(PROCESSES), latency=st.sampled_from([0.05, 0.3, 1.5]),
          duration=st.sampled_from([1.0, 5.0]))
    def slow_link(self, who: str, latency: float, duration: float) -> None:
        self._inject(FaultSpec(self._now(), "slow-link", who, Seconds(duration),
                               latency=Span(latency, latency)))

    @rule(action=st.sampled_from(["hub-restart", "hub-crash"]))
    def hub_fault(self, action: str) -> None:
        self._inject(FaultSpec(self._now(), action))  # type: ignore[arg-type]

    @rule(client=st.sampled_from(CLIENTS), op=st.sampled_from(["get", "request", "release"]),
          slot=st.integers(0, 1))
    def operation(self, client: str, op: str, slot: int) -> None:
        spec = OperationSpec(self._now(), client, op, slot)  # type: ignore[arg-type]
        self.ops.append(spec)
        self.sim.operate(client, op, slot)

    def _inject(self, fault: FaultSpec) -> None:
        self.faults.append(fault)
        self.sim.faults.inject(fault)

    def written(self) -> Scenario:
        """Return this run as an explicit, replayable scenario."""
        return attrs.evolve(self.scenario, duration=self._now(), faults=tuple(self.faults),
                            operations=tuple(self.ops))

    def teardown(self) -> None:
        written = self.written()
        sim = self.sim
        sim.finish_now()
        stats = sim.invariants.requests
        problems = [f"{v.name} at {v.time:.3f}s: {v.text}" for v in sim.invariants.violations]
        lost = stats.pending - sim.waiting_requests()
        if lost:
            problems.append(f"{lost} requests never ended")
        if problems:
            if self.out_dir is not None:
                self.out_dir.mkdir(parents=True, exist_ok=True)
                (self.out_dir / "chaos-failure.toml").write_text(dump_scenario(written))
            raise AssertionError("; ".join(problems[:3]))


class StatefulChaosMachine(ChaosMachine):
    """The same machine with container state (``[state]``): "kv" containers have state,
    and the state store pauses, slows down and is cut off among the other faults;
    agents also drain (a clean handoff, with its final checkpoint).
    """

    base_text: ClassVar[str] = BASE + """
[state]
kinds = ["kv"]
interval = "500ms"
store_latency = "1ms..4ms"
store_timeout = "500ms"
"""

    @rule(action=st.sampled_from(["store-pause", "store-cut", "store-slow"]),
          duration=st.sampled_from([None, 0.3, 1.0, 3.0]))
    def store_fault(self, action: str, duration: float | None) -> None:
        self._inject(FaultSpec(self._now(), action,  # type: ignore[arg-type]
                               duration=None if duration is None else Seconds(duration),
                               latency=Span(0.2, 0.2) if action == "store-slow" else None))

    @rule(action=st.sampled_from(["store-resume", "store-heal"]))
    def store_back(self, action: str) -> None:
        self._inject(FaultSpec(self._now(), action))  # type: ignore[arg-type]

    @rule(who=st.sampled_from(("a-1", "a-2", "f")), grace=st.sampled_from([0.1, 1.0]))
    def drain(self, who: str, grace: float) -> None:
        self._inject(FaultSpec(self._now(), "drain", who, Seconds(grace)))


def test_chaos_with_container_state_holds(chaos_settings: settings, tmp_path: Path) -> None:
    """Store faults and drains in the mix: the state checks hold too."""
    out = Path(os.environ.get("HULYTRIO_CHAOS_OUT", tmp_path)) / "state"
    machine = type("StatefulChaos", (StatefulChaosMachine,), {"out_dir": out})
    run_state_machine_as_test(machine, settings=chaos_settings)


HUBS = """
[hubs]
count = 2
lease = "ttl"
ttl = "2s"
poll = "50ms"
store_latency = "1ms"
"""

HUB_TARGETS = ("active", "hub-1", "hub-2")


class HubChaosMachine(ChaosMachine):
    """The same machine over two hubs on a TTL lease, with the hubs' and the store's faults.

    The inherited ``hub_fault`` rule crashes or restarts the active hub.
    """

    base_text: ClassVar[str] = BASE + HUBS

    @rule(action=st.sampled_from(["hub-crash", "hub-restart", "hub-resume", "hub-heal"]),
          hub=st.sampled_from(HUB_TARGETS))
    def hub_instant(self, action: str, hub: str) -> None:
        self._inject(FaultSpec(self._now(), action, hub))  # type: ignore[arg-type]

    @rule(hub=st.sampled_from(HUB_TARGETS), duration=st.sampled_from([None, 1.0, 3.0, 6.0]))
    def hub_pause(self, hub: str, duration: float | None) -> None:
        self._inject(FaultSpec(self._now(), "hub-pause", hub,
                               None if duration is None else Seconds(duration)))

    @rule(hub=st.sampled_from(HUB_TARGETS), duration=st.sampled_from([None, 1.0, 3.0, 6.0]),
          peers=st.sampled_from([None, "lease", "a-*", "c,w", "f"]),
          mode=st.sampled_from(["hold", "hang"]))
    def hub_partition(self, hub: str, duration: float | None, peers: str | None,
                      mode: str) -> None:
        self._inject(FaultSpec(self._now(), "hub-partition", hub,
                               None if duration is None else Seconds(duration),
                               mode, peers=peers))  # type: ignore[arg-type]

    @rule(duration=st.sampled_from([None, 1.0, 3.0]), resume=st.booleans())
    def lease_fault(self, duration: float | None, resume: bool) -> None:
        if resume:
            self._inject(FaultSpec(self._now(), "lease-resume"))
        else:
            self._inject(FaultSpec(self._now(), "lease-pause", "",
                                   None if duration is None else Seconds(duration)))


def test_chaos_with_standby_hubs_holds(chaos_settings: settings, tmp_path: Path) -> None:
    """Two hubs on a lease: every invariant, the hub checks included, holds under chaos."""
    out = Path(os.environ.get("HULYTRIO_CHAOS_OUT", tmp_path))
    machine = type("HubChaos", (HubChaosMachine,), {"out_dir": out})
    run_state_machine_as_test(machine, settings=chaos_settings)


def test_chaos_the_core_holds(chaos_settings: settings, tmp_path: Path) -> None:
    out = Path(os.environ.get("HULYTRIO_CHAOS_OUT", tmp_path))
    machine = type("Chaos", (ChaosMachine,), {"out_dir": out})
    run_state_machine_as_test(machine, settings=chaos_settings)


@pytest.mark.parametrize(
    ("hub_bugs", "session_bugs", "invariant"),
    [
        (("stateless-double-owner",), (), "exclusive-serving"),
        pytest.param((), ("skip-resend",), "requests never ended", marks=pytest.mark.skipif(
            os.environ.get("HYPOTHESIS_PROFILE") != "chaos",
            reason="about a minute of shrinking: runs in `make chaos`; "
                   "test_simulator.py catches this bug from a fixed scenario in CI")),
    ],
)
def test_chaos_finds_and_shrinks_a_seeded_bug(
        hub_bugs: tuple[str, ...], session_bugs: tuple[str, ...], invariant: str,
        tmp_path: Path) -> None:
    """Hypothesis must find the seeded bug, and the written scenario must replay it."""
    machine = type("BuggyChaos", (ChaosMachine,), {
        "hub_bugs": hub_bugs, "session_bugs": session_bugs, "out_dir": tmp_path})
    with pytest.raises(AssertionError, match=invariant):
        run_state_machine_as_test(machine, settings=settings(
            max_examples=300, stateful_step_count=30, deadline=None, derandomize=True,
            database=None))
    written = tmp_path / "chaos-failure.toml"
    scenario = load_scenario(written)
    result, _ = run_scenario(scenario)
    assert not result.ok
    text = " ".join([v.name + " " + v.text for v in result.violations] + list(result.unmet))
    assert invariant.split()[0] in text


@pytest.mark.parametrize("path", sorted(REGRESSIONS.glob("*.toml")), ids=lambda p: p.name)
def test_regressions(path: Path) -> None:
    """Kept scenarios replay as they should (seeded-bug ones state what must break)."""
    result, _ = run_scenario(load_scenario(path))
    assert result.ok, result.summary
