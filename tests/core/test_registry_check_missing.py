"""``Registry.check()`` when an index entry is missing outright (the quick lookups fail)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hulytrio.core.registry import Registry

from .test_registry_check import CORRUPTIONS, _registry, full_walk


def _agent_unknown(reg: Registry) -> None:
    reg._containers["u0"].agent_id = "ghost-agent"


def _holder_unknown(reg: Registry) -> None:
    reg._containers["u0"].holders["ghost-client"] = 1


def _selector_bucket_gone(reg: Registry) -> None:
    c = reg._containers["u0"]
    del reg._live.buckets[(c.kind, c.labels)]


MISSING: list[Callable[[Registry], None]] = [_agent_unknown, _holder_unknown,
                                              _selector_bucket_gone]


@pytest.mark.parametrize("corrupt", MISSING, ids=lambda f: f.__name__.strip("_"))
def test_check_names_a_missing_entry(corrupt: Callable[[Registry], None]) -> None:
    reg = _registry()
    corrupt(reg)
    assert reg.check() == full_walk(reg) != []


@pytest.mark.parametrize("pair", [(a, b) for a in MISSING for b in CORRUPTIONS + MISSING
                                  if a is not b],
                         ids=lambda p: f"{p[0].__name__.strip('_')}+{p[1].__name__.strip('_')}")
def test_check_names_a_missing_entry_with_another(
        pair: tuple[Callable[[Registry], None], Callable[[Registry], None]]) -> None:
    reg = _registry()
    missing, other = pair
    other(reg)  # first: the other corruption may look up what goes missing
    missing(reg)
    assert reg.check() == full_walk(reg)
