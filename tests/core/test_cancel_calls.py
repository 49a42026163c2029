"""Cancel beyond requests: an abandoned get, connect or direct request frees what it held.

Core only, explicit times: the session's side (what it sends, what it
forgets), the hub's (the get's wait for a start, the connect's slot) and
both sides of a direct connection.
"""

from __future__ import annotations

import random

from hulytrio.core.effects import CancelRequest, Reject, Resolve, RunRequest, Send
from hulytrio.core.endpoint import (
    IN_FLIGHT_RETRY_AFTER,
    EndpointClient,
    EndpointSession,
)
from hulytrio.core.errors import ErrorCode
from hulytrio.core.messages import (
    PROTOCOL_VERSION,
    Cancel,
    Connect,
    ContainerStopped,
    Error,
    Get,
    GetReply,
    Hello,
    Ok,
    RegisterAgent,
    Release,
    Request,
    Response,
    Retry,
    Start,
    Started,
    Terminate,
    Welcome,
)
from hulytrio.core.references import RefStatus
from hulytrio.core.session import ClientSession
from hulytrio.core.types import ContainerRecord, GetOptions

from .test_hub_protocol import served


def _session() -> ClientSession:
    s = ClientSession("me", rng=random.Random(1))
    s.connect(0.0)
    s.connection_made(0.0)
    s.receive(Welcome(PROTOCOL_VERSION, "hub1", 3.0, 1.0), 0.0)
    s.effects()
    return s


def _sent(s: ClientSession) -> list[object]:
    return [e.message for e in s.effects() if isinstance(e, Send)]


# --- the session ----------------------------------------------------------------


def test_a_cancelled_get_sends_cancel_and_ends_on_the_hubs_cancelled_answer() -> None:
    s = _session()
    g = s.get("echo")
    assert _sent(s) == [Get(g, "echo", GetOptions())]
    s.cancel(g)
    assert _sent(s) == [Cancel(g)]
    assert s.ref_status(g) is RefStatus.RELEASED
    # The hub stopped waiting for the start: its one answer ends the call.
    s.receive(Error(g, ErrorCode.CANCELLED.value, "get cancelled"), 0.1)
    assert not [e for e in s.effects() if isinstance(e, Send | Resolve)]
    assert g not in s.calls.pending
    assert s.references() == {}


def test_a_get_answered_before_the_cancel_arrived_is_given_back() -> None:
    s = _session()
    g = s.get("echo")
    s.effects()
    s.cancel(g)
    s.effects()
    # The answer crossed the cancel: the session holds it, so it releases it.
    s.receive(GetReply(g, ContainerRecord("x", "echo", "ag")), 0.1)
    effects = s.effects()
    assert not [e for e in effects if isinstance(e, Resolve) and e.handle == g]
    (release,) = [e.message for e in effects if isinstance(e, Send)]
    assert isinstance(release, Release)
    assert release.uuid == "x"
    assert s.references() == {}
    assert g not in s.calls.pending


def test_a_get_not_yet_sent_is_cancelled_without_a_message() -> None:
    s = _session()
    s.connection_lost(0.1)
    s.effects()
    g = s.get("echo")
    s.cancel(g)
    assert _sent(s) == []
    assert g not in s.calls.pending
    assert s.references() == {}


def test_a_get_waiting_to_retry_is_cancelled_with_its_retry() -> None:
    s = _session()
    g = s.get("echo")
    s.effects()
    s.receive(Error(g, ErrorCode.NO_AGENT.value, "nobody hosts echo"), 0.1)
    s.effects()
    assert s.next_deadline() is not None  # the get's retry
    s.cancel(g)
    assert _sent(s) == []
    s.handle_timers(100.0)
    assert not [m for m in _sent(s) if isinstance(m, Get)]
    assert s.references() == {}


def test_a_cancelled_get_left_by_a_reconnect_is_forgotten() -> None:
    s = _session()
    g = s.get("echo")
    s.effects()
    s.cancel(g)
    s.effects()
    s.connection_lost(0.1)
    s.effects()
    at = s.next_deadline()
    assert at is not None
    s.handle_timers(at)  # the reconnect
    s.connection_made(at)
    s.receive(Welcome(PROTOCOL_VERSION, "hub1", 3.0, 1.0), at)
    assert not [m for m in _sent(s) if isinstance(m, Get)]
    assert g not in s.calls.pending
    assert s.references() == {}


def test_a_cancelled_get_the_hub_asked_to_retry_is_not_resent() -> None:
    s = _session()
    g = s.get("echo")
    s.effects()
    s.cancel(g)
    s.effects()
    s.receive(Retry(g, 0.05), 0.1)  # crossed the cancel (a hub shutting down)
    s.handle_timers(1.0)
    assert not [m for m in _sent(s) if isinstance(m, Get)]
    assert g not in s.calls.pending
    assert s.references() == {}


def test_a_cancelled_connect_sends_cancel_and_resolves_nothing() -> None:
    s = _session()
    ref = s.get("echo")
    s.receive(GetReply(ref, ContainerRecord("x", "echo", "ag")), 0.0)
    s.effects()
    c = s.connect_container(ref)
    assert _sent(s) == [Connect(c, "x")]
    s.cancel(c)
    assert _sent(s) == [Cancel(c)]
    s.receive(Ok(c), 0.1)
    assert not [e for e in s.effects() if isinstance(e, Resolve | Reject)]
    assert c not in s.calls.pending


# --- the hub ----------------------------------------------------------------------


def test_the_hub_stops_a_cancelled_get_waiting_for_a_start(make_raw) -> None:
    raw = make_raw()
    raw.hello("h")
    raw.hello("c")
    raw.hello("d")
    raw.send("h", RegisterAgent(1, "ag", ("echo",)))
    raw.send("c", Get(1, "echo", GetOptions("u")))
    raw.send("d", Get(7, "echo", GetOptions("u")))  # joins the same start
    (start,) = [m for m in raw.take("h") if isinstance(m, Start)]
    raw.take("c")
    assert raw.send("c", Cancel(1)) == [Error(1, ErrorCode.CANCELLED.value,
                                              "get cancelled while container 'u' was starting")]
    assert raw.hub.stats.calls[("get", "cancelled")] == 1
    raw.send("h", Started(start.id, "u"))
    # The other waiter holds it; the one that cancelled holds nothing.
    assert [m for m in raw.take("d") if isinstance(m, GetReply)]
    assert not [m for m in raw.take("c") if isinstance(m, GetReply)]
    assert raw.hub.registry.holders("u") == {"d": 1}
    assert raw.hub.registry.holds("c") == {}


def test_a_start_nobody_waits_for_any_more_leaves_an_orphan(make_raw) -> None:
    raw = make_raw()
    raw.hello("h", alive=100.0)
    raw.hello("c", alive=100.0)
    raw.send("h", RegisterAgent(1, "ag", ("echo",)))
    raw.send("c", Get(1, "echo", GetOptions("u")))
    (start,) = [m for m in raw.take("h") if isinstance(m, Start)]
    raw.send("c", Cancel(1))
    raw.send("h", Started(start.id, "u"), 0.5)
    assert raw.hub.registry.holders("u") == {}
    assert raw.hub.registry.orphaned_at("u") == 0.5
    raw.advance(0.5 + raw.hub.timeouts.unused_container + 0.01)
    assert Terminate("ag", "u") in raw.take("h")
    raw.send("h", ContainerStopped("ag", "u"), 6.0)
    assert raw.hub.registry.container("u") is None


def test_a_cancel_of_an_answered_get_does_nothing(make_raw) -> None:
    raw = make_raw()
    uuid = served(raw)  # "c" holds it (get 1 answered)
    assert raw.send("c", Cancel(1)) == []
    assert raw.hub.registry.holders(uuid) == {"c": 1}
    assert ("get", "cancelled") not in raw.hub.stats.calls


def test_a_cancelled_connect_frees_its_slot_and_its_late_answer_reaches_nobody(
        make_raw) -> None:
    raw = make_raw(max_in_flight_per_container=1)
    uuid = served(raw)
    raw.send("c", Connect(1, uuid))
    (retry,) = raw.send("c", Connect(2, uuid))
    assert isinstance(retry, Retry)
    raw.take("c")
    (fwd,) = raw.take("h")
    assert raw.send("c", Cancel(1)) == []
    assert raw.take("h") == []  # the caller's disconnect ends a stream, if one opens
    assert raw.hub.stats.calls[("connect", "cancelled")] == 1
    assert raw.send("c", Connect(2, uuid)) == []
    (second,) = raw.take("h")
    raw.send("h", Ok(fwd.id))
    assert raw.take("c") == []
    raw.send("h", Ok(second.id))
    assert raw.take("c") == [Ok(2)]


# --- a direct connection ----------------------------------------------------------


def _endpoint() -> EndpointSession:
    es = EndpointSession("ag", lambda uuid: uuid == "x")
    es.receive(Hello(PROTOCOL_VERSION, "me"))
    return es


def test_the_endpoint_stops_a_cancelled_request_and_never_answers_it() -> None:
    es = _endpoint()
    (run,) = es.receive(Request(5, "x", "hang"))
    assert isinstance(run, RunRequest)
    assert es.receive(Cancel(5)) == [CancelRequest(5)]
    assert es.reply(5, b"late") == []
    assert es.error(5, "remote", "late") == []
    # A cancel for an answered or unknown id does nothing.
    es.receive(Request(6, "x", "op"))
    assert es.reply(6, b"ok") == [Send(None, Response(6, b"ok"))]
    assert es.receive(Cancel(6)) == []
    assert es.receive(Cancel(99)) == []
    # The id is free again.
    assert isinstance(es.receive(Request(5, "x", "op"))[0], RunRequest)


def test_the_endpoint_client_cancels_a_request_and_forgets_its_late_answer() -> None:
    client = EndpointClient("me")
    client.hello()
    client.receive(Welcome(PROTOCOL_VERSION, "ag", 3.0, 1.0), 0.0)
    r, _ = client.request("x", "hang", b"")
    assert client.cancel(r) == [Send(None, Cancel(r))]
    assert client.receive(Response(r, b"late"), 0.1) == []
    assert client.cancel(r) == []
    # A retried call stops being resent.
    r2, _ = client.request("x", "op", b"")
    client.receive(Retry(r2, 0.5), 0.1)
    assert client.next_deadline() is not None
    client.cancel(r2)
    assert client.handle_timers(10.0) == []
    # A connect is forgotten without a message (the disconnect ends it).
    c, _ = client.connect("x")
    assert client.cancel(c) == []
    assert client.receive(Ok(c), 0.2) == []
    # Nothing is left to fail when the connection ends.
    assert client.connection_lost() == []


def test_a_direct_connection_has_a_bound_on_requests_in_flight() -> None:
    es = EndpointSession("ag", lambda uuid: uuid == "x", max_in_flight=2)
    es.receive(Hello(PROTOCOL_VERSION, "me"))
    assert isinstance(es.receive(Request(1, "x", "hang"))[0], RunRequest)
    assert isinstance(es.receive(Request(2, "x", "hang"))[0], RunRequest)
    assert es.receive(Request(3, "x", "op")) == [Send(None, Retry(3, IN_FLIGHT_RETRY_AFTER))]
    # An answer frees a slot, and so does a cancel.
    es.reply(1, b"done")
    assert isinstance(es.receive(Request(3, "x", "op"))[0], RunRequest)
    assert es.receive(Request(4, "x", "op"))[0] == Send(None, Retry(4, IN_FLIGHT_RETRY_AFTER))
    es.receive(Cancel(2))
    assert isinstance(es.receive(Request(4, "x", "op"))[0], RunRequest)
