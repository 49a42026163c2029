"""Cancel beyond requests through the hub, on loopback.

An abandoned ``get`` (the container still starting) leaves no hold behind,
and an abandoned request on a direct connection stops the container's
handler and frees the call at both ends.
"""

from __future__ import annotations

import trio
from hubpair import Stuck, open_hub_pair

import hulytrio


async def test_a_get_abandoned_while_its_container_starts_leaves_no_hold():
    release = trio.Event()
    made: list[Stuck] = []

    async def slow_start(options: hulytrio.GetOptions) -> hulytrio.Container:
        await release.wait()
        made.append(Stuck())
        return made[-1]

    timeouts = hulytrio.Timeouts(unused_container=0.5)
    with trio.fail_after(30):
        async with open_hub_pair({"slow": slow_start}, timeouts=timeouts) as (hub, _, caller, _):
            with trio.move_on_after(0.3) as scope:
                await caller.get("slow", uuid="s-1")
            assert scope.cancelled_caught
            registry = hub.hub.registry
            # The hub stopped waiting for it at once (before the start ends).
            with trio.fail_after(5):
                while registry.holds(caller.client_id) or caller.session.calls.pending:  # noqa: ASYNC110
                    await trio.sleep(0.02)
            assert hub.hub.stats.calls[("get", "cancelled")] == 1
            release.set()
            # The start completes with nobody waiting: an orphan, terminated
            # after the unused timeout; the caller holds nothing throughout.
            with trio.fail_after(10):
                while registry.container("s-1") is None:  # noqa: ASYNC110
                    await trio.sleep(0.02)
            assert registry.holders("s-1") == {}
            with trio.fail_after(10):
                while registry.container("s-1") is not None:  # noqa: ASYNC110
                    await trio.sleep(0.05)
            assert caller.session.references() == {}
            # The caller works as before.
            ref = await caller.get("slow", uuid="s-2")
            assert await ref.request("op", 5) == 5


async def test_a_request_abandoned_on_a_direct_connection_stops_its_handler():
    made: list[Stuck] = []

    async def start(options: hulytrio.GetOptions) -> hulytrio.Container:
        made.append(Stuck())
        return made[-1]

    with trio.fail_after(30):
        async with open_hub_pair({"stuck": start}, endpoint="127.0.0.1:0") as (_, _, caller, _):
            ref = await caller.get("stuck")
            async with ref.connect() as conn:
                direct = conn._direct
                assert direct is not None, "the test needs a direct connection"
                for _ in range(20):
                    with trio.move_on_after(0.05):
                        await conn.request("hang")
                box = made[0]
                with trio.fail_after(5):
                    while box.running:  # noqa: ASYNC110 - polls the agent's handler count
                        await trio.sleep(0.02)
                assert box.cancelled == 20
                # Neither end keeps the abandoned calls.
                assert direct.machine._calls == {}
                assert direct.slots == {}
                # The connection carries on.
                with trio.fail_after(2):
                    assert await conn.request("op", 7) == 7


async def test_calls_resent_after_the_callers_reconnect_stop_when_cancelled():
    # Issue 13: the caller's connection broke while its calls hung; its
    # resends joined the runs at the agent (at most once), and then its
    # cancels stopped only the resends' forwards, never the runs.
    made: list[Stuck] = []

    async def start(options: hulytrio.GetOptions) -> hulytrio.Container:
        made.append(Stuck())
        return made[-1]

    with trio.fail_after(30):
        async with open_hub_pair({"stuck": start}) as (hub, _, caller, _):
            ref = await caller.get("stuck")
            box = made[0]

            async def call() -> None:
                await ref.request("hang")

            async with trio.open_nursery() as nursery:
                for _ in range(20):
                    nursery.start_soon(call)
                with trio.fail_after(10):
                    while box.running < 20:  # noqa: ASYNC110 - polls the handler count
                        await trio.sleep(0.02)
                conn = caller._conn
                assert conn is not None
                assert conn.ws is not None
                conn.ws.abort()  # the caller's connection breaks, every call unanswered
                with trio.fail_after(10):
                    # Back, and every call resent and forwarded again.
                    while hub.hub.stats.forwarded < 40:  # noqa: ASYNC110 - polls the hub
                        await trio.sleep(0.02)
                assert box.running == 20  # the resends joined the runs
                nursery.cancel_scope.cancel()
            with trio.fail_after(5):
                while box.running:  # noqa: ASYNC110 - polls the handler count
                    await trio.sleep(0.02)
            assert box.cancelled == 20
            assert hub.hub.forwards_in_flight() == 0
            with trio.fail_after(2):
                assert await ref.request("op", 3) == 3
