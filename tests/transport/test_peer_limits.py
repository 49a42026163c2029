"""Bounded cost per peer on loopback: abandoned calls, slow readers, floods, silence.

Each test runs a healthy pair (a client hosting an agent, and a caller) beside
the attack, over real sockets, and checks the pair keeps working.
"""

from __future__ import annotations

from typing import Any

import trio

import hulytrio


class Stuck(hulytrio.Container):
    """Answers ``op`` at once; ``hang`` never returns (until cancelled)."""

    def __init__(self) -> None:
        self.running = 0
        self.cancelled = 0

    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        if operation != "hang":
            return data
        self.running += 1
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1


async def test_the_issue_attack_1030_abandoned_calls_leave_the_client_working():
    made: list[Stuck] = []

    async def start(options: hulytrio.GetOptions) -> hulytrio.Container:
        made.append(Stuck())
        return made[-1]

    with trio.fail_after(60):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as host, hulytrio.open_client(hub.url) as caller:
            await host.serve_agent({"stuck": start})
            stuck = await caller.get("stuck", uuid="stuck-1")
            other = await caller.get("stuck", uuid="other-1")
            box = made[0]

            async def abandon() -> None:
                with trio.move_on_after(0.5):
                    await stuck.request("hang")

            async with trio.open_nursery() as nursery:
                for _ in range(1030):
                    nursery.start_soon(abandon)
            # The agent stopped every handler (the hub forwarded each cancel).
            with trio.fail_after(5):
                while box.running:
                    await trio.sleep(0.05)
            # (the hub admits 512 calls per client and container; the rest were
            # answered Retry and abandoned before their resend)
            assert box.cancelled >= 512
            # The hub freed every slot: the client can still call another
            # container, and the stuck one, at once.
            with trio.fail_after(2):
                assert await other.request("op", 1) == 1
                assert await stuck.request("op", 2) == 2
