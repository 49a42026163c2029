"""RFC 6455's framing rules, section by section, as explicit cases (issue 13).

The parser (``frames.MessageReader``) is checked on hand-made bytes; what the
RFC asks of an endpoint (answer a ping, echo a close, fail the connection
with the right code, mask per side) is checked on a ``WebSocket`` over a
socket pair whose other end is a raw socket.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from hulytrio.transport.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Control,
    FrameError,
    MessageReader,
    close_payload,
    encode_frame,
    mask,
)
from hulytrio.transport.websocket import WebSocket, WebSocketClosed

KEY = b"\x0a\x0b\x0c\x0d"


def frame(b0: int, payload: bytes = b"", *, masked: bool = True, length: int | None = None
          ) -> bytes:
    """A hand-made frame: first byte ``b0``; ``length`` overrides the declared length."""
    n = len(payload) if length is None else length
    bit = 0x80 if masked else 0
    if n < 126:
        header = bytes((b0, bit | n))
    elif n < 65_536:
        header = bytes((b0, bit | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((b0, bit | 127)) + n.to_bytes(8, "big")
    return header + KEY + mask(payload, KEY) if masked else header + payload


def read(data: bytes, *, masked: bool = True, limit: int = 1 << 20
         ) -> tuple[list[bytes | str | Control], FrameError | None]:
    return MessageReader(masked=masked, max_message_size=limit).feed(data)


def fails(data: bytes, code: int, *, masked: bool = True, limit: int = 1 << 20) -> str:
    """Assert ``data`` fails the connection with ``code``; returns the reason."""
    _, error = read(data, masked=masked, limit=limit)
    assert error is not None, f"expected a close with {code}"
    assert error.code == code, error.reason
    return error.reason


# --- 5.2 base framing -------------------------------------------------------------------


@pytest.mark.parametrize(("size", "header_bytes", "marker"), [
    (0, 2, 0), (125, 2, 125), (126, 4, 126), (65_535, 4, 126), (65_536, 10, 127),
])
@pytest.mark.parametrize("masked", [True, False])
def test_5_2_lengths_use_the_minimal_encoding_and_read_back(size, header_bytes, marker, masked):
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    data = encode_frame(OP_BINARY, payload, masked=masked)
    assert data[1] & 0x7F == marker
    assert len(data) == header_bytes + 4 * masked + size
    assert read(data, masked=masked, limit=size) == ([payload], None), "at the limit: read"
    if size:
        fails(data, 1009, masked=masked, limit=size - 1)


def test_5_2_a_64_bit_length_with_its_top_bit_set_is_refused_from_the_header():
    header = bytes((0x82, 0x80 | 127)) + (1 << 63).to_bytes(8, "big")
    assert "exceeds the limit" in fails(header, 1009)


@pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10, 0x70])
def test_5_2_reserved_bits_without_an_extension_fail_with_1002(rsv):
    assert "reserved bits" in fails(frame(0x82 | rsv, b"x"), 1002)


@pytest.mark.parametrize("opcode", [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_5_2_reserved_opcodes_fail_with_1002(opcode):
    assert "opcode" in fails(frame(0x80 | opcode, b"x"), 1002)


# --- 5.3 masking ------------------------------------------------------------------------


def test_5_3_a_server_fails_unmasked_frames_and_a_client_masked_ones():
    assert "must be masked" in fails(frame(0x82, b"x", masked=False), 1002, masked=True)
    assert "must not be masked" in fails(frame(0x82, b"x", masked=True), 1002, masked=False)


def test_5_3_every_masked_frame_gets_a_fresh_key():
    payload = b"the same payload"
    frames = [encode_frame(OP_BINARY, payload, masked=True) for _ in range(50)]
    keys = {f[2:6] for f in frames}
    assert len(keys) == 50, "a masking key must not be predictable, so never reused"
    for f in frames:
        assert f[1] & 0x80
        assert mask(f[6:], f[2:6]) == payload


# --- 5.4 fragmentation ------------------------------------------------------------------


def test_5_4_fragments_make_one_message_and_control_frames_may_come_between():
    data = (frame(0x01, "é€".encode()[:3]) + frame(0x89, b"p1")  # text, cut mid-character
            + frame(0x00, "é€".encode()[3:]) + frame(0x8A, b"")  # continuation, pong
            + frame(0x00, b"") + frame(0x80, b"!"))  # empty continuation, last one
    items, error = read(data)
    assert error is None
    assert items == [Control(OP_PING, b"p1"), Control(OP_PONG, b""), "é€!"]


def test_5_4_a_close_may_come_between_fragments():
    items, error = read(frame(0x02, b"ab") + frame(0x88, close_payload(1001, "bye")))
    assert error is None
    assert items == [Control(OP_CLOSE, close_payload(1001, "bye"), 1001, "bye")]


def test_5_4_a_continuation_with_no_message_fails_with_1002():
    assert "without a message" in fails(frame(0x80, b"x"), 1002)
    assert "without a message" in fails(frame(0x82, b"done") + frame(0x00, b"x"), 1002)


def test_5_4_a_new_message_inside_a_fragmented_one_fails_with_1002():
    assert "inside a fragmented one" in fails(frame(0x01, b"a") + frame(0x81, b"b"), 1002)


def test_5_4_fragments_count_towards_the_message_limit():
    ok = frame(0x02, b"x" * 60) + frame(0x80, b"y" * 40)
    assert read(ok, limit=100) == ([b"x" * 60 + b"y" * 40], None)
    # the header of the fragment that crosses the limit is enough
    assert "exceeds the limit" in fails(frame(0x02, b"x" * 60) + frame(0x80, b"", length=41)[:2],
                                        1009, limit=100)


# --- 5.5 control frames -----------------------------------------------------------------


def test_5_5_control_frames_carry_at_most_125_bytes():
    assert read(frame(0x89, b"p" * 125)) == ([Control(OP_PING, b"p" * 125)], None)
    # refused from the header: the 126 bytes are never waited for
    assert "at most 125" in fails(frame(0x89, b"", length=126)[:4], 1002)
    assert "at most 125" in fails(frame(0x8A, b"", length=70_000)[:10], 1002)


@pytest.mark.parametrize("opcode", [OP_CLOSE, OP_PING, OP_PONG])
def test_5_5_control_frames_must_not_be_fragmented(opcode):
    assert "must be final" in fails(frame(opcode, b""), 1002)


# --- 5.5.1 close, 7.4 status codes ------------------------------------------------------


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
                                  1013, 1014, 3000, 3999, 4000, 4999])
def test_7_4_codes_a_peer_may_send_are_read(code):
    items, error = read(frame(0x88, code.to_bytes(2, "big") + "raison é".encode()))
    assert error is None
    assert items == [Control(OP_CLOSE, code.to_bytes(2, "big") + "raison é".encode(), code,
                             "raison é")]


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535])
def test_7_4_codes_no_peer_may_send_fail_with_1002(code):
    assert "invalid close code" in fails(frame(0x88, code.to_bytes(2, "big")), 1002)


def test_5_5_1_an_empty_close_means_no_status_and_one_byte_is_an_error():
    assert read(frame(0x88, b"")) == ([Control(OP_CLOSE, b"", 1005, "")], None)
    assert "one-byte" in fails(frame(0x88, b"\x03"), 1002)


def test_5_5_1_a_close_reason_that_is_not_utf8_fails_with_1007():
    assert "not UTF-8" in fails(frame(0x88, b"\x03\xe8\xc3\x28"), 1007)


def test_5_5_1_a_close_reason_we_send_is_cut_to_125_bytes_on_a_character_boundary():
    payload = close_payload(1000, "é" * 100)  # 200 bytes of UTF-8
    assert len(payload) <= 125
    assert payload[2:].decode("utf-8") == "é" * 61
    assert read(frame(0x88, payload)) == ([Control(OP_CLOSE, payload, 1000, "é" * 61)], None)
    assert close_payload(1005, "ignored") == b"", "1005 is never sent: an empty close instead"


# --- 5.6 data frames, 8.1 UTF-8 ---------------------------------------------------------


@pytest.mark.parametrize("text", [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                                  b"ok\xe2\x82"])
def test_8_1_text_that_is_not_utf8_fails_with_1007(text):
    assert "not UTF-8" in fails(frame(0x81, text), 1007)
    assert "not UTF-8" in fails(frame(0x01, text[:1]) + frame(0x80, text[1:]), 1007)


def test_5_6_text_and_binary_arrive_as_sent():
    data = encode_frame(OP_TEXT, "π".encode(), masked=False) + encode_frame(
        OP_BINARY, b"\x00\xff", masked=False)
    assert read(data, masked=False) == (["π", b"\x00\xff"], None)


# --- what an endpoint does (5.5.2, 5.5.3, 5.5.1, 7.1.7), on a WebSocket -----------------


@asynccontextmanager
async def _endpoint(client: bool = False, limit: int = 1000
                    ) -> AsyncIterator[tuple[WebSocket, trio.socket.SocketType]]:
    """Our WebSocket (a server unless ``client``) and a raw socket as its peer."""
    ours, theirs = socket.socketpair()
    ws = WebSocket(ours, client=client, max_message_size=limit, remote="pair")
    peer = trio.socket.from_stdlib_socket(theirs)
    try:
        with trio.fail_after(10):
            yield ws, peer
    finally:
        ws.abort()
        peer.close()


async def _frames_from(peer: trio.socket.SocketType, *, masked: bool
                       ) -> list[bytes | str | Control]:
    """Read what our WebSocket sent until it stops (a raw reader of its frames)."""
    reader = MessageReader(masked=masked, max_message_size=1 << 20)
    items: list[bytes | str | Control] = []
    with trio.move_on_after(0.5):
        while data := await peer.recv(65536):
            got, error = reader.feed(data)
            assert error is None
            items.extend(got)
    return items


async def _receive_until_closed(ws: WebSocket) -> tuple[list[bytes | str], WebSocketClosed]:
    received: list[bytes | str] = []
    with trio.fail_after(5):
        while True:
            try:
                received.extend(await ws.receive())
            except WebSocketClosed as closed:
                return received, closed


async def test_5_5_2_a_ping_is_answered_with_a_pong_carrying_the_same_data():
    async with _endpoint() as (ws, peer):
        await peer.send(frame(0x89, b"are you there?") + frame(0x8A, b"unsolicited")
                        + frame(0x82, b"data") + frame(0x88, close_payload(1000, "")))
        received, closed = await _receive_until_closed(ws)
        assert received == [b"data"], "pongs are not messages (5.5.3)"
        assert closed.code == 1000
        sent = await _frames_from(peer, masked=False)
        assert sent[0] == Control(OP_PONG, b"are you there?")


async def test_5_5_1_a_close_is_echoed_and_nothing_after_it_is_delivered():
    async with _endpoint() as (ws, peer):
        await peer.send(frame(0x82, b"before") + frame(0x88, close_payload(4001, "bye"))
                        + frame(0x82, b"after"))
        received, closed = await _receive_until_closed(ws)
        assert received == [b"before"]
        assert (closed.code, closed.reason) == (4001, "bye")
        sent = await _frames_from(peer, masked=False)
        assert sent == [Control(OP_CLOSE, close_payload(4001, "bye"), 4001, "bye")]
        ws.send_nowait(b"too late")  # nothing is sent after the close
        assert await _frames_from(peer, masked=False) == []


@pytest.mark.parametrize(("bad", "code"), [
    (frame(0xC2, b"x"), 1002),               # reserved bit
    (frame(0x82, b"x", masked=False), 1002),  # a client's frame unmasked
    (frame(0x81, b"\xff"), 1007),             # text not UTF-8
    (frame(0x82, b"", length=5000)[:4], 1009),  # over the limit, from the header
    (frame(0x89, b"", length=200)[:4], 1002),   # a control frame over 125 bytes
])
async def test_7_1_7_a_violation_fails_the_connection_with_its_code(bad, code):
    async with _endpoint() as (ws, peer):
        await peer.send(frame(0x82, b"fine") + bad)
        received, closed = await _receive_until_closed(ws)
        assert received == [b"fine"]
        assert closed.code == code
        sent = await _frames_from(peer, masked=False)
        assert len(sent) == 1
        assert isinstance(sent[0], Control)
        assert (sent[0].opcode, sent[0].code) == (OP_CLOSE, code)


async def test_5_3_a_client_masks_what_it_sends_and_a_server_does_not():
    for client in (True, False):
        async with _endpoint(client=client) as (ws, peer):
            ws.send_nowait(b"payload")
            ws.close_nowait(1000, "done")
            data = await peer.recv(65536)
            assert bool(data[1] & 0x80) is client
            reader = MessageReader(masked=client, max_message_size=100)
            assert reader.feed(data) == ([b"payload", Control(OP_CLOSE, close_payload(1000, "done"),
                                                             1000, "done")], None)
