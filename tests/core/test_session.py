"""The client session: reconnects, resends, re-acquires and re-registers."""

from __future__ import annotations

import random
import sys

import pytest

from hulytrio.core.agent import AgentState, LocalStatus
from hulytrio.core.effects import (
    CloseConnection,
    OpenConnection,
    ReferenceChanged,
    Reject,
    Resolve,
    RunRequest,
    Send,
    SetServing,
)
from hulytrio.core.errors import ContainerNotFound, ErrorCode, LocalProtocolError
from hulytrio.core.events import ChangeKind, ContainerEvent, NetworkEvent
from hulytrio.core.messages import (
    PROTOCOL_VERSION,
    AgentsReply,
    Claim,
    Error,
    Event,
    Get,
    GetReply,
    Hello,
    ListReply,
    Ping,
    Pong,
    Query,
    RegisterReply,
    Request,
    Response,
    Retry,
    Welcome,
)
from hulytrio.core.session import Backoff, ClientSession, RefStatus, SessionState
from hulytrio.core.types import AgentInfo, ContainerRecord, GetOptions, OfferedContainer
from hulytrio.testing import Cluster


class Driver:
    """Drives one ``ClientSession`` by hand: the test plays the hub."""

    def __init__(self, seed: int = 1) -> None:
        self.s = ClientSession("me", rng=random.Random(seed))
        self.sent = []
        self.other = []

    def pump(self):
        for e in self.s.effects():
            if isinstance(e, Send):
                self.sent.append(e.message)
            else:
                self.other.append(e)

    def take_sent(self):
        self.pump()
        out, self.sent = self.sent, []
        return out

    def take_other(self):
        self.pump()
        out, self.other = self.other, []
        return out

    def up(self, now: float, hub_id: str = "hub1") -> None:
        """Connect (or reconnect) and be welcomed."""
        if self.s.state is SessionState.IDLE:
            self.s.connect(now)
        self.s.connection_made(now)
        self.pump()
        self.sent.clear()  # the Hello
        self.other.clear()  # the OpenConnection
        self.s.receive(Welcome(PROTOCOL_VERSION, hub_id, 3.0, 1.0), now)
        self.pump()


REC = ContainerRecord("x", "echo", "ag")


def test_backoff_grows_to_its_maximum_and_is_jittered() -> None:
    b = Backoff(initial=0.1, maximum=2.0, factor=2.0, jitter=0.5)
    rng = random.Random(7)
    delays = [b.delay(n, rng) for n in range(1, 10)]
    bases = [min(0.1 * 2 ** (n - 1), 2.0) for n in range(1, 10)]
    for d, base in zip(delays, bases, strict=True):
        assert base * 0.5 <= d <= base
    assert delays[-1] > 5 * delays[0]
    # Jitter comes from the injected generator: two clients do not stampede.
    rng8 = random.Random(8)
    other = [b.delay(n, rng8) for n in range(1, 10)]
    assert other != delays
    # ... and the same seed replays the same delays (determinism).
    replay = random.Random(7)
    assert [b.delay(n, replay) for n in range(1, 10)] == delays
    assert [Backoff(jitter=0.0).delay(n, rng) for n in (1, 2, 3)] == [0.05, 0.1, 0.2]


def test_session_reconnect_delays_grow_while_the_hub_is_down() -> None:
    d = Driver()
    d.s.connect(0.0)
    now, gaps = 0.0, []
    for _ in range(8):
        assert any(isinstance(e, OpenConnection) for e in d.take_other())
        d.s.connection_lost(now)  # refused
        deadline = d.s.next_deadline()
        gaps.append(deadline - now)
        now = deadline
        d.s.handle_timers(now)
    assert d.s.state is SessionState.CONNECTING
    assert gaps[-1] > 4 * gaps[0]
    assert all(g <= d.s.backoff.maximum for g in gaps)
    # After a welcome the backoff starts from the beginning again.
    d.s.connection_made(now)
    d.s.receive(Welcome(PROTOCOL_VERSION, "hub1", 3.0, 1.0), now)
    d.s.connection_lost(now)
    assert d.s.next_deadline() - now <= d.s.backoff.initial


def test_hello_then_ready_and_queued_calls_flow() -> None:
    d = Driver()
    h = d.s.get("echo")  # made before the first hello: queued
    d.s.connect(0.0)
    d.s.connection_made(0.0)
    sent = d.take_sent()
    assert sent == [Hello(PROTOCOL_VERSION, "me", None)]
    d.s.receive(Welcome(PROTOCOL_VERSION, "hub1", 3.0, 1.0), 0.0)
    assert d.take_sent() == [Get(h, "echo", GetOptions())]
    assert d.s.state is SessionState.READY


def test_hub_silence_is_detected_through_missing_pongs() -> None:
    d = Driver()
    d.up(0.0)
    d.s.handle_timers(1.0)
    d.s.handle_timers(2.0)
    assert d.take_sent() == [Ping(), Ping()]
    d.s.receive(Pong(), 2.5)
    d.s.handle_timers(5.49)
    assert d.s.state is SessionState.READY
    d.s.handle_timers(5.5)
    assert d.s.state is SessionState.BACKOFF
    assert any(isinstance(e, CloseConnection) for e in d.take_other())


def test_requests_resent_after_reconnect_with_the_same_id() -> None:
    d = Driver()
    d.up(0.0)
    g = d.s.get("echo")
    d.s.receive(GetReply(g, REC), 0.0)
    r = d.s.request(g, "op", b"1")
    (first,) = [m for m in d.take_sent() if isinstance(m, Request)]
    d.s.connection_lost(0.5)  # no answer came
    d.s.handle_timers(d.s.next_deadline())
    d.up(1.0)
    sent = d.take_sent()
    # Re-acquire first (same hub: same uuid), then the request waits for it.
    assert isinstance(sent[0], Get)
    assert (sent[0].kind, sent[0].options) == ("echo", GetOptions("x"))
    assert not [m for m in sent if isinstance(m, Request)]
    d.s.receive(GetReply(sent[0].id, REC), 1.0)
    (again,) = [m for m in d.take_sent() if isinstance(m, Request)]
    assert again == first  # at-least-once: the same call, the same id
    d.s.receive(Response(r, b"ok"), 1.1)
    assert Resolve(r, b"ok") in d.take_other()


def test_reference_re_keyed_when_it_comes_back_under_a_new_uuid() -> None:
    d = Driver()
    d.up(0.0)
    g = d.s.get("echo")
    d.s.receive(GetReply(g, REC), 0.0)
    d.take_other()
    d.s.connection_lost(0.5)
    d.s.handle_timers(d.s.next_deadline())
    d.up(1.0, hub_id="hub2")  # the hub restarted
    (get,) = [m for m in d.take_sent() if isinstance(m, Get)]
    new = ContainerRecord("y", "echo", "ag2")
    d.s.receive(GetReply(get.id, new), 1.0)
    assert ReferenceChanged(g, new) in d.take_other()
    assert d.s.reference(g) == new
    r = d.s.request(g, "op", b"")
    assert [m.uuid for m in d.take_sent() if isinstance(m, Request)] == ["y"]
    assert r > g


def test_reference_re_acquired_when_its_container_is_removed() -> None:
    d = Driver()
    d.up(0.0)
    g = d.s.get("echo")
    d.s.receive(GetReply(g, REC), 0.0)
    d.take_sent()
    d.take_other()
    d.s.receive(Event(NetworkEvent(1, (), (ContainerEvent(ChangeKind.REMOVED, REC),))), 1.0)
    assert ReferenceChanged(g, None) in d.take_other()
    assert d.s.ref_status(g) is RefStatus.ACQUIRING
    (get,) = [m for m in d.take_sent() if isinstance(m, Get)]
    assert get.options.uuid == "x"


def test_get_retries_while_no_agent_then_succeeds() -> None:
    c = Cluster()
    c.add_client("u")
    g = c.sessions["u"].get("echo")
    c.pump()
    assert c.result("u", g) is None
    c.advance(20.0)  # many retries, backing off up to get_retry_max
    assert c.result("u", g) is None
    retries = c.sessions["u"].probes.counts["get retry scheduled"]
    assert 3 < retries < 20
    c.add_client("h")
    c.add_agent("h", AgentState("ag", ("echo",)))
    # Early retry: the agent-added event triggers it, not the 5 s backoff.
    c.advance(c.now + 0.1)
    assert isinstance(c.result("u", g), Resolve)
    assert c.sessions["u"].probes.counts["get retried on agent added"] == 1


def test_hub_restart_re_registers_agents_and_re_acquires_same_uuid() -> None:
    c = Cluster()
    c.add_client("h")
    c.add_agent("h", AgentState("ag", ("echo",)))
    c.add_client("u")
    g = c.sessions["u"].get("echo", GetOptions(labels=("t",)))
    c.pump()
    uuid = c.value("u", g).uuid  # type: ignore[attr-defined]
    c.restart_hub()
    c.advance(c.now + 2.0)
    assert c.hub.hub_id == "hub2"
    assert c.hub.registry.has_agent("ag")
    assert c.hub.registry.agent_containers("ag") == (uuid,)
    assert c.hub.registry.holders(uuid) == {"u": 1}
    assert c.sessions["u"].reference(g).uuid == uuid  # type: ignore[union-attr]
    assert c.sessions["u"].ref_status(g) is RefStatus.READY
    # The view was resynced from a snapshot of the new hub.
    assert set(c.sessions["u"].view_containers) == {uuid}
    assert c.hub.registry.check() == []


def test_request_to_a_lost_container_is_rerouted_after_re_acquire() -> None:
    c = Cluster()
    c.add_client("h1")
    c.add_agent("h1", AgentState("ag1", ("echo",)))
    c.add_client("h2")
    c.add_agent("h2", AgentState("ag2", ("echo",)))
    c.add_client("u")
    g = c.sessions["u"].get("echo")
    c.pump()
    rec = c.value("u", g)
    assert rec.agent_id == "ag1"  # type: ignore[attr-defined]
    c.crash("h1")
    r = c.sessions["u"].request(g, "op", b"hi")
    c.pump()
    assert c.result("u", r) is None  # the request went to a dead agent
    c.advance(c.now + 5.0)
    assert c.value("u", r) == b"hi"
    assert c.sessions["u"].reference(g).agent_id == "ag2"  # type: ignore[union-attr]
    assert c.sessions["u"].probes.counts["request rerouted after container loss"] == 1


def test_retry_answer_resends_after_the_delay() -> None:
    d = Driver()
    d.up(0.0)
    g = d.s.get("echo")
    d.s.receive(GetReply(g, REC), 0.0)
    r = d.s.request(g, "op", b"")
    (req,) = [m for m in d.take_sent() if isinstance(m, Request)]
    d.s.receive(Retry(r, 0.25), 0.1)
    d.s.handle_timers(0.3)
    assert not [m for m in d.take_sent() if isinstance(m, Request)]
    d.s.handle_timers(0.35)
    assert [m for m in d.take_sent() if isinstance(m, Request)] == [req]


def test_api_misuse_raises_local_protocol_error() -> None:
    d = Driver()
    d.up(0.0)
    with pytest.raises(LocalProtocolError):
        d.s.request(999, "op", b"")
    with pytest.raises(LocalProtocolError):
        d.s.release(999)
    with pytest.raises(LocalProtocolError):
        d.s.connect(0.0)
    g = d.s.get("echo")
    with pytest.raises(LocalProtocolError):
        d.s.connect_container(g)  # not ready yet
    d.s.receive(GetReply(g, REC), 0.0)
    d.s.release(g)
    with pytest.raises(LocalProtocolError):
        d.s.release(g)
    with pytest.raises(LocalProtocolError):
        d.s.request(g, "op", b"")
    d.s.register_agent(AgentState("ag", ("echo",)))
    with pytest.raises(LocalProtocolError):
        d.s.register_agent(AgentState("ag", ("echo",)))


def test_release_fails_requests_still_waiting() -> None:
    d = Driver()
    d.up(0.0)
    g = d.s.get("echo")
    r = d.s.request(g, "op", b"")
    d.s.release(g)
    (reject,) = [e for e in d.take_other() if isinstance(e, Reject) and e.handle == r]
    assert isinstance(reject.error, ContainerNotFound)
    # The Get still in flight is given back when it lands.
    d.take_sent()
    d.s.receive(GetReply(g, REC), 0.1)
    assert [m.uuid for m in d.take_sent()] == ["x"]


def test_close_rejects_everything_in_flight() -> None:
    d = Driver()
    d.up(0.0)
    q = d.s.query("agents")
    d.s.close(0.0)
    assert d.s.state is SessionState.CLOSED
    (reject,) = [e for e in d.take_other() if isinstance(e, Reject)]
    assert reject.handle == q
    assert d.s.next_deadline() is None


def test_event_gap_triggers_a_resync_from_a_snapshot() -> None:
    d = Driver()
    d.up(0.0)
    d.take_sent()
    d.s.receive(Event(NetworkEvent(3, (), (ContainerEvent(ChangeKind.ADDED, REC),))), 0.1)
    assert sorted(m.what for m in d.take_sent() if isinstance(m, Query)) == ["agents", "list"]
    assert d.s.probes.counts["event gap"] == 1


def test_a_resync_cut_short_by_a_reconnect_starts_over_on_the_new_hub() -> None:
    # A snapshot is the two answers of one hub session.  The old hub answered
    # "agents" and went away before "list": the new hub must answer both, or
    # the view keeps the old hub's agents for good (no event ever fixes it).
    # tests/sim/regressions/resync-half-answered-before-a-hub-crash.toml
    d = Driver()
    d.up(0.0)
    d.take_sent()
    d.s.receive(Event(NetworkEvent(3, (), ())), 0.1)  # a gap
    queries = {m.what: m for m in d.take_sent() if isinstance(m, Query)}
    assert sorted(queries) == ["agents", "list"]
    d.s.receive(AgentsReply(queries["agents"].id, (AgentInfo("old", ("kv",)),)), 0.2)
    d.s.connection_lost(0.3)
    d.s.handle_timers(d.s.next_deadline())  # reconnect
    d.up(1.0, hub_id="hub2")
    again = {m.what: m for m in d.take_sent() if isinstance(m, Query)}
    assert sorted(again) == ["agents", "list"]
    new = AgentInfo("new", ("kv",))
    d.s.receive(AgentsReply(again["agents"].id, (new,)), 1.1)
    d.s.receive(ListReply(again["list"].id, ()), 1.1)
    assert d.s.view_agents == {"new": new}
    assert d.s.view_containers == {}
    # A late answer to the abandoned query changes nothing.
    d.s.receive(ListReply(queries["list"].id, (REC,)), 1.2)
    assert d.s.view_containers == {}


def test_agent_side_errors_are_forwarded_with_their_type() -> None:
    c = Cluster()
    c.add_client("h")
    c.add_agent("h", AgentState("ag", ("echo",)))
    c.add_client("u")
    g = c.sessions["u"].get("echo")
    c.pump()
    seen: list[RunRequest] = []

    def respond(req: RunRequest) -> bytes:
        seen.append(req)
        c.sessions["h"].agent_error(req.call_id, ErrorCode.REMOTE.value, "bad", "ValueError",
                                    now=c.now)
        raise _Answered

    c.responder = respond
    r = c.sessions["u"].request(g, "op", b"")
    with pytest.raises(_Answered):
        c.pump()
    c.pump()
    reject = c.result("u", r)
    assert isinstance(reject, Reject)
    assert getattr(reject.error, "remote_type", None) == "ValueError"
    assert seen[0].client_id == "u"


class _Answered(Exception):
    pass


def test_error_for_unknown_call_is_ignored() -> None:
    d = Driver()
    d.up(0.0)
    d.s.receive(Error(12345, ErrorCode.NOT_FOUND.value, "?"), 0.0)
    assert d.take_other() == []


def test_two_references_to_one_container_keep_two_holds_across_a_hub_restart() -> None:
    c = Cluster()
    c.add_client("h")
    c.add_agent("h", AgentState("ag", ("echo",)))
    c.add_client("u")
    g1 = c.sessions["u"].get("echo")
    g2 = c.sessions["u"].get("echo")
    c.pump()
    uuid = c.value("u", g1).uuid  # type: ignore[attr-defined]
    assert c.hub.registry.holds("u") == {uuid: 2}
    c.restart_hub()
    c.advance(c.now + 2.0)
    assert c.hub.registry.holds("u") == {uuid: 2}
    # Releasing one reference must not orphan the container the other uses.
    c.sessions["u"].release(g2)
    c.advance(c.now + 10.0)
    assert c.hub.registry.holds("u") == {uuid: 1}
    r = c.sessions["u"].request(g1, "op", b"still")
    c.pump()
    assert c.value("u", r) == b"still"


def test_get_waiting_on_a_dead_agent_retries_on_another() -> None:
    c = Cluster()
    c.add_client("h1")
    c.add_agent("h1", AgentState("ag1", ("echo",)))
    c.add_client("u")
    c.auto_start = False
    g = c.sessions["u"].get("echo")
    c.pump()
    assert [start.agent_id for _, start in c.held_starts] == ["ag1"]
    c.auto_start = True
    c.add_client("h2")
    c.add_agent("h2", AgentState("ag2", ("echo",)))
    c.disconnect("h1")
    del c.sessions["h1"]
    c.advance(c.now + 1.0)
    rec = c.value("u", g)
    assert rec.agent_id == "ag2"  # type: ignore[attr-defined]
    assert c.hub.registry.holders(rec.uuid) == {"u": 1}  # type: ignore[attr-defined]


def _holding(n: int) -> tuple[Driver, list[int]]:
    """A session holding ``n`` references to containers c0..c(n-1)."""
    d = Driver()
    d.up(0.0)
    handles = []
    for i in range(n):
        g = d.s.get("echo")
        d.s.receive(GetReply(g, ContainerRecord(f"c{i}", "echo", "ag")), 0.0)
        handles.append(g)
    d.take_sent()
    d.take_other()
    return d, handles


def _lines_to_receive(d: Driver, message: object) -> int:
    """Python lines executed while the session takes ``message``."""
    lines = [0]

    def tracer(frame, event, arg):
        if event == "line":
            lines[0] += 1
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        d.s.receive(message, 1.0)
    finally:
        sys.settrace(previous)
    return lines[0]


def test_a_registry_event_costs_what_it_names_not_what_the_session_holds() -> None:
    costs = []
    for n in (10, 2_000):
        d, handles = _holding(n)
        moved = ContainerRecord("c3", "echo", "ag", "ws://elsewhere")
        event = Event(NetworkEvent(1, (), (ContainerEvent(ChangeKind.UPDATED, moved),)))
        costs.append(_lines_to_receive(d, event))
        assert ReferenceChanged(handles[3], moved) in d.take_other()
        assert d.s.reference(handles[3]) == moved
    assert costs[1] == costs[0], costs


def test_released_and_re_keyed_references_leave_the_uuid_index() -> None:
    d, handles = _holding(3)
    d.s.release(handles[0])
    d.take_sent()
    # re-keyed: the hub answers a re-acquire with a new uuid
    d.s.receive(Event(NetworkEvent(1, (), (ContainerEvent(ChangeKind.REMOVED,
                                                          ContainerRecord("c1", "echo", "ag")),))),
                1.0)
    (get,) = [m for m in d.take_sent() if isinstance(m, Get)]
    d.s.receive(GetReply(get.id, ContainerRecord("n1", "echo", "ag")), 1.0)
    assert d.s.refs.index() == {"n1": (handles[1],), "c2": (handles[2],)}
    # news about the old uuid no longer touches the reference
    d.take_other()
    d.s.receive(Event(NetworkEvent(2, (), (ContainerEvent(ChangeKind.REMOVED,
                                                          ContainerRecord("c1", "echo", "ag")),))),
                2.0)
    assert not any(isinstance(e, ReferenceChanged) for e in d.take_other())
    assert d.s.ref_status(handles[1]) is RefStatus.READY


DB_OFFER = OfferedContainer("db-1", "db", stateless=True)
DB_OWNER = ContainerRecord("db-1", "db", "other-agent", stateless=True)


def _standing_by_then_owner_gone() -> tuple[Driver, AgentState]:
    """A session whose agent stands by for db-1; the hub then reports the owner's db-1 gone."""
    d = Driver()
    d.up(0.0)
    agent = AgentState("ag", ("db",), stateless=(DB_OFFER,))
    d.s.register_agent(agent)
    (register,) = d.take_sent()
    d.s.receive(RegisterReply(register.id, standby=("db-1",)), 0.0)
    d.take_other()
    assert agent.is_standby("db-1")
    d.s.receive(Event(NetworkEvent(1, (), (ContainerEvent(ChangeKind.ADDED, DB_OWNER),))), 0.5)
    d.s.receive(Event(NetworkEvent(2, (), (ContainerEvent(ChangeKind.REMOVED, DB_OWNER),))), 1.0)
    return d, agent


def test_a_standby_claims_its_uuid_when_the_hub_reports_the_owner_gone() -> None:
    # The fallback behind the hub's own promotion: if a stateless container is
    # removed while an agent here stands by for it, the agent claims it after
    # a jittered delay, and serves once the hub says the claim won.
    d, agent = _standing_by_then_owner_gone()
    assert d.take_sent() == [], "not at once: after a jittered delay"
    d.s.handle_timers(1.0 + d.s.claim_window)
    (claim,) = [m for m in d.take_sent() if isinstance(m, Claim)]
    assert (claim.agent_id, claim.container) == ("ag", DB_OFFER)
    d.s.receive(RegisterReply(claim.id), 1.1)  # won: not listed as standby
    serving = [e for e in d.take_other() if isinstance(e, SetServing)]
    assert [(e.uuid, e.serving) for e in serving] == [("db-1", True)]
    assert agent.status("db-1") is LocalStatus.ACTIVE
    assert d.s.probes.counts.get("standby claim") == 1


def test_no_claim_when_the_uuid_is_owned_again_before_the_delay_ends() -> None:
    d, agent = _standing_by_then_owner_gone()
    moved = ContainerRecord("db-1", "db", "third-agent", stateless=True, epoch=1)
    d.s.receive(Event(NetworkEvent(3, (), (ContainerEvent(ChangeKind.ADDED, moved),))), 1.001)
    d.s.handle_timers(1.0 + d.s.claim_window)
    assert not any(isinstance(m, Claim) for m in d.take_sent())
    assert agent.is_standby("db-1")
