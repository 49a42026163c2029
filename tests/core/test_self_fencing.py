"""Self-fencing: an agent its hub has not heard for a fence lease stops serving.

Issue #14, deliverable 4.  The session counts from the last moment it knows
the hub heard it (the send time of the last ping the hub answered, or of the
hello its ``Welcome`` answered), so the agent stops before the hub's alive
timeout can hand its uuids to a standby.
"""

from __future__ import annotations

import random

import pytest

from hulytrio.core.agent import AgentState, LocalStatus
from hulytrio.core.effects import CloseConnection, OpenConnection, Send, SetServing
from hulytrio.core.errors import ErrorCode, LocalProtocolError
from hulytrio.core.messages import (
    PROTOCOL_VERSION,
    Error,
    Ping,
    Pong,
    RegisterAgent,
    RegisterReply,
    Request,
    Welcome,
)
from hulytrio.core.session import FENCE_SHARE, ClientSession, SessionState, SessionTimer
from hulytrio.core.types import OfferedContainer

ALIVE = 3.0  # the hub's alive timeout for this session (its Welcome)
PING = 1.0
LEASE = FENCE_SHARE * ALIVE  # 2.7 s


def _sent(effects: list[object]) -> list[object]:
    return [e.message for e in effects if isinstance(e, Send)]


def _advance(s: ClientSession, now: float) -> list[object]:
    """Fire every session deadline up to ``now`` and return the effects."""
    out: list[object] = []
    while (d := s.next_deadline()) is not None and d <= now:
        s.handle_timers(d)
        out += s.effects()
    return out


def _serving_agent(fence_lease: float | None = None) -> tuple[ClientSession, AgentState]:
    """A session welcomed at t=0 (hello sent at 0) hosting agent "ag", owner of "db-1"."""
    s = ClientSession("me", rng=random.Random(1))
    s.connect(0.0)
    s.connection_made(0.0)
    s.receive(Welcome(PROTOCOL_VERSION, "hub1", ALIVE, PING), 0.0)
    agent = AgentState("ag", ("db",), stateless=(OfferedContainer("db-1", "db", (), True),),
                       fence_lease=fence_lease)
    s.register_agent(agent)
    register = next(m for m in _sent(s.effects()) if isinstance(m, RegisterAgent))
    s.receive(RegisterReply(register.id), 0.0)
    assert SetServing("ag", "db-1", True, 0) in s.effects()
    assert agent.status("db-1") is LocalStatus.ACTIVE
    return s, agent


def test_the_default_lease_is_nine_tenths_of_the_hubs_alive_timeout() -> None:
    s, _ = _serving_agent()
    assert s.fence_lease_for(ALIVE) == pytest.approx(2.7)
    assert s.fence_lease_for(10.0) == pytest.approx(9.0)


def test_an_agent_lease_may_be_shorter_never_longer_than_the_default() -> None:
    s, _ = _serving_agent(fence_lease=1.5)
    assert s.fence_lease_for(ALIVE) == 1.5
    assert s.fence_lease_for(1.0) == pytest.approx(0.9)
    with pytest.raises(LocalProtocolError, match="fence_lease must be > 0"):
        AgentState("x", ("db",), fence_lease=0.0)


def test_answered_pings_keep_the_offer_serving() -> None:
    s, agent = _serving_agent()
    for t in range(1, 30):
        out = _advance(s, float(t))
        assert Ping() in _sent(out)
        s.receive(Pong(), t + 0.05)  # the hub answers each ping at once
        assert s.effects() == []
    assert agent.status("db-1") is LocalStatus.ACTIVE
    assert s.state is SessionState.READY


def test_a_silent_hub_fences_the_offer_at_the_lease_and_the_session_reconnects() -> None:
    s, agent = _serving_agent()
    _advance(s, 1.0)
    s.receive(Pong(), 1.02)  # answers the ping sent at 1.0: the hub heard us at 1.0
    # Then silence: pings at 2.0, 3.0 go unanswered.
    out = _advance(s, 1.0 + LEASE - 0.001)
    assert agent.status("db-1") is LocalStatus.ACTIVE
    assert not any(isinstance(e, SetServing) for e in out)
    out = _advance(s, 1.0 + LEASE)
    assert SetServing("ag", "db-1", False, 0, fenced=True) in out
    assert agent.status("db-1") is LocalStatus.STANDBY
    assert agent.is_fenced("db-1")
    # Before the hub's alive timeout (it last heard us at 3.0 at the latest):
    # the connection is given up, so the hub decides ownership again.
    assert any(isinstance(e, CloseConnection) for e in out)
    assert s.state is SessionState.BACKOFF
    # A request that still arrives is not run (the connection is gone).
    s.receive(Request(7, "db-1", "op", b"", "c"), 1.0 + LEASE + 0.01)
    assert s.effects() == []


def test_the_lease_counts_from_the_answered_ping_not_from_the_answer() -> None:
    # The hub answers late: a pong heard at 2.5 for the ping sent at 1.0
    # proves only that the hub heard us at 1.0.
    s, agent = _serving_agent()
    _advance(s, 2.0)  # pings at 1.0 and 2.0
    s.receive(Pong(), 2.5)
    out = _advance(s, 1.0 + LEASE)
    assert SetServing("ag", "db-1", False, 0, fenced=True) in out
    assert agent.is_fenced("db-1")


def test_a_message_that_waited_out_the_lease_is_not_obeyed() -> None:
    # The agent process was paused: on waking, the request queued for it is
    # read before its timers run; the fence comes first.
    s, _ = _serving_agent()
    s.receive(Request(7, "db-1", "op", b"", "c"), 5.0)
    out = s.effects()
    assert SetServing("ag", "db-1", False, 0, fenced=True) in out
    assert not any(type(e).__name__ == "RunRequest" for e in out)
    assert s.state is SessionState.BACKOFF


def test_a_lost_connection_fences_at_the_lease_while_reconnecting() -> None:
    s, agent = _serving_agent()
    _advance(s, 1.0)
    s.receive(Pong(), 1.01)
    s.connection_lost(1.5)
    s.effects()
    # The hub cannot be reached again: reconnects keep failing.
    now = 1.5
    while now < 1.0 + LEASE - 0.01:
        out = _advance(s, now)
        if any(isinstance(e, OpenConnection) for e in out):
            s.connection_lost(now)
        now += 0.05
    assert agent.status("db-1") is LocalStatus.ACTIVE
    out = _advance(s, 1.0 + LEASE)
    assert SetServing("ag", "db-1", False, 0, fenced=True) in out
    assert agent.is_fenced("db-1")


def test_a_hub_accepting_the_agent_again_restores_serving() -> None:
    s, agent = _serving_agent()
    _advance(s, 4.0)  # silent hub: fenced at 2.7
    assert agent.is_fenced("db-1")
    # Reconnect: the session dials again, the hub welcomes, the agent
    # re-registers, and the hub's answer (no standby) makes it the owner.
    now = 4.0
    while s.state is not SessionState.CONNECTING:
        now = s.next_deadline() or now
        _advance(s, now)
    s.connection_made(now)
    s.receive(Welcome(PROTOCOL_VERSION, "hub1", ALIVE, PING), now)
    register = next(m for m in _sent(s.effects()) if isinstance(m, RegisterAgent))
    assert register.containers == (OfferedContainer("db-1", "db", (), True),)
    assert agent.is_fenced("db-1")
    s.receive(RegisterReply(register.id), now + 0.01)
    assert s.effects() == [SetServing("ag", "db-1", True, 0)]  # (the session's own call)
    assert agent.status("db-1") is LocalStatus.ACTIVE
    # And the lease runs again from the new hello.
    out = _advance(s, now + LEASE + 0.01)
    assert SetServing("ag", "db-1", False, 0, fenced=True) in out


def test_the_hub_giving_the_uuid_to_another_keeps_it_standing_by() -> None:
    s, agent = _serving_agent()
    _advance(s, 4.0)
    now = 4.0
    while s.state is not SessionState.CONNECTING:
        now = s.next_deadline() or now
        _advance(s, now)
    s.connection_made(now)
    s.receive(Welcome(PROTOCOL_VERSION, "hub1", ALIVE, PING), now)
    register = next(m for m in _sent(s.effects()) if isinstance(m, RegisterAgent))
    s.receive(RegisterReply(register.id, standby=("db-1",)), now + 0.01)
    assert s.effects() == [SetServing("ag", "db-1", False, 0)]
    assert agent.status("db-1") is LocalStatus.STANDBY
    assert not agent.is_fenced("db-1")
    # A forwarded request for it is refused, never run.
    s.receive(Request(9, "db-1", "op", b"", "c"), now + 0.02)
    (reply,) = _sent(s.effects())
    assert isinstance(reply, Error)
    assert reply.code == ErrorCode.NOT_FOUND.value


def test_a_session_without_agents_never_fences_nor_drops_early() -> None:
    s = ClientSession("me", rng=random.Random(1))
    s.connect(0.0)
    s.connection_made(0.0)
    s.receive(Welcome(PROTOCOL_VERSION, "hub1", ALIVE, PING), 0.0)
    s.effects()
    out = _advance(s, ALIVE - 0.01)  # silent hub, below its alive timeout
    assert not any(isinstance(e, CloseConnection) for e in out)
    assert s.state is SessionState.READY


def test_a_session_hosting_agents_pings_at_a_third_of_a_short_alive_timeout() -> None:
    # A hub with a 1 s alive timeout and 1 s pings: an agent pinging every
    # second would fence (lease 0.9 s) between two answered pings.
    s = ClientSession("me", rng=random.Random(1))
    s.connect(0.0)
    s.connection_made(0.0)
    s.receive(Welcome(PROTOCOL_VERSION, "hub1", 1.0, 1.0), 0.0)
    assert s.timers.deadline(SessionTimer.PING) == 1.0  # no agent: the hub's interval
    agent = AgentState("ag", ("db",), stateless=(OfferedContainer("db-1", "db", (), True),))
    s.register_agent(agent)
    register = next(m for m in _sent(s.effects()) if isinstance(m, RegisterAgent))
    s.receive(RegisterReply(register.id), 0.0)
    s.effects()
    pings = 0
    for step in range(1, 31):  # ten seconds, the hub answering each ping in 50 ms
        out = _advance(s, step / 3)
        pings += _sent(out).count(Ping())
        s.receive(Pong(), step / 3 + 0.05)
        assert not any(isinstance(e, SetServing) for e in s.effects() + out)
    assert pings == 30
    assert agent.status("db-1") is LocalStatus.ACTIVE
