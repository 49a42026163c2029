"""Draining: an agent that shuts down moves its containers first; a hub that shuts down
answers new calls ``Retry`` while the forwards in flight finish (docs/operations.md
"Stopping and draining")."""

from __future__ import annotations

import pytest

from hulytrio.core.agent import PHASE_TRANSITIONS, AgentPhase, AgentState, LocalStatus
from hulytrio.core.effects import Resolve, SetServing
from hulytrio.core.entries import AGENT_TRANSITIONS, AgentStatus
from hulytrio.core.errors import ErrorCode, LocalProtocolError
from hulytrio.core.messages import (
    PROTOCOL_VERSION,
    Activate,
    Close,
    Connect,
    Drain,
    Error,
    Get,
    Ok,
    RegisterAgent,
    Request,
    Response,
    Retry,
    Start,
    Started,
    Welcome,
)
from hulytrio.core.types import ContainerState, GetOptions, OfferedContainer
from hulytrio.testing import Cluster

DB = OfferedContainer("db-1", "db", (), stateless=True)


def two_agents() -> Cluster:
    """h0 hosts a0 (echo + the db owner), h1 hosts a1 (echo + db standby); u is a user."""
    c = Cluster()
    for i in range(2):
        c.add_client(f"h{i}")
        c.add_agent(f"h{i}", AgentState(f"a{i}", ("echo", "db"), stateless=(DB,)))
    c.add_client("u")
    c.wait_for_recovery()  # a0's offer owns the uuid once the window closes
    return c


def test_the_drain_tables_allow_exactly_the_drain_moves() -> None:
    assert AGENT_TRANSITIONS.allows(AgentStatus.SERVING, AgentStatus.DRAINING)
    assert PHASE_TRANSITIONS.allows(AgentPhase.SERVING, AgentPhase.DRAINING)
    # Draining is final: an agent never goes back to taking starts.
    with pytest.raises(LocalProtocolError, match="illegal agent transition DRAINING -> SERVING"):
        AGENT_TRANSITIONS.check(AgentStatus.DRAINING, AgentStatus.SERVING)
    with pytest.raises(LocalProtocolError, match="illegal agent transition DRAINING -> SERVING"):
        PHASE_TRANSITIONS.check(AgentPhase.DRAINING, AgentPhase.SERVING)


def test_an_agent_drains_only_once() -> None:
    agent = AgentState("a", ("echo",))
    agent.drain()
    assert agent.phase is AgentPhase.DRAINING
    with pytest.raises(LocalProtocolError, match="DRAINING -> DRAINING"):
        agent.drain()


def test_a_draining_container_cannot_serve_again() -> None:
    agent = AgentState("a", ("echo",))
    agent.on_start(Start(1, "a", "echo", "x"))
    agent.started("x")
    agent.drain()
    assert agent.on_drained() == [SetServing("a", "x", False, 0)]
    assert agent.status("x") is LocalStatus.DRAINING
    # An Activate for it is refused (the hub promotes someone else) and it stays out.
    out = agent.on_activate(Activate("a", "x", 5))
    assert [type(e.message).__name__ for e in out] == ["ContainerStopped"]  # type: ignore[union-attr]
    assert agent.status("x") is LocalStatus.DRAINING


def test_drain_hands_the_stateless_owner_to_its_standby_before_the_ok() -> None:
    c = two_agents()
    g = c.sessions["u"].get("db", GetOptions(DB.uuid))
    c.pump()
    assert c.hub.registry.container(DB.uuid).agent_id == "a0"  # type: ignore[union-attr]
    h = c.sessions["h0"].drain_agent("a0")
    c.pump()
    assert isinstance(c.result("h0", h), Resolve)
    rec = c.hub.registry.container(DB.uuid)
    assert rec is not None
    assert rec.agent_id == "a1"
    assert c.sessions["h1"].agent("a1").status(DB.uuid) is LocalStatus.ACTIVE  # type: ignore[union-attr]
    assert c.sessions["h0"].agent("a0").status(DB.uuid) is LocalStatus.DRAINING  # type: ignore[union-attr]
    assert c.hub.registry.standbys(DB.uuid) == ()  # a0 no longer stands by for it
    # The holder follows the move; its requests reach the new owner.
    r = c.sessions["u"].request(g, "ping", b"x")
    c.pump()
    assert c.value("u", r) == b"x"
    assert c.hub.registry.check() == []


def test_drain_places_no_new_start_on_the_agent() -> None:
    c = two_agents()
    c.sessions["h0"].drain_agent("a0")
    c.pump()
    for _ in range(4):
        c.sessions["u"].get("echo")
        c.pump()
    assert c.running["a0"] == {}
    assert len(c.running["a1"]) == 1  # one echo container, reused by every get
    assert c.hub.registry.check() == []


def test_drain_cancels_the_agents_own_starts_and_the_get_goes_elsewhere() -> None:
    c = two_agents()
    c.auto_start = False
    g = c.sessions["u"].get("echo")
    c.pump()
    (host, start), = c.held_starts
    c.held_starts.clear()
    c.auto_start = True
    agent_id = start.agent_id
    h = c.sessions[host].drain_agent(agent_id)
    c.pump()
    assert isinstance(c.result(host, h), Resolve)
    c.advance(c.now + 1.0)  # the get was failed with agent_gone and is retried
    rec = c.value("u", g)
    assert rec.agent_id != agent_id  # type: ignore[attr-defined]
    assert c.hub.registry.check() == []


def _echo_on_a0(raw) -> str:  # type: ignore[no-untyped-def]
    """h0 hosts a0 (echo), h1 hosts a1 (echo), u holds an echo container on a0."""
    raw.hello("h0", alive=100.0)
    raw.send("h0", RegisterAgent(1, "a0", ("echo",)))
    raw.hello("u", alive=100.0)
    raw.send("u", Get(1, "echo"))
    (start,) = [m for m in raw.take("h0") if isinstance(m, Start)]
    raw.send("h0", Started(start.id, start.uuid))
    raw.hello("h1", alive=100.0)
    raw.send("h1", RegisterAgent(1, "a1", ("echo",)))
    raw.take("u")
    raw.take("h1")
    return str(start.uuid)


def test_an_ordinary_container_leaves_only_after_its_requests_are_answered(raw) -> None:
    uuid = _echo_on_a0(raw)
    raw.send("u", Request(2, uuid, "op", b"1"))
    (fwd,) = [m for m in raw.take("h0") if isinstance(m, Request)]
    assert raw.send("h0", Drain(7, "a0"), 1.0) == [Ok(7)]
    assert raw.hub.registry.container_state(uuid) is ContainerState.DRAINING
    # New calls to it wait (Retry), the one in flight is still answered.
    assert raw.send("u", Request(3, uuid, "op", b"2"), 1.1) == [Retry(3, 0.05)]
    assert raw.send("u", Get(4, "echo", GetOptions(uuid)), 1.1) == [Retry(4, 0.05)]
    assert raw.send("u", Connect(5, uuid), 1.1) == [Retry(5, 0.05)]
    assert raw.take("h0") == [Ok(7)]  # and nothing forwarded
    raw.take("u")
    raw.send("h0", Response(fwd.id, b"done"), 1.2)
    assert raw.take("u") == [Response(2, b"done")]
    # Answered: it is gone, and the re-acquire starts it on the other agent.
    assert raw.hub.registry.container(uuid) is None
    raw.send("u", Get(6, "echo", GetOptions(uuid)), 1.3)
    (start,) = [m for m in raw.take("h1") if isinstance(m, Start)]
    assert start.uuid == uuid
    assert raw.take("h0") == []  # the draining agent terminates its own containers
    assert raw.hub.registry.check() == []


def test_a_container_with_nothing_in_flight_leaves_at_once(raw) -> None:
    uuid = _echo_on_a0(raw)
    assert raw.send("h0", Drain(7, "a0"), 1.0) == [Ok(7)]
    assert raw.hub.registry.container(uuid) is None
    assert raw.hub.registry.agent_containers("a0") == ()
    assert raw.hub.registry.has_agent("a0")  # registered until it unregisters
    # A repeated drain changes nothing.
    assert raw.send("h0", Drain(8, "a0"), 1.1) == [Ok(8)]
    assert raw.hub.registry.check() == []


def test_only_the_registering_session_may_drain_an_agent(raw) -> None:
    _echo_on_a0(raw)
    (err,) = raw.send("u", Drain(9, "a0"))
    assert isinstance(err, Error)
    assert err.code == ErrorCode.UNAUTHORIZED.value
    (err,) = raw.send("u", Drain(10, "nobody"))
    assert isinstance(err, Error)
    assert err.code == ErrorCode.NOT_FOUND.value
    assert raw.hub.registry.has_agent("a0")


def test_a_draining_agent_that_goes_away_fails_what_it_still_ran(raw) -> None:
    uuid = _echo_on_a0(raw)
    raw.send("u", Request(2, uuid, "op", b"1"))
    raw.take("h0")
    raw.send("h0", Drain(7, "a0"), 1.0)
    raw.lost("h0", 2.0)  # the drain timed out: the agent stopped anyway
    (err,) = raw.take("u")
    assert isinstance(err, Error)
    assert err.code == ErrorCode.AGENT_GONE.value
    assert raw.hub.registry.container(uuid) is None
    assert raw.hub.registry.check() == []


def test_a_hub_that_stops_retries_new_calls_and_finishes_the_forwarded_ones(raw) -> None:
    uuid = _echo_on_a0(raw)
    raw.send("u", Request(2, uuid, "op", b"1"))
    (fwd,) = [m for m in raw.take("h0") if isinstance(m, Request)]
    raw.hub.stop_taking_calls()
    assert raw.hub.forwards_in_flight() == 1
    assert raw.send("u", Request(3, uuid, "op", b"2")) == [Retry(3, 1.0)]
    assert raw.send("u", Get(4, "echo")) == [Retry(4, 1.0)]
    assert raw.take("h0") == []
    raw.take("u")
    raw.send("h0", Response(fwd.id, b"done"))
    assert raw.take("u") == [Response(2, b"done")]
    assert raw.hub.forwards_in_flight() == 0
    raw.hub.close_all("hub shutting down")
    raw.drain()
    assert raw.take("u") == [Close("hub shutting down")]
    assert sorted(raw.closed) == ["h0", "h1", "u"]


def test_a_hub_that_hands_over_redirects_idle_peers_at_once_and_the_rest_when_answered(
        raw) -> None:
    uuid = _echo_on_a0(raw)
    raw.hello("idle", alive=100.0)
    raw.take("idle")
    raw.send("u", Request(2, uuid, "op", b"1"))
    (fwd,) = [m for m in raw.take("h0") if isinstance(m, Request)]
    raw.hub.stop_taking_calls()
    # Resigned; the standby at ws://b won: peers with nothing in flight go
    # there now (a Welcome with its URL), the caller and its agent stay.
    assert raw.hub.hand_over("ws://b:1") == 2
    raw.drain()
    redirect = Welcome(PROTOCOL_VERSION, raw.hub.hub_id, raw.hub.timeouts.alive,
                       raw.hub.timeouts.ping_interval, 1, 0, "ws://b:1")
    assert raw.take("idle") == [redirect]
    assert raw.take("h1") == [redirect]
    assert sorted(raw.closed) == ["h1", "idle"]
    assert raw.hub.hand_over("ws://b:1") == 0  # u waits for its answer, h0 gives it
    raw.send("h0", Response(fwd.id, b"done"))
    assert raw.take("u") == [Response(2, b"done")]
    assert raw.hub.hand_over("ws://b:1") == 2
    raw.drain()
    assert raw.take("u") == [redirect]
    assert sorted(raw.closed) == ["h0", "h1", "idle", "u"]
    # A peer that comes back to this hub is redirected like a standby's.
    raw.hello("late", alive=100.0)
    assert raw.take("late") == [redirect]
    raw.lost("u", 1.0)  # closing a handed-over connection ends nothing more
    assert raw.hub.registry.check() == []


def test_a_hub_that_hands_over_can_send_its_busy_peers_too(raw) -> None:
    uuid = _echo_on_a0(raw)
    raw.send("u", Request(2, uuid, "op", b"1"))
    raw.take("h0")
    raw.hub.stop_taking_calls()
    assert raw.hub.hand_over("ws://b:1") == 1  # h1 only
    # The request outlives the wait: caller and agent go too (the caller
    # resends it to the new hub).
    assert raw.hub.hand_over("ws://b:1", everyone=True) == 2
    raw.drain()
    assert [type(m) for m in raw.take("u")] == [Welcome]
    assert sorted(raw.closed) == ["h0", "h1", "u"]


def test_a_session_resends_a_drain_after_a_reconnect() -> None:
    c = two_agents()
    c.disconnect("h0")
    h = c.sessions["h0"].drain_agent("a0")  # not sent: no connection
    c.advance(c.now + 10.0)  # reconnects, registers, then drains
    assert isinstance(c.result("h0", h), Resolve)
    assert c.hub.registry.agent_containers("a0") == ()
    # The draining agent's registration offered nothing and asked for no room.
    reg = c.sessions["h0"].agent("a0").registration(99)  # type: ignore[union-attr]
    assert reg.containers == ()
    assert reg.max_containers == 0


def test_a_draining_agent_refuses_a_start() -> None:
    agent = AgentState("a", ("echo",))
    agent.drain()
    (out,) = agent.on_start(Start(1, "a", "echo", "x"))
    assert out.message == Error(1, ErrorCode.FULL.value, "agent 'a' is draining")  # type: ignore[union-attr]

