"""A client closed before its background tasks first ran still closes."""

from __future__ import annotations

import trio

import hulytrio


async def test_a_client_left_without_a_checkpoint_closes() -> None:
    # The body exits before the client's tasks start: they used to start
    # after the close had cancelled the others, shielded, and run for ever.
    with trio.fail_after(10):
        async with hulytrio.serve_network(port=0) as hub:
            async with hulytrio.open_client(hub.url):
                pass
            async with hulytrio.open_client(hub.url) as client:
                await client.wait_connection()
                assert await client.list() == ()
