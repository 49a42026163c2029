"""RFC 6455 framing (frames.py), checked against wsproto, an independent implementation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

from hulytrio.transport.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_TEXT,
    Control,
    FrameError,
    MessageReader,
    close_payload,
    encode_frame,
    mask,
)

#: What one side sends: binary or text messages, possibly fragmented, and pings.
sends = st.lists(st.one_of(
    st.tuples(st.just("bytes"), st.binary(max_size=300), st.integers(1, 4)),
    st.tuples(st.just("text"), st.text(max_size=100), st.integers(1, 3)),
    st.tuples(st.just("ping"), st.binary(max_size=125), st.just(1)),
), max_size=12)


def _wsproto_client_bytes(plan: list[tuple[str, object, int]]) -> tuple[bytes, list[object]]:
    """Frames a wsproto client sends for ``plan``; returns them and the expected items."""
    client = Connection(ConnectionType.CLIENT)
    out, expected = b"", []
    for kind, data, parts in plan:
        if kind == "ping":
            out += client.send(Ping(data))  # type: ignore[arg-type]
            expected.append(Control(OP_PING, data))  # type: ignore[arg-type]
            continue
        cut = [len(data) * i // parts for i in range(parts + 1)]  # type: ignore[arg-type]
        for i in range(parts):
            chunk = data[cut[i]:cut[i + 1]]  # type: ignore[index]
            last = i == parts - 1
            event = (BytesMessage(chunk, message_finished=last) if kind == "bytes"
                     else TextMessage(chunk, message_finished=last))
            out += client.send(event)
        expected.append(data)
    return out, expected


@given(sends, st.integers(1, 50))
def test_reads_what_wsproto_sends_in_any_split(plan, step):
    data, expected = _wsproto_client_bytes(plan)
    reader = MessageReader(masked=True, max_message_size=1 << 20)
    items: list[object] = []
    for i in range(0, len(data), step):
        got, error = reader.feed(data[i:i + step])
        assert error is None
        items.extend(got)
    assert items == expected


@given(st.lists(st.binary(max_size=70_000), max_size=4), st.booleans())
def test_wsproto_reads_what_we_send(payloads, masked):
    # A masked sender is a client: the receiving wsproto is a server.
    receiver = Connection(ConnectionType.SERVER if masked else ConnectionType.CLIENT)
    receiver.receive_data(b"".join(encode_frame(OP_BINARY, p, masked=masked) for p in payloads))
    got = [bytes(e.data) for e in receiver.events() if isinstance(e, BytesMessage)]
    assert got == payloads


@given(st.binary(max_size=5000), st.binary(min_size=4, max_size=4))
def test_mask_is_its_own_inverse_and_matches_the_rfc(data, key):
    masked = mask(data, key)
    assert masked == bytes(b ^ key[i % 4] for i, b in enumerate(data))
    assert mask(masked, key) == data


def test_close_frames_carry_code_and_reason():
    client = Connection(ConnectionType.CLIENT)
    reader = MessageReader(masked=True, max_message_size=100)
    items, error = reader.feed(client.send(CloseConnection(4001, "bye")))
    assert error is None
    assert items == [Control(OP_CLOSE, b"\x0f\xa1bye", 4001, "bye")]
    assert close_payload(1005, "ignored") == b""
    items, _ = MessageReader(masked=False, max_message_size=10).feed(
        encode_frame(OP_CLOSE, b"", masked=False))
    assert items == [Control(OP_CLOSE, b"", 1005, "")]


def _raw(b0: int, payload: bytes, *, masked: bool = True) -> bytes:
    """A hand-made frame with first byte ``b0`` (for frames the encoder never makes)."""
    key = b"\x01\x02\x03\x04"
    n = len(payload)
    length = bytes((0x80 * masked | n,)) if n < 126 else (
        bytes((0x80 * masked | 126,)) + n.to_bytes(2, "big"))
    if masked:
        return bytes((b0,)) + length + key + mask(payload, key)
    return bytes((b0,)) + length + payload


@pytest.mark.parametrize(("frame", "code", "why"), [
    (_raw(0xC2, b"x"), 1002, "reserved bits"),
    (_raw(0x83, b"x"), 1002, "unknown opcode"),
    (_raw(0x8B, b"x"), 1002, "unknown opcode"),
    (_raw(0x82, b"x", masked=False), 1002, "must be masked"),
    (_raw(0x09, b"x"), 1002, "control frames must be final"),
    (_raw(0x89, b"x" * 126), 1002, "control frames"),
    (_raw(0x80, b"x"), 1002, "continuation frame without a message"),
    (_raw(0x02, b"a") + _raw(0x82, b"b"), 1002, "inside a fragmented one"),
    (_raw(0x81, b"\xff\xfe"), 1007, "not UTF-8"),
    (_raw(0x88, b"\x03"), 1002, "one-byte"),
    (_raw(0x88, (1006).to_bytes(2, "big")), 1002, "invalid close code"),
    (_raw(0x88, (1000).to_bytes(2, "big") + b"\xff"), 1007, "not UTF-8"),
])
def test_protocol_violations_fail_the_connection_with_the_right_code(frame, code, why):
    good = _raw(0x82, b"before")
    items, error = MessageReader(masked=True, max_message_size=1000).feed(good + frame)
    assert items[0] == b"before", "what came before the violation is delivered"
    assert isinstance(error, FrameError)
    assert error.code == code
    assert why in error.reason


def test_an_oversized_message_is_refused_from_its_header():
    reader = MessageReader(masked=False, max_message_size=1000)
    header_only = encode_frame(OP_BINARY, b"x" * 5000, masked=False)[:4]
    items, error = reader.feed(header_only)
    assert items == []
    assert error is not None
    assert error.code == 1009
    # fragments count towards the limit too
    reader = MessageReader(masked=False, max_message_size=1000)
    items, error = reader.feed(_raw(0x02, b"x" * 100, masked=False) * 1
                               + bytes((0x00, 126)) + (950).to_bytes(2, "big"))
    assert error is not None
    assert error.code == 1009
    # after an error nothing more is read
    assert reader.feed(_raw(0x82, b"late", masked=False)) == ([], None)


def test_text_and_binary_both_arrive_as_sent():
    reader = MessageReader(masked=False, max_message_size=100)
    data = encode_frame(OP_TEXT, "héllo".encode(), masked=False) + encode_frame(
        OP_BINARY, b"\x00\x01", masked=False)
    assert reader.feed(data) == (["héllo", b"\x00\x01"], None)
