"""A restarted hub keeps container identity: re-acquires wait for their agents."""

from __future__ import annotations

from hulytrio.core.agent import AgentState
from hulytrio.core.effects import CloseConnection
from hulytrio.core.messages import PROTOCOL_VERSION, Get, GetReply, Hello, RegisterAgent
from hulytrio.core.types import GetOptions, OfferedContainer
from hulytrio.testing import Cluster


def _cluster_with_container() -> tuple[Cluster, int]:
    c = Cluster()
    client = c.add_client("client")  # connects first: after a restart it re-acquires first
    c.add_client("pa")
    c.add_client("pb")
    c.add_agent("pa", AgentState("A", ("echo",)))
    ref = client.get("echo")
    c.pump()
    c.add_agent("pb", AgentState("B", ("echo",)))
    return c, ref


def test_restart_reacquire_is_answered_with_the_original_container() -> None:
    c, ref = _cluster_with_container()
    client = c.sessions["client"]
    original = client.reference(ref)
    assert original is not None
    assert original.agent_id == "A"
    c.advance(1.0)
    c.restart_hub()
    c.advance(6.0)
    # Same uuid, same agent: the hub did not start a second instance on B.
    again = client.reference(ref)
    assert again is not None
    assert (again.uuid, again.agent_id) == (original.uuid, original.agent_id)
    assert c.running == {"A": {original.uuid: "echo"}, "B": {}}
    assert c.hub.probes.counts.get("re-acquire parked during recovery") == 1
    assert c.hub.registry.holders(original.uuid) == {"client": 1}
    assert c.hub.registry.check() == []


def test_parked_reacquire_proceeds_when_the_window_ends() -> None:
    c = Cluster()
    c.add_client("agentproc", alive_timeout=100.0)  # stays alive unpumped
    c.add_agent("agentproc", AgentState("A", ("echo",)))
    hub = c.hub
    hub.connection_made("x", 0.0)
    hub.receive("x", Hello(PROTOCOL_VERSION, "x", 100.0), 0.0)
    hub.effects()
    # A re-acquire of a uuid nobody registers: parked, then started at the
    # end of the window (alive timeout after the hub's first session).
    hub.receive("x", Get(7, "echo", GetOptions("gone-1"), reacquire=True), 0.5)
    assert not [e for e in hub.effects() if getattr(e, "conn", None) == "x"]
    assert hub.registry.pending_count() == 0
    hub.handle_timers(hub.timeouts.alive)
    assert hub.registry.pending_count() == 1
    # A user's own get of an unknown uuid is never parked.
    hub.receive("x", Get(8, "echo", GetOptions("new-1")), 3.5)
    assert hub.registry.pending_count() == 2


def test_parked_reacquire_of_a_client_that_leaves_is_dropped() -> None:
    c = Cluster()
    hub = c.hub
    for conn in ("x", "agent"):
        hub.connection_made(conn, 0.0)
        hub.receive(conn, Hello(PROTOCOL_VERSION, conn), 0.0)
    hub.receive("x", Get(1, "echo", GetOptions("u1"), reacquire=True), 0.1)
    hub.connection_lost("x", 0.2)
    hub.receive("agent", RegisterAgent(1, "A", ("echo",), None,
                                       (OfferedContainer("u1", "echo"),)), 0.3)
    sent = [e for e in hub.effects() if getattr(e, "conn", None) == "x"]
    assert not any(isinstance(getattr(e, "message", None), GetReply) for e in sent)
    # Nobody holds it: an orphan, terminated after the unused timeout.
    assert hub.registry.orphaned_at("u1") == 0.3
    assert hub.registry.holders("u1") == {}


def test_a_connection_that_never_says_hello_is_closed_after_the_alive_timeout() -> None:
    c = Cluster()
    hub = c.hub
    hub.connection_made("silent", 1.0)
    hub.connection_made("polite", 1.0)
    hub.receive("polite", Hello(PROTOCOL_VERSION, "polite", 100.0), 1.5)
    hub.effects()
    hub.handle_timers(1.0 + hub.timeouts.alive - 0.001)
    assert hub.effects() == []
    hub.handle_timers(1.0 + hub.timeouts.alive)
    closed = [e for e in hub.effects() if isinstance(e, CloseConnection)]
    assert [e.conn for e in closed] == ["silent"]
    # A late message from the closed connection is ignored, not answered.
    hub.receive("silent", Hello(PROTOCOL_VERSION, "silent"), 5.0)
    assert hub.effects() == []


def test_late_messages_on_a_superseded_connection_are_ignored() -> None:
    c = Cluster()
    hub = c.hub
    hub.connection_made("old", 0.0)
    hub.receive("old", Hello(PROTOCOL_VERSION, "peer", 100.0), 0.0)
    hub.connection_made("new", 1.0)
    hub.receive("new", Hello(PROTOCOL_VERSION, "peer", 100.0), 1.0)
    effects = hub.effects()
    assert CloseConnection("old", "superseded by a new connection") in effects
    # A message still in flight on the old connection: no answer, no error.
    hub.receive("old", Get(5, "echo"), 1.1)
    assert hub.effects() == []
    assert hub.probes.counts["reconnect same peer id"] == 1
