"""Structure-aware fuzz of the HTTP upgrade, both sides, and of reading an open WebSocket (#13).

Each example runs one connection over a socket pair in its own ``trio.run``
(hypothesis-trio does not import with current Hypothesis): a hostile upgrade
request (headers dropped, doubled, or given non-ASCII, NUL, CR, punycode or
oversized values; a wrong method, target or version; a head that never ends;
random bytes) must end in a WebSocket or in our ``HandshakeError``, answered
``400``/``404``, never in another exception.  When it opens, the bytes after
the head (frames, damaged or not) are read to the end: ``receive`` returns
messages or raises ``WebSocketClosed``, nothing else.  The client side gets
the same treatment from a hostile server's answer.
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket

import trio
from framegen import mutated_streams
from fuzzing import fuzz_settings
from hypothesis import event, given
from hypothesis import strategies as st

from hulytrio.transport.websocket import (
    MAX_HANDSHAKE_BYTES,
    HandshakeError,
    WebSocket,
    WebSocketClosed,
    accept_websocket,
    connect_websocket,
)

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
#: Header values that broke wsproto's decoding, or might.
HOSTILE_VALUES = [b"h\xe9", b"xn--a", b"xn--", b"\xff", b"\x00", b"a\rb", b"\xc3\x28",
                  b"Upgrade\xfe", b"x" * 9000, b"", b" ", b"\t", b"websocket, \x80",
                  b"permessage-deflate; \xff", b"=?utf-8?q?x?=", b"[::1", b"h:99999999"]
HOSTILE_NAMES = [b"Host", b"Upgrade", b"Connection", b"Sec-WebSocket-Key",
                 b"Sec-WebSocket-Version", b"Sec-WebSocket-Extensions", b"Sec-WebSocket-Protocol",
                 b"Origin", b"X-\xff", b"Content-Length", b"Transfer-Encoding", b"Bad Name",
                 b"", b":"]
VALID_HEADERS = [(b"Host", b"hub:3737"), (b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"),
                 (b"Sec-WebSocket-Key", KEY), (b"Sec-WebSocket-Version", b"13")]


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())


@st.composite
def header_lists(draw: st.DrawFn, valid: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    headers = list(valid)
    for _ in range(draw(st.sampled_from((0, 0, 1, 2, 4)))):
        what = draw(st.integers(0, 3))
        at = draw(st.integers(0, max(len(headers) - 1, 0)))
        if what == 0 and headers:
            del headers[at]
        elif what == 1 and headers:
            headers.insert(at, headers[at])  # doubled
        elif what == 2 and headers:
            headers[at] = (headers[at][0], draw(st.sampled_from(HOSTILE_VALUES)
                                                | st.binary(max_size=40)))
        else:
            headers.insert(at, (draw(st.sampled_from(HOSTILE_NAMES)),
                                draw(st.sampled_from(HOSTILE_VALUES) | st.binary(max_size=40))))
    return headers


@st.composite
def upgrade_requests(draw: st.DrawFn) -> bytes:
    """An upgrade request, mostly hostile, followed by whatever the peer sends next."""
    shape = draw(st.integers(0, 9))
    if shape == 0:
        return draw(st.binary(max_size=400))
    if shape == 1:
        return draw(st.binary(max_size=200)) + b"\r\n\r\n" + draw(st.binary(max_size=50))
    method, target, version = b"GET", b"/", b"HTTP/1.1"
    if draw(st.integers(0, 2)) == 0:  # a hostile request line
        method = draw(st.sampled_from([b"GET", b"POST", b"get", b"G\xffT", b""]))
        target = draw(st.sampled_from([b"/", b"/x", b"*", b"/\xff", b"http://h/", b""]))
        version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"HTTP/1.1 x",
                                        b""]))
    headers = draw(header_lists(VALID_HEADERS))
    head = method + b" " + target + b" " + version + b"\r\n" + b"".join(
        name + b": " + value + b"\r\n" for name, value in headers)
    if shape == 2:
        return head  # never ends
    if shape == 3:
        return head + b"X-Pad: " + b"p" * (MAX_HANDSHAKE_BYTES + 10) + b"\r\n\r\n"
    return head + b"\r\n" + draw(mutated_streams(masked=True))


async def _read_to_eof(sock: trio.socket.SocketType) -> bytes:
    """Return what ``sock`` receives until the other end closes (or resets) it."""
    answer = b""
    try:
        while chunk := await sock.recv(65536):
            answer += chunk
    except ConnectionResetError:  # closed with our bytes unread: what came before stands
        pass
    return answer


async def _drain(ws: WebSocket) -> None:
    """Read an open WebSocket to its end: messages, then ``WebSocketClosed``."""
    while True:
        try:
            messages = await ws.receive()
        except WebSocketClosed:
            return
        assert messages
        assert all(isinstance(m, bytes | str) for m in messages)


async def _serve_one(request: bytes) -> tuple[str, bytes]:
    """Send ``request`` to ``accept_websocket``; returns its outcome and the bytes answered."""
    a, b = socket.socketpair()
    peer = trio.socket.from_stdlib_socket(b)
    outcome = "?"
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            async def attack() -> None:
                try:
                    await peer.send(request)  # a socket pair takes it all at once
                    peer.shutdown(socket.SHUT_WR)
                except OSError:
                    pass  # the server closed first

            nursery.start_soon(attack)
            try:
                ws = await accept_websocket(trio.SocketStream(trio.socket.from_stdlib_socket(a)),
                                            max_message_size=70_000, path="/")
            except HandshakeError:
                outcome = "refused"
            else:
                outcome = "open"
                await _drain(ws)
                ws.abort()
            try:
                answer = await _read_to_eof(peer)
            finally:
                peer.close()
    return outcome, answer


@fuzz_settings(250)
@given(upgrade_requests())
def test_a_hostile_upgrade_request_opens_or_is_refused_never_crashes(request):
    outcome, answer = trio.run(_serve_one, request)
    event(outcome)
    status = answer.split(b"\r\n", 1)[0]
    if outcome == "open":
        assert status == b"HTTP/1.1 101 Switching Protocols"
        assert request.find(b"\r\n\r\n") + 4 <= MAX_HANDSHAKE_BYTES, "over the limit"
        keys = re.findall(rb"\r\nsec-websocket-key: *([^\r]*)(?=\r\n)", request,
                          re.IGNORECASE)
        assert keys
        if len(keys) == 1:  # (wsproto takes a doubled key; the client then refuses the answer)
            assert b"Sec-WebSocket-Accept: " + accept_key(keys[0].strip()) in answer
    else:
        assert status in (b"", b"HTTP/1.1 400 Bad Request", b"HTTP/1.1 404 Not Found",
                          b"HTTP/1.1 404 "), answer[:200]


@st.composite
def upgrade_answers(draw: st.DrawFn) -> tuple[int, list[tuple[bytes, bytes]], bytes, bytes]:
    """A server's answer: status, headers (the accept key filled in later), tail bytes."""
    status = draw(st.sampled_from([101, 101, 101, 200, 400, 426, 999, -1]))
    headers = draw(header_lists([(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"),
                                 (b"Sec-WebSocket-Accept", b"{accept}")]))
    reason = draw(st.sampled_from([b"Switching Protocols", b"", b"\xff\xfe"]))
    return status, headers, reason, draw(mutated_streams(masked=False))


async def _connect_one(answer: tuple[int, list[tuple[bytes, bytes]], bytes, bytes]) -> str:
    status, headers, reason, tail = answer
    a, b = socket.socketpair()
    server = trio.socket.from_stdlib_socket(b)
    outcome = "?"
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            async def hostile_server() -> None:
                request = b""
                while b"\r\n\r\n" not in request and (chunk := await server.recv(65536)):
                    request += chunk
                key = re.search(rb"sec-websocket-key: *([^\r]*)", request, re.IGNORECASE)
                accept = accept_key(key.group(1) if key else b"")
                line = (b"HTTP/1.1 " + str(status).encode() + b" " + reason if status >= 0
                        else b"\xff\xfe garbage")
                head = line + b"\r\n" + b"".join(
                    n + b": " + v.replace(b"{accept}", accept) + b"\r\n" for n, v in headers)
                try:
                    await server.send(head + b"\r\n" + tail)
                    server.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

            nursery.start_soon(hostile_server)
            try:
                ws = await connect_websocket(
                    "ws://hub:3737/", max_message_size=70_000,
                    stream=trio.SocketStream(trio.socket.from_stdlib_socket(a)))
            except HandshakeError:
                outcome = "refused"
            else:
                outcome = "open"
                await _drain(ws)
                ws.abort()
            with trio.move_on_after(1):
                await _read_to_eof(server)
            server.close()
    return outcome


@fuzz_settings(150)
@given(upgrade_answers())
def test_a_hostile_upgrade_answer_opens_or_fails_the_attempt_never_crashes(answer):
    outcome = trio.run(_connect_one, answer)
    event(outcome)
    status, headers = answer[0], answer[1]
    if outcome == "open":
        assert status == 101
        assert (b"Sec-WebSocket-Accept", b"{accept}") in headers
