"""Sessions that take only their own events (``Hello.events == "own"``)."""

from __future__ import annotations

import pytest

from hulytrio.core.agent import AgentState
from hulytrio.core.effects import CloseConnection, Send
from hulytrio.core.events import ChangeKind
from hulytrio.core.messages import PROTOCOL_VERSION, Error, Hello
from hulytrio.core.types import GetOptions, OfferedContainer
from hulytrio.testing import Cluster


def _uuids(c: Cluster, client_id: str) -> list[tuple[str, ChangeKind]]:
    return [(ce.container.uuid, ce.change)
            for d in c.events[client_id] for ce in d.event.containers]


def _agents(c: Cluster, client_id: str) -> list[str]:
    return [ae.agent.agent_id for d in c.events[client_id] for ae in d.event.agents]


def test_own_session_sees_agents_and_its_containers_only() -> None:
    c = Cluster()
    watcher = c.add_client("watcher")
    mine = c.add_client("mine", events="own")
    other = c.add_client("other", events="own")
    c.add_client("host")
    c.add_agent("host", AgentState("A", ("echo",)))
    a = mine.get("echo", GetOptions(labels=["t1"]))
    b = other.get("echo", GetOptions(labels=["t2"]))
    c.advance(0.1)
    ra, rb = mine.reference(a), other.reference(b)
    assert ra is not None
    assert rb is not None
    # Both own sessions still learn about agents (get retries need them)...
    assert _agents(c, "mine") == ["A"] * len(_agents(c, "mine"))
    assert "A" in _agents(c, "mine")
    # ...but only the container changes that concern them.
    assert {u for u, _ in _uuids(c, "mine")} <= {ra.uuid}
    assert {u for u, _ in _uuids(c, "other")} <= {rb.uuid}
    # The watcher sees everything and keeps a full view; own sessions keep none.
    assert {ra.uuid, rb.uuid} <= {u for u, _ in _uuids(c, "watcher")}
    assert set(watcher.view_containers) == {ra.uuid, rb.uuid}
    assert mine.view_containers == {}
    # A removal reaches the holder, which re-acquires by itself.
    c.sessions["host"].unregister_agent("A")
    c.add_agent("host", AgentState("B", ("echo",)))
    c.advance(1.0)
    assert (ra.uuid, ChangeKind.REMOVED) in _uuids(c, "mine")
    assert (ra.uuid, ChangeKind.REMOVED) not in _uuids(c, "other")
    again = mine.reference(a)
    assert again is not None
    assert again.agent_id == "B"
    assert c.hub.registry.holders(again.uuid) == {"mine": 1}
    assert c.hub.registry.check() == []


def test_own_session_follows_a_promoted_stateless_container() -> None:
    c = Cluster()
    client = c.add_client("client", events="own")
    for host, agent_id in (("h1", "A"), ("h2", "B")):
        c.add_client(host, events="own")
        offer = OfferedContainer("db", "db", stateless=True)
        c.add_agent(host, AgentState(agent_id, ("db",), stateless=(offer,)))
    ref = client.get("db", GetOptions("db"))
    c.wait_for_recovery()  # the get waits for the owner, chosen as the window closes
    c.advance(c.now + 0.1)
    before = client.reference(ref)
    assert before is not None
    assert before.agent_id == "A"
    c.disconnect("h1")
    c.advance(c.now + 0.2)
    after = client.reference(ref)
    assert after is not None
    assert after.agent_id == "B"
    assert after.epoch > before.epoch
    assert c.hub.registry.holders("db") == {"client": 1}
    r = client.request(ref, "op", b"x")
    c.pump()
    assert c.value("client", r) == b"x"


def test_own_standby_hosts_hear_of_the_uuid_they_stand_by_for() -> None:
    c = Cluster()
    for host, agent_id in (("h1", "A"), ("h2", "B"), ("h3", "C")):
        c.add_client(host, events="own")
        offer = OfferedContainer("db", "db", stateless=True)
        c.add_agent(host, AgentState(agent_id, ("db",), stateless=(offer,)))
    c.wait_for_recovery()
    c.advance(c.now + 0.1)
    c.disconnect("h1")
    c.advance(c.now + 0.2)
    # B was promoted (told by Activate); C still stands by and saw the change.
    assert c.hub.registry.container("db") is not None
    assert c.hub.registry.container("db").agent_id == "B"
    assert ("db", ChangeKind.UPDATED) in _uuids(c, "h3")
    assert c.sessions["h2"].agent("B").serving() == ("db",)


@pytest.mark.parametrize("events", ["some", ""])
def test_a_hello_with_an_unknown_events_mode_is_refused(events: str) -> None:
    c = Cluster()
    hub = c.hub
    hub.connection_made("x", 0.0)
    hub.receive("x", Hello(PROTOCOL_VERSION, "x", events=events), 0.0)
    effects = hub.effects()
    errors = [e.message for e in effects if isinstance(e, Send) and isinstance(e.message, Error)]
    assert errors
    assert "events must be" in errors[0].message
    assert any(isinstance(e, CloseConnection) for e in effects)
    assert not hub.registry.has_client("x")
