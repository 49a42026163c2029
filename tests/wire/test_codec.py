"""Tests for the wire codec: round trips, strict decoding, fuzzing, payloads."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hulytrio.core.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from hulytrio.core.events import AgentEvent, ChangeKind, ContainerEvent, NetworkEvent
from hulytrio.core.messages import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    Activate,
    AgentsReply,
    Cancel,
    Claim,
    ClientsReply,
    Close,
    Connect,
    ContainerStopped,
    Disconnect,
    Drain,
    Error,
    Event,
    Get,
    GetReply,
    Hello,
    KindsReply,
    ListReply,
    Message,
    Ok,
    Ping,
    Pong,
    Push,
    Query,
    RegisterAgent,
    RegisterReply,
    Release,
    Request,
    Response,
    Retry,
    Start,
    Started,
    Terminate,
    TerminateAny,
    UnregisterAgent,
    Welcome,
)
from hulytrio.core.types import (
    AgentInfo,
    ClientInfo,
    ContainerRecord,
    GetOptions,
    OfferedContainer,
)
from hulytrio.wire.codec import (
    MAX_FRAME_BYTES,
    WireError,
    decode_frame,
    decode_frame_lenient,
    decode_payload,
    encode_frame,
    encode_payload,
)

UUID = "3f0b8a52-2c4e-4a8e-9d57-0c1f7e1f2a11"
RECORD = ContainerRecord(
    uuid=UUID,
    kind="session",
    agent_id="agent-7",
    endpoint="ws://10.0.0.7:9001",
    labels=("tenant-a", "eu"),
    stateless=True,
    epoch=3,
)
AGENT = AgentInfo("agent-7", ("echo", "session"), "ws://10.0.0.7:9001", 4)
OFFER = OfferedContainer(UUID, "session", ("eu",), stateless=True)

#: One realistic instance of every message class.
SAMPLES: list[Message] = [
    Hello(PROTOCOL_VERSION, "peer-1", 30.0, None),
    Welcome(PROTOCOL_VERSION, "hub-9", 30.0, 5.0, term=2, event_seq=17, redirect=None),
    Ping(),
    Pong(),
    Close("shutting down"),
    Get(1, "session", GetOptions(UUID, ("tenant-a",), {"user": "ann", "n": [1, 2]})),
    Release(2, UUID),
    RegisterAgent(3, "agent-7", ("echo", "session"), "ws://10.0.0.7:9001", (OFFER,), 100),
    UnregisterAgent(4, "agent-7"),
    Drain(5, "agent-7"),
    Claim(5, "agent-7", OFFER),
    Query(6, "list", "session"),
    ContainerStopped("agent-7", UUID),
    Ok(7),
    GetReply(8, RECORD),
    RegisterReply(9, standby=(UUID,), terminate=("c-2",)),
    ListReply(10, (RECORD, ContainerRecord("c-2", "echo", "agent-1"))),
    AgentsReply(11, (AGENT, AgentInfo("agent-1", ()))),
    ClientsReply(14, (ClientInfo("c-1", "ops", ("u-1", "u-2"), ("agent-1",)),
                      ClientInfo("c-2", "anonymous"))),
    TerminateAny(15, "u-1"),
    KindsReply(12, ("echo", "session")),
    Error(13, ErrorCode.REMOTE.value, "division by zero", "ZeroDivisionError"),
    Retry(14, 0.25),
    Start(15, "agent-7", "session", UUID, ("eu",), {"size": 3}),
    Started(15, UUID, "ws://10.0.0.7:9001"),
    Terminate("agent-7", UUID),
    Activate("agent-7", UUID, 4),
    Request(16, UUID, "update", encode_payload({"doc": "x" * 80}), "client-3"),
    Response(16, encode_payload([1, 2, 3])),
    Connect(17, UUID, "client-3"),
    Disconnect(UUID, "client-3"),
    Cancel(9),
    Push(UUID, encode_payload({"event": "changed"}), "client-3"),
    Event(
        NetworkEvent(
            42,
            (AgentEvent(ChangeKind.ADDED, AGENT),),
            (
                ContainerEvent(ChangeKind.UPDATED, RECORD),
                ContainerEvent(ChangeKind.REMOVED, ContainerRecord("c-2", "echo", "agent-1")),
            ),
        )
    ),
]


def wire_of(message: Message) -> list[Any]:
    """The message's wire array, as a peer would see it after unpacking."""
    return msgpack.unpackb(encode_frame([message]), strict_map_key=False)[0]


def frame(*wires: Any) -> bytes:
    return msgpack.packb(list(wires), use_bin_type=True)


def decode_error(data: bytes, **kwargs: Any) -> WireError:
    with pytest.raises(WireError) as info:
        decode_frame(data, **kwargs)
    return info.value


# --- round trips ------------------------------------------------------------------


def test_samples_cover_every_message_type():
    assert {type(m) for m in SAMPLES} == set(MESSAGE_TYPES.values())


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: m.TAG)
def test_round_trip_each_message(message):
    assert decode_frame(encode_frame([message])) == [message]


def test_round_trip_all_messages_in_one_frame():
    assert decode_frame(encode_frame(SAMPLES)) == SAMPLES


def test_empty_frame():
    assert decode_frame(encode_frame([])) == []


def test_message_is_tag_then_fields_in_declaration_order():
    request = Request(1, UUID, "op", b"\x01", None)
    assert wire_of(request) == ["req", 1, UUID, "op", b"\x01", None]
    assert wire_of(Ping()) == ["ping"]
    assert wire_of(GetReply(8, RECORD)) == [
        "got",
        8,
        [UUID, "session", "agent-7", "ws://10.0.0.7:9001", ["eu", "tenant-a"], True, 3, 0],
    ]
    assert wire_of(SAMPLES[-1])[1][1][0][0] == "added"  # enums travel by value


def test_trailing_defaulted_fields_may_be_omitted():
    assert decode_frame(frame(["get", 1, "echo"])) == [Get(1, "echo")]
    assert decode_frame(frame(["req", 1, UUID, "op"])) == [Request(1, UUID, "op")]
    assert decode_frame(frame(["res", 1])) == [Response(1)]
    assert decode_frame(frame(["welcome", 1, "hub", 30, 5])) == [Welcome(1, "hub", 30.0, 5.0)]
    assert decode_frame(frame(["got", 1, [UUID, "k", "a"]])) == [
        GetReply(1, ContainerRecord(UUID, "k", "a"))
    ]
    # An agent older than ``OfferedContainer.serving`` sends 4 fields: not serving.
    [register] = decode_frame(frame(["register", 1, "a", ["db"], None, [[UUID, "db", [], True]]]))
    assert register.containers == (OfferedContainer(UUID, "db", (), True, False),)


def test_tuple_fields_come_back_as_tuples_and_labels_canonical():
    [reply] = decode_frame(frame(["kinds", 1, ["a", "b"]]))
    assert reply == KindsReply(1, ("a", "b"))
    assert isinstance(reply.kinds, tuple)
    [got] = decode_frame(frame(["got", 1, [UUID, "k", "a", None, ["z", "a", "z"]]]))
    assert got.container.labels == ("a", "z")


def test_int_is_accepted_for_float_fields():
    [hello] = decode_frame(frame(["hello", 1, "p", 30]))
    assert hello.alive_timeout == 30.0
    assert type(hello.alive_timeout) is float


# --- hypothesis round trips -------------------------------------------------------

ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
# msgpack cannot encode lone surrogates (they are not UTF-8), so keep them out.
texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
labels = st.lists(texts, max_size=4).map(tuple)
json_like = st.recursive(
    st.none() | st.booleans() | ints | st.floats(allow_nan=False) | texts | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=10,
)
extras = st.none() | st.dictionaries(texts, json_like, max_size=3)
records = st.builds(
    ContainerRecord, texts, texts, texts, st.none() | texts, labels, st.booleans(), ints
)
agents = st.builds(AgentInfo, texts, labels, st.none() | texts, ints)
offers = st.builds(OfferedContainer, texts, texts, labels, st.booleans())

requests = st.builds(Request, ints, texts, texts, st.binary(max_size=200), st.none() | texts)
gets = st.builds(Get, ints, texts, st.builds(GetOptions, st.none() | texts, labels, extras))
registers = st.builds(
    RegisterAgent,
    ints,
    texts,
    labels,
    st.none() | texts,
    st.lists(offers, max_size=3).map(tuple),
    st.none() | ints,
)
events = st.builds(
    Event,
    st.builds(
        NetworkEvent,
        ints,
        st.lists(st.builds(AgentEvent, st.sampled_from(ChangeKind), agents), max_size=3).map(tuple),
        st.lists(st.builds(ContainerEvent, st.sampled_from(ChangeKind), records), max_size=3).map(
            tuple
        ),
    ),
)


@given(st.lists(requests | gets | registers | events, max_size=5))
def test_round_trip_generated_messages(messages):
    assert decode_frame(encode_frame(messages)) == messages


# --- fuzzing: nothing but RemoteProtocolError ----------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | ints
    | st.floats()
    | texts
    | st.binary(max_size=8)
    | st.sampled_from(sorted(MESSAGE_TYPES))
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(scalars, inner, max_size=3),
    max_leaves=25,
)
tagged = st.builds(
    lambda tag, rest: [tag, *rest],
    st.sampled_from(sorted(MESSAGE_TYPES)),
    st.lists(values, max_size=8),
)


def must_only_raise_wire_errors(data: bytes) -> None:
    # Only WireError is caught: any other exception fails the test.
    strict: list[Message] | None = None
    failure: WireError | None = None
    try:
        strict = decode_frame(data)
    except WireError as exc:
        failure = exc
    if failure is not None:
        assert isinstance(failure, RemoteProtocolError)
        assert failure.code is ErrorCode.PROTOCOL
    try:
        good, errors = decode_frame_lenient(data)
    except WireError:
        good, errors = [], [failure]
        assert failure is not None
        assert failure.index is None  # only frame-level errors escape lenient decoding
    if strict is not None:
        assert (good, errors) == (strict, [])
    else:
        assert str(errors[0]) == str(failure)  # strict decoding stops at the first bad one
    for message in good:  # whatever decoded must encode again
        encode_frame([message])


@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data):
    must_only_raise_wire_errors(data)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(values | tagged, max_size=4) | values)
def test_fuzz_random_msgpack_values(obj):
    must_only_raise_wire_errors(msgpack.packb(obj, use_bin_type=True))


def mutate(wire: Any, data: st.DataObject) -> Any:
    """Replace one value somewhere inside ``wire`` with a random one."""
    if not isinstance(wire, list) or not wire or data.draw(st.booleans()):
        return data.draw(values)
    i = data.draw(st.integers(0, len(wire) - 1))
    return [*wire[:i], mutate(wire[i], data), *wire[i + 1 :]]


@given(st.sampled_from(SAMPLES), st.data())
def test_fuzz_mutated_valid_messages(message, data):
    wire = wire_of(message)
    # Keep the tag, so the message reaches its class's field checks.
    i = data.draw(st.integers(1, len(wire)))
    mutated = [*wire[:i], mutate(wire[i] if i < len(wire) else None, data), *wire[i + 1 :]]
    must_only_raise_wire_errors(frame(mutated))


@given(st.binary(max_size=100))
def test_fuzz_payload_bytes(data):
    with contextlib.suppress(WireError):
        decode_payload(data)


# --- bad frames ---------------------------------------------------------------


def test_every_truncation_of_a_frame_is_refused():
    data = encode_frame(SAMPLES)
    for end in range(len(data)):
        err = decode_error(data[:end])
        assert err.index is None
    assert "truncated" in str(decode_error(data[:-1]))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\xc1", "frame is not valid msgpack"),
        (frame(["ping"]) + b"\x00", "trailing bytes"),
        (msgpack.packb({"a": 1}), "frame must be an array of messages, got dict"),
        (msgpack.packb("req"), "frame must be an array of messages, got str"),
        (b"\x81\x91\x01\x01", "frame is not valid msgpack"),  # {[1]: 1}: unhashable key
        (b"\x91\xa2\xff\xfe", "frame is not valid msgpack"),  # invalid UTF-8 in a str
        (b"\x91" * 5000 + b"\xc0", "nested too deeply"),
    ],
)
def test_bad_frames(data, expected):
    err = decode_error(data)
    assert expected in str(err)
    assert err.index is None
    with pytest.raises(WireError):
        decode_frame_lenient(data)


def test_frame_that_is_not_bytes():
    assert "frame must be bytes, got str" in str(decode_error("ping"))  # type: ignore[arg-type]


def test_oversized_frame():
    data = encode_frame([Request(1, UUID, "op", b"x" * 1000)])
    err = decode_error(data, max_bytes=100)
    assert str(err) == f"frame too large: {len(data)} bytes > limit 100"
    assert decode_frame(data, max_bytes=len(data))
    assert MAX_FRAME_BYTES == 16 * 1024 * 1024


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (["foo"], "message 0: unknown tag 'foo'"),
        ([7, 1], "message 0: tag must be str, got int"),
        ([], "message 0: empty array, expected [tag, fields...]"),
        ("ping", "message 0: must be an array [tag, fields...], got str"),
        (["req", 1], "message 0 (req): expected 3 to 6 fields after the tag, got 1"),
        (["res", 1, b"", None], "message 0 (res): expected 1 to 2 fields after the tag, got 3"),
        (["ping", 1], "message 0 (ping): expected 0 fields after the tag, got 1"),
        (["ok", 1, 2], "message 0 (ok): expected 1 field after the tag, got 2"),
        (["req", "1", UUID, "op", b""], "message 0 (req): field 'id' must be int, got str"),
        (["req", True, UUID, "op", b""], "message 0 (req): field 'id' must be int, got bool"),
        (["req", 1, UUID, "op", "text"], "message 0 (req): field 'payload' must be bytes, got str"),
        (["req", 1, UUID, "op", b"", 5], "message 0 (req): field 'client_id' must be str, got int"),
        (["res", 1, None], "message 0 (res): field 'payload' must be bytes, got None"),
        (["hello", 1, "p", float("nan")], "field 'alive_timeout' must be a finite number, got nan"),
        (["hello", 1, "p", "30"], "field 'alive_timeout' must be float, got str"),
        (["kinds", 1, ["a", 2]], "message 0 (kinds): field 'kinds[1]' must be str, got int"),
        (["kinds", 1, "ab"], "field 'kinds' must be an array, got str"),
        (["got", 1, [UUID, "k"]], "field 'container' must be an array of 3 to 8 fields"),
        (["got", 1, [UUID, "k", "a", None, [], 1]], "field 'container.stateless' must be bool"),
        (["got", 1, {"uuid": UUID}], "field 'container' must be an array of ContainerRecord"),
        (["get", 1, "k", [None, [], {1: 2}]], "field 'options.extra' must have str keys"),
        (["get", 1, "k", [None, [], [1]]], "field 'options.extra' must be a map, got list"),
        (
            ["event", [1, [["added", ["a", ["k", 3]]]], []]],
            "message 0 (event): field 'event.agents[0].agent.kinds[1]' must be str, got int",
        ),
        (
            ["event", [1, [], [["gone", [UUID, "k", "a"]]]]],
            "field 'event.containers[0].change' must be one of 'added', 'updated', 'removed',"
            " got 'gone'",
        ),
        (["event", [1, [], [[["added"], [UUID, "k", "a"]]]]], "'event.containers[0].change' must"),
        (["register", 1, "a", ["k"], None, [[UUID]]], "field 'containers[0]' must be an array of"),
    ],
)
def test_bad_messages(wire, expected):
    err = decode_error(frame(wire))
    assert expected in str(err)
    assert err.index == 0


def test_error_names_message_index():
    err = decode_error(frame(["ping"], ["pong"], ["nope"]))
    assert str(err) == "message 2: unknown tag 'nope'"
    assert err.index == 2


def test_long_unknown_tag_is_shortened():
    assert "x" * 41 not in str(decode_error(frame(["x" * 1000])))


def test_errors_carry_call_id_and_tag():
    err = decode_error(frame(["req", 5, UUID, 7, b""]))
    assert (err.call_id, err.tag, err.index) == (5, "req", 0)
    err = decode_error(frame(["req", "5", UUID, "op", b""]))
    assert (err.call_id, err.tag) == (None, "req")
    err = decode_error(frame(["stopped", 5]))  # no id field
    assert (err.call_id, err.tag) == (None, "stopped")
    err = decode_error(frame(["frobnicate", 5]))
    assert (err.call_id, err.tag) == (None, None)


# --- lenient decoding ---------------------------------------------------------------


def test_lenient_keeps_good_messages_and_reports_bad_ones():
    good = [Request(1, UUID, "op", b"a"), Ping(), Response(3, b"c")]
    data = frame(
        wire_of(good[0]),
        ["req", 2, UUID, None, b""],
        wire_of(good[1]),
        ["nope", 9],
        wire_of(good[2]),
    )
    with pytest.raises(WireError):
        decode_frame(data)
    messages, errors = decode_frame_lenient(data)
    assert messages == good
    assert [(e.index, e.tag, e.call_id) for e in errors] == [(1, "req", 2), (3, None, None)]
    assert "message 1 (req): field 'operation' must be str, got None" in str(errors[0])
    assert all(isinstance(e, RemoteProtocolError) for e in errors)


def test_lenient_on_a_good_frame():
    assert decode_frame_lenient(encode_frame(SAMPLES)) == (SAMPLES, [])


# --- encoding errors ------------------------------------------------------------------


def test_encode_refuses_non_messages():
    with pytest.raises(LocalProtocolError, match="not a protocol message: dict"):
        encode_frame([{"tag": "ping"}])  # type: ignore[list-item]


def test_encode_refuses_unencodable_field_values():
    with pytest.raises(LocalProtocolError, match="type set"):
        encode_frame([Start(1, "a", "k", UUID, (), {"s": {1, 2}})])
    with pytest.raises(LocalProtocolError, match="64-bit"):
        encode_frame([Ok(2**64)])
    with pytest.raises(LocalProtocolError, match="cannot encode 'got' message"):
        encode_frame([GetReply(1, None)])  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        encode_frame([Close("\ud800")])  # a lone surrogate is not UTF-8


# --- payloads ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "back"),
    [
        (None, None),
        ({"op": "x", "n": [1, 2.5, True, None]}, {"op": "x", "n": [1, 2.5, True, None]}),
        ((1, (2, 3)), [1, [2, 3]]),  # tuples come back as lists
        ({1: "a", b"k": "b"}, {1: "a", b"k": "b"}),  # non-str keys survive
        (b"\x00\xff", b"\x00\xff"),
        ("text", "text"),
        (2**64 - 1, 2**64 - 1),
    ],
)
def test_payload_round_trip(value, back):
    assert decode_payload(encode_payload(value)) == back


def test_none_is_the_empty_payload():
    assert encode_payload(None) == b""
    assert decode_payload(b"") is None
    assert decode_payload(Request(1, UUID, "op").payload) is None


@given(json_like)
def test_payload_round_trip_generated(value):
    assert decode_payload(encode_payload(value)) == value


@pytest.mark.parametrize(
    ("value", "name"),
    [({1, 2}, "set"), (object(), "object"), ({"when": math}, "module"), ([1, 2**70], "int")],
)
def test_unencodable_payload_names_the_type(value, name):
    with pytest.raises(LocalProtocolError, match=f"cannot encode .*{name}"):
        encode_payload(value)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\xc1", "payload is not valid msgpack"),
        (b"\x92\x01", "payload is not valid msgpack: truncated"),
        (b"\x01\x02", "trailing bytes"),
        (msgpack.packb({(1,): 2}), "payload is not valid msgpack"),
    ],
)
def test_bad_payload(data, expected):
    with pytest.raises(RemoteProtocolError, match=expected):
        decode_payload(data)


def test_a_large_frame_leaves_no_buffer_behind():
    # Found by tests/fuzz/test_live_hub.py: the reused msgpack Packer kept a
    # buffer the size of the largest frame it ever packed (34 MiB after a
    # burst for a peer that did not read), allocated for as long as the hub ran.
    import gc
    import tracemalloc

    small = [Response(1, b"x")]
    encode_frame(small)  # the packer exists before the baseline
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        big = encode_frame([Response(i, b"x" * (256 * 1024)) for i in range(32)])
        assert len(big) > 8 * (1 << 20)
        del big
        encode_frame(small)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 1 << 20, f"{held} bytes still held after an 8 MiB frame"
