"""Agent registration, re-registration and unregistration (REFERENCE.md "Registry")."""

from __future__ import annotations

from hulytrio.core.errors import ErrorCode
from hulytrio.core.events import ChangeKind
from hulytrio.core.messages import (
    Error,
    Event,
    KindsReply,
    Ok,
    Query,
    RegisterAgent,
    RegisterReply,
    UnregisterAgent,
)
from hulytrio.core.types import OfferedContainer

A, U, R = ChangeKind.ADDED, ChangeKind.UPDATED, ChangeKind.REMOVED


def events(raw, conn="watcher"):
    return [m.event for m in raw.take(conn) if isinstance(m, Event)]


def container_changes(evs):
    return [(e.container.uuid, e.change) for ev in evs for e in ev.containers]


def agent_changes(evs):
    return [(e.agent.agent_id, e.change) for ev in evs for e in ev.agents]


def setup(raw):
    raw.hello("watcher")
    raw.hello("host")
    raw.take("watcher")
    raw.take("host")


def test_register_adds_agent_and_its_containers(raw) -> None:
    setup(raw)
    offers = (OfferedContainer("x", "echo"), OfferedContainer("y", "echo", ("t1",)))
    (reply,) = raw.send("host", RegisterAgent(1, "ag", ("echo",), "ws://ag", offers), 0.0)
    assert reply == RegisterReply(1, (), ())
    raw.advance(0.1)
    evs = events(raw)
    assert agent_changes(evs) == [("ag", A)]
    assert container_changes(evs) == [("x", A), ("y", A)]
    assert raw.hub.registry.agent_containers("ag") == ("x", "y")
    assert raw.hub.registry.container("y").endpoint == "ws://ag"
    assert raw.hub.registry.agents()[0].containers == 2
    assert raw.hub.registry.check() == []


def test_re_register_removes_unlisted_keeps_listed_linked(raw) -> None:
    setup(raw)
    x, y = OfferedContainer("x", "echo"), OfferedContainer("y", "echo")
    raw.send("host", RegisterAgent(1, "ag", ("echo",), None, (x, y)), 0.0)
    raw.advance(0.1)
    events(raw)
    raw.send("host", RegisterAgent(2, "ag", ("echo",), None, (x,)), 1.0)
    raw.advance(1.1)
    evs = events(raw)
    assert container_changes(evs) == [("y", R)]
    assert agent_changes(evs) == [("ag", U)]
    # fix: x is still linked to the (re-)registered agent, no ghost left.
    assert raw.hub.registry.agent_containers("ag") == ("x",)
    assert raw.hub.registry.container("x").agent_id == "ag"
    assert raw.hub.registry.container("y") is None
    assert raw.hub.registry.check() == []


def test_re_register_with_new_endpoint_updates_containers(raw) -> None:
    setup(raw)
    x = OfferedContainer("x", "echo")
    raw.send("host", RegisterAgent(1, "ag", ("echo",), "ws://old", (x,)), 0.0)
    raw.advance(0.1)
    events(raw)
    raw.send("host", RegisterAgent(2, "ag", ("echo",), "ws://new", (x,)), 1.0)
    raw.advance(1.1)
    evs = events(raw)
    assert container_changes(evs) == [("x", U)]
    assert evs[0].containers[0].container.endpoint == "ws://new"
    assert raw.hub.registry.container("x").endpoint == "ws://new"
    assert raw.hub.registry.agents()[0].endpoint == "ws://new"


def test_containers_of_undeclared_kinds_are_refused(raw) -> None:
    setup(raw)
    offers = (OfferedContainer("x", "echo"), OfferedContainer("z", "db"))
    (reply,) = raw.send("host", RegisterAgent(1, "ag", ("echo",), None, offers), 0.0)
    assert reply.terminate == ("z",)
    assert raw.hub.registry.container("z") is None
    assert raw.hub.registry.container("x") is not None


def test_uuid_owned_by_another_agent_first_wins(raw) -> None:
    setup(raw)
    raw.hello("host2")
    x = OfferedContainer("x", "echo")
    raw.send("host", RegisterAgent(1, "ag1", ("echo",), None, (x,)), 0.0)
    (reply,) = raw.send("host2", RegisterAgent(1, "ag2", ("echo",), None, (x,)), 0.0)
    assert reply.terminate == ("x",)
    assert raw.hub.registry.container("x").agent_id == "ag1"
    assert raw.hub.registry.agent_containers("ag2") == ()


def test_stateless_second_offer_stands_by(raw) -> None:
    raw.recovered()
    setup(raw)
    raw.hello("host2")
    x = OfferedContainer("x", "db", stateless=True)
    raw.send("host", RegisterAgent(1, "ag1", ("db",), None, (x,)), 0.0)
    (reply,) = raw.send("host2", RegisterAgent(1, "ag2", ("db",), None, (x,)), 0.0)
    assert reply == RegisterReply(1, ("x",), ())
    assert raw.hub.registry.container("x").agent_id == "ag1"
    assert raw.hub.registry.standbys("x") == ("ag2",)


def test_unregister_only_by_the_registering_session(raw) -> None:
    setup(raw)
    raw.hello("intruder")
    raw.send("host", RegisterAgent(1, "ag", ("echo",)), 0.0)
    (reply,) = raw.send("intruder", UnregisterAgent(7, "ag"), 0.0)
    assert isinstance(reply, Error)
    assert reply.code == ErrorCode.UNAUTHORIZED.value
    assert raw.hub.registry.has_agent("ag")
    assert raw.send("host", UnregisterAgent(2, "ag"), 0.0) == [Ok(2)]
    assert not raw.hub.registry.has_agent("ag")


def test_unregister_unknown_agent_is_a_no_op(raw) -> None:
    setup(raw)
    assert raw.send("host", UnregisterAgent(3, "nobody"), 0.0) == [Ok(3)]
    raw.advance(0.1)
    assert events(raw) == []


def test_agent_removed_with_no_containers_still_emits_removed(raw) -> None:
    setup(raw)
    raw.send("host", RegisterAgent(1, "ag", ("echo",)), 0.0)
    raw.advance(0.1)
    events(raw)
    raw.send("host", UnregisterAgent(2, "ag"), 1.0)
    raw.advance(1.1)
    assert agent_changes(events(raw)) == [("ag", R)]


def test_agent_removed_with_its_session_emits_removed(raw) -> None:
    setup(raw)
    raw.send("host", RegisterAgent(1, "ag", ("echo",)), 0.0)
    raw.advance(0.1)
    events(raw)
    raw.lost("host", 1.0)
    raw.advance(1.1)
    assert agent_changes(events(raw)) == [("ag", R)]


def test_kinds_are_de_duplicated_and_sorted(raw) -> None:
    setup(raw)
    raw.hello("host2")
    raw.send("host", RegisterAgent(1, "ag1", ("echo", "db", "echo")), 0.0)
    raw.send("host2", RegisterAgent(1, "ag2", ("echo", "cache")), 0.0)
    (reply,) = raw.send("watcher", Query(5, "kinds"), 0.0)
    assert reply == KindsReply(5, ("cache", "db", "echo"))
    raw.send("host", UnregisterAgent(2, "ag1"), 0.0)
    (reply,) = raw.send("watcher", Query(6, "kinds"), 0.0)
    assert reply == KindsReply(6, ("cache", "echo"))
