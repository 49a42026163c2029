"""The hub's lifecycle notices: one ``Notice`` per fact, with the ids at hand."""

from __future__ import annotations

from hulytrio.core.agent import AgentState
from hulytrio.core.effects import Fact, Notice
from hulytrio.core.timeouts import Timeouts
from hulytrio.core.types import OfferedContainer
from hulytrio.testing import Cluster

DB = OfferedContainer("db-1", "db", ("primary",), stateless=True)
TIMEOUTS = Timeouts(alive=3.0, unused_container=5.0, start=30.0)


def of(c: Cluster, *facts: Fact) -> list[Notice]:
    return [n for n in c.notices if n.fact in facts]


def test_agent_registered_container_started_orphaned_terminated() -> None:
    c = Cluster(TIMEOUTS)
    c.add_client("host")
    c.add_agent("host", AgentState("ag", ("echo",), endpoint="ws://ag"))
    assert of(c, Fact.AGENT_REGISTERED) == [
        Notice(Fact.AGENT_REGISTERED, "ag", None, "echo", "host", "registered")]

    c.add_client("u")
    c.now = 1.0
    ref = c.sessions["u"].get("echo")
    c.pump()
    uuid = c.hub.registry.list()[0].uuid
    started = of(c, Fact.CONTAINER_STARTED)
    # the cluster starts containers at once: the start took no time
    assert started == [Notice(Fact.CONTAINER_STARTED, "ag", uuid, "echo", None, "", 0.0)]
    assert ref

    c.sessions["u"].release(ref)
    c.pump()
    assert of(c, Fact.CONTAINER_ORPHANED) == [
        Notice(Fact.CONTAINER_ORPHANED, "ag", uuid, "echo")]
    assert of(c, Fact.CONTAINER_TERMINATED) == []
    c.advance(1.0 + TIMEOUTS.unused_container)
    assert of(c, Fact.CONTAINER_TERMINATED) == [
        Notice(Fact.CONTAINER_TERMINATED, "ag", uuid, "echo", None, "unused timeout")]
    stats = c.hub.stats
    assert stats.calls[("get", "ok")] == 1
    assert stats.calls[("release", "ok")] == 1
    assert stats.calls[("register", "ok")] == 1
    assert stats.durations["get"].count == 1


def test_held_start_reports_its_duration() -> None:
    c = Cluster(TIMEOUTS)
    c.add_client("host")
    c.add_agent("host", AgentState("ag", ("echo",)))
    c.add_client("u")
    c.auto_start = False
    c.now = 2.0
    c.sessions["u"].get("echo")
    c.pump()
    assert of(c, Fact.CONTAINER_STARTED) == []
    c.now = 2.75
    host, start = c.held_starts[0]
    c.sessions[host].agent_started(start.agent_id, start.uuid)
    c.pump()
    (n,) = of(c, Fact.CONTAINER_STARTED)
    assert n.duration == 0.75
    assert c.hub.stats.durations["get"].total == 0.75


def test_agent_dead_by_alive_timeout_promotes_standby_with_failover_duration() -> None:
    c = Cluster(TIMEOUTS)
    for i in range(2):
        c.add_client(f"h{i}")
        c.add_agent(f"h{i}", AgentState(f"a{i}", ("db",), stateless=(DB,)))
    assert of(c, Fact.OWNER_CHOSEN) == []  # at boot: nobody served it before
    c.wait_for_recovery()
    assert of(c, Fact.OWNER_CHOSEN) == [
        Notice(Fact.OWNER_CHOSEN, "a0", "db-1", "db", "h0", "the recovery window closed")]
    c.advance(c.now + 0.5)
    c.crash("h0")  # silent: the hub learns by its alive timeout
    c.advance(c.now + 10.0)
    (dead,) = of(c, Fact.AGENT_DEAD)
    assert dead == Notice(Fact.AGENT_DEAD, "a0", None, "db", "h0", "alive timeout")
    (gone,) = [n for n in of(c, Fact.CLIENT_GONE) if n.client_id == "h0"]
    assert gone.reason == "alive timeout"
    (promoted,) = of(c, Fact.STANDBY_PROMOTED)
    assert (promoted.agent_id, promoted.uuid, promoted.kind) == ("a1", "db-1", "db")
    assert promoted.reason == "owner 'a0': agent gone"
    # from h0's last sign of life (it pinged until it crashed) to the promotion
    assert promoted.duration is not None
    assert 0 < promoted.duration <= TIMEOUTS.alive + 1.0
    assert of(c, Fact.CONTAINER_TERMINATED) == []  # promoted, not dropped


def test_unregister_connection_lost_and_reconnect() -> None:
    c = Cluster(TIMEOUTS)
    c.add_client("host")
    c.add_agent("host", AgentState("ag", ("echo",)))
    c.sessions["host"].unregister_agent("ag")
    c.pump()
    assert of(c, Fact.AGENT_DEAD) == [
        Notice(Fact.AGENT_DEAD, "ag", None, "echo", "host", "unregistered")]
    c.now = 1.0
    c.disconnect("host")
    assert of(c, Fact.CLIENT_GONE) == [
        Notice(Fact.CLIENT_GONE, None, None, None, "host", "connection lost")]
    assert of(c, Fact.CLIENT_RECONNECTED) == []
    c.advance(30.0)  # the session reconnects with the same peer id
    assert [n.client_id for n in of(c, Fact.CLIENT_RECONNECTED)] == ["host"]


def test_superseded_agent_is_not_also_declared_dead() -> None:
    c = Cluster(TIMEOUTS)
    c.add_client("old")
    c.add_agent("old", AgentState("ag", ("echo",)))
    c.add_client("new")
    c.add_agent("new", AgentState("ag", ("echo",)))
    assert of(c, Fact.AGENT_SUPERSEDED) == [
        Notice(Fact.AGENT_SUPERSEDED, "ag", None, None, "new", "moved from session 'old'")]
    assert of(c, Fact.AGENT_DEAD) == []


def test_durations_fold_into_prometheus_buckets() -> None:
    from hulytrio.core.tally import Durations

    d = Durations((0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 2.0):
        d.observe(seconds)
    d.pending.append(0.2)  # the hub's hot path appends to the list itself
    assert d.cumulative() == [("0.1", 2), ("1.0", 4), ("+Inf", 5)]
    assert d.count == 5
    assert d.total == 2.85
    assert d.pending == []
