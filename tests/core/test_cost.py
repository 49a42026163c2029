"""get/release cost is flat in the number of containers, shown without a clock.

Two structural measures of one fixed batch of registry operations (new start,
reuse by uuid, reuse by label set, release to orphan, rescue, orphan kill,
event flush), taken at 1,000 and at 100,000 live containers:

- *lines*: Python lines executed (``sys.settrace``), which grows with any
  Python-level loop over containers, agents' container sets or clients;
- *touched*: elements produced by iterating any of the registry's maps
  (every dict it owns, every index bucket, every agent's and client's
  container set, the timers' table), counted by swapping them for a dict
  subclass whose iterators count; this catches C-level scans too
  (``list(d)``, ``tuple(d.values())``, ``sorted(d)``).

A get or release that became O(n) would make both grow ~100-fold; the
self-check at the end shows the measures do see such a scan.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import pytest

from hulytrio.core.effects import Send
from hulytrio.core.messages import RegisterAgent, Start
from hulytrio.core.registry import Registry
from hulytrio.core.timeouts import Timeouts
from hulytrio.core.types import GetOptions
from hulytrio.testing.registry import FOREVER, answer_starts, populated_registry

AGENTS = 10
CLIENTS = 50


class CountingDict(dict):  # type: ignore[type-arg]
    """A dict whose iterators count every element they produce into ``tally``."""

    tally = [0]

    def _count(self, it: Iterator[Any]) -> Iterator[Any]:
        for x in it:
            CountingDict.tally[0] += 1
            yield x

    def __iter__(self):
        return self._count(super().__iter__())

    def keys(self):
        return list(self._count(super().keys()))  # type: ignore[return-value]

    def values(self):
        return list(self._count(super().values()))  # type: ignore[return-value]

    def items(self):
        return list(self._count(super().items()))  # type: ignore[return-value]


def populate(n: int) -> Registry:
    """A registry with ``n`` held containers (see ``populated_registry``)."""
    reg = populated_registry(n, agents=AGENTS, clients=CLIENTS)
    assert len(reg) == n
    return reg


def instrument(reg: Registry) -> None:
    """Swap every map the registry owns (and the ones inside them) for a counting dict."""
    def wrap(d: dict[Any, Any]) -> CountingDict:
        return CountingDict(d)

    for name, value in list(vars(reg).items()):
        if type(value) is dict:
            setattr(reg, name, wrap(value))
    # The registry's units (slotted): every map they own, and the index buckets.
    for unit in (reg._live, reg._starts, reg._starts._selectors, reg._line, reg._standbys,
                 reg._recovery):
        for name in type(unit).__slots__:
            value = getattr(unit, name)
            if type(value) is dict:
                setattr(unit, name, wrap(value))
    for table in (reg._live.buckets, reg._starts._selectors.buckets, reg._line._kind_agents,
                  reg._line.room):
        for key in list(dict.keys(table)):
            dict.__setitem__(table, key, wrap(dict.__getitem__(table, key)))
    for agent in dict.values(reg._agents):
        agent.containers = wrap(agent.containers)
        agent.pending = wrap(agent.pending)
    for client in dict.values(reg._clients):
        client.holds = wrap(client.holds)
        client.agents = wrap(client.agents)
    reg.timers._deadlines = wrap(reg.timers._deadlines)  # type: ignore[assignment]
    reg.timers._intervals = wrap(reg.timers._intervals)  # type: ignore[assignment]
    reg.events._agents = wrap(reg.events._agents)  # type: ignore[assignment]
    reg.events._containers = wrap(reg.events._containers)  # type: ignore[assignment]


def workload(reg: Registry, n: int) -> None:
    """The measured batch: every kind of get and release, an orphan kill, a flush."""
    now = 40.0
    p = "probe"
    reg.get(p, 1, "echo", GetOptions(labels=("fresh",)), now)        # new start
    answer_starts(reg, now)
    reg.get(p, 2, "echo", GetOptions(uuid=f"u{(n // 2) & ~1}"), now)  # reuse by uuid
    reg.get(p, 3, "echo", GetOptions(), now)                          # reuse, big bucket
    reg.get(p, 4, "echo", GetOptions(labels=(f"t{n - 1}",)), now)     # reuse by labels
    holds = sorted(reg.holds(p))
    assert len(holds) == 4
    for uuid in holds:
        reg.release(p, 10, uuid, now)                                 # 1 orphan
    reg.get(p, 5, "echo", GetOptions(labels=("fresh",)), now + 1)     # rescue it
    fresh = next(iter(reg.holds(p)))
    reg.release(p, 11, fresh, now + 2)
    reg.handle_timers(now + 7, due=now + 2 + reg.timeouts.unused_container)  # orphan kill
    assert reg.container(fresh) is None
    reg.take_effects()
    reg.events.flush()


def measure(reg: Registry, n: int, op: Callable[[Registry, int], None] = workload
            ) -> tuple[int, int]:
    """Return (Python lines executed, map elements touched) by ``op``."""
    instrument(reg)
    lines = [0]

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        if event == "line":
            lines[0] += 1
        return tracer

    CountingDict.tally[0] = 0
    previous = sys.gettrace()  # e.g. coverage's tracer: put it back afterwards
    sys.settrace(tracer)
    try:
        op(reg, n)
    finally:
        sys.settrace(previous)
    return lines[0], CountingDict.tally[0]


@pytest.fixture(scope="module")
def small() -> Registry:
    reg = populate(1_000)
    assert reg.check() == []
    return reg


@pytest.fixture(scope="module")
def large() -> Registry:
    return populate(100_000)


def test_get_release_cost_is_flat_from_1k_to_100k(small, large) -> None:
    lines_s, touched_s = measure(small, 1_000)
    lines_l, touched_l = measure(large, 100_000)
    print(f"lines {lines_s} -> {lines_l}, touched {touched_s} -> {touched_l}")
    assert lines_s > 100  # the tracer saw the work
    # Flat: the same batch costs the same at 100x the containers (a little
    # slack for hash-order-dependent branches; O(n) would be ~100x).
    assert lines_l <= lines_s * 1.1 + 10, (lines_s, lines_l)
    assert touched_l <= touched_s + 10, (touched_s, touched_l)


def test_the_measures_see_an_o_n_scan() -> None:
    # Self-check: a get that also scanned the containers would be caught.
    def scanning(reg: Registry, n: int) -> None:
        workload(reg, n)
        reg.list("echo")

    small = measure(populate(1_000), 1_000, scanning)
    larger = measure(populate(5_000), 5_000, scanning)
    print(f"with a scan: {small} -> {larger}")
    assert larger[0] > 3 * small[0]
    assert larger[1] > 3 * small[1]


def _full_agents(n: int) -> Registry:
    """``n`` agents of kind "echo" with room for one container each, every one full.

    A last get finds no room anywhere: on its way it set every full agent
    aside (the one-off cost of finding them full).
    """
    reg = Registry("hub", Timeouts())
    reg.add_client("c", FOREVER, 0.0)
    for a in range(n):
        reg.add_client(f"h{a}", FOREVER, 0.0)
        reg.register(f"h{a}", RegisterAgent(1, f"ag{a}", ("echo",), max_containers=1), 0.0)
    for i in range(n):
        reg.get("c", i, "echo", GetOptions(uuid=f"u{i}"), 0.0)
        answer_starts(reg, 0.0)
    reg.get("c", n, "echo", GetOptions(uuid="no-room"), 0.0)
    reg.take_effects()
    return reg


def _free_one_then_start(reg: Registry, n: int) -> None:
    """Free the agent third from the end of the line, then start a new container."""
    reg.release("c", 20_000, f"u{n - 3}", 0.0)
    reg.handle_timers(10.0)
    reg.get("c", 20_001, "echo", GetOptions(uuid="again"), 10.0)


def test_picking_an_agent_skips_full_agents_once_not_on_every_get() -> None:
    small, large = _full_agents(10), _full_agents(1_000)
    small_cost = measure(small, 10, _free_one_then_start)
    large_cost = measure(large, 1_000, _free_one_then_start)
    assert large_cost[0] <= small_cost[0] * 1.1, (small_cost, large_cost)
    for reg, n in ((small, 10), (large, 1_000)):
        # The freed agent was back in line, and the only one picked.
        starts = [e.message.agent_id for e in reg.effects
                  if isinstance(e, Send) and isinstance(e.message, Start)]
        assert starts == [f"ag{n - 3}"]
        assert reg.check() == []
