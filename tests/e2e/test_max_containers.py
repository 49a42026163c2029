"""``MAX_CONTAINERS`` limits a real agent process (it hosted 5 with a limit of 1)."""

from __future__ import annotations

import trio
from e2e_support import agent_ids, wait_for

import hulytrio


async def test_max_containers_limits_the_agent(procs):
    with trio.fail_after(30):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as c:
            await procs.agent(hub.url, "small", env={"MAX_CONTAINERS": "1"})
            await wait_for(lambda: _has(c, "small"))
            first = await c.get("echo", uuid="e-1")
            assert (await first.request("hi"))["agent"] == "small"
            # A second container waits for room; it never starts beyond the limit.
            with trio.move_on_after(1.5) as waited:
                await c.get("echo", uuid="e-2")
            assert waited.cancelled_caught, procs.logs()
            assert [r.uuid for r in await c.list("echo")] == ["e-1"]
            # Room again: the waiting kind of start succeeds.
            await first.release()
            await wait_for(lambda: _gone(c, "e-1"))
            second = await c.get("echo", uuid="e-2")
            assert (await second.request("x"))["agent"] == "small"


async def _has(c, agent_id):
    return agent_id in await agent_ids(c)


async def _gone(c, uuid):
    return uuid not in [r.uuid for r in await c.list()]
