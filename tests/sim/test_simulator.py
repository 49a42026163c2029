"""The simulator on the shipped scenarios and on small hand-written ones."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from hulytrio.sim.report import run_scenario
from hulytrio.sim.scenario import Seconds, load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"


def test_failover_standby_takes_over() -> None:
    result, sim = run_scenario(load_scenario(SCENARIOS / "failover.toml"))
    assert result.ok, result.summary
    assert "failover db-main:" in result.summary
    assert result.failovers
    assert all(took is not None and took < 5.0
                                    for _, _, _, took in result.failovers)
    # The one that took over is not the one that crashed.
    done = [f for f in sim.faults.failovers if f.needed]
    assert done[0].by != done[0].failed
    assert result.requests["pending"] == 0
    assert result.requests["ok"] > 1000


@pytest.mark.parametrize("name", ["reconnect", "partition", "churn"])
def test_shipped_scenarios_hold(name: str) -> None:
    result, _ = run_scenario(load_scenario(SCENARIOS / f"{name}.toml"))
    assert result.ok, result.summary


def test_scale_scenario_scaled_down() -> None:
    """The scale scenario's shape, at a size CI can afford (the full one runs from the CLI)."""
    sc = load_scenario(SCENARIOS / "scale.toml")
    agents = tuple(attrs.evolve(a, count=max(2, a.count // 50)) for a in sc.agents)
    clients = tuple(attrs.evolve(c, count=20, references=10) for c in sc.clients)
    faults = tuple(f for f in sc.faults if f.at < 15)
    small = attrs.evolve(sc, agents=agents, clients=clients, faults=faults,
                         duration=Seconds(15), liveness=Seconds(15))
    result, sim = run_scenario(small)
    assert result.ok, result.summary
    assert sim.hub is not None
    assert len(sim.hub.registry) >= 200


def test_same_seed_same_trace_other_seed_other_trace() -> None:
    sc = load_scenario(SCENARIOS / "failover.toml")
    a, _ = run_scenario(sc, 7)
    b, _ = run_scenario(sc, 7)
    c, _ = run_scenario(sc, 8)
    assert a.trace_hash == b.trace_hash
    assert a.trace_hash != c.trace_hash


def test_trace_hash_is_independent_of_pythonhashseed(tmp_path: Path) -> None:
    """Two interpreters with different string hashing give byte-identical traces."""
    hashes = []
    for hashseed in ("1", "12345"):
        out = tmp_path / f"trace{hashseed}.jsonl"
        env = dict(os.environ, PYTHONHASHSEED=hashseed)
        proc = subprocess.run(
            [sys.executable, "-c",
             "import sys; from hulytrio.sim.commands import main, register; import argparse;"
             "p = argparse.ArgumentParser(); s = p.add_subparsers(); register(s);"
             "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))",
             "simulate", str(SCENARIOS / "partition.toml"), "--seed", "3", "--trace", str(out),
             "--no-progress"],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        line = next(x for x in proc.stdout.splitlines() if x.startswith("trace sha256:"))
        hashes.append((line.split()[-1], out.read_bytes()))
    assert hashes[0][0] == hashes[1][0]
    assert hashes[0][1] == hashes[1][1]


def test_adding_a_client_does_not_reshuffle_faults() -> None:
    sc = load_scenario(SCENARIOS / "churn.toml")
    from hulytrio.sim.report import simulation

    more = attrs.evolve(sc, clients=(*sc.clients, attrs.evolve(sc.clients[0], name="extra")))
    assert simulation(sc).faults.schedule == simulation(more).faults.schedule


# --- regressions for core bugs the simulator found ---------------------------------

BASE = """
name = "regression"
duration = "20s"
liveness = "15s"

[[agents]]
name = "a"
count = 2
kinds = ["kv"]
stateless = [{ uuid = "s", kind = "kv" }]

[[clients]]
name = "c"
kind = "kv"
uuid = "s"
request_interval = "100ms"
"""


def test_standby_that_wins_a_restarted_hub_serves() -> None:
    """Found by reconnect.toml: the first agent to re-register with a new hub was a
    local standby; the hub made it the owner but it never served, and requests
    bounced between client and agent forever."""
    text = BASE + """
[[faults]]
at = "3s"
action = "crash"
target = "owner:s"

[[faults]]
at = "8s"
action = "restart"
target = "a-*"

[[faults]]
at = "12s"
action = "hub-restart"
"""
    result, _ = run_scenario(parse_scenario(text))
    assert result.ok, result.summary


def test_stateless_epoch_keeps_growing_after_the_uuid_was_dropped() -> None:
    """Found by failover.toml: when every offer of a stateless uuid went away and one
    came back, its epoch restarted at 0 within the same hub term."""
    text = BASE + """
[[faults]]
at = "3s"
action = "crash"
target = "a-*"

[[faults]]
at = "10s"
action = "restart"
target = "a-*"
"""
    result, sim = run_scenario(parse_scenario(text))
    assert result.ok, result.summary
    assert sim.hub is not None
    record = sim.hub.registry.container("s")
    assert record is not None
    assert record.epoch >= 1


# --- seeded bugs: the simulator must catch them -----------------------------------


def test_seeded_stateless_double_owner_is_caught() -> None:
    sc = load_scenario(SCENARIOS / "failover.toml")
    buggy = attrs.evolve(sc, hub=attrs.evolve(sc.hub, seeded_bugs=("stateless-double-owner",)))
    clean, _ = run_scenario(sc)
    result, _ = run_scenario(buggy)
    assert clean.ok
    assert not result.ok
    assert "exclusive-serving" in {v.name for v in result.violations}, result.summary


SKIP_RESEND = BASE + """
[[faults]]
at = "5s"
action = "partition"
target = "c"
mode = "hang"
duration = "5s"
"""


def test_seeded_skip_resend_is_caught() -> None:
    sc = parse_scenario(SKIP_RESEND)
    clean, _ = run_scenario(sc)
    assert clean.ok, clean.summary
    assert clean.probes.get("session rebuild", 0) >= 1
    clients = tuple(attrs.evolve(c, seeded_bugs=("skip-resend",)) for c in sc.clients)
    result, _ = run_scenario(attrs.evolve(sc, clients=clients))
    assert not result.ok
    names = {v.name for v in result.violations}
    assert "liveness" in names, result.summary
    assert any("requests never ended" in u for u in result.unmet)


def test_campaign_knows_every_core_probe() -> None:
    from hulytrio.sim.campaign import KNOWN_PROBES

    assert {"standby promoted", "session rebuild", "client timed out",
            "release while owner dead"} <= set(KNOWN_PROBES)
    assert list(KNOWN_PROBES) == sorted(KNOWN_PROBES)


def _heap_order(plans: list[tuple[float, float | None]]) -> list[tuple[float, int]]:
    """Run ``plans`` (when, offset of the one child each schedules) on a (time, seq) heap."""
    import heapq

    n = len(plans)
    heap: list[tuple[float, int, int]] = []
    seq = 0
    for i, (t, _) in enumerate(plans):
        seq += 1
        heapq.heappush(heap, (t, seq, i))
    ran: list[tuple[float, int]] = []
    while heap:
        t, _, i = heapq.heappop(heap)
        ran.append((t, i))
        offset = plans[i][1] if i < n else None
        if offset is not None:
            seq += 1
            heapq.heappush(heap, (t + offset, seq, n + i))
    return ran


def _queue_order(plans: list[tuple[float, float | None]]) -> list[tuple[float, int]]:
    """Run ``plans`` on the simulator's clock."""
    from hulytrio.sim.clock import Clock, Event

    clock = Clock()
    n = len(plans)
    ran: list[tuple[float, int]] = []

    class Planned(Event):
        __slots__ = ("i",)

        def __init__(self, i: int) -> None:
            self.i = i

        def fire(self) -> None:
            ran.append((clock.now, self.i))
            offset = plans[self.i][1] if self.i < n else None
            if offset is not None:
                clock.at(clock.now + offset, Planned(n + self.i))

    for i, (t, _) in enumerate(plans):
        clock.at(t, Planned(i))
    clock.run_until(100.0)
    return ran


@pytest.mark.parametrize("seed", range(30))
def test_event_queue_runs_in_heap_order(seed: int) -> None:
    # The queue keeps one list per instant; it must run events exactly as a
    # heap of (time, seq) would, also when an event schedules another at its
    # own instant or before it (a link queue whose items came due while held).
    import random

    rng = random.Random(seed)
    plans = [(rng.choice([10.0, 10.5, 11.0, 12.0]), rng.choice([None, 0.0, -0.3, 0.5, -2.0]))
             for _ in range(40)]
    assert _queue_order(plans) == _heap_order(plans)


def test_a_codec_run_round_trips_every_message_and_still_passes() -> None:
    # CI runs a shipped scenario with every message encoded into a wire frame
    # and decoded again on its way ([links] codec = true).
    sc = load_scenario(SCENARIOS / "failover.toml")
    coded = attrs.evolve(sc, links=attrs.evolve(sc.links, codec=True))
    assert parse_scenario('name = "c"\nduration = "1s"\n[links]\ncodec = true\n').links.codec
    result, sim = run_scenario(coded, 2)
    assert result.ok, result.summary
    assert result.requests["ok"] > 0
    assert not any(f.took is None for f in sim.faults.failovers if f.needed)


def test_the_codec_hands_the_receiver_a_decoded_copy() -> None:
    from hulytrio.core.messages import Query
    from hulytrio.sim.clock import Clock
    from hulytrio.sim.links import Connection, LinkProfile
    from hulytrio.sim.scenario import Span

    sent = Query(7, "kinds")
    for codec in (False, True):
        conn = Connection(1, "p", Clock(), LinkProfile(Span(0.001, 0.001), codec=codec))
        conn.up.push(sent)
        got = conn.up.queue[0][1]
        assert got == sent
        assert (got is not sent) == codec


def test_the_simulator_layers_import_one_way() -> None:
    # Relative imports inside hulytrio/sim/ (type-only ones included) form no circle.
    import ast

    graph: dict[str, set[str]] = {}
    for path in (ROOT / "hulytrio" / "sim").glob("*.py"):
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps.update([node.module] if node.module else [a.name for a in node.names])
        graph[path.stem] = deps

    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        todo = list(graph.get(start, ()))
        while todo:
            n = todo.pop()
            if n not in seen:
                seen.add(n)
                todo.extend(graph.get(n, ()))
        return seen

    assert {"clock", "links", "process", "world", "workload", "invariants"} <= set(graph)
    circles = sorted(m for m in graph if m in reach(m))
    assert circles == [], f"modules on an import circle: {circles}"
