"""Large answers over real loopback sockets: every call ends, none wedges a connection.

A frame is never built over the receiver's limit (a batch is split by
bytes), and a single message over it fails its call with a clear error.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

import hulytrio
from hulytrio.wire.codec import MAX_FRAME_BYTES

MiB = 1024 * 1024


class Sized(hulytrio.Container):
    """``bytes N`` returns N bytes; anything else echoes its data."""

    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        if operation == "bytes":
            return b"x" * data
        return data


async def start_sized(options: hulytrio.GetOptions) -> hulytrio.Container:
    return Sized()


async def _concurrently(call: Any, count: int, size: int) -> list[int]:
    sizes: list[int] = []

    async def one() -> None:
        sizes.append(len(await call("bytes", size)))

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
    return sizes


@pytest.mark.parametrize(("count", "size"), [(4, 64 * 1024), (16, 256 * 1024), (2, 9 * MiB)])
async def test_concurrent_large_answers_through_the_hub_all_arrive(count: int, size: int):
    with trio.fail_after(30):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as host, hulytrio.open_client(hub.url) as caller:
            await host.serve_agent({"sized": start_sized})
            ref = await caller.get("sized")
            for _ in range(3):
                assert await _concurrently(ref.request, count, size) == [size] * count
            assert await ref.request("echo", "still fine") == "still fine"


@pytest.mark.parametrize(("count", "size"), [(4, 64 * 1024), (16, 256 * 1024), (2, 9 * MiB)])
async def test_concurrent_large_answers_on_a_direct_connection_all_arrive(count: int, size: int):
    with trio.fail_after(30):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as host, hulytrio.open_client(hub.url) as caller:
            await host.serve_agent({"sized": start_sized}, endpoint="127.0.0.1:0")
            ref = await caller.get("sized")
            async with ref.connect() as conn:
                assert conn.direct
                for _ in range(3):
                    assert await _concurrently(conn.request, count, size) == [size] * count
                assert await conn.request("echo", "still fine") == "still fine"


async def test_an_answer_over_the_limit_fails_its_call_and_nothing_else():
    with trio.fail_after(30):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as host, hulytrio.open_client(hub.url) as caller:
            await host.serve_agent({"sized": start_sized}, endpoint="127.0.0.1:0")
            ref = await caller.get("sized")
            with pytest.raises(hulytrio.HulyError, match="limit"):
                await ref.request("bytes", MAX_FRAME_BYTES + 1)
            async with ref.connect() as conn:
                with pytest.raises(hulytrio.HulyError, match="limit"):
                    await conn.request("bytes", MAX_FRAME_BYTES + 1)
                assert await conn.request("echo", 1) == 1
            assert await ref.request("echo", 2) == 2


async def test_a_request_over_the_limit_fails_at_once():
    with trio.fail_after(30):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as host, hulytrio.open_client(hub.url) as caller:
            await host.serve_agent({"sized": start_sized}, endpoint="127.0.0.1:0")
            ref = await caller.get("sized")
            with pytest.raises(hulytrio.HulyError, match="limit"):
                await ref.request("echo", b"y" * (MAX_FRAME_BYTES + 1))
            async with ref.connect() as conn:
                with pytest.raises(hulytrio.HulyError, match="limit"):
                    await conn.request("echo", b"y" * (MAX_FRAME_BYTES + 1))
                assert await conn.request("echo", 1) == 1
            assert await ref.request("echo", 2) == 2


async def test_a_list_reply_over_the_limit_is_refused_with_an_error_the_caller_sees():
    # A hub sends no frame larger than it accepts itself: with a 4 KiB limit
    # the list of a few containers with long labels is already too large.
    with trio.fail_after(30):
        async with hulytrio.serve_network(port=0, max_frame_bytes=4096) as hub, \
                hulytrio.open_client(hub.url) as host, hulytrio.open_client(hub.url) as caller:
            await host.serve_agent({"sized": start_sized})
            refs = [await caller.get("sized", labels=[f"{i}-" + "l" * 900]) for i in range(6)]
            assert len({ref.uuid for ref in refs}) == 6
            with pytest.raises(hulytrio.HulyError, match="exceeds the frame limit of 4096"):
                await caller.list()
            assert await caller.list("other") == ()
            assert await refs[0].request("echo", 1) == 1
            assert await caller.kinds() == ("sized",)
