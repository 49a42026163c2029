"""The hub answers illegal input with Error and never disturbs other peers."""

from __future__ import annotations

from hulytrio.core.errors import ErrorCode
from hulytrio.core.messages import (
    PROTOCOL_VERSION,
    Error,
    Get,
    GetReply,
    Hello,
    Ok,
    Ping,
    Pong,
    Query,
    RegisterAgent,
    Request,
    Response,
    Retry,
    Start,
    Started,
    Welcome,
)
from hulytrio.core.types import OfferedContainer


def served(raw, *, max_in_flight=None):
    """A host "h" with agent "ag" running container "x" held by "c"."""
    raw.hello("h")
    raw.hello("c")
    raw.send("h", RegisterAgent(1, "ag", ("echo",)))
    raw.send("c", Get(1, "echo"))
    (start,) = [m for m in raw.take("h") if isinstance(m, Start)]
    raw.send("h", Started(start.id, start.uuid))
    (reply,) = [m for m in raw.take("c") if isinstance(m, GetReply)]
    return reply.container.uuid


def test_unknown_query_is_an_error_for_that_call_only(raw) -> None:
    raw.hello("c")
    raw.hello("other")
    raw.take("c")
    (reply,) = raw.send("c", Query(9, "secrets"))
    assert isinstance(reply, Error)
    assert (reply.id, reply.code) == (9, ErrorCode.PROTOCOL.value)
    assert raw.hub.registry.has_client("c")
    assert raw.send("other", Ping()) == [Pong()]


def test_messages_before_hello_are_refused_and_the_connection_closed(raw) -> None:
    uuid = served(raw)
    raw.hub.connection_made("rogue", 0.0)
    (reply,) = raw.send("rogue", Get(4, "echo"))
    assert isinstance(reply, Error)
    assert reply.code == ErrorCode.PROTOCOL.value
    assert raw.closed == ["rogue"]
    # Later messages from that connection are ignored entirely.
    assert raw.send("rogue", Get(5, "echo")) == []
    assert not raw.hub.registry.has_client("rogue")
    assert raw.hub.registry.holders(uuid) == {"c": 1}
    assert raw.hub.registry.check() == []


def test_wrong_protocol_version_is_refused(raw) -> None:
    uuid = served(raw)
    raw.hub.connection_made("old", 0.0)
    (reply,) = raw.send("old", Hello(PROTOCOL_VERSION + 1, "old"))
    assert isinstance(reply, Error)
    assert str(PROTOCOL_VERSION) in reply.message
    assert raw.closed == ["old"]
    assert not raw.hub.registry.has_client("old")
    assert raw.hub.registry.holders(uuid) == {"c": 1}


def test_a_bad_alive_timeout_is_refused(raw) -> None:
    raw.hub.connection_made("x", 0.0)
    (reply,) = raw.send("x", Hello(PROTOCOL_VERSION, "x", -1.0))
    assert isinstance(reply, Error)
    assert raw.closed == ["x"]


def test_a_peer_may_not_send_hub_only_messages(raw) -> None:
    raw.hello("c")
    raw.take("c")
    (reply,) = raw.send("c", Welcome(PROTOCOL_VERSION, "fake", 1.0, 1.0))
    assert isinstance(reply, Error)
    assert raw.hub.registry.has_client("c")


def test_requests_routed_to_the_owning_agent_and_back(raw) -> None:
    uuid = served(raw)
    raw.send("c", Request(7, uuid, "echo", b"payload"))
    (fwd,) = raw.take("h")
    assert (fwd.uuid, fwd.operation, fwd.payload, fwd.client_id) == (uuid, "echo", b"payload", "c")
    raw.send("h", Response(fwd.id, b"answer"))
    assert raw.take("c") == [Response(7, b"answer")]


def test_request_to_unknown_container_is_not_found(raw) -> None:
    raw.hello("c")
    raw.take("c")
    (reply,) = raw.send("c", Request(1, "nope", "op"))
    assert reply.code == ErrorCode.NOT_FOUND.value


def test_max_in_flight_answers_retry_and_frees_slots(make_raw) -> None:
    raw = make_raw(max_in_flight=2)
    uuid = served(raw)
    raw.send("c", Request(1, uuid, "op"))
    raw.send("c", Request(2, uuid, "op"))
    (retry,) = raw.send("c", Request(3, uuid, "op"))
    assert isinstance(retry, Retry)
    assert retry.id == 3
    assert retry.after > 0
    raw.take("c")
    fwds = raw.take("h")
    assert len(fwds) == 2
    raw.send("h", Response(fwds[0].id, b""))
    raw.send("h", Error(fwds[1].id, ErrorCode.REMOTE.value, "boom", "ValueError"))
    assert [type(m) for m in raw.take("c")] == [Response, Error]
    raw.send("c", Request(3, uuid, "op"))
    assert len(raw.take("h")) == 1
    assert raw.hub.stats.retries == 1


def test_in_flight_requests_fail_agent_gone_when_the_agent_goes(raw) -> None:
    uuid = served(raw)
    raw.send("c", Request(5, uuid, "op"))
    raw.lost("h", 1.0)
    (reply,) = [m for m in raw.take("c") if isinstance(m, Error)]
    assert (reply.id, reply.code) == (5, ErrorCode.AGENT_GONE.value)


def test_late_answer_for_a_gone_caller_is_dropped(raw) -> None:
    uuid = served(raw)
    raw.send("c", Request(5, uuid, "op"))
    (fwd,) = raw.take("h")
    raw.lost("c", 1.0)
    raw.send("h", Response(fwd.id, b"late"), 1.0)
    assert raw.take("c") == []
    assert raw.hub.registry.check() == []


def test_calls_to_a_superseded_agent_fail_at_once_and_only_those(raw) -> None:
    """An agent id registered from a new session (a process restarted under a
    new peer id): calls the hub forwarded to its containers in the old
    session fail now, not when that session times out; others there wait."""
    raw.hello("h")
    raw.send("h", RegisterAgent(1, "ag", ("echo",), None, (OfferedContainer("x", "echo"),)))
    raw.send("h", RegisterAgent(2, "keep", ("kv",), None, (OfferedContainer("y", "kv"),)))
    raw.hello("c")
    raw.send("c", Request(5, "x", "op"))
    raw.send("c", Request(6, "y", "op"))
    forwarded = {m.uuid: m for m in raw.take("h") if isinstance(m, Request)}
    assert set(forwarded) == {"x", "y"}
    raw.take("c")
    raw.hello("h2", 0.5)
    raw.send("h2", RegisterAgent(1, "ag", ("echo",), None, (OfferedContainer("x", "echo"),)),
             0.5)
    errors = [m for m in raw.take("c") if isinstance(m, Error)]
    assert [(e.id, e.code) for e in errors] == [(5, ErrorCode.AGENT_GONE.value)]
    # The old session still hosts "keep": its call is answered as usual.
    raw.send("h", Response(forwarded["y"].id, b"ok"), 0.6)
    assert [m for m in raw.take("c") if isinstance(m, Response)] == [Response(6, b"ok")]
    # A late answer from the old session for the failed call goes nowhere.
    raw.send("h", Response(forwarded["x"].id, b"late"), 0.7)
    assert raw.take("c") == []
    assert raw.hub.registry.check() == []


def test_second_hello_with_same_peer_id_supersedes(raw) -> None:
    uuid = served(raw)
    raw.hub.connection_made("c-new", 1.0)
    raw.send("c-new", Hello(PROTOCOL_VERSION, "c"), 1.0)
    assert "c" in raw.closed
    # The old session ended: its hold is gone, the new session starts clean.
    assert raw.hub.registry.holders(uuid) == {}
    # Late messages from the superseded connection act on nothing.
    late = raw.send("c", Get(9, "echo"), 1.0)
    assert not [m for m in late if isinstance(m, GetReply)]
    assert raw.hub.registry.pending_count() == 0
    assert raw.take("h") == []
    assert raw.send("c-new", Ping(), 1.0) == [Pong()]
    assert raw.send("h", Ok(0), 1.0) == []


def test_failed_forwards_free_one_slot_each(make_raw) -> None:
    """Calls failed because their agent went count once against the caller's
    in-flight limit, not twice: the caller may not exceed it afterwards."""
    raw = make_raw(max_in_flight=2)
    raw.hello("h")
    raw.send("h", RegisterAgent(1, "ag", ("echo",), None, (OfferedContainer("x", "echo"),)))
    raw.hello("k")
    raw.send("k", RegisterAgent(1, "keep", ("kv",), None, (OfferedContainer("y", "kv"),)))
    raw.hello("c")
    raw.take("c")
    raw.send("c", Request(5, "x", "op"))
    raw.send("c", Request(6, "y", "op"))
    raw.lost("h", 1.0)
    assert [(m.id, m.code) for m in raw.take("c") if isinstance(m, Error)] == [
        (5, ErrorCode.AGENT_GONE.value)]
    # One call (6) is still in flight: one slot is free, the next call retries.
    raw.send("c", Request(7, "y", "op"), 1.0)
    (retry,) = raw.send("c", Request(8, "y", "op"), 1.0)
    assert isinstance(retry, Retry)
    assert retry.id == 8
    assert len([m for m in raw.take("k") if isinstance(m, Request)]) == 2
