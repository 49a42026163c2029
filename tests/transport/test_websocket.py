"""hulytrio's WebSocket (websocket.py) over real loopback sockets, against trio-websocket."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing
import trio_websocket
from wsclient import dial
from wspair import ws_pair

from hulytrio.transport.websocket import (
    MAX_HANDSHAKE_BYTES,
    HandshakeError,
    WebSocket,
    WebSocketClosed,
    accept_websocket,
    connect_websocket,
)


async def _serve(nursery: trio.Nursery, handler, **kwargs) -> int:
    """Serve our WebSocket on a free port, ``handler(ws)`` per connection; returns the port."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")

    async def accept(stream: trio.SocketStream) -> None:
        try:
            ws = await accept_websocket(stream, max_message_size=kwargs.get("limit", 1 << 21),
                                        path=kwargs.get("path"))
        except HandshakeError:
            return
        try:
            await handler(ws)
        finally:
            ws.abort()

    nursery.start_soon(trio.serve_listeners, accept, listeners)
    return listeners[0].socket.getsockname()[1]


async def _receive_until_closed(ws: WebSocket) -> tuple[list[bytes | str], WebSocketClosed]:
    """Receive until the close; returns the messages and how it closed."""
    received: list[bytes | str] = []
    while True:
        try:
            received.extend(await ws.receive())
        except WebSocketClosed as closed:
            return received, closed


async def _echo(ws: WebSocket) -> None:
    try:
        while True:
            for message in await ws.receive():
                if isinstance(message, bytes):
                    ws.send_nowait(message)
                    await ws.wait_sent()
    except WebSocketClosed:
        pass


async def test_trio_websocket_client_talks_to_our_server():
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await _serve(nursery, _echo)
            ws, stream = await dial(nursery, f"ws://127.0.0.1:{port}/")
            async with stream:
                for payload in (b"", b"x" * 100, b"y" * 70_000, bytes(range(256)) * 4096):
                    await ws.send_message(payload)
                    assert await ws.get_message() == payload
                await ws.ping(b"are you there")  # returns once our pong arrives
                await ws.aclose(4001, "done")  # returns once our close answer arrives
                assert ws.closed.code == 4001
            nursery.cancel_scope.cancel()


async def test_our_client_talks_to_a_trio_websocket_server():
    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        for _ in range(3):
            await ws.send_message(await ws.get_message())
        await ws.send_message("text, too")
        await ws.aclose(4000, "enough")

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(trio_websocket.serve_websocket, handler, "127.0.0.1",
                                         0, None)
            ws = await connect_websocket(f"ws://127.0.0.1:{server.port}/path?q=1",
                                         max_message_size=1 << 21)
            for payload in (b"a", b"b" * 200_000, b"c"):
                ws.send_nowait(payload)
            await ws.wait_sent()
            received, closed = await _receive_until_closed(ws)
            assert received == [b"a", b"b" * 200_000, b"c", "text, too"]
            assert (closed.code, closed.reason) == (4000, "enough")
            ws.abort()
            nursery.cancel_scope.cancel()


async def test_a_close_is_seen_after_the_messages_before_it():
    with trio.fail_after(10):
        async with ws_pair() as (client, server):
            client.send_nowait(b"one")
            client.send_nowait(b"two")
            client.close_nowait(1000, "bye")
            client.send_nowait(b"never sent")
            got, closed = await _receive_until_closed(server)
            assert got == [b"one", b"two"]
            assert (closed.code, closed.reason) == (1000, "bye")
            # the server answered the close; the client sees the handshake end
            with pytest.raises(WebSocketClosed):
                await client.receive()
            await client.wait_closed()


async def test_an_oversized_message_closes_with_1009():
    with trio.fail_after(10):
        async with ws_pair(max_message_size=1000) as (client, server):
            client.send_nowait(b"x" * 999)
            client.send_nowait(b"x" * 1001)
            assert await server.receive() == [b"x" * 999]
            with pytest.raises(WebSocketClosed) as closed:
                await server.receive()
            assert closed.value.code == 1009
            with pytest.raises(WebSocketClosed) as seen:
                await client.receive()
            assert seen.value.code == 1009, "the client is told why"


async def test_a_lost_connection_is_seen_at_once():
    with trio.fail_after(10):
        async with ws_pair() as (client, server):
            client.abort()
            with pytest.raises(WebSocketClosed) as closed:
                await server.receive()
            assert closed.value.code == 1006
            server.send_nowait(b"into the void")  # no error, nothing kept
            assert server.pending == 0


async def test_bytes_the_kernel_refuses_are_kept_and_sent_once_it_can():
    with trio.fail_after(10):
        async with ws_pair(max_message_size=1 << 20) as (client, server):
            chunk = b"z" * 500_000
            sent = 0
            while client.pending == 0:
                client.send_nowait(chunk)
                sent += 1
            assert client.pending > 0
            received: list[bytes | str] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.wait_sent)
                while len(received) < sent:
                    received.extend(await server.receive())
            assert client.pending == 0
            assert received == [chunk] * sent


async def test_handshake_failures_are_handshake_errors():
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await _serve(nursery, _echo, path="/only")
            with pytest.raises(HandshakeError, match="404"):
                await connect_websocket(f"ws://127.0.0.1:{port}/other", max_message_size=100)

            # a server that is not a WebSocket server
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")

            async def not_websocket(stream: trio.SocketStream) -> None:
                await stream.receive_some()
                await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

            nursery.start_soon(trio.serve_listeners, not_websocket, listeners)
            plain = listeners[0].socket.getsockname()[1]
            with pytest.raises(HandshakeError):
                await connect_websocket(f"ws://127.0.0.1:{plain}/", max_message_size=100)

            # a client that is not a WebSocket client gets nothing and is closed
            async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
                await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = await stream.receive_some()
                assert answer == b"" or answer.startswith(b"HTTP/1.1 4")
            with pytest.raises(ValueError, match="ws://"):
                await connect_websocket("http://127.0.0.1/", max_message_size=100)
            nursery.cancel_scope.cancel()


async def test_a_backlog_emptied_while_the_writer_waits_ends_wait_sent_cleanly():
    # Found by tests/fuzz/test_live_hub.py: a flood made another task's write
    # pass max_pending while the writer waited for the socket; the backlog
    # was freed (``_overflow`` calls ``_lost``, then closes the socket from
    # the run loop) and the writer, woken because the socket had become
    # writable, read ``out[0]`` of an empty list: an IndexError that failed
    # the hub's connection to a healthy agent.
    with trio.fail_after(10):
        async with ws_pair(max_message_size=1 << 20) as (client, server):
            while client.pending == 0:
                client.send_nowait(b"z" * 500_000)
            outcome: list[BaseException | None] = []

            async def writer() -> None:
                try:
                    await client.wait_sent()
                    outcome.append(None)
                except BaseException as exc:  # the test reports what it was
                    outcome.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer)
                await trio.testing.wait_all_tasks_blocked()
                client._lost("over the bound: the backlog is freed")  # what _overflow does
                with trio.move_on_after(2):
                    while not outcome:  # the peer reads: the writer's socket becomes writable
                        await server.receive()
            assert len(outcome) == 1
            assert isinstance(outcome[0], WebSocketClosed), outcome
            assert client.pending == 0


async def test_an_upgrade_request_over_the_limit_is_refused_even_when_it_arrives_whole():
    # Found by tests/fuzz/test_handshake_fuzz.py: the 16 KiB limit was checked
    # only while the head was incomplete, so a larger head read at once passed.
    ours, theirs = socket.socketpair()
    peer = trio.socket.from_stdlib_socket(theirs)
    request = (b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
               b"X-Pad: " + b"p" * MAX_HANDSHAKE_BYTES + b"\r\n\r\n")
    try:
        with trio.fail_after(10):
            await peer.send(request)
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
            with pytest.raises(HandshakeError, match="too large"):
                await accept_websocket(stream, max_message_size=1000)
            assert (await peer.recv(1000)).startswith(b"HTTP/1.1 400 ")
    finally:
        peer.close()
