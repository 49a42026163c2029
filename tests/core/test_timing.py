"""Timeouts, liveness and the event window: deadlines, not polling (REFERENCE.md "Timeouts")."""

from __future__ import annotations

import pytest

from hulytrio.core.agent import AgentState
from hulytrio.core.messages import Event, Get, Ping, RegisterAgent, Welcome
from hulytrio.core.timeouts import Timeouts
from hulytrio.testing import Cluster


def test_timeout_defaults_match_the_reference() -> None:
    t = Timeouts()
    assert (t.alive, t.unused_container, t.ping_interval) == (3.0, 5.0, 1.0)
    # Events are batched for tens of milliseconds at most, not a whole alive period.
    assert t.event_window <= 0.05


@pytest.mark.parametrize("field", ["alive", "unused_container", "ping_interval",
                                   "event_window", "start"])
def test_timeouts_must_be_positive(field) -> None:
    with pytest.raises(ValueError, match=field):
        Timeouts(**{field: 0})


def test_silent_peer_dies_exactly_at_last_seen_plus_alive(raw) -> None:
    raw.hello("a", 0.0)
    raw.send("a", Ping(), 1.25)
    raw.advance(4.2499)
    assert raw.hub.registry.has_client("a")
    assert raw.closed == []
    raw.advance(4.25)
    assert not raw.hub.registry.has_client("a")
    assert raw.closed == ["a"]


def test_any_message_counts_as_a_sign_of_life(raw) -> None:
    raw.hello("a", 0.0)
    raw.send("a", Get(1, "nothing-hosts-this"), 2.5)
    raw.advance(5.4)
    assert raw.hub.registry.has_client("a")
    raw.advance(5.5)
    assert not raw.hub.registry.has_client("a")


def test_per_peer_alive_timeout_from_hello(raw) -> None:
    raw.hello("debugger", 0.0, alive=60.0)
    raw.hello("normal", 0.0)
    welcome = raw.take("debugger")[0]
    assert isinstance(welcome, Welcome)
    assert welcome.alive_timeout == 60.0
    raw.advance(30.0)
    assert raw.hub.registry.has_client("debugger")
    assert not raw.hub.registry.has_client("normal")
    raw.advance(59.99)
    assert raw.hub.registry.has_client("debugger")
    raw.advance(60.0)
    assert not raw.hub.registry.has_client("debugger")


def test_agent_of_a_crashed_session_dies_at_last_ping_plus_alive() -> None:
    c = Cluster()
    c.add_client("host")
    c.add_agent("host", AgentState("ag", ("echo",)))
    c.add_client("user")
    c.advance(10.5)  # the host pinged at 1, 2, ..., 10
    c.crash("host")
    c.advance(12.999)
    assert c.hub.registry.has_agent("ag")
    c.advance(13.0)
    # Not 3-6 s later as with the reference's polling: exactly at the deadline.
    assert not c.hub.registry.has_agent("ag")


def test_client_pings_keep_its_agents_alive_for_minutes() -> None:
    c = Cluster()
    c.add_client("host")
    c.add_agent("host", AgentState("ag", ("echo",)))
    c.add_client("user")
    g = c.sessions["user"].get("echo")
    c.pump()
    c.advance(300.0)
    assert c.hub.registry.has_agent("ag")
    assert c.hub.registry.has_client("host")
    uuid = c.value("user", g).uuid  # type: ignore[attr-defined]
    assert c.hub.registry.container(uuid) is not None
    assert c.hub.probes.counts.get("client timed out", 0) == 0


def test_orphan_killed_exactly_at_release_plus_unused_timeout() -> None:
    c = Cluster()
    c.add_client("host")
    c.add_agent("host", AgentState("ag", ("echo",)))
    c.add_client("user")
    g = c.sessions["user"].get("echo")
    c.pump()
    uuid = c.value("user", g).uuid  # type: ignore[attr-defined]
    c.advance(2.0)
    c.sessions["user"].release(g)
    c.pump()
    assert c.hub.registry.orphaned_at(uuid) == 2.0
    c.advance(6.999)
    assert uuid in c.running["ag"]
    c.advance(7.0)
    assert c.hub.registry.container(uuid) is None
    assert uuid not in c.running["ag"]  # the agent was told to terminate it


def test_re_get_before_the_deadline_rescues_an_orphan() -> None:
    c = Cluster()
    c.add_client("host")
    c.add_agent("host", AgentState("ag", ("echo",)))
    c.add_client("user")
    g = c.sessions["user"].get("echo")
    c.pump()
    uuid = c.value("user", g).uuid  # type: ignore[attr-defined]
    c.sessions["user"].release(g)
    c.pump()
    c.advance(4.9)
    g2 = c.sessions["user"].get("echo")
    c.pump()
    assert c.value("user", g2).uuid == uuid  # type: ignore[attr-defined]
    assert c.hub.registry.orphaned_at(uuid) is None
    c.advance(20.0)
    assert uuid in c.running["ag"]
    assert c.hub.probes.counts["orphan rescued"] == 1


def test_unused_timeout_is_configurable() -> None:
    c = Cluster(Timeouts(unused_container=60.0))
    c.add_client("host")
    c.add_agent("host", AgentState("ag", ("echo",)))
    c.add_client("user")
    g = c.sessions["user"].get("echo")
    c.pump()
    uuid = c.value("user", g).uuid  # type: ignore[attr-defined]
    c.sessions["user"].release(g)
    c.pump()
    c.advance(59.9)
    assert uuid in c.running["ag"]
    c.advance(60.0)
    assert uuid not in c.running["ag"]


def test_events_flush_once_per_window(raw) -> None:
    raw.hello("watcher", 0.0)
    raw.hello("host", 0.0)
    raw.take("watcher")
    raw.send("host", RegisterAgent(1, "a1", ("echo",)), 1.0)
    raw.send("host", RegisterAgent(2, "a2", ("echo",)), 1.005)
    raw.advance(1.0099)
    assert not [m for m in raw.inbox.get("watcher", []) if isinstance(m, Event)]
    raw.advance(1.01)
    events = [m for m in raw.take("watcher") if isinstance(m, Event)]
    assert len(events) == 1
    assert [a.agent.agent_id for a in events[0].event.agents] == ["a1", "a2"]
    # Nothing changes: nothing is sent, and no flush stays armed.
    raw.advance(2.0)
    assert not [m for m in raw.inbox.get("watcher", []) if isinstance(m, Event)]


def test_event_window_is_configurable(make_raw) -> None:
    raw = make_raw(Timeouts(event_window=0.5))
    raw.hello("watcher", 0.0)
    raw.hello("host", 0.0)
    raw.take("watcher")
    raw.send("host", RegisterAgent(1, "a1", ("echo",)), 1.0)
    raw.advance(1.49)
    assert not raw.inbox.get("watcher")
    raw.advance(1.5)
    assert [type(m) for m in raw.take("watcher")] == [Event]
