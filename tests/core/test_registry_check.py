"""``Registry.check()``: its shortcuts agree with a full walk, corruption by corruption.

``check.problems`` skips the reverse walks when two counts show they would
find nothing; ``full_walk`` below is the plain walk of every link it must
agree with (a test oracle, kept simple on purpose).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hulytrio.core.registry import Registry
from hulytrio.core.types import ContainerState, GetOptions
from hulytrio.testing.registry import populated_registry


def _registry() -> Registry:
    reg = populated_registry(12, agents=3, clients=4)
    # A second holder on one container, and an orphan, so every branch has data.
    reg.get("c1", 100, "echo", GetOptions(uuid="u0"), 40.0)
    reg.release("c2", 101, "u2", 40.0)
    reg.take_effects()
    assert len(reg.holders("u0")) == 2
    assert reg.orphaned_at("u2") == 40.0
    assert reg.check() == []
    return reg


def full_walk(reg: Registry) -> list[str]:
    """Walk every index and name each broken link, in ``check.problems``' order."""
    problems: list[str] = []
    report = problems.append
    containers, agents, clients = reg._containers, reg._agents, reg._clients
    for uuid, c in containers.items():
        agent = agents.get(c.agent_id)
        if agent is None or uuid not in agent.containers:
            report(f"container {uuid} not linked to agent {c.agent_id}")
        for client_id, n in c.holders.items():
            if n <= 0:
                report(f"container {uuid}: holder {client_id} count {n}")
            cl = clients.get(client_id)
            if cl is None or cl.holds.get(uuid) != n:
                report(f"container {uuid}: holder {client_id} not mirrored")
        if c.holders:
            if c.state is ContainerState.ORPHANED:
                report(f"container {uuid} held but orphaned")
        elif c.state is ContainerState.ACTIVE and not c.stateless:
            report(f"container {uuid} unheld but not orphaned")
        if (c.state is ContainerState.ORPHANED) is (c.orphaned_at is None):
            report(f"container {uuid} is {c.state.name} with orphaned_at {c.orphaned_at}")
        indexed = uuid in reg._live.buckets.get((c.kind, c.labels), {})
        if c.state is ContainerState.DRAINING:
            if indexed:
                report(f"container {uuid} is DRAINING but in its selector index")
        elif not indexed:
            report(f"container {uuid} missing from its selector index")
    for agent_id, a in agents.items():
        for uuid in a.containers:
            c2 = containers.get(uuid)
            if c2 is None or c2.agent_id != agent_id:
                report(f"agent {agent_id} lists {uuid} it does not own")
        if a.owner not in clients:
            report(f"agent {agent_id} owned by unknown client {a.owner}")
        if a.parked and a.has_room():
            report(f"agent {agent_id} set aside as full but has room")
        for kind in a.kinds:
            if (agent_id in reg._line.room.get(kind, {})) is a.parked:
                state = "set aside as full but still" if a.parked else "not"
                report(f"agent {agent_id} {state} in line for kind {kind}")
    for client_id, cl in clients.items():
        for uuid, n in cl.holds.items():
            c3 = containers.get(uuid)
            if c3 is None or c3.holders.get(client_id) != n:
                report(f"client {client_id} holds {uuid} not mirrored")
    return problems


def _agent_forgets(reg: Registry) -> None:
    c = reg._containers["u0"]
    del reg._agents[c.agent_id].containers["u0"]


def _agent_lists_a_stranger(reg: Registry) -> None:
    next(iter(reg._agents.values())).containers["nobody"] = None


def _listing_moves(reg: Registry) -> None:
    c = reg._containers["u4"]
    del reg._agents[c.agent_id].containers["u4"]
    other = next(a for a in reg._agents.values() if a.agent_id != c.agent_id)
    other.containers["u4"] = None


def _listed_twice(reg: Registry) -> None:
    c = reg._containers["u6"]
    other = next(a for a in reg._agents.values() if a.agent_id != c.agent_id)
    other.containers["u6"] = None


def _holder_count_zero(reg: Registry) -> None:
    c = reg._containers["u0"]
    client_id = next(iter(c.holders))
    c.holders[client_id] = 0
    reg._clients[client_id].holds["u0"] = 0


def _hold_forgotten(reg: Registry) -> None:
    c = reg._containers["u0"]
    client_id = next(iter(c.holders))
    del reg._clients[client_id].holds["u0"]


def _extra_hold(reg: Registry) -> None:
    reg._clients["probe"].holds["u0"] = 1


def _hold_of_nothing(reg: Registry) -> None:
    reg._clients["probe"].holds["gone"] = 1


def _hold_count_differs(reg: Registry) -> None:
    c = reg._containers["u0"]
    client_id = next(iter(c.holders))
    holds = reg._clients[client_id].holds
    holds["u0"] = holds.get("u0", 0) + 1


def _held_but_orphaned(reg: Registry) -> None:
    c = reg._containers["u0"]
    c.state = ContainerState.ORPHANED
    c.orphaned_at = 1.0


def _unheld_not_orphaned(reg: Registry) -> None:
    c = reg._containers["u2"]
    c.state = ContainerState.ACTIVE
    c.orphaned_at = None


def _orphaned_at_disagrees(reg: Registry) -> None:
    reg._containers["u0"].orphaned_at = 1.0  # held and ACTIVE, yet stamped orphaned


def _state_without_stamp(reg: Registry) -> None:
    reg._containers["u2"].orphaned_at = None  # ORPHANED, yet not stamped


def _off_its_selector(reg: Registry) -> None:
    c = reg._containers["u0"]
    del reg._live.buckets[(c.kind, c.labels)]["u0"]


def _draining_still_indexed(reg: Registry) -> None:
    last = list(reg._containers.values())[-1]
    last.state = ContainerState.DRAINING  # yet a get could reuse it


def _owner_unknown(reg: Registry) -> None:
    next(iter(reg._agents.values())).owner = "ghost"


CORRUPTIONS: list[Callable[[Registry], None]] = [
    _agent_forgets, _agent_lists_a_stranger, _listing_moves, _listed_twice,
    _holder_count_zero, _hold_forgotten, _extra_hold, _hold_of_nothing, _hold_count_differs,
    _held_but_orphaned, _unheld_not_orphaned, _orphaned_at_disagrees, _state_without_stamp,
    _off_its_selector, _draining_still_indexed, _owner_unknown,
]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__.strip("_"))
def test_check_names_every_corruption(corrupt: Callable[[Registry], None]) -> None:
    reg = _registry()
    corrupt(reg)
    assert reg.check() == full_walk(reg) != []


@pytest.mark.parametrize("pair", [(a, b) for i, a in enumerate(CORRUPTIONS)
                                  for b in CORRUPTIONS[i + 1:]],
                         ids=lambda p: f"{p[0].__name__.strip('_')}+{p[1].__name__.strip('_')}")
def test_check_names_corruptions_together(
        pair: tuple[Callable[[Registry], None], Callable[[Registry], None]]) -> None:
    reg = _registry()
    for corrupt in pair:
        corrupt(reg)
    assert reg.check() == full_walk(reg)
