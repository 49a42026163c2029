"""Stateless (HA) containers: first wins, exactly one standby takes over (REFERENCE.md "HA")."""

from __future__ import annotations

import pytest

from hulytrio.core.agent import AgentState, LocalStatus
from hulytrio.core.effects import Reject, Resolve
from hulytrio.core.errors import ErrorCode
from hulytrio.core.messages import (
    Activate,
    Claim,
    Error,
    Event,
    Get,
    RegisterAgent,
    RegisterReply,
    Start,
    Started,
)
from hulytrio.core.types import GetOptions, OfferedContainer
from hulytrio.testing import Cluster

DB = OfferedContainer("db-1", "db", ("primary",), stateless=True)


def ha_cluster(n: int = 3) -> Cluster:
    """Hosts h0..h{n-1}, each with agent a{i} offering DB; a user "u" holding it."""
    c = Cluster()
    for i in range(n):
        c.add_client(f"h{i}")
        c.add_agent(f"h{i}", AgentState(f"a{i}", ("db",), endpoint=f"ws://a{i}",
                                        stateless=(DB,)))
    c.add_client("u")
    # At boot the first offer owns the uuid once the hub's recovery window closes.
    c.wait_for_recovery()
    return c


def owner(c: Cluster) -> str:
    rec = c.hub.registry.container(DB.uuid)
    assert rec is not None
    return rec.agent_id


def serving(c: Cluster) -> list[str]:
    out = []
    for i in range(len([k for k in c.sessions if k.startswith("h")]) + 5):
        s = c.sessions.get(f"h{i}")
        agent = s.agent(f"a{i}") if s is not None else None
        if agent is not None and agent.status(DB.uuid) is LocalStatus.ACTIVE:
            out.append(f"a{i}")
    return out


def test_first_registration_wins_others_stand_by() -> None:
    c = ha_cluster()
    assert owner(c) == "a0"
    assert c.hub.registry.standbys(DB.uuid) == ("a1", "a2")
    assert serving(c) == ["a0"]
    assert c.sessions["h1"].agent("a1").is_standby(DB.uuid)


def _kill_owner(c: Cluster, how: str) -> None:
    if how == "death":
        c.crash("h0")
        c.advance(c.now + 10.0)
    elif how == "close":
        c.disconnect("h0")
        del c.sessions["h0"]
    elif how == "unregister":
        c.sessions["h0"].unregister_agent("a0")
        c.pump()
    elif how == "terminate":
        c.sessions["h0"].agent_stopped("a0", DB.uuid)
        c.pump()
    c.advance(c.now + 0.1)


@pytest.mark.parametrize("how", ["death", "close", "unregister", "terminate"])
def test_standby_promoted_with_exactly_one_winner(how) -> None:
    c = ha_cluster()
    g = c.sessions["u"].get("db", GetOptions(DB.uuid))
    c.pump()
    assert c.value("u", g).agent_id == "a0"  # type: ignore[attr-defined]
    before = c.hub.registry.container(DB.uuid).epoch
    _kill_owner(c, how)
    rec = c.hub.registry.container(DB.uuid)
    assert rec is not None
    assert rec.agent_id == "a1"
    assert rec.endpoint == "ws://a1"
    assert rec.epoch > before
    assert serving(c) == ["a1"]
    assert c.sessions["h1"].agent("a1").epoch(DB.uuid) == rec.epoch
    assert c.hub.registry.standbys(DB.uuid) == ("a2",)
    assert c.hub.probes.counts["standby promoted"] == 1
    # The holder follows the move without re-acquiring by hand.
    assert c.sessions["u"].reference(g).agent_id == "a1"  # type: ignore[union-attr]
    assert c.hub.registry.holders(DB.uuid) == {"u": 1}
    r = c.sessions["u"].request(g, "ping", b"x")
    c.pump()
    assert c.value("u", r) == b"x"
    assert c.hub.registry.check() == []


def test_activate_goes_to_the_one_winner_only(make_raw) -> None:
    raw = make_raw().recovered()
    for i in range(3):
        raw.hello(f"h{i}")
        raw.send(f"h{i}", RegisterAgent(1, f"a{i}", ("db",), None, (DB,)))
        raw.take(f"h{i}")
    raw.lost("h0", 1.0)
    assert [m for m in raw.take("h1") if isinstance(m, Activate)] == [Activate("a1", DB.uuid, 1)]
    assert [m for m in raw.take("h2") if isinstance(m, Activate)] == []
    raw.lost("h1", 2.0)
    assert [m for m in raw.take("h2") if isinstance(m, Activate)] == [Activate("a2", DB.uuid, 2)]
    raw.lost("h2", 3.0)
    assert raw.hub.registry.container(DB.uuid) is None


def test_epoch_grows_with_every_failover() -> None:
    c = ha_cluster(4)
    epochs = [c.hub.registry.container(DB.uuid).epoch]
    for i in range(3):
        c.crash(f"h{i}")
        c.advance(c.now + 5.0)
        rec = c.hub.registry.container(DB.uuid)
        assert rec.agent_id == f"a{i + 1}"
        epochs.append(rec.epoch)
    assert epochs == sorted(set(epochs))


def test_a_stateless_uuid_started_afresh_keeps_its_epoch_growing(make_raw) -> None:
    """Every offer of a uuid goes, and a get starts the uuid on an agent that
    hosts its kind without offering it: the started instance continues the
    uuid's epochs (fix: it had epoch 0, below the epochs the hub had already
    published; found by the simulator's epoch-monotonic invariant), and so
    does an offer that takes over from it later."""
    raw = make_raw().recovered()
    raw.hello("h0", alive=100.0)
    raw.send("h0", RegisterAgent(1, "a0", ("db",), None, (DB,)))
    raw.hello("h1", alive=100.0)
    raw.send("h1", RegisterAgent(1, "a1", ("db",), None, (DB,)))
    raw.hello("hw", alive=100.0)
    raw.send("hw", RegisterAgent(1, "w", ("db",), None, ()))
    raw.lost("h0", 1.0)  # a1 promoted: epoch 1
    assert raw.hub.registry.container(DB.uuid).epoch == 1
    raw.lost("h1", 2.0)  # no offer left: the uuid is dropped
    assert raw.hub.registry.container(DB.uuid) is None
    raw.hello("u", 2.0, alive=100.0)
    raw.send("u", Get(5, "db", GetOptions(DB.uuid, DB.labels)), 2.0)
    (start,) = [m for m in raw.take("hw") if isinstance(m, Start)]
    raw.send("hw", Started(start.id, DB.uuid), 2.5)
    rec = raw.hub.registry.container(DB.uuid)
    assert (rec.agent_id, rec.stateless, rec.epoch) == ("w", False, 2)
    # An offer comes back and stands by; w's instance goes; the offer takes over.
    raw.hello("h0", 3.0, alive=100.0)
    raw.send("h0", RegisterAgent(1, "a0", ("db",), None, (DB,)), 3.0)
    raw.lost("hw", 4.0)
    rec = raw.hub.registry.container(DB.uuid)
    assert (rec.agent_id, rec.stateless, rec.epoch) == ("a0", True, 3)
    assert raw.hub.registry.check() == []


def test_stateless_container_is_never_orphan_killed() -> None:
    c = ha_cluster(1)
    g = c.sessions["u"].get("db", GetOptions(DB.uuid))
    c.pump()
    c.sessions["u"].release(g)
    c.pump()
    assert c.hub.registry.orphaned_at(DB.uuid) is None
    c.advance(120.0)
    assert c.hub.registry.container(DB.uuid) is not None
    assert serving(c) == ["a0"]


def test_standby_offer_survives_re_registration() -> None:
    c = ha_cluster(2)
    c.restart_hub()
    c.advance(c.now + 10.0)
    # Both re-registered their offer: one owns it, the other still stands by.
    assert owner(c) in ("a0", "a1")
    assert len(c.hub.registry.standbys(DB.uuid)) == 1
    assert len(serving(c)) == 1
    first = owner(c)
    c.crash("h0" if first == "a0" else "h1")
    c.advance(c.now + 10.0)
    assert owner(c) != first
    assert len(serving(c)) == 1


def test_many_standbys_never_two_owners_through_a_chain_of_failures() -> None:
    c = ha_cluster(6)
    for i in range(5):
        c.disconnect(f"h{i}")
        del c.sessions[f"h{i}"]
        c.advance(c.now + 0.5)
        assert len(serving(c)) == 1
        assert owner(c) == serving(c)[0]
    assert owner(c) == "a5"


class _Watched(Cluster):
    """Fails instead of hanging when effects keep flowing at one instant."""

    def pump(self) -> None:
        self.bounces = 0
        super().pump()

    def _client_effect(self, *args) -> None:
        self.bounces += 1
        assert self.bounces < 5000, "livelock"
        super()._client_effect(*args)


def _start_held_on_a1() -> tuple[_Watched, int]:
    """A user gets DB's uuid from a1, which hosts "db" but does not offer DB;
    the start is held.  Returns the cluster and the user's get handle."""
    c = _Watched()
    c.add_client("h1")
    c.add_agent("h1", AgentState("a1", ("db",)))
    c.add_client("u")
    c.auto_start = False
    g = c.sessions["u"].get("db", GetOptions(DB.uuid))
    c.pump()
    return c, g


def _offer_arrives_during_a_start() -> tuple[_Watched, int]:
    """While a1's start of DB's uuid is held, a0 registers its offer of DB: it stands by."""
    c, g = _start_held_on_a1()
    c.add_client("h0")
    c.add_agent("h0", AgentState("a0", (), stateless=(DB,)))
    assert c.sessions["h0"].agent("a0").is_standby(DB.uuid)
    assert c.hub.registry.standbys(DB.uuid) == ("a0",)
    return c, g


def _fail_held_start(c: _Watched) -> None:
    c.auto_start = True
    host, start = c.held_starts[0]
    c.sessions[host].agent_start_failed(start.agent_id, start.uuid, "boom")
    c.pump()


def _assert_a0_owns_and_u_holds_it(c: _Watched, g: int) -> None:
    assert owner(c) == "a0"
    assert c.hub.registry.standbys(DB.uuid) == ()
    assert c.sessions["h0"].agent("a0").status(DB.uuid) is LocalStatus.ACTIVE
    result = c.result("u", g)
    assert isinstance(result, Resolve)
    assert result.value.agent_id == "a0"
    assert c.hub.registry.holders(DB.uuid) == {"u": 1}
    assert c.hub.registry.check() == []


def test_a_failed_start_hands_the_uuid_to_the_offer_standing_by_for_it() -> None:
    c, g = _offer_arrives_during_a_start()
    _fail_held_start(c)
    _assert_a0_owns_and_u_holds_it(c, g)
    assert c.hub.probes.counts["standby activated for an unowned uuid"] == 1
    # The agent that failed the start leaves; the uuid stays with a0.
    c.disconnect("h1")
    del c.sessions["h1"]
    g2 = c.sessions["u"].get("db", GetOptions(DB.uuid))
    c.pump()
    result = c.result("u", g2)
    assert isinstance(result, Resolve)
    assert result.value.agent_id == "a0"


def test_a_start_that_times_out_hands_the_uuid_to_the_offer_standing_by() -> None:
    c, g = _offer_arrives_during_a_start()
    c.advance(c.now + c.hub.registry.timeouts.start + 0.1)
    _assert_a0_owns_and_u_holds_it(c, g)


def test_a_start_lost_with_its_agent_hands_the_uuid_to_the_offer_standing_by() -> None:
    c, g = _offer_arrives_during_a_start()
    c.disconnect("h1")
    del c.sessions["h1"]
    c.pump()
    _assert_a0_owns_and_u_holds_it(c, g)


def test_a_failed_start_with_nobody_standing_by_still_fails_the_get() -> None:
    c, g = _start_held_on_a1()
    _fail_held_start(c)
    assert isinstance(c.result("u", g), Reject)
    assert c.hub.registry.container(DB.uuid) is None


def test_an_offer_standing_by_for_a_started_instance_takes_over_when_it_goes() -> None:
    c, g = _offer_arrives_during_a_start()
    c.auto_start = True
    host, start = c.held_starts[0]
    c.sessions[host].agent_started(start.agent_id, start.uuid)
    c.pump()
    result = c.result("u", g)
    assert isinstance(result, Resolve)
    assert result.value.agent_id == "a1"  # the start won the race
    assert c.hub.registry.standbys(DB.uuid) == ("a0",)
    assert c.sessions["h0"].agent("a0").is_standby(DB.uuid)
    c.disconnect("h1")
    del c.sessions["h1"]
    c.advance(c.now + 1.0)
    assert owner(c) == "a0"
    assert c.hub.registry.standbys(DB.uuid) == ()
    assert c.sessions["h0"].agent("a0").status(DB.uuid) is LocalStatus.ACTIVE
    assert c.hub.registry.holders(DB.uuid) == {"u": 1}  # the reference re-acquired it
    assert c.hub.registry.check() == []


# --- the hub's answer to a standby's Claim (Registry.claim) ------------------------
#
# The session claims when it sees its uuid removed while it stands by
# (test_session.py).  With this hub a Claim always follows its agent's
# registration on the same connection, which has made the agent the owner or a
# known standby, so in the simulator a claim only ever finds the uuid owned:
# by its own agent (answered won, nothing changes:
# tests/sim/regressions/offer-sees-owner-removed-while-registering.toml) or by
# another (answered standby).  These tests feed the hub every case by hand.


def _claim(raw, conn: str, agent_id: str, call_id: int = 9) -> list:
    return raw.send(conn, Claim(call_id, agent_id, DB), 1.0)


def owner_of(raw) -> str:
    rec = raw.hub.registry.container(DB.uuid)
    assert rec is not None
    return rec.agent_id


def test_a_claim_of_an_unowned_uuid_wins(make_raw) -> None:
    raw = make_raw().recovered()
    raw.hello("h0")
    raw.send("h0", RegisterAgent(1, "a0", ("db",)))  # hosts the kind, offered nothing
    assert _claim(raw, "h0", "a0") == [RegisterReply(9)]
    rec = raw.hub.registry.container(DB.uuid)
    assert (rec.agent_id, rec.stateless, rec.labels) == ("a0", True, DB.labels)
    assert raw.hub.probes.counts["standby claim won"] == 1
    assert raw.hub.registry.check() == []


def test_a_claim_of_a_uuid_another_agent_owns_makes_a_standby(make_raw) -> None:
    raw = make_raw().recovered()
    raw.hello("h0")
    raw.send("h0", RegisterAgent(1, "a0", ("db",), None, (DB,)))
    raw.hello("h1")
    raw.send("h1", RegisterAgent(1, "a1", ("db",)))
    assert _claim(raw, "h1", "a1") == [RegisterReply(9, standby=(DB.uuid,))]
    assert owner_of(raw) == "a0"
    assert raw.hub.registry.standbys(DB.uuid) == ("a1",)
    assert "standby claim won" not in raw.hub.probes.counts
    raw.take("h1")
    raw.lost("h0", 2.0)
    assert [m for m in raw.take("h1") if isinstance(m, Activate)] == [Activate("a1", DB.uuid, 1)]
    assert raw.hub.registry.check() == []


def test_a_claim_by_the_owner_is_answered_won_and_changes_nothing(make_raw) -> None:
    # The only case the simulator reaches: the claimer's registration got there first.
    raw = make_raw().recovered()
    raw.hello("h0")
    raw.send("h0", RegisterAgent(1, "a0", ("db",), None, (DB,)))
    before = raw.hub.registry.container(DB.uuid)
    raw.advance(1.0)
    raw.take("h0")
    assert _claim(raw, "h0", "a0") == [RegisterReply(9)]
    assert raw.hub.registry.container(DB.uuid) == before
    assert raw.hub.probes.counts["standby claim by the owner"] == 1
    assert "standby claim won" not in raw.hub.probes.counts
    raw.advance(2.0)
    events = [m.event for m in raw.take("h0") if isinstance(m, Event)]
    assert [e.containers for e in events] == [()]  # an agent update, no container change


def test_a_claim_for_an_agent_another_client_registered_is_refused(make_raw) -> None:
    raw = make_raw()
    raw.hello("h0")
    raw.send("h0", RegisterAgent(1, "a0", ("db",)))
    raw.hello("h1")
    (reply,) = _claim(raw, "h1", "a0")
    assert isinstance(reply, Error)
    assert (reply.id, reply.code) == (9, ErrorCode.UNAUTHORIZED.value)
    assert raw.hub.registry.container(DB.uuid) is None


# --- a start answered with another uuid --------------------------------------------


@pytest.mark.parametrize("answered_owner", [None, "a2"])
def test_a_start_answered_with_another_uuid_hands_the_asked_uuid_to_its_standby(
        make_raw, answered_owner) -> None:
    """An agent that starts the container under another uuid (a misbehaving peer)
    must not leave an offer standing by for the asked uuid with no owner to wait for."""
    raw = make_raw()
    raw.hello("h1")
    raw.send("h1", RegisterAgent(1, "a1", ("db",)))
    if answered_owner is not None:  # the answered uuid is owned elsewhere already
        raw.hello("h2")
        raw.send("h2", RegisterAgent(1, "a2", ("db",), None,
                                     (OfferedContainer("other", "db", (), True),)))
    raw.hello("u")
    raw.send("u", Get(5, "db", GetOptions(DB.uuid)))
    start = next(m for m in raw.take("h1") if isinstance(m, Start))
    raw.hello("h0")  # a0 offers the asked uuid while the start is pending: it stands by
    assert raw.send("h0", RegisterAgent(1, "a0", ("db",), None, (DB,)), 0.1) == [
        RegisterReply(1, standby=(DB.uuid,))]
    raw.send("h1", Started(start.id, "other"), 0.2)
    assert owner_of(raw) == "a0", "the offer no longer waits for a start that will not come"
    assert raw.hub.registry.standbys(DB.uuid) == ()
    activated = [(m.agent_id, m.uuid) for m in raw.take("h0") if isinstance(m, Activate)]
    assert activated == [("a0", DB.uuid)]
    assert raw.hub.registry.check() == []
