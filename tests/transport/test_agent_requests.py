"""Requests an agent runs: a pool of workers, not a task each, and no request waits on another.

Real loopback sockets in one process: a hub, an agent hosted by one client,
and a caller client.  The agent's containers may block in ``request``; the
pool must start another worker rather than queue behind a blocked one.
"""

from __future__ import annotations

from typing import Any

import trio

import hulytrio
from hulytrio.core.messages import RegisterReply
from hulytrio.transport import agent as agent_module


class Gate(hulytrio.Container):
    """``wait`` blocks until ``open`` is called; anything else echoes."""

    def __init__(self, expect: int = 0) -> None:
        self.opened = trio.Event()
        self.waiting = 0
        self.expect = expect
        self.all_waiting = trio.Event()

    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        if operation == "wait":
            self.waiting += 1
            if self.waiting == self.expect:
                self.all_waiting.set()
            await self.opened.wait()
            return "opened"
        if operation == "open":
            self.opened.set()
            return "ok"
        return data


async def test_blocked_requests_do_not_hold_up_the_others():
    # More blocked requests than the pool keeps idle workers.
    blocked = agent_module.IDLE_REQUEST_WORKERS + 6
    gate = Gate(blocked)

    async def start(options: hulytrio.GetOptions) -> hulytrio.Container:
        return gate

    with trio.fail_after(20):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as host, \
                hulytrio.open_client(hub.url) as caller:
            await host.serve_agent({"gate": start})
            ref = await caller.get("gate")
            results: list[Any] = []

            async def wait() -> None:
                results.append(await ref.request("wait"))

            async with trio.open_nursery() as nursery:
                for _ in range(blocked):
                    nursery.start_soon(wait)
                await gate.all_waiting.wait()
                # Every worker is blocked, yet these are answered at once.
                assert [await ref.request("echo", i) for i in range(5)] == list(range(5))
                assert await ref.request("open") == "ok"
            assert results == ["opened"] * blocked


async def test_many_concurrent_requests_are_each_answered_once():
    async def start(options: hulytrio.GetOptions) -> hulytrio.Container:
        return Gate()

    with trio.fail_after(20):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as host, \
                hulytrio.open_client(hub.url) as caller:
            await host.serve_agent({"echo": start}, endpoint="127.0.0.1:0")
            ref = await caller.get("echo")
            got: dict[int, Any] = {}

            async def call(i: int) -> None:
                got[i] = await ref.request("echo", i)

            async with trio.open_nursery() as nursery:
                for i in range(500):
                    nursery.start_soon(call, i)
            assert got == {i: i for i in range(500)}
            async with ref.connect() as conn:
                assert conn.direct
                answers: dict[int, Any] = {}

                async def direct(i: int) -> None:
                    answers[i] = await conn.request("echo", i)

                async with trio.open_nursery() as nursery:
                    for i in range(500):
                        nursery.start_soon(direct, i)
            assert answers == {i: i for i in range(500)}


async def test_a_direct_call_to_a_fenced_owner_waits_for_the_hubs_answer():
    """A fenced stateless owner answers ``retry``: the call is resent, not failed."""
    with trio.fail_after(20):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as host, \
                hulytrio.open_client(hub.url) as caller:
            agent = await host.serve_agent(
                {}, agent_id="owner", endpoint="127.0.0.1:0",
                stateless=[hulytrio.StatelessContainer("ha-1", "ha", Gate())])
            ref = await caller.get("ha", uuid="ha-1")
            async with ref.connect() as conn, trio.open_nursery() as nursery:
                assert conn.direct
                assert await conn.request("echo", 1) == 1
                # What a re-registration does (the agent reconnected): pause
                # the owner until the hub's answer.  The hub is left out so
                # the pause lasts as long as the test wants.
                state = agent.state
                state.fence()
                assert agent.serving() == ()
                answered = trio.Event()
                results: list[Any] = []

                async def call() -> None:
                    results.append(await conn.request("echo", 2))
                    answered.set()

                nursery.start_soon(call)
                with trio.move_on_after(0.3):
                    await answered.wait()
                assert not answered.is_set(), "the call waits while the owner is fenced"
                state.on_registered(RegisterReply(0))  # the hub confirms the owner
                await answered.wait()
                assert results == [2]
