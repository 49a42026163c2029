"""Container state in the simulator: the store model, the checks, the shipped scenario.

The checks must hold for the real policy over many seeds, and each must
break when its seeded bug is switched on (a check that cannot fail proves
nothing).
"""

from __future__ import annotations

import random
from pathlib import Path

import attrs
import pytest

from hulytrio.sim.clock import Clock
from hulytrio.sim.report import run_scenario
from hulytrio.sim.scenario import ScenarioError, Span, load_scenario, parse_scenario
from hulytrio.sim.store import SimStore, StoreReply

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "scenarios" / "stateful-failover.toml"
RESTART = ROOT / "scenarios" / "stateful-restart.toml"

#: two agents offer one stateless uuid with state; its owner pauses past its
#: alive timeout (and wakes up a stale owner), is drained, crashes.
SMALL = """
name = "state-small"
duration = "16s"
liveness = "15s"
seed = 1

[hub]
alive = "1s"
ping_interval = "250ms"

[links]
latency = "1ms..3ms"

[state]
kinds = ["kv", "acct"]
interval = "500ms"
store_latency = "2ms..6ms"
seeded_bugs = {bugs}

[[agents]]
name = "n"
count = 3
kinds = ["acct"]
stateless = [{{ uuid = "kv", kind = "kv" }}]
start_delay = "10ms"
request_latency = "1ms..2ms"

[[clients]]
name = "app"
count = 2
kind = "kv"
uuid = "kv"
request_interval = "10ms..30ms"

[[clients]]
name = "teller"
kind = "acct"
uuid = "acct-1"
request_interval = "10ms..30ms"

[[faults]]
at = "2s"
action = "pause"
target = "owner:kv"
duration = "3s"

[[faults]]
at = "7s"
action = "drain"
target = "owner:kv"
duration = "300ms"

[[faults]]
at = "10s"
action = "crash"
target = "owner:kv"

[[faults]]
at = "11s"
action = "crash"
target = "owner:acct-1"

[[faults]]
at = "12s"
action = "join"
target = "n-*"
"""


#: one ordinary container (ownership epoch 0 for every owner): its owner
#: pauses before its first checkpoint, the uuid starts again on the other
#: agent, and the paused owner wakes up with a change to write.
NEVER_SAVED = """
name = "state-never-saved"
duration = "8s"
liveness = "7s"
seed = 1

[hub]
alive = "1s"
ping_interval = "250ms"

[links]
latency = "1ms..3ms"

[state]
kinds = ["acct"]
interval = "1s"
store_latency = "2ms..6ms"
seeded_bugs = {bugs}

[[agents]]
name = "n"
count = 2
kinds = ["acct"]
start_delay = "10ms"
request_latency = "1ms..2ms"

[[clients]]
name = "teller"
kind = "acct"
uuid = "acct-1"
request_interval = "10ms..30ms"

[[faults]]
at = "300ms"
action = "pause"
target = "owner:acct-1"
duration = "3s"
"""


def small(*bugs: str, text: str = SMALL) -> str:
    return text.format(bugs="[" + ", ".join(f'"{b}"' for b in bugs) + "]")


def test_the_small_scenario_holds_with_the_real_policy() -> None:
    for seed in range(1, 6):
        result, sim = run_scenario(parse_scenario(small()), seed)
        assert result.ok, (seed, result.violations, result.unmet)
        counts = sim.invariants.summary_counts()
        for name in ("store-fenced", "state-regression", "clean-stop-saves-all",
                     "import-before-serve"):
            assert counts[name][0] > 0, (seed, name)


@pytest.mark.parametrize(("bug", "invariant"), [
    ("serve-before-import", "import-before-serve"),
    ("skip-final-checkpoint", "clean-stop-saves-all"),
    ("skip-interval-checkpoints", "crash-loss-bounded"),
    ("store-accepts-stale", "store-fenced"),
    # The drain's demotion wrote after the standby's claim: refused, its changes lost.
    ("drain-hands-over-first", "clean-stop-saves-all"),
])
def test_each_check_catches_its_seeded_bug(bug: str, invariant: str) -> None:
    broken = set()
    for seed in range(1, 6):
        result, _ = run_scenario(parse_scenario(small(bug)), seed)
        broken |= {v.name for v in result.violations}
    assert invariant in broken, broken


def test_an_owner_that_never_saved_is_fenced_by_its_successors_claim() -> None:
    """The successor's claim of a uuid with nothing saved stores its epoch, so
    the paused first owner's write on waking is refused (it was accepted, and
    replaced the successor's newer state, when such a claim stored nothing)."""
    for seed in range(1, 4):
        result, sim = run_scenario(parse_scenario(small(text=NEVER_SAVED)), seed)
        assert result.ok, (seed, result.violations, result.unmet)
        assert sim.state is not None
        assert sim.state.checks.refused == 1, seed
        assert sim.state.checks.fresh_claims == 2, seed


def test_a_claim_that_stores_nothing_breaks_store_fenced() -> None:
    broken = set()
    for seed in range(1, 4):
        result, _ = run_scenario(parse_scenario(small("store-claims-only-saved",
                                                      text=NEVER_SAVED)), seed)
        broken |= {v.name for v in result.violations}
    assert "store-fenced" in broken, broken


def test_the_shipped_scenario_holds_over_a_share_of_its_seeds() -> None:
    """CI's share of `make chaos`'s 1,000 seeds (the first 12)."""
    scenario = load_scenario(SHIPPED)
    refused = claims = 0
    for seed in range(1, 13):
        result, sim = run_scenario(scenario, seed)
        assert result.ok, (seed, result.violations, result.unmet)
        assert sim.state is not None
        refused += sim.state.checks.refused
        claims += sim.state.checks.claims
        assert "writes accepted" in result.summary
        assert sim.invariants.summary_counts()["store-fenced"][0] > 0
    # Fencing and restores were exercised, not just never needed.
    assert refused > 0
    assert claims > 0


def test_a_terminated_uuid_asked_for_again_at_once_keeps_its_last_changes() -> None:
    """The shipped restart scenario: gets that come while the old agent still writes
    wait for it (the hub's side of the order), and every judged last write is taken."""
    scenario = load_scenario(RESTART)
    waited = stood_by = judged = 0
    for seed in range(1, 5):
        result, sim = run_scenario(scenario, seed)
        assert result.ok, (seed, result.violations, result.unmet)
        waited += sim.probes.counts.get("get retried: container stopping", 0)
        # the stateless owner an admin terminated: its standby's claim waits too
        stood_by += sim.probes.counts.get("stateless offer stands by for a stop", 0)
        judged += sim.invariants.summary_counts()["clean-stop-saves-all"][0]
    assert waited > 0
    assert stood_by > 0
    assert judged > 0


def test_a_hub_that_restarts_a_terminated_uuid_at_once_breaks_clean_stop_saves_all() -> None:
    scenario = load_scenario(RESTART)
    buggy = attrs.evolve(scenario, hub=attrs.evolve(
        scenario.hub, seeded_bugs=("restart-before-stopped",)))
    broken = set()
    for seed in range(1, 5):
        result, _ = run_scenario(buggy, seed)
        broken |= {v.name for v in result.violations}
    assert "clean-stop-saves-all" in broken, broken


def test_a_state_run_is_deterministic() -> None:
    scenario = load_scenario(SHIPPED)
    first, _ = run_scenario(scenario, 7)
    second, _ = run_scenario(scenario, 7)
    assert first.trace_hash == second.trace_hash


def test_the_scenario_dumps_and_reads_back() -> None:
    from hulytrio.sim.scenario import dump_scenario
    scenario = load_scenario(SHIPPED)
    assert parse_scenario(dump_scenario(scenario)) == scenario


# --- scenario keys ----------------------------------------------------------------------


@pytest.mark.parametrize(("text", "message"), [
    ('name = "x"\nduration = "1s"\n[[faults]]\nat = "1s"\naction = "store-pause"\n',
     "line 5: key 'faults[0].action': 'store-pause' needs a [state] table"),
    ('name = "x"\nduration = "1s"\n[state]\n[[faults]]\nat = "1s"\naction = "store-cut"\n'
     'target = "a"\n', "line 7: key 'faults[0].target': 'store-cut' acts on the state store"),
    ('name = "x"\nduration = "1s"\n[state]\nseeded_bugs = ["nope"]\n',
     "line 4: key 'state.seeded_bugs': unknown seeded bug 'nope'"),
    ('name = "x"\nduration = "1s"\n[state]\ninterval = "0s"\n',
     "line 4: key 'state.interval': interval must be > 0"),
    ('name = "x"\nduration = "1s"\n[state]\nstore_latency = "2s"\n',
     "line 4: key 'state.store_latency': the latency 2000ms exceeds store_timeout 1000ms"),
    ('name = "x"\nduration = "1s"\n[state]\nintervall = "1s"\n',
     "line 4: key 'state.intervall': unknown key"),
    ('name = "x"\nduration = "1s"\n[random_faults]\nrate = 1.0\nactions = ["store-slow"]\n',
     "line 5: key 'random_faults.actions': 'store-slow' needs a [state] table"),
])
def test_bad_state_keys_are_named(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "bad.toml")
    assert f"bad.toml: {message}" in str(info.value)


# --- the store ----------------------------------------------------------------------------


class Seen:
    def __init__(self) -> None:
        self.claims: list[tuple[str, int, int, int | None]] = []
        self.writes: list[tuple[str, int, int, bool]] = []

    def store_claimed(self, client: str, uuid: str, epoch: int, claimed: int,
                      saved: int | None) -> None:
        self.claims.append((uuid, epoch, claimed, saved))

    def store_write(self, client: str, uuid: str, value: int, epoch: int, stored: int | None,
                    accepted: bool) -> None:
        self.writes.append((uuid, value, epoch, accepted))


def make_store(latency: float = 0.01) -> tuple[Clock, SimStore, Seen]:
    clock = Clock()
    seen = Seen()
    store = SimStore(clock, Span(latency, latency), 1.0, random.Random(1), seen,
                     lambda *_: None)
    return clock, store, seen


def test_store_fences_writes_and_claims_raise_the_epoch() -> None:
    clock, store, seen = make_store()
    replies: list[StoreReply] = []
    store.put_many("a", [("u", 5, 3)], replies.append)
    store.claim("b", "u", 0, replies.append)      # stored 3 -> 4
    store.put_many("a", [("u", 6, 3)], replies.append)  # refused: 3 < 4
    store.claim("c", "nothing", 2, replies.append)  # nothing stored: 2 is stored
    store.claim("d", "nothing", 0, replies.append)  # above c's claim: 3
    store.put_many("c", [("nothing", 1, 2)], replies.append)  # c never wrote: refused
    clock.run_until(1.0)
    assert replies[0].ok
    assert not replies[0].refused
    assert (replies[1].saved, replies[1].epoch) == (5, 4)
    assert replies[2].refused == frozenset({"u"})
    assert replies[3].ok
    assert (replies[3].saved, replies[3].epoch) == (None, 2)
    assert (replies[4].saved, replies[4].epoch) == (None, 3)
    assert replies[5].refused == frozenset({"nothing"})
    assert store.rows["u"].value == 5
    assert store.rows["nothing"].value is None
    assert seen.claims == [("u", 0, 4, 5), ("nothing", 2, 2, None), ("nothing", 0, 3, None)]


def test_a_paused_store_answers_on_resume_in_order_and_a_cut_one_fails() -> None:
    clock, store, _ = make_store()
    replies: list[tuple[float, bool]] = []
    store.pause()
    store.put_many("a", [("u", 1, 0)], lambda r: replies.append((clock.now, r.ok)))
    store.put_many("a", [("u", 2, 0)], lambda r: replies.append((clock.now, r.ok)))
    clock.run_until(5.0)
    assert replies == []
    store.resume()
    assert [ok for _, ok in replies] == [True, True]
    assert store.rows["u"].value == 2
    store.cut_off()
    store.put_many("a", [("u", 3, 0)], lambda r: replies.append((clock.now, r.ok)))
    clock.run_until(7.0)
    assert replies[-1] == (6.0, False)
    assert store.rows["u"].value == 2
    assert not store.healthy_since(0.0)


def test_one_clients_operations_apply_in_order_whatever_the_draws() -> None:
    clock = Clock()
    store = SimStore(clock, Span(0.001, 0.05), 1.0, random.Random(3), Seen(),
                     lambda *_: None)
    for value in range(50):
        store.put_many("a", [("u", value, 0)], lambda r: None)
    clock.run_until(10.0)
    assert store.rows["u"].value == 49


def test_the_state_table_is_optional_and_absent_from_old_scenarios() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "failover.toml")
    assert scenario.state is None
    _result, sim = run_scenario(attrs.evolve(scenario, duration=2.0), 1)
    assert sim.state is None
    assert "store-fenced" not in sim.invariants.summary_counts()


def test_a_paused_agent_ignores_a_drain() -> None:
    """A paused process does nothing: a drain aimed at it is skipped (it used to send
    its Drain while paused, and the hub's alive timer heard from a silent process)."""
    text = """
name = "drain-paused"
duration = "6s"
liveness = "10s"
[hub]
alive = "1s"
ping_interval = "250ms"
[[agents]]
name = "a"
count = 2
kinds = ["echo"]
[[faults]]
at = "1s"
action = "pause"
target = "a-1"
duration = "3s"
[[faults]]
at = "1500ms"
action = "drain"
target = "a-1"
"""
    result, sim = run_scenario(parse_scenario(text), 1)
    assert result.ok, result.violations
    notes = [e.text for e in sim.timeline if e.kind == "fault"]
    assert "drain a-1" not in notes
    assert any(n.startswith("pause a-1") for n in notes)
