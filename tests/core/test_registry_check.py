"""``Registry.check()``: its quick verdict agrees with the full walk, corruption by corruption."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hulytrio.core.registry import Registry
from hulytrio.core.types import GetOptions
from hulytrio.testing.registry import populated_registry


def _registry() -> Registry:
    reg = populated_registry(12, agents=3, clients=4)
    # A second holder on one container, and an orphan, so every branch has data.
    reg.get("c1", 100, "echo", GetOptions(uuid="u0"), 40.0)
    reg.release("c2", 101, "u2", 40.0)
    reg.outbox.clear()
    assert len(reg.holders("u0")) == 2
    assert reg.orphaned_at("u2") == 40.0
    assert reg.check() == []
    return reg


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
    reg._containers["u0"].orphaned_at = 1.0


def _unheld_not_orphaned(reg: Registry) -> None:
    reg._containers["u2"].orphaned_at = None


def _off_its_selector(reg: Registry) -> None:
    c = reg._containers["u0"]
    del reg._by_selector[(c.kind, c.labels)]["u0"]


def _owner_unknown(reg: Registry) -> None:
    next(iter(reg._agents.values())).owner = "ghost"


CORRUPTIONS: list[Callable[[Registry], None]] = [
    _agent_forgets, _agent_lists_a_stranger, _listing_moves, _listed_twice,
    _holder_count_zero, _hold_forgotten, _extra_hold, _hold_of_nothing, _hold_count_differs,
    _held_but_orphaned, _unheld_not_orphaned, _off_its_selector, _owner_unknown,
]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__.strip("_"))
def test_check_names_every_corruption(corrupt: Callable[[Registry], None]) -> None:
    reg = _registry()
    corrupt(reg)
    assert not reg._sound()
    assert reg.check() == reg._problems() != []


@pytest.mark.parametrize("pair", [(a, b) for i, a in enumerate(CORRUPTIONS)
                                  for b in CORRUPTIONS[i + 1:]],
                         ids=lambda p: f"{p[0].__name__.strip('_')}+{p[1].__name__.strip('_')}")
def test_check_names_corruptions_together(
        pair: tuple[Callable[[Registry], None], Callable[[Registry], None]]) -> None:
    reg = _registry()
    for corrupt in pair:
        corrupt(reg)
    assert reg._sound() is (reg._problems() == [])
    assert reg.check() == reg._problems()
