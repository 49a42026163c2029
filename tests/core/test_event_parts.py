"""A window of changes too large for one event goes out in numbered parts under the bound."""

from __future__ import annotations

import pytest

from hulytrio.core.events import (
    EVENT_ENVELOPE_BYTES,
    AgentEvent,
    ChangeKind,
    ContainerEvent,
    EventQueue,
    change_bytes,
)
from hulytrio.core.hub import MAX_EVENT_BYTES
from hulytrio.core.messages import Event, RegisterAgent
from hulytrio.core.types import AgentInfo, ContainerRecord, OfferedContainer
from hulytrio.wire.codec import MAX_FRAME_BYTES, encode_frame


def _offers(n: int, prefix: str = "s") -> tuple[OfferedContainer, ...]:
    return tuple(OfferedContainer(f"{prefix}-{i:05d}", "echo", ("tenant",), True)
                 for i in range(n))


def _events(raw, conn: str) -> list[Event]:
    return [m for m in raw.take(conn) if isinstance(m, Event)]


def test_the_default_bound_keeps_an_event_well_under_the_frame_limit() -> None:
    assert MAX_EVENT_BYTES <= MAX_FRAME_BYTES // 2


def test_change_bytes_is_never_less_than_the_encoding() -> None:
    # ASCII, two-byte, three-byte and four-byte characters, labels, endpoints, big ints.
    for text in ("a", "é", "€", "𝄞", "x" * 300, "ü" * 70_000):
        record = ContainerRecord(text, text, text, text, (text, text + "2"), True,
                                 2**63 - 1, 2**63 - 1)
        info = AgentInfo(text, (text, text + "k"), text, 2**63 - 1)
        for change in (ContainerEvent(ChangeKind.UPDATED, record),
                       AgentEvent(ChangeKind.UPDATED, info)):
            alone = Event(_event((change,)))
            encoded = len(encode_frame([alone]))
            assert encoded <= EVENT_ENVELOPE_BYTES + change_bytes(change), (text[:3], change)
    # One wide string among ASCII ones counts the whole change wide.
    mixed = ContainerEvent(ChangeKind.ADDED, ContainerRecord("x" * 1000, "k", "a", None, ("𝄞",)))
    assert len(encode_frame([Event(_event((mixed,)))])) <= (EVENT_ENVELOPE_BYTES
                                                           + change_bytes(mixed))


def _event(changes):
    from hulytrio.core.events import NetworkEvent

    agents = tuple(c for c in changes if isinstance(c, AgentEvent))
    containers = tuple(c for c in changes if isinstance(c, ContainerEvent))
    return NetworkEvent(2**63 - 1, agents, containers)


def test_a_queue_without_a_bound_flushes_everything_at_once() -> None:
    queue = EventQueue()
    for i in range(1000):
        queue.container(ChangeKind.ADDED, ContainerRecord(f"u{i}", "echo", "ag"))
    event = queue.flush()
    assert event is not None
    assert (event.seq, len(event.containers), queue.dirty) == (1, 1000, False)
    assert queue.flush() is None


def test_parts_keep_the_order_agents_first_and_each_fits() -> None:
    limit = 2000
    queue = EventQueue(max_bytes=limit)
    for i in range(3):
        queue.agent(ChangeKind.ADDED, AgentInfo(f"ag{i}", ("echo",)))
    for i in range(100):
        queue.container(ChangeKind.ADDED, ContainerRecord(f"u{i:03d}", "echo", "ag0"))
    parts = []
    while (event := queue.flush()) is not None:
        parts.append(event)
    assert not queue.dirty
    assert [p.seq for p in parts] == list(range(1, len(parts) + 1))
    assert len(parts) > 3
    agents = [a.agent.agent_id for p in parts for a in p.agents]
    uuids = [c.container.uuid for p in parts for c in p.containers]
    assert agents == ["ag0", "ag1", "ag2"]
    assert uuids == [f"u{i:03d}" for i in range(100)]
    # Agents come before any container: no part has containers before the last agent.
    last_agent_part = max(i for i, p in enumerate(parts) if p.agents)
    assert all(not p.containers for p in parts[:last_agent_part])
    for part in parts:
        assert len(encode_frame([Event(part)])) <= limit


def test_a_change_over_the_bound_goes_alone() -> None:
    queue = EventQueue(max_bytes=500)
    queue.container(ChangeKind.ADDED, ContainerRecord("small", "echo", "ag"))
    queue.container(ChangeKind.ADDED, ContainerRecord("huge" * 200, "echo", "ag"))
    queue.container(ChangeKind.ADDED, ContainerRecord("after", "echo", "ag"))
    parts = []
    while (event := queue.flush()) is not None:
        parts.append([c.container.uuid[:5] for c in event.containers])
    assert parts == [["small"], ["hugeh"], ["after"]]


def test_a_registration_of_60000_stateless_offers_reaches_every_session_in_parts(
        make_raw) -> None:
    # The lockout: one registration's event had every offer in it.
    # (A hub refuses so many offers by default, ``max_offers``: this one
    # allows them, to show the parts.)
    limit = 256 * 1024
    raw = make_raw(max_event_bytes=limit, max_offers=60_000).recovered()
    raw.hello("watcher")
    raw.hello("host")
    raw.take("watcher")
    raw.send("host", RegisterAgent(1, "big", ("echo",), containers=_offers(60_000)))
    raw.take("host")
    raw.advance(0.5)
    events = _events(raw, "watcher")
    assert len(events) > 1
    assert [e.event.seq for e in events] == list(range(1, len(events) + 1))
    uuids = [c.container.uuid for e in events for c in e.event.containers]
    assert uuids == [f"s-{i:05d}" for i in range(60_000)]
    assert [a.agent.agent_id for e in events for a in e.event.agents] == ["big"]
    for e in events:
        assert len(encode_frame([e])) <= limit
    # The host's session sees the same parts (it asked for every event too).
    assert _events(raw, "host") == events
    # A session that joins now continues from the last part's number.
    raw.hello("late")
    (welcome,) = raw.take("late")
    assert welcome.event_seq == len(events)


def test_own_sessions_get_their_share_of_every_part(make_raw) -> None:
    from hulytrio.core.messages import PROTOCOL_VERSION, Get, GetReply, Hello, Start, Started
    from hulytrio.core.types import GetOptions

    raw = make_raw(max_event_bytes=4096).recovered()
    raw.hub.connection_made("mine", 0.0)
    raw.hub.receive("mine", Hello(PROTOCOL_VERSION, "mine", None, events="own"), 0.0)
    raw.drain()
    raw.hello("host")
    raw.send("host", RegisterAgent(1, "ag", ("echo",)))
    raw.advance(0.1)
    raw.send("mine", Get(7, "echo", GetOptions("held")))
    (start,) = [m for m in raw.take("host") if isinstance(m, Start)]
    # The start's answer and 500 more containers change in one window.
    raw.send("host", RegisterAgent(2, "other", ("echo",), containers=_offers(500, "o")))
    raw.send("host", Started(start.id, start.uuid))
    assert [m for m in raw.take("mine") if isinstance(m, GetReply)]
    raw.advance(0.2)
    events = _events(raw, "mine")
    mine = [c.container.uuid for e in events for c in e.event.containers]
    assert mine == ["held"]
    seqs = [e.event.seq for e in events]
    assert seqs == sorted(seqs)
    assert raw.hub.registry.events.seq > 2  # the window went out in several parts


@pytest.mark.parametrize("limit", [1024, 64 * 1024])
def test_every_part_fits_its_bound_with_non_ascii_names(make_raw, limit: int) -> None:
    raw = make_raw(max_event_bytes=limit).recovered()
    raw.hello("watcher")
    raw.hello("host")
    raw.take("watcher")
    offers = tuple(OfferedContainer(f"€𝄞-{i}", "echo", ("ü" * 10,), True) for i in range(2000))
    raw.send("host", RegisterAgent(1, "big", ("echo",), containers=offers))
    raw.advance(0.5)
    events = _events(raw, "watcher")
    assert sum(len(e.event.containers) for e in events) == 2000
    assert all(len(encode_frame([e])) <= limit for e in events)
