"""A new hub's recovery window and stateless owners (issue 14, deliverable 4).

In the window (the hub's first session + one alive timeout) only an offer
whose agent served the uuid (``OfferedContainer.serving``) owns an unknown
stateless uuid at once; any other offer stands by *behind recovery* until a
serving offer comes or the window closes.  Otherwise a standby that reached
a new hub first would serve beside the former owner, which may still serve
until its fence lease runs out.
"""

from __future__ import annotations

import pytest

from hulytrio.core.agent import AgentState, LocalStatus
from hulytrio.core.errors import ErrorCode, LocalProtocolError
from hulytrio.core.messages import (
    Activate,
    Claim,
    Error,
    Get,
    GetReply,
    RegisterAgent,
    RegisterReply,
)
from hulytrio.core.standby import STANDBY_TRANSITIONS, StandbyState
from hulytrio.core.types import GetOptions, OfferedContainer
from hulytrio.testing import Cluster

DB = OfferedContainer("db-1", "db", ("primary",), stateless=True)
SERVED = OfferedContainer("db-1", "db", ("primary",), stateless=True, serving=True)
ALIVE = 3.0  # the default alive timeout: the window's length


def _register(raw, conn: str, agent_id: str, offer: OfferedContainer | None, now: float,
              call_id: int = 1) -> list:
    raw.hello(conn, now)
    offers = () if offer is None else (offer,)
    return raw.send(conn, RegisterAgent(call_id, agent_id, ("db",), None, offers), now)


def _activates(raw, conn: str) -> list[Activate]:
    return [m for m in raw.take(conn) if isinstance(m, Activate)]


def test_the_hole_a_standby_first_in_the_window_waits_and_the_serving_offer_owns(
        make_raw) -> None:
    raw = make_raw()
    # Y stood by behind X under the old hub and reaches the new hub first.
    assert _register(raw, "hy", "Y", DB, 0.1) == [RegisterReply(1, standby=(DB.uuid,))]
    reg = raw.hub.registry
    assert reg.container(DB.uuid) is None
    assert reg.standby_state(DB.uuid) is StandbyState.BEHIND_RECOVERY
    assert reg.standbys(DB.uuid) == ("Y",)
    # X served it (it may still, until its fence lease ends): X owns it.
    assert _register(raw, "hx", "X", SERVED, 0.5) == [RegisterReply(1)]
    record = reg.container(DB.uuid)
    assert record is not None
    assert record.agent_id == "X"
    assert reg.standby_state(DB.uuid) is StandbyState.BEHIND_OWNER
    assert reg.standbys(DB.uuid) == ("Y",)
    assert raw.hub.probes.counts["serving offer owns a uuid behind recovery"] == 1
    # The window's end changes nothing: the uuid has its owner.
    raw.advance(ALIVE + 0.1)
    assert _activates(raw, "hy") == []
    assert reg.container(DB.uuid).agent_id == "X"  # type: ignore[union-attr]
    assert "standby activated at the end of recovery" not in raw.hub.probes.counts
    assert reg.check() == []


def test_the_window_closing_with_only_standbys_activates_the_first(make_raw) -> None:
    raw = make_raw()
    raw.hello("u", 0.0)
    _register(raw, "hy", "Y", DB, 0.2)
    _register(raw, "hz", "Z", DB, 0.3)
    raw.take("hy")
    # A re-acquire (parked as in any recovery) and an ordinary get of the uuid
    # (parked behind recovery, not told "no owner") wait for the owner.
    assert raw.send("u", Get(7, "db", GetOptions(DB.uuid), reacquire=True), 0.4) == []
    assert raw.send("u", Get(8, "db", GetOptions(DB.uuid)), 0.5) == []
    assert raw.hub.probes.counts["get parked behind recovery"] == 1
    raw.advance(ALIVE)
    reg = raw.hub.registry
    record = reg.container(DB.uuid)
    assert record is not None
    assert (record.agent_id, record.stateless) == ("Y", True)
    assert _activates(raw, "hy") == [Activate("Y", DB.uuid, record.epoch)]
    assert _activates(raw, "hz") == []
    assert reg.standbys(DB.uuid) == ("Z",)
    assert reg.standby_state(DB.uuid) is StandbyState.BEHIND_OWNER
    # The parked gets ran after the activation: they hold the owner.
    replies = [m for m in raw.take("u") if isinstance(m, GetReply | Error)]
    assert [(type(m), m.id) for m in replies] == [(GetReply, 7), (GetReply, 8)]
    assert all(m.container.agent_id == "Y" for m in replies)  # type: ignore[union-attr]
    assert reg.holders(DB.uuid) == {"u": 2}
    assert raw.hub.probes.counts["standby activated at the end of recovery"] == 1
    assert reg.check() == []


def test_a_serving_offer_answers_the_gets_parked_behind_recovery(make_raw) -> None:
    raw = make_raw()
    raw.hello("u", 0.0)
    _register(raw, "hy", "Y", DB, 0.1)
    raw.send("u", Get(8, "db", GetOptions(DB.uuid)), 0.2)
    _register(raw, "hx", "X", SERVED, 0.3)
    (reply,) = [m for m in raw.take("u") if isinstance(m, GetReply)]
    assert (reply.id, reply.container.agent_id) == (8, "X")
    raw.advance(ALIVE)
    assert [m for m in raw.take("u") if isinstance(m, GetReply)] == []  # answered once


def test_a_get_of_another_kind_behind_recovery_is_refused(make_raw) -> None:
    raw = make_raw()
    raw.hello("u", 0.0)
    _register(raw, "hy", "Y", DB, 0.1)
    (reply,) = raw.send("u", Get(8, "echo", GetOptions(DB.uuid)), 0.2)
    assert isinstance(reply, Error)
    assert reply.code == ErrorCode.BAD_KIND.value


def test_a_claim_in_the_window_stands_by_behind_recovery(make_raw) -> None:
    raw = make_raw()
    _register(raw, "hy", "Y", None, 0.1)
    assert raw.send("hy", Claim(9, "Y", DB), 0.2) == [RegisterReply(9, standby=(DB.uuid,))]
    assert raw.hub.registry.standby_state(DB.uuid) is StandbyState.BEHIND_RECOVERY
    raw.advance(0.1 + ALIVE)  # the window opened with the first session, at 0.1
    assert raw.hub.registry.container(DB.uuid).agent_id == "Y"  # type: ignore[union-attr]


def test_the_last_standby_behind_recovery_leaving_disbands_the_group(make_raw) -> None:
    raw = make_raw()
    _register(raw, "hy", "Y", DB, 0.1)
    raw.lost("hy", 0.5)
    assert raw.hub.registry.standby_state(DB.uuid) is StandbyState.DISBANDED
    raw.advance(0.1 + ALIVE)
    assert raw.hub.registry.container(DB.uuid) is None
    assert raw.hub.registry.check() == []


def test_outside_the_window_the_first_offer_owns_as_before(make_raw) -> None:
    raw = make_raw()
    raw.hello("early", 0.0)  # opens the window
    raw.advance(ALIVE)
    assert _register(raw, "hy", "Y", DB, ALIVE + 0.1) == [RegisterReply(1)]
    assert raw.hub.registry.container(DB.uuid).agent_id == "Y"  # type: ignore[union-attr]


def test_the_standby_table_allows_exactly_the_recovery_moves() -> None:
    recovery = StandbyState.BEHIND_RECOVERY
    for new in (recovery, StandbyState.BEHIND_OWNER, StandbyState.DISBANDED):
        assert STANDBY_TRANSITIONS.check(recovery, new) is new
    for old, new in ((recovery, StandbyState.BEHIND_START),
                     (StandbyState.BEHIND_OWNER, recovery),
                     (StandbyState.BEHIND_START, recovery),
                     (StandbyState.DISBANDED, recovery)):
        with pytest.raises(LocalProtocolError):
            STANDBY_TRANSITIONS.check(old, new)


def test_a_registration_marks_only_the_stateless_offers_that_serve() -> None:
    agent = AgentState("a", ("db",), stateless=(DB,))
    (offer,) = agent.registration(1).containers
    assert offer.serving is False  # a fresh agent's offer stands by
    agent.on_registered(RegisterReply(1))
    assert agent.status(DB.uuid) is LocalStatus.ACTIVE
    (offer,) = agent.registration(2).containers
    assert offer.serving is True
    agent.fence()  # the registration is sent: paused until answered
    (offer,) = agent.registration(3).containers
    assert offer.serving is False  # paused since an earlier registration: not serving now
    agent.on_registered(RegisterReply(3))
    agent.self_fence()  # the hub was silent past the fence lease
    (offer,) = agent.registration(4).containers
    assert offer.serving is False


def test_a_restarted_hub_gives_the_uuid_to_its_former_owner_at_once() -> None:
    c = Cluster()
    for i in range(3):
        c.add_client(f"h{i}")
        c.add_agent(f"h{i}", AgentState(f"a{i}", ("db",), stateless=(DB,)))
    c.wait_for_recovery()
    assert c.hub.registry.container(DB.uuid).agent_id == "a0"  # type: ignore[union-attr]
    c.advance(c.now + 0.5)
    c.restart_hub(term=2)
    c.advance(c.now + 0.1)  # well inside the new hub's window
    record = c.hub.registry.container(DB.uuid)
    assert record is not None
    assert record.agent_id == "a0"  # it re-registered serving
    # (whichever reached the new hub first: the standbys did not take it)
    assert sorted(c.hub.registry.standbys(DB.uuid)) == ["a1", "a2"]
    serving = [f"a{i}" for i in range(3)
               if c.sessions[f"h{i}"].agent(f"a{i}").status(DB.uuid)  # type: ignore[union-attr]
               is LocalStatus.ACTIVE]
    assert serving == ["a0"]
    assert c.hub.registry.check() == []
