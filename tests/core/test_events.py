"""Event coalescing (core/events.py's table) and sequence numbers."""

from __future__ import annotations

import pytest

from hulytrio.core.events import ChangeKind, EventQueue
from hulytrio.core.messages import Event, RegisterAgent, UnregisterAgent
from hulytrio.core.types import AgentInfo, ContainerRecord, OfferedContainer

A, U, R = ChangeKind.ADDED, ChangeKind.UPDATED, ChangeKind.REMOVED


def rec(uuid: str, endpoint: str = "e0") -> ContainerRecord:
    return ContainerRecord(uuid, "echo", "ag", endpoint)


@pytest.mark.parametrize(
    ("earlier", "later", "folded"),
    [(A, U, A), (A, R, R), (U, U, U), (U, R, R), (R, A, A), (R, U, A),
     (A, A, A), (R, R, R), (U, A, A)],
)
def test_container_changes_fold_per_the_table(earlier, later, folded) -> None:
    q = EventQueue()
    q.container(earlier, rec("x", "first"))
    q.container(later, rec("x", "second"))
    event = q.flush()
    assert event is not None
    assert len(event.containers) == 1
    assert event.containers[0].change is folded
    # The later record always wins: it is the state the client must end in.
    assert event.containers[0].container.endpoint == "second"


@pytest.mark.parametrize(("earlier", "later", "folded"),
                         [(A, U, A), (A, R, R), (U, U, U), (R, A, A), (R, U, A)])
def test_agent_changes_fold_per_the_table(earlier, later, folded) -> None:
    q = EventQueue()
    q.agent(earlier, AgentInfo("ag", ("echo",), "first"))
    q.agent(later, AgentInfo("ag", ("echo",), "second"))
    event = q.flush()
    assert event is not None
    assert [(e.change, e.agent.endpoint) for e in event.agents] == [(folded, "second")]


def test_longer_chains_fold_left() -> None:
    q = EventQueue()
    for change in (A, R, A, U):
        q.container(change, rec("x"))
    q.container(U, rec("y"))
    q.container(R, rec("y"))
    q.container(A, rec("y"))
    event = q.flush()
    assert event is not None
    assert [(e.container.uuid, e.change) for e in event.containers] == [("x", A), ("y", A)]


def test_distinct_keys_keep_first_change_order() -> None:
    q = EventQueue()
    for uuid in ("c", "a", "b"):
        q.container(A, rec(uuid))
    q.container(U, rec("c"))
    event = q.flush()
    assert event is not None
    assert [e.container.uuid for e in event.containers] == ["c", "a", "b"]
    assert len(q) == 0


def test_sequence_numbers_grow_by_one_per_flush() -> None:
    q = EventQueue()
    assert q.flush() is None
    assert q.seq == 0  # an empty flush does not consume a number
    seqs = []
    for i in range(3):
        q.agent(A, AgentInfo(f"ag{i}", ()))
        event = q.flush()
        assert event is not None
        seqs.append(event.seq)
        assert q.flush() is None
    assert seqs == [1, 2, 3]


def test_remove_then_re_add_in_one_window_leaves_clients_seeing_it(raw) -> None:
    raw.hello("watcher", 0.0)
    raw.hello("host", 0.0)
    offer = OfferedContainer("x", "echo")
    raw.send("host", RegisterAgent(1, "ag", ("echo",), None, (offer,)), 0.1)
    raw.advance(0.2)
    first = [m.event for m in raw.take("watcher") if isinstance(m, Event)]
    assert [(e.container.uuid, e.change) for e in first[0].containers] == [("x", A)]
    # Within one window: the agent goes away and comes back with x.
    raw.send("host", UnregisterAgent(2, "ag"), 1.0)
    raw.send("host", RegisterAgent(3, "ag", ("echo",), None, (offer,)), 1.001)
    raw.advance(1.1)
    events = [m.event for m in raw.take("watcher") if isinstance(m, Event)]
    assert len(events) == 1
    assert [(e.container.uuid, e.change) for e in events[0].containers] == [("x", A)]
    assert [(e.agent.agent_id, e.change) for e in events[0].agents] == [("ag", A)]
    assert events[0].seq == first[0].seq + 1
    assert raw.hub.registry.container("x") is not None
