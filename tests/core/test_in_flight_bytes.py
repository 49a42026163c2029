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
