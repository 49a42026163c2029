"""Bounded cost per peer in the core: cancelled calls, in-flight bounds, clamped timeouts."""

from __future__ import annotations

import random

from hulytrio.core.agent import AgentState
from hulytrio.core.effects import CancelRequest, Reject, Resolve, Send
from hulytrio.core.messages import (
    PROTOCOL_VERSION,
    Cancel,
    Connect,
    Get,
    GetReply,
    Hello,
    ListReply,
    Ok,
    RegisterAgent,
    Request,
    Response,
    Retry,
    Start,
    Started,
    UnregisterAgent,
    Welcome,
)
from hulytrio.core.session import ClientSession
from hulytrio.core.timers import Timers
from hulytrio.core.types import ContainerRecord, GetOptions, OfferedContainer

from .test_hub_protocol import served


def _second_container(raw) -> str:
    raw.send("c", Get(50, "echo", GetOptions("y")))
    (start,) = [m for m in raw.take("h") if isinstance(m, Start)]
    raw.send("h", Started(start.id, start.uuid))
    (reply,) = [m for m in raw.take("c") if isinstance(m, GetReply)]
    return reply.container.uuid


def test_the_issue_attack_abandoned_calls_to_a_stuck_container_free_their_slots(
        make_raw) -> None:
    # 1,030 calls to a container that never answers, each abandoned by its
    # caller: with Cancel the hub frees every slot and tells the agent.
    raw = make_raw()
    stuck = served(raw)
    other = _second_container(raw)
    for i in range(1, 1031):
        raw.send("c", Request(i, stuck, "hang"))
        raw.send("c", Cancel(i))
    forwarded = raw.take("h")
    requests = [m for m in forwarded if isinstance(m, Request)]
    cancels = [m for m in forwarded if isinstance(m, Cancel)]
    assert len(requests) == 1030
    assert [m.id for m in cancels] == [m.id for m in requests]
    assert not [m for m in raw.take("c") if isinstance(m, Retry)]
    # The client can still call both containers.
    raw.send("c", Request(2000, other, "op"))
    raw.send("c", Request(2001, stuck, "op"))
    fwd = raw.take("h")
    assert [m.uuid for m in fwd] == [other, stuck]
    raw.send("h", Response(fwd[0].id, b"fine"))
    assert raw.take("c") == [Response(2000, b"fine")]
    # A late answer to a cancelled call reaches nobody.
    raw.send("h", Response(requests[0].id, b"late"))
    assert raw.take("c") == []


def test_one_stuck_container_cannot_take_every_slot_of_a_client(make_raw) -> None:
    # Without cancels (an old client, or calls still wanted): the bound per
    # (client, container) leaves slots for the client's other containers.
    raw = make_raw(max_in_flight=10, max_in_flight_per_container=4)
    stuck = served(raw)
    other = _second_container(raw)
    answers = [raw.send("c", Request(i, stuck, "hang")) for i in range(1, 7)]
    assert answers[:4] == [[], [], [], []]
    assert [type(a[0]) for a in answers[4:]] == [Retry, Retry]
    assert raw.send("c", Request(10, other, "op")) == []
    assert len([m for m in raw.take("h") if isinstance(m, Request)]) == 5
    # The per-client bound still holds across containers.
    for i in range(11, 16):
        raw.send("c", Request(i, other, "op"))
    retries = [m for m in raw.take("c") if isinstance(m, Retry)]
    assert [m.id for m in retries][-1] == 15


def test_a_cancel_frees_a_slot_and_is_forwarded_once(make_raw) -> None:
    raw = make_raw(max_in_flight=1)
    uuid = served(raw)
    raw.send("c", Request(1, uuid, "hang"))
    (retry,) = raw.send("c", Request(2, uuid, "op"))
    assert isinstance(retry, Retry)
    (fwd,) = raw.take("h")
    assert raw.send("c", Cancel(1)) == []
    assert raw.take("h") == [Cancel(fwd.id)]
    assert raw.hub.stats.request_cancelled == 1
    assert raw.hub.requests_in_flight() == 0
    # A second cancel, or one for a call never made, does nothing.
    raw.send("c", Cancel(1))
    raw.send("c", Cancel(99))
    assert raw.take("h") == []
    assert raw.hub.stats.request_cancelled == 1
    assert raw.send("c", Request(2, uuid, "op")) == []
    assert len(raw.take("h")) == 1


def test_connects_count_against_the_in_flight_bound(make_raw) -> None:
    raw = make_raw(max_in_flight=2)
    uuid = served(raw)
    raw.send("c", Connect(1, uuid))
    raw.send("c", Connect(2, uuid))
    (retry,) = raw.send("c", Connect(3, uuid))
    assert isinstance(retry, Retry)
    raw.take("c")
    fwds = raw.take("h")
    raw.send("h", Ok(fwds[0].id))
    assert raw.take("c") == [Ok(1)]
    assert raw.send("c", Connect(3, uuid)) == []


def test_a_resent_call_with_the_same_id_counts_once(make_raw) -> None:
    raw = make_raw(max_in_flight=2)
    uuid = served(raw)
    raw.send("c", Request(1, uuid, "op"))
    raw.send("c", Request(1, uuid, "op"))  # a resend while the first is in flight
    assert raw.send("c", Request(2, uuid, "op")) == []
    first, second, superseded, _third = raw.take("h")
    # The resend supersedes the first forward: its agent is told to drop it
    # (after the resend, which joins the first's run there: at most once).
    assert superseded == Cancel(first.id)
    assert raw.send("h", Response(first.id, b"a")) == []  # ended: no slot, no answer
    raw.send("h", Response(second.id, b"b"))
    assert raw.take("c") == [Response(1, b"b")]
    assert raw.send("c", Request(3, uuid, "op")) == []


def test_a_huge_alive_timeout_is_clamped(make_raw) -> None:
    raw = make_raw(max_alive_timeout=60.0)
    raw.hello("x", alive=1e9)
    (welcome,) = raw.take("x")
    assert isinstance(welcome, Welcome)
    assert welcome.alive_timeout == 60.0
    raw.advance(61.0)
    assert raw.closed == ["x"]
    assert not raw.hub.registry.has_client("x")


def test_an_infinite_alive_timeout_is_clamped_too(make_raw) -> None:
    raw = make_raw()
    raw.hub.connection_made("x", 0.0)
    raw.hub.receive("x", Hello(PROTOCOL_VERSION, "x", float("inf")), 0.0)
    raw.drain()
    (welcome,) = raw.take("x")
    assert welcome.alive_timeout == raw.hub.max_alive_timeout


# --- the session side -------------------------------------------------------


def _ready_session() -> tuple[ClientSession, int]:
    s = ClientSession("me", rng=random.Random(1))
    s.connect(0.0)
    s.connection_made(0.0)
    s.receive(Welcome(PROTOCOL_VERSION, "hub1", 3.0, 1.0), 0.0)
    ref = s.get("echo")
    s.receive(GetReply(ref, ContainerRecord("x", "echo", "ag")), 0.0)
    s.effects()
    return s, ref


def test_a_cancelled_request_sends_cancel_and_resolves_nothing() -> None:
    s, ref = _ready_session()
    r = s.request(ref, "op", b"")
    s.effects()
    s.cancel(r)
    assert [e.message for e in s.effects() if isinstance(e, Send)] == [Cancel(r)]
    s.receive(Response(r, b"late"), 0.1)
    assert not [e for e in s.effects() if isinstance(e, Resolve | Reject)]
    assert r not in s.calls.pending
    s.cancel(r)  # twice: nothing more
    assert s.effects() == []


def test_a_request_not_yet_sent_is_cancelled_without_a_message() -> None:
    s, ref = _ready_session()
    s.connection_lost(0.1)
    s.effects()
    r = s.request(ref, "op", b"")
    s.cancel(r)
    assert not [e for e in s.effects() if isinstance(e, Send)]
    assert r not in s.calls.pending
    assert all(r not in refd.waiting for refd in s.refs.by_id.values())


def test_a_cancelled_query_is_forgotten_without_a_message() -> None:
    # The hub holds nothing for a query: the session only stops waiting
    # (it used to keep the call pending for ever; docs/security.md).
    s, _ref = _ready_session()
    q = s.query("list")
    s.effects()
    s.cancel(q)
    assert s.effects() == []
    assert q not in s.calls.pending
    s.receive(ListReply(q, ()), 0.1)
    assert s.effects() == []


def test_a_cancel_from_the_hub_reaches_the_agent_driver() -> None:
    s, _ref = _ready_session()
    s.register_agent(AgentState("a", ("echo",)))
    s.receive(Start(3, "a", "echo", "e-1"), 0.1)
    s.agent_started("a", "e-1")
    s.effects()
    s.receive(Request(17, "e-1", "op", b"", "caller", 4), 0.15)
    assert [type(e).__name__ for e in s.effects()] == ["RunRequest"]
    s.receive(Cancel(17), 0.2)
    assert s.effects() == [CancelRequest(17)]
    # A cancel of a call that does not run here (answered already, or never
    # forwarded here) reaches nobody.
    s.receive(Cancel(18), 0.3)
    assert s.effects() == []


# --- timers ---------------------------------------------------------------------


def test_cancelled_timers_are_not_kept_until_their_deadline() -> None:
    timers = Timers()
    for i in range(10_000):
        timers.call_at(1e9, ("alive", i))
    for i in range(10_000):
        timers.cancel(("alive", i))
    assert len(timers) == 0
    assert len(timers._heap) <= 64
    assert timers.next_deadline() is None


def test_re_armed_timers_do_not_pile_up_and_keep_their_order() -> None:
    timers = Timers()
    for i in range(100):
        timers.call_at(float(i), i)
    for _round in range(100):
        for i in range(100):
            timers.call_at(float(1000 - i), i)  # replaces, leaving a dead entry
    assert len(timers._heap) <= 2 * 100 + 1
    assert timers.next_deadline() == 901.0
    assert timers.expired(1000.0) == list(range(99, -1, -1))


def test_2000_gone_sessions_asking_1e9_leave_no_timers_behind(make_raw) -> None:
    raw = make_raw()
    for i in range(2000):
        raw.hello(f"p{i}", alive=1e9)
        raw.lost(f"p{i}")
    reg_timers = raw.hub.registry.timers
    own = raw.hub._timers
    assert len(reg_timers) + len(own) <= 2
    assert len(reg_timers._heap) <= 64
    assert len(own._heap) <= 64


# --- dropped-uuid bookkeeping -------------------------------------------------------


def test_dropped_stateless_uuids_are_remembered_within_a_bound(make_raw) -> None:
    raw = make_raw().recovered()
    reg = raw.hub.registry
    reg.max_remembered_epochs = 3
    raw.hello("h")
    offers = tuple(OfferedContainer(f"s{i}", "echo", (), True) for i in range(10))
    raw.send("h", RegisterAgent(1, "ag", ("echo",), containers=offers))
    raw.send("h", UnregisterAgent(2, "ag"))
    assert len(reg._last_epoch) == 3
    assert reg._epoch_floor == 1  # one above the forgotten epochs (all 0)
    # A uuid whose epoch was forgotten comes back above every epoch it had.
    raw.send("h", RegisterAgent(3, "ag", ("echo",), containers=offers[:1]))
    assert reg._containers["s0"].epoch >= 1
    raw.send("h", UnregisterAgent(4, "ag"))
    assert len(reg._last_epoch) <= 3
