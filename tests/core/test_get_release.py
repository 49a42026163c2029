"""get / release / client and agent loss at the hub (REFERENCE.md "Registry")."""

from __future__ import annotations

from hulytrio.core.agent import AgentState
from hulytrio.core.errors import ErrorCode
from hulytrio.core.events import ChangeKind
from hulytrio.core.messages import (
    Error,
    Event,
    Get,
    GetReply,
    Ok,
    RegisterAgent,
    Release,
    Start,
    Started,
    Terminate,
    UnregisterAgent,
)
from hulytrio.core.registry import RegistryTimer
from hulytrio.core.types import ContainerState, GetOptions, OfferedContainer
from hulytrio.testing import Cluster


def setup(raw, *agents, alive=None):
    """Connect "c1", "c2" and one host session per agent id (host conn = "h-" + agent)."""
    raw.hello("c1", alive=alive)
    raw.hello("c2", alive=alive)
    for agent_id in agents:
        raw.hello(f"h-{agent_id}", alive=alive)
        raw.send(f"h-{agent_id}", RegisterAgent(1, agent_id, ("echo",)))
    for conn in list(raw.inbox):
        raw.take(conn)


def starts(raw, conn):
    return [m for m in raw.take(conn) if isinstance(m, Start)]


def replies(msgs):
    return [m for m in msgs if isinstance(m, GetReply | Error | Ok)]


def get_started(raw, client, call_id, options=None, agent="ag", kind="echo"):
    """A get that starts a container on ``agent``; returns its uuid."""
    options = options or GetOptions()
    assert raw.send(client, Get(call_id, kind, options)) == []
    (start,) = starts(raw, f"h-{agent}")
    raw.send(f"h-{agent}", Started(start.id, start.uuid, None))
    (reply,) = [m for m in raw.take(client) if getattr(m, "id", None) == call_id]
    assert isinstance(reply, GetReply)
    return reply.container.uuid


def test_get_starts_then_reuses_live_uuid(raw) -> None:
    setup(raw, "ag")
    uuid = get_started(raw, "c1", 1)
    (reply,) = raw.send("c2", Get(2, "echo", GetOptions(uuid)))
    assert reply.container.uuid == uuid
    assert raw.hub.registry.holders(uuid) == {"c1": 1, "c2": 1}
    assert starts(raw, "h-ag") == []


def test_uuid_reuse_checks_the_kind(raw) -> None:
    setup(raw, "ag")
    uuid = get_started(raw, "c1", 1)
    (reply,) = raw.send("c2", Get(2, "db", GetOptions(uuid)))
    assert isinstance(reply, Error)
    assert reply.code == ErrorCode.BAD_KIND.value
    assert raw.hub.registry.holders(uuid) == {"c1": 1}


def test_get_by_uuid_joins_a_pending_start(raw) -> None:
    setup(raw, "ag")
    raw.send("c1", Get(1, "echo", GetOptions("fixed")))
    raw.send("c2", Get(2, "echo", GetOptions("fixed")))
    (start,) = starts(raw, "h-ag")
    assert start.uuid == "fixed"
    assert raw.hub.registry.container_state("fixed") is ContainerState.PENDING
    raw.send("h-ag", Started(start.id, "fixed"))
    assert [m.container.uuid for m in raw.take("c1") + raw.take("c2")] == ["fixed", "fixed"]
    assert raw.hub.registry.holders("fixed") == {"c1": 1, "c2": 1}


def test_pending_uuid_join_checks_the_kind(raw) -> None:
    setup(raw, "ag")
    raw.send("c1", Get(1, "echo", GetOptions("fixed")))
    (reply,) = raw.send("c2", Get(2, "db", GetOptions("fixed")))
    assert reply.code == ErrorCode.BAD_KIND.value


def test_exact_label_set_reuses_live_and_pending(raw) -> None:
    setup(raw, "ag")
    t1 = GetOptions(labels=("tenant-1", "eu"))
    raw.send("c1", Get(1, "echo", t1))
    # Pending: the same label set in another order joins the start.
    raw.send("c2", Get(2, "echo", GetOptions(labels=["eu", "tenant-1", "eu"])))
    (start,) = starts(raw, "h-ag")
    raw.send("h-ag", Started(start.id, start.uuid))
    uuid = start.uuid
    assert raw.hub.registry.holders(uuid) == {"c1": 1, "c2": 1}
    # Live: reused too (fix: the reference only joined pending starts).
    (reply,) = raw.send("c1", Get(3, "echo", t1))
    assert reply.container.uuid == uuid
    assert starts(raw, "h-ag") == []
    # Neither a subset nor an unlabelled get is handed the tenant's container.
    for call_id, labels in ((4, ("tenant-1",)), (5, ())):
        assert raw.send("c1", Get(call_id, "echo", GetOptions(labels=labels))) == []
        (other,) = starts(raw, "h-ag")
        assert other.uuid != uuid


def test_round_robin_over_agents_with_the_kind(raw) -> None:
    setup(raw, "ag1", "ag2", "ag3")
    picked = []
    for i in range(6):
        raw.send("c1", Get(i + 1, "echo", GetOptions(labels=(f"l{i}",))))
        for agent in ("ag1", "ag2", "ag3"):
            if starts(raw, f"h-{agent}"):
                picked.append(agent)
    assert picked == ["ag1", "ag2", "ag3", "ag1", "ag2", "ag3"]


def test_no_agent_for_kind_is_an_error(raw) -> None:
    setup(raw, "ag")
    (reply,) = raw.send("c1", Get(1, "db"))
    assert reply.code == ErrorCode.NO_AGENT.value


def test_a_failed_start_does_not_poison_later_starts(raw) -> None:
    setup(raw, "ag")
    opts = GetOptions(labels=("x",))
    raw.send("c1", Get(1, "echo", opts))
    raw.send("c2", Get(2, "echo", opts))
    (start,) = starts(raw, "h-ag")
    raw.send("h-ag", Error(start.id, ErrorCode.START_FAILED.value, "boom"))
    for conn in ("c1", "c2"):
        (reply,) = raw.take(conn)
        assert reply.code == ErrorCode.START_FAILED.value
    assert raw.hub.registry.pending_count() == 0
    raw.send("c1", Get(3, "echo", opts))
    (start2,) = starts(raw, "h-ag")
    raw.send("h-ag", Started(start2.id, start2.uuid))
    (reply,) = raw.take("c1")
    assert isinstance(reply, GetReply)
    assert raw.hub.registry.check() == []


def test_a_start_the_agent_never_answers_fails_after_the_start_timeout(raw) -> None:
    setup(raw, "ag", alive=100.0)
    raw.send("c1", Get(1, "echo"), 0.0)
    raw.advance(29.9)
    assert replies(raw.take("c1")) == []
    raw.advance(30.0)
    (reply,) = replies(raw.take("c1"))
    assert reply.code == ErrorCode.START_FAILED.value


def test_start_answered_with_existing_uuid_keeps_the_client_set(raw) -> None:
    raw.hello("c1")
    raw.hello("c2")
    raw.hello("h-ag")
    raw.send("h-ag", RegisterAgent(1, "ag", ("echo",), None, (OfferedContainer("x", "echo"),)))
    for conn in ("c1", "c2", "h-ag"):
        raw.take(conn)
    raw.send("c1", Get(1, "echo", GetOptions(labels=("a",))))
    raw.send("c2", Get(2, "echo", GetOptions(labels=("a",))))
    (start,) = starts(raw, "h-ag")
    # The agent decides the container it already runs serves this start.
    raw.send("h-ag", Started(start.id, "x"))
    assert [m.container.uuid for m in raw.take("c1") + raw.take("c2")] == ["x", "x"]
    assert raw.hub.registry.holders("x") == {"c1": 1, "c2": 1}
    assert raw.hub.registry.orphaned_at("x") is None
    assert raw.hub.registry.check() == []


def test_release_only_by_a_holder(raw) -> None:
    setup(raw, "ag")
    uuid = get_started(raw, "c1", 1)
    (reply,) = raw.send("c2", Release(2, uuid))
    assert reply.code == ErrorCode.UNAUTHORIZED.value
    assert raw.hub.registry.holders(uuid) == {"c1": 1}


def test_release_counts_per_get(raw) -> None:
    setup(raw, "ag")
    uuid = get_started(raw, "c1", 1)
    raw.send("c1", Get(2, "echo", GetOptions(uuid)))
    assert raw.hub.registry.holders(uuid) == {"c1": 2}
    assert raw.send("c1", Release(3, uuid), 1.0) == [Ok(3)]
    assert raw.hub.registry.orphaned_at(uuid) is None
    assert raw.send("c1", Release(4, uuid), 2.0) == [Ok(4)]
    assert raw.hub.registry.orphaned_at(uuid) == 2.0
    (reply,) = raw.send("c1", Release(5, uuid), 2.0)
    assert reply.code == ErrorCode.UNAUTHORIZED.value


def test_release_of_a_gone_container_is_ok(raw) -> None:
    setup(raw, "ag")
    assert raw.send("c1", Release(1, "never-existed")) == [Ok(1)]


def test_client_gone_releases_its_holds(raw) -> None:
    setup(raw, "ag")
    uuid = get_started(raw, "c1", 1, agent="ag")
    raw.send("c2", Get(2, "echo", GetOptions(uuid)))
    raw.lost("c1", 1.0)
    assert raw.hub.registry.holders(uuid) == {"c2": 1}
    raw.lost("c2", 2.0)
    assert raw.hub.registry.orphaned_at(uuid) == 2.0
    assert raw.hub.registry.holds("c2") == {}
    assert raw.hub.registry.check() == []


def test_client_gone_while_waiting_leaves_an_orphan_not_a_holder(raw) -> None:
    setup(raw, "ag")
    raw.send("c1", Get(1, "echo"), 0.0)
    (start,) = starts(raw, "h-ag")
    raw.lost("c1", 0.5)
    raw.send("h-ag", Started(start.id, start.uuid), 1.0)
    assert raw.hub.registry.holders(start.uuid) == {}
    assert raw.hub.registry.orphaned_at(start.uuid) == 1.0
    assert raw.hub.registry.check() == []


def test_agent_gone_removes_containers_fails_waiters_drops_orphans(raw) -> None:
    setup(raw, "ag", "other")
    held = get_started(raw, "c1", 1)
    orphan = get_started(raw, "c1", 2, GetOptions(labels=("o",)), agent="other")
    orphan2 = get_started(raw, "c1", 3, GetOptions(labels=("o2",)))
    raw.send("c1", Release(4, orphan2), 0.0)
    assert (RegistryTimer.ORPHAN, orphan2) in raw.hub.registry.timers
    filler = get_started(raw, "c1", 6, GetOptions(labels=("filler",)), agent="other")
    raw.take("c1")
    raw.send("c2", Get(5, "echo", GetOptions(labels=("p",))))
    (start,) = starts(raw, "h-other") + starts(raw, "h-ag")
    assert start.agent_id == "ag"
    raw.lost("h-ag", 1.0)
    reg = raw.hub.registry
    assert reg.container(held) is None
    assert reg.container(orphan2) is None
    assert reg.holds("c1") == {orphan: 1, filler: 1}
    (reply,) = raw.take("c2")
    assert reply.code == ErrorCode.AGENT_GONE.value
    assert reg.pending_count() == 0
    # The orphan mark went with the container: nothing fires for it later,
    # and nothing at all is sent to the dead agent's connection.
    raw.advance(10.0)
    assert raw.take("h-ag") == []
    assert (RegistryTimer.ORPHAN, orphan2) not in reg.timers
    assert reg.check() == []


def test_orphan_kill_sends_terminate_to_the_owner(raw) -> None:
    setup(raw, "ag")
    uuid = get_started(raw, "c1", 1)
    raw.send("c1", Release(2, uuid), 1.0)
    raw.send("h-ag", Ok(0), 5.9)  # keep the host alive
    raw.send("c1", Ok(0), 5.9)
    raw.advance(6.0)
    assert Terminate("ag", uuid) in raw.take("h-ag")
    assert raw.hub.registry.container(uuid) is None


def _drop_and_re_add(raw, flush_between):
    raw.hello("c1", alive=100.0)
    raw.hello("h", alive=100.0)
    offer = OfferedContainer("x", "echo")
    raw.send("h", RegisterAgent(1, "ag", ("echo",), None, (offer,)), 0.0)
    raw.send("c1", Get(1, "echo", GetOptions("x")), 0.0)
    raw.advance(1.0)
    raw.send("h", UnregisterAgent(2, "ag"), 1.0)
    if flush_between:
        raw.advance(1.5)
    raw.send("h", RegisterAgent(3, "ag", ("echo",), None, (offer,)), 1.5)
    raw.advance(2.0)


def test_drop_and_re_add_in_one_window_is_a_new_instance(raw) -> None:
    _drop_and_re_add(raw, flush_between=False)
    # The re-added uuid is a new instance: the old holds are gone, and the
    # folded "added" event tells clients so by its larger instance number.
    assert raw.hub.registry.holders("x") == {}
    assert raw.hub.registry.orphaned_at("x") == 1.5
    events = [m.event for m in raw.inbox["c1"] if isinstance(m, Event)]
    (got,) = [m for m in raw.inbox["c1"] if isinstance(m, GetReply)]
    (change,) = [ce for ev in events for ce in ev.containers if ce.container.uuid == "x"][-1:]
    assert change.change is ChangeKind.ADDED
    assert change.container.instance > got.container.instance
    assert raw.hub.registry.check() == []


def test_session_re_acquires_a_container_replaced_within_one_window() -> None:
    c = Cluster()
    client = c.add_client("c1")
    c.add_client("h")
    agent = AgentState("ag", ("echo",))
    c.add_agent("h", agent)
    ref = client.get("echo", GetOptions("x"))
    c.pump()
    first = client.reference(ref)
    assert first is not None
    c.advance(1.0)
    # The agent drops and re-offers "x" before the event window closes.
    c.sessions["h"].unregister_agent("ag")
    c.pump()
    c.add_agent("h", AgentState("ag", ("echo",), stateless=()))
    c.hub.receive("h", RegisterAgent(99, "ag", ("echo",), None,
                                     (OfferedContainer("x", "echo"),)), c.now)
    c.advance(2.0)
    again = client.reference(ref)
    assert again is not None
    assert again.instance > first.instance
    assert c.hub.registry.holders("x") == {"c1": 1}
    assert c.hub.registry.orphaned_at("x") is None
    assert c.hub.registry.check() == []


def test_drop_seen_by_clients_loses_the_holders(raw) -> None:
    _drop_and_re_add(raw, flush_between=True)
    # The client saw "removed" and re-acquires by itself.
    assert raw.hub.registry.holders("x") == {}
    assert raw.hub.registry.orphaned_at("x") == 1.5


def test_release_while_dropped_is_not_undone_by_a_re_add(raw) -> None:
    raw.hello("c1", alive=100.0)
    raw.hello("h", alive=100.0)
    offer = OfferedContainer("x", "echo")
    raw.send("h", RegisterAgent(1, "ag", ("echo",), None, (offer,)), 0.0)
    raw.send("c1", Get(1, "echo", GetOptions("x")), 0.0)
    raw.advance(1.0)
    raw.send("h", UnregisterAgent(2, "ag"), 1.0)
    assert raw.send("c1", Release(3, "x"), 1.0)[-1] == Ok(3)
    raw.send("h", RegisterAgent(3, "ag", ("echo",), None, (offer,)), 1.0)
    assert raw.hub.registry.holders("x") == {}
    assert raw.hub.registry.orphaned_at("x") == 1.0


def test_re_acquire_in_the_drop_window_takes_exactly_one_hold(raw) -> None:
    raw.hello("c1", alive=100.0)
    raw.hello("h1", alive=100.0)
    raw.hello("h2", alive=100.0)
    raw.send("h1", RegisterAgent(1, "ag1", ("echo",)), 0.0)
    raw.send("c1", Get(1, "echo", GetOptions("x")), 0.0)
    (start,) = starts(raw, "h1")
    raw.send("h1", Started(start.id, "x"), 0.0)
    raw.send("h2", RegisterAgent(1, "ag2", ("echo",)), 0.0)
    raw.send("h1", UnregisterAgent(2, "ag1"), 1.0)
    # The client learns from a failed request, before any event, and
    # re-acquires by itself (believing its hold survived).
    held = next(m for m in raw.inbox["c1"] if isinstance(m, GetReply)).container.instance
    raw.send("c1", Get(3, "echo", GetOptions("x"), held_instance=held), 1.0)
    (start2,) = starts(raw, "h2")
    raw.send("h2", Started(start2.id, "x"), 1.0)
    assert raw.hub.registry.holders("x") == {"c1": 1}
    assert raw.hub.registry.check() == []
