"""Hostile peers on loopback: one connection's bad bytes never reach the others.

Each test runs a healthy pair (a client hosting an agent, and a caller
client) beside the attacker, over real sockets, and checks that the pair
keeps working during and after the attack.  A raw socket sends the bad
bytes, so nothing in the attacker is hulytrio's own code.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from typing import Any

import pytest
import trio

import hulytrio

#: Upgrade requests wsproto cannot decode (non-ASCII header values, bad punycode).
BAD_HEADERS = [
    b"Host: h\xe9\r\nConnection: Upgrade\r\n",
    b"Host: xn--a\r\nConnection: Upgrade\r\n",
    b"Host: h\r\nConnection: Upgrade\xff\r\n",
    b"Host: h\r\nConnection: Upgrade\r\nSec-WebSocket-Extensions: \xff\r\n",
    b"Host: h\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: \xfe\r\n",
]


def upgrade_request(headers: bytes) -> bytes:
    return (b"GET / HTTP/1.1\r\n" + headers + b"Upgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")


class Echo(hulytrio.Container):
    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        return data


async def start_echo(options: hulytrio.GetOptions) -> hulytrio.Container:
    return Echo()


async def send_raw(address: tuple[str, int], data: bytes) -> bytes:
    """Send ``data`` on a fresh TCP connection; returns all it answers until closed."""
    stream = await trio.open_tcp_stream(*address)
    answer = b""
    try:
        await stream.send_all(data)
        with trio.move_on_after(5):
            while chunk := await stream.receive_some():
                answer += chunk
    except trio.BrokenResourceError:
        pass
    finally:
        await stream.aclose()
    return answer


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("ws://").split("/")[0].rsplit(":", 1)
    return host, int(port)


@pytest.mark.parametrize("headers", BAD_HEADERS)
async def test_undecodable_upgrades_are_refused_and_the_hub_carries_on(headers: bytes):
    with trio.fail_after(20):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as host, hulytrio.open_client(hub.url) as caller:
            await host.serve_agent({"echo": start_echo})
            ref = await caller.get("echo")
            assert await ref.request("op", 1) == 1
            for i in range(3):
                answer = await send_raw(_address(hub.url), upgrade_request(headers))
                assert answer.startswith(b"HTTP/1.1 400 "), answer
                assert await ref.request("op", i) == i, "the healthy pair works meanwhile"
            assert hub.statistics().connections == 2


@pytest.mark.parametrize("headers", BAD_HEADERS)
async def test_undecodable_upgrades_do_not_kill_an_agent_endpoint(headers: bytes):
    with trio.fail_after(20):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as host, hulytrio.open_client(hub.url) as caller:
            agent = await host.serve_agent({"echo": start_echo}, endpoint="127.0.0.1:0")
            assert agent.endpoint is not None
            ref = await caller.get("echo")
            answer = await send_raw(_address(agent.endpoint), upgrade_request(headers))
            assert answer.startswith(b"HTTP/1.1 400 "), answer
            async with ref.connect() as conn:
                assert conn.direct, "the endpoint still accepts connections"
                assert await conn.request("op", "after") == "after"
            assert await ref.request("op", 2) == 2


def _accept_key(request: bytes) -> bytes:
    match = re.search(rb"sec-websocket-key: *(\S+)", request, re.IGNORECASE)
    assert match is not None
    digest = hashlib.sha1(match.group(1) + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
    return base64.b64encode(digest)


@pytest.mark.parametrize("header", [b"Sec-WebSocket-Extensions: \xff", b"Connection: Up\xffgrade",
                                    b"Sec-WebSocket-Protocol: \xfe"])
async def test_a_hub_answering_bad_bytes_does_not_crash_its_clients(header: bytes):
    attempts = 0
    tried_twice = trio.Event()

    async def malicious_hub(stream: trio.SocketStream) -> None:
        nonlocal attempts
        request = b""
        while b"\r\n\r\n" not in request:
            request += await stream.receive_some()
        await stream.send_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                              + _accept_key(request) + b"\r\n" + header + b"\r\n\r\n")
        attempts += 1
        if attempts >= 2:
            tried_twice.set()
        await stream.aclose()

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, malicious_hub, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            async with hulytrio.serve_network(port=0) as hub, \
                    hulytrio.open_client(hub.url) as host, \
                    hulytrio.open_client(f"ws://127.0.0.1:{port}") as victim:
                await host.serve_agent({"echo": start_echo})
                ref = await host.get("echo")
                await tried_twice.wait()  # the victim reconnects: it did not crash
                assert await ref.request("op", 1) == 1
                assert victim.client_id
            nursery.cancel_scope.cancel()
