"""The hub's bounds on a client's request bytes in flight and on one registration's offers.

Issue 13, bounded cost per peer; the loopback attacks are in
``tests/transport/test_in_flight_bytes.py`` and ``test_huge_registration.py``.
"""

from __future__ import annotations

from hulytrio.config import LimitsConfig
from hulytrio.core.errors import ErrorCode
from hulytrio.core.hub import MAX_IN_FLIGHT_BYTES
from hulytrio.core.messages import (
    Cancel,
    Error,
    Get,
    GetReply,
    RegisterAgent,
    RegisterReply,
    Request,
    Response,
    Retry,
)
from hulytrio.core.types import GetOptions, OfferedContainer

from .test_hub_protocol import served

KIB = 1024


def _forwarded(raw) -> list[Request]:
    return [m for m in raw.take("h") if isinstance(m, Request)]


def test_the_default_is_well_under_the_transport_send_queue() -> None:
    assert LimitsConfig().send_queue_bytes >= 4 * MAX_IN_FLIGHT_BYTES


def test_the_issue_attack_large_requests_are_answered_retry_past_the_byte_bound(
        make_raw) -> None:
    # 200 requests of 256 KiB to a container that does not answer yet: only
    # 8 MiB of them are forwarded, the rest are answered retry (the session
    # resends them after the delay), so the agent's queue never holds 50 MiB.
    raw = make_raw()
    uuid = served(raw)
    body = b"x" * (256 * KIB)
    answers = [raw.send("c", Request(i, uuid, "slow", body), now=1.0) for i in range(1, 201)]
    forwarded = _forwarded(raw)
    assert len(forwarded) == MAX_IN_FLIGHT_BYTES // len(body) == 32
    assert sum(len(m.payload) for m in forwarded) == MAX_IN_FLIGHT_BYTES
    retried = [a[0].id for a in answers if a and isinstance(a[0], Retry)]
    assert retried == list(range(33, 201))
    raw.take("c")
    # One answer frees its bytes: exactly one more request fits.
    raw.send("h", Response(forwarded[0].id, b"done"), now=2.0)
    assert raw.take("c") == [Response(1, b"done")]
    assert raw.send("c", Request(33, uuid, "slow", body), now=2.0) == []
    (retry,) = raw.send("c", Request(34, uuid, "slow", body), now=2.0)
    assert isinstance(retry, Retry)
    assert len(_forwarded(raw)) == 1


def test_small_calls_still_fit_beside_large_ones_up_to_the_bound(make_raw) -> None:
    raw = make_raw(max_in_flight_bytes=1000)
    uuid = served(raw)
    assert raw.send("c", Request(1, uuid, "op", b"a" * 900)) == []
    assert raw.send("c", Request(2, uuid, "op", b"b" * 100)) == []  # exactly the bound
    (retry,) = raw.send("c", Request(3, uuid, "op", b"c"))
    assert isinstance(retry, Retry)
    # An empty payload adds nothing and still fits (the count bounds hold it).
    assert raw.send("c", Request(4, uuid, "op")) == []


def test_a_request_larger_than_the_bound_runs_when_nothing_else_is_in_flight(make_raw) -> None:
    raw = make_raw(max_in_flight_bytes=1000)
    uuid = served(raw)
    assert raw.send("c", Request(1, uuid, "big", b"z" * 5000)) == []
    (fwd,) = _forwarded(raw)
    # While it runs nothing else with bytes fits ...
    (retry,) = raw.send("c", Request(2, uuid, "op", b"a"))
    assert isinstance(retry, Retry)
    raw.send("h", Response(fwd.id, b"ok"))
    raw.take("c")
    # ... and once answered the client is back to a clean slate.
    assert raw.hub._in_flight["c"].bytes == 0
    assert raw.send("c", Request(2, uuid, "op", b"a" * 1000)) == []


def test_cancel_error_and_agent_gone_free_the_bytes(make_raw) -> None:
    raw = make_raw(max_in_flight_bytes=1000)
    uuid = served(raw)
    raw.send("c", Request(1, uuid, "op", b"a" * 1000))
    (fwd,) = _forwarded(raw)
    raw.send("c", Cancel(1))
    assert raw.hub._in_flight["c"].bytes == 0
    raw.send("c", Request(2, uuid, "op", b"a" * 1000))
    (fwd,) = _forwarded(raw)
    raw.send("h", Error(fwd.id, ErrorCode.REMOTE.value, "boom"))
    assert raw.hub._in_flight["c"].bytes == 0
    raw.send("c", Request(3, uuid, "op", b"a" * 1000))
    assert len(_forwarded(raw)) == 1
    raw.lost("h", now=1.0)  # the agent goes: its calls fail agent_gone
    assert [m.code for m in raw.take("c") if isinstance(m, Error)] == [
        ErrorCode.REMOTE.value, ErrorCode.AGENT_GONE.value]
    assert raw.hub._in_flight["c"].bytes == 0


def test_a_resend_counts_its_bytes_once(make_raw) -> None:
    raw = make_raw(max_in_flight_bytes=1000)
    uuid = served(raw)
    raw.send("c", Request(1, uuid, "op", b"a" * 600))
    raw.send("c", Request(1, uuid, "op", b"a" * 600))  # the same call resent
    assert raw.hub._in_flight["c"].bytes == 600
    assert raw.send("c", Request(2, uuid, "op", b"b" * 400)) == []
    first, second, third = _forwarded(raw)
    raw.send("h", Response(first.id, b"late"))  # the superseded forward frees nothing
    assert raw.hub._in_flight["c"].bytes == 1000
    raw.send("h", Response(second.id, b"a"))
    raw.send("h", Response(third.id, b"b"))
    assert raw.hub._in_flight["c"].bytes == 0


def test_the_bound_is_per_client_and_a_client_gone_frees_it(make_raw) -> None:
    raw = make_raw(max_in_flight_bytes=1000)
    uuid = served(raw)
    raw.hello("d")
    raw.send("d", Get(1, "echo", GetOptions(uuid)))
    assert GetReply in [type(m) for m in raw.take("d")]
    assert raw.send("c", Request(1, uuid, "op", b"a" * 1000)) == []
    assert raw.send("d", Request(1, uuid, "op", b"a" * 1000)) == []  # another client's own
    assert len(_forwarded(raw)) == 2
    raw.lost("c", now=1.0)
    assert "c" not in raw.hub._in_flight  # its record (and bytes) went with it
    assert raw.hub._in_flight["d"].bytes == 1000
    (retry,) = raw.send("d", Request(2, uuid, "op", b"b"), now=1.0)
    assert isinstance(retry, Retry)


def _offers(n: int) -> tuple[OfferedContainer, ...]:
    return tuple(OfferedContainer(f"s-{i}", "echo", stateless=True) for i in range(n))


def test_a_registration_over_max_offers_is_refused_and_changes_nothing(make_raw) -> None:
    raw = make_raw(max_offers=3).recovered()
    raw.hello("host")
    raw.hello("watcher")
    raw.take("watcher")
    raw.take("host")
    (reply,) = raw.send("host", RegisterAgent(1, "big", ("echo",), containers=_offers(4)))
    assert isinstance(reply, Error)
    assert (reply.id, reply.code) == (1, ErrorCode.PROTOCOL.value)
    assert reply.message == ("register 'big': offers 4 containers; the hub accepts at most 3 "
                             "per registration (limits.maxOffers)")
    raw.advance(1.0)
    raw.take("host")
    assert not list(raw.hub.registry.agents())
    assert raw.take("watcher") == []  # no event went out
    # At the limit it registers as always.
    raw.send("host", RegisterAgent(2, "big", ("echo",), containers=_offers(3)))
    assert [type(m) for m in raw.take("host")] == [RegisterReply]
    assert raw.hub.registry.route("s-2") is not None


# --- per agent, across every client (issue 13: several clients together) ----------------


def _agent_bytes(raw) -> int:
    return raw.hub._agent_bytes.get("h", 0)


def _callers(raw, n: int) -> list[str]:
    callers = [f"c{i}" for i in range(n)]
    for caller in callers:
        raw.hello(caller)
    return callers


def test_the_default_per_agent_bound_is_half_the_agent_send_queue() -> None:
    from hulytrio.core.hub import MAX_IN_FLIGHT_BYTES_PER_AGENT

    assert LimitsConfig().send_queue_bytes == 2 * MAX_IN_FLIGHT_BYTES_PER_AGENT
    assert LimitsConfig().max_in_flight_bytes_per_agent is None  # half of sendQueueBytes
    assert LimitsConfig().in_flight_bytes_per_agent == MAX_IN_FLIGHT_BYTES_PER_AGENT


def test_four_clients_each_under_their_bound_do_not_fill_the_agent(make_raw) -> None:
    # The issue's arithmetic with the defaults: four clients at 8 MiB each
    # would put 32 MiB (the agent's whole send queue) on its way to one agent.
    raw = make_raw()
    uuid = served(raw)
    body = b"x" * (256 * KIB)
    callers = _callers(raw, 4)
    retried: dict[str, int] = {}
    for i in range(1, 33):  # 32 x 256 KiB = 8 MiB each: every client within its own bound
        for caller in callers:
            answer = raw.send(caller, Request(i, uuid, "slow", body), now=1.0)
            retried[caller] = retried.get(caller, 0) + sum(isinstance(m, Retry) for m in answer)
    forwarded = _forwarded(raw)
    assert sum(len(m.payload) for m in forwarded) == _agent_bytes(raw) == 16 * 1024 * KIB
    assert sum(retried.values()) == 4 * 32 - 64
    # The per-client bound alone would have let every one of them through.
    assert all(raw.hub._in_flight[c].bytes <= MAX_IN_FLIGHT_BYTES for c in callers)
    # One answer frees exactly its bytes for whoever comes next.
    raw.send("h", Response(forwarded[0].id, b"done"), now=2.0)
    assert _agent_bytes(raw) == 16 * 1024 * KIB - len(body)
    assert raw.send("c3", Request(99, uuid, "slow", body), now=2.0) == []
    (retry,) = raw.send("c2", Request(99, uuid, "slow", body), now=2.0)
    assert isinstance(retry, Retry)


def test_the_per_agent_bound_counts_only_that_agent(make_raw) -> None:
    raw = make_raw(max_in_flight_bytes_per_agent=1000)
    uuid = served(raw)
    raw.hello("h2")
    raw.send("h2", RegisterAgent(1, "ag2", ("other",)))
    raw.send("c", Get(2, "other"))
    (start,) = [m for m in raw.take("h2") if m.TAG == "start"]
    from hulytrio.core.messages import Started

    raw.send("h2", Started(start.id, start.uuid))
    (reply,) = [m for m in raw.take("c") if isinstance(m, GetReply)]
    c1, c2 = _callers(raw, 2)
    assert raw.send(c1, Request(1, uuid, "op", b"a" * 1000), now=1.0) == []
    (retry,) = raw.send(c2, Request(1, uuid, "op", b"b"), now=1.0)
    assert isinstance(retry, Retry)
    # The other agent's budget is its own.
    assert raw.send(c2, Request(2, reply.container.uuid, "op", b"b" * 1000), now=1.0) == []
    assert raw.hub._agent_bytes == {"h": 1000, "h2": 1000}


def test_a_request_over_the_agent_bound_runs_when_nothing_else_goes_to_it(make_raw) -> None:
    raw = make_raw(max_in_flight_bytes_per_agent=1000)
    uuid = served(raw)
    c1, c2 = _callers(raw, 2)
    assert raw.send(c1, Request(1, uuid, "big", b"z" * 5000)) == []  # a fresh caller too
    (fwd,) = _forwarded(raw)
    (retry,) = raw.send(c2, Request(1, uuid, "op", b"a"))
    assert isinstance(retry, Retry)
    assert raw.send(c2, Request(2, uuid, "op")) == []  # no payload: nothing to bound
    raw.send("h", Response(fwd.id, b"ok"), now=1.0)
    assert _agent_bytes(raw) == 0
    assert raw.send(c2, Request(3, uuid, "op", b"a" * 1000), now=1.0) == []


def test_answer_error_cancel_agent_gone_and_client_gone_free_the_agent_bytes(make_raw) -> None:
    raw = make_raw(max_in_flight_bytes_per_agent=3000)
    uuid = served(raw)
    c1, c2, c3 = _callers(raw, 3)
    for caller in (c1, c2, c3):
        raw.send(caller, Request(1, uuid, "op", b"a" * 1000), now=1.0)
    one, two, _three = _forwarded(raw)
    assert _agent_bytes(raw) == 3000
    raw.send("h", Response(one.id, b"r"), now=2.0)  # answer
    assert _agent_bytes(raw) == 2000
    raw.send("h", Error(two.id, ErrorCode.REMOTE.value, "boom"), now=2.0)  # error
    assert _agent_bytes(raw) == 1000
    raw.send(c3, Cancel(1), now=2.0)  # cancel
    assert _agent_bytes(raw) == 0
    raw.send(c1, Request(2, uuid, "op", b"a" * 1000), now=3.0)
    raw.send(c2, Request(2, uuid, "op", b"a" * 1000), now=3.0)
    four, _five = _forwarded(raw)
    raw.lost(c1, now=4.0)  # client gone: nobody waits for its call
    assert _agent_bytes(raw) == 1000
    raw.send("h", Response(four.id, b"late"), now=4.0)  # its late answer frees nothing more
    assert _agent_bytes(raw) == 1000
    raw.lost("h", now=5.0)  # agent gone: its calls fail agent_gone
    assert raw.hub._agent_bytes == {}
    assert [m.code for m in raw.take(c2) if isinstance(m, Error)][-1] == (
        ErrorCode.AGENT_GONE.value)


def test_the_agent_bytes_always_equal_the_counted_forwards(make_raw) -> None:
    # Every path that frees a slot, interleaved: the per-agent sum never drifts.
    from hypothesis import given, settings
    from hypothesis import strategies as st

    ops = st.lists(st.tuples(st.sampled_from(["req", "answer", "error", "cancel", "gone",
                                              "resend"]),
                             st.integers(0, 2), st.integers(0, 5), st.integers(0, 700)),
                   max_size=60)

    @settings(max_examples=60, deadline=None, derandomize=True)
    @given(ops)
    def run(steps) -> None:
        raw = make_raw(max_in_flight_bytes=1500, max_in_flight_bytes_per_agent=2000)
        uuid = served(raw)
        callers = _callers(raw, 3)
        sent: list[Request] = []
        now = 1.0
        for op, who, call, size in steps:
            now += 0.01
            caller = callers[who]
            if op in ("req", "resend"):
                if not raw.hub.has_session(caller):
                    raw.hello(caller, now)
                raw.send(caller, Request(call, uuid, "op", b"p" * size), now)
                sent.extend(_forwarded(raw))
            elif op == "cancel":
                raw.send(caller, Cancel(call), now)
            elif op == "gone":
                raw.lost(caller, now)
            elif sent:
                fwd = sent.pop(size % len(sent))
                answer = (Response(fwd.id, b"r") if op == "answer"
                          else Error(fwd.id, ErrorCode.REMOTE.value, "x"))
                raw.send("h", answer, now)
            counted = sum(f.size for f in raw.hub._forwards.values() if f.agent_client == "h")
            assert _agent_bytes(raw) == counted
            assert counted <= 2000 or len([f for f in raw.hub._forwards.values()
                                           if f.size]) == 1
        raw.lost("h", now + 1)
        assert raw.hub._agent_bytes == {}

    run()


# --- registrations per session and kinds per registration --------------------------------


def test_registrations_past_the_bound_are_refused_naming_the_limit(make_raw) -> None:
    from hulytrio.core.hub import MAX_REGISTRATIONS
    from hulytrio.core.messages import UnregisterAgent

    assert MAX_REGISTRATIONS == 64
    raw = make_raw(max_registrations=3).recovered()
    raw.hello("host")
    raw.hello("watcher")
    raw.take("host")
    for i in range(3):
        raw.send("host", RegisterAgent(i + 1, f"ag-{i}", ("echo",)), now=0.1)
    assert [type(m) for m in raw.take("host")] == [RegisterReply] * 3
    raw.advance(1.0)
    raw.take("watcher")
    (reply,) = raw.send("host", RegisterAgent(9, "ag-3", ("echo",)), now=1.0)
    assert isinstance(reply, Error)
    assert (reply.id, reply.code) == (9, ErrorCode.PROTOCOL.value)
    assert reply.message == ("register 'ag-3': this session has 3 agents registered; the hub "
                             "accepts at most 3 per session (limits.maxRegistrations)")
    raw.advance(2.0)
    assert sorted(a.agent_id for a in raw.hub.registry.agents()) == ["ag-0", "ag-1", "ag-2"]
    assert raw.take("watcher") == []  # nothing changed, no event
    # Re-registering one it has is not a new registration.
    assert [type(m) for m in raw.send("host", RegisterAgent(10, "ag-1", ("echo", "more")),
                                      now=2.0)] == [RegisterReply]
    # Another session has a bound of its own.
    raw.hello("other")
    assert [type(m) for m in raw.send("other", RegisterAgent(1, "ag-x", ("echo",)),
                                      now=2.0)] == [RegisterReply]
    # One gone, one more fits.
    raw.send("host", UnregisterAgent(11, "ag-0"), now=3.0)
    raw.take("host")
    assert [type(m) for m in raw.send("host", RegisterAgent(12, "ag-3", ("echo",)),
                                      now=3.0)] == [RegisterReply]


def test_a_registration_naming_too_many_kinds_is_refused(make_raw) -> None:
    from hulytrio.core.hub import MAX_KINDS

    assert MAX_KINDS == 1024
    raw = make_raw(max_kinds=4).recovered()
    raw.hello("host")
    raw.take("host")
    kinds = tuple(f"k{i}" for i in range(5))
    (reply,) = raw.send("host", RegisterAgent(1, "ag", kinds))
    assert isinstance(reply, Error)
    assert reply.message == ("register 'ag': names 5 kinds; the hub accepts at most 4 per "
                             "registration (limits.maxKinds)")
    assert not list(raw.hub.registry.agents())
    assert [type(m) for m in raw.send("host", RegisterAgent(2, "ag", kinds[:4]))] == [
        RegisterReply]


def test_a_registration_is_refused_from_its_counts_before_it_is_decoded(make_raw) -> None:
    raw = make_raw(max_offers=3, max_kinds=2).recovered()
    raw.hello("host")
    raw.take("host")
    hub = raw.hub
    assert not hub.refuse_registration("nobody", 1, "ag", 9, 9)  # no session: receive refuses
    assert not hub.refuse_registration("host", 1, "ag", 2, 3)  # fits: fed as usual
    assert hub.refuse_registration("host", 2, "ag", 1, 4)
    assert hub.refuse_registration("host", 3, "ag", 3, 0)
    raw.drain()
    assert [(m.id, m.message) for m in raw.take("host")] == [
        (2, "register 'ag': offers 4 containers; the hub accepts at most 3 per registration "
            "(limits.maxOffers)"),
        (3, "register 'ag': names 3 kinds; the hub accepts at most 2 per registration "
            "(limits.maxKinds)")]
    assert hub.stats.calls[("register", "error")] == 2
    assert not list(hub.registry.agents())
