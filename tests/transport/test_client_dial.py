"""A client given several hubs dials the next one soon when one does not answer.

A hub host that is down without refusing (its packets dropped, the process
frozen) never answers a connection; on loopback the same is a socket that
listens but never accepts: the kernel completes the TCP handshake and the
WebSocket upgrade is never answered.  Real sockets, real clock.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import trio

import hulytrio
from hulytrio.core.session import SessionState
from hulytrio.transport.client import CONNECT_TIMEOUT, STAGGER_DELAY


@contextmanager
def blackhole() -> Iterator[socket.socket]:
    """A listening socket that never accepts: a hub that never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield sock
    finally:
        sock.close()


def _url(sock: socket.socket) -> str:
    return f"ws://127.0.0.1:{sock.getsockname()[1]}"


async def test_a_hub_that_never_answers_costs_the_stagger_delay_not_the_timeout():
    with blackhole() as hole, trio.fail_after(CONNECT_TIMEOUT - 1):
        async with hulytrio.serve_network(port=0) as hub:
            start = trio.current_time()
            async with hulytrio.open_client(f"{_url(hole)},{hub.url}") as c:
                await c.wait_connection()
                elapsed = trio.current_time() - start
                assert c.hub_url == hub.url
                assert await c.agents() == ()
            assert STAGGER_DELAY <= elapsed < CONNECT_TIMEOUT / 2
            # The losing attempt was closed, not left open: the never
            # answered connection reads as closed by the client.
            hole.setblocking(False)
            conn, _ = hole.accept()
            with conn:
                conn.settimeout(2)
                data = conn.recv(65536)
                while data:
                    data = conn.recv(65536)


async def test_a_refused_hub_moves_to_the_next_at_once():
    with trio.fail_after(5):
        async with hulytrio.serve_network(port=0) as hub:
            start = trio.current_time()
            async with hulytrio.open_client(f"ws://127.0.0.1:1,{hub.url}") as c:
                await c.wait_connection()
                assert c.hub_url == hub.url
                # No stagger: the next hub is dialled as soon as the first refuses.
                assert trio.current_time() - start < STAGGER_DELAY


async def test_the_first_hub_that_answers_in_time_is_the_only_one_used():
    with trio.fail_after(10):
        async with hulytrio.serve_network(port=0) as a, hulytrio.serve_network(port=0) as b:
            async with hulytrio.open_client(f"{a.url},{b.url}") as c:
                await c.wait_connection()
                assert c.hub_url == a.url
                assert await c.agents() == ()
            assert b.statistics().accepted == 0


async def _serve_until_cancelled(scope: trio.CancelScope, *,
                                 task_status: trio.TaskStatus[str]) -> None:
    with scope:
        async with hulytrio.serve_network(port=0) as hub:
            task_status.started(hub.url)
            await trio.sleep_forever()


async def test_after_its_hub_dies_a_client_skips_a_silent_hub_in_the_list():
    with blackhole() as hole, trio.fail_after(CONNECT_TIMEOUT + 5):
        async with hulytrio.serve_network(port=0) as b, trio.open_nursery() as nursery:
            a_scope = trio.CancelScope()
            a_url = await nursery.start(_serve_until_cancelled, a_scope)
            # Round-robin after a: the silent host first, then b.
            async with hulytrio.open_client(f"{a_url},{_url(hole)},{b.url}") as c:
                await c.wait_connection()
                assert c.hub_url == a_url
                a_scope.cancel()  # hub a is gone
                start = trio.current_time()
                while True:
                    if c.hub_url == b.url and c.session.state is SessionState.READY:
                        break
                    await trio.sleep(0.01)
                elapsed = trio.current_time() - start
                assert await c.agents() == ()
            assert elapsed < CONNECT_TIMEOUT / 2
