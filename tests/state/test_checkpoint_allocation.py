"""A big checkpoint keeps nothing per container alive: the garbage collector does not run.

Every object the collector tracks that lives through a checkpoint counts
towards its next collection; one per container (as the policy's records and
writes once were) made a checkpoint of 10,000 containers run about 38 young
collections and, every few checkpoints, a full one that held the agent's
loop for 40-50 ms (docs/performance.md, "Container state").
"""

from __future__ import annotations

import gc
import time
from typing import Any

import trio

import hulytrio
from hulytrio.state import open_state_store
from hulytrio.state.sqlite import ROWS_PER_STATEMENT
from hulytrio.transport.checkpoints import Checkpoints

CONTAINERS = 3000


class Kept(hulytrio.Container):
    """A container with 1 KB of state."""

    def __init__(self) -> None:
        self.state = bytes(1024)

    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        return data

    async def export_state(self) -> Any:
        return self.state

    async def import_state(self, state: Any) -> None:
        self.state = state


async def test_a_checkpoint_of_thousands_of_containers_triggers_no_collection(tmp_path):
    threshold = gc.get_threshold()[0]
    assert 4 * threshold < 3 * CONTAINERS  # three objects each would collect 4 times
    passes: list[int] = []

    def counted(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            passes.append(info["generation"])

    with trio.fail_after(120):
        async with open_state_store(f"sqlite:{tmp_path}/state.db") as store:
            checkpoints = Checkpoints(store, 60.0, "gc-test", lambda uuid: None)
            kept = [Kept() for _ in range(CONTAINERS)]
            for i, c in enumerate(kept):
                await checkpoints.restore(f"kept-{i}", c, 0)
            for round_ in range(2):
                for c in kept:
                    c.state_version += 1
                gc.collect()  # the young generation starts empty
                gc.callbacks.append(counted)
                try:
                    assert await checkpoints.checkpoint() == CONTAINERS
                finally:
                    gc.callbacks.remove(counted)
                assert passes == [], f"round {round_}: collections of generations {passes}"
            assert checkpoints.dirty() == []
            stored = await store.get(f"kept-{CONTAINERS - 1}")
            assert stored is not None
            assert stored.epoch == 0


async def test_exports_let_the_loop_in_every_slice(tmp_path):
    """No stretch of exports holds the loop much longer than ``SLICE``."""
    longest = 0.0
    with trio.fail_after(120):
        async with open_state_store(f"sqlite:{tmp_path}/state.db") as store:
            checkpoints = Checkpoints(store, 60.0, "slice-test", lambda uuid: None)
            kept = [Kept() for _ in range(CONTAINERS)]
            for i, c in enumerate(kept):
                await checkpoints.restore(f"kept-{i}", c, 0)
            for c in kept:
                c.state_version += 1

            async def watch() -> None:
                nonlocal longest
                last = time.thread_time()  # this thread's CPU: the VM's pauses do not count
                while True:
                    await trio.lowlevel.checkpoint()
                    now = time.thread_time()
                    longest = max(longest, now - last)
                    last = now

            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch)
                await trio.lowlevel.checkpoint()
                assert await checkpoints.checkpoint() == CONTAINERS
                nursery.cancel_scope.cancel()
    # Two slices (trio may run the checkpoint's task twice before the
    # watcher's) and the bookkeeping around them; 10,000 exports take 60 ms.
    assert longest < 0.010, f"the loop was held for {longest * 1e3:.1f} ms of CPU"


async def test_a_batch_of_many_statements_reports_exactly_the_stale(tmp_path):
    items = [(f"c{i:04d}", bytes([i % 256]) * 10, 2) for i in range(2 * ROWS_PER_STATEMENT + 7)]
    fenced = {"c0003", f"c{ROWS_PER_STATEMENT + 1:04d}", f"c{2 * ROWS_PER_STATEMENT + 6:04d}"}
    with trio.fail_after(60):
        async with open_state_store(f"sqlite:{tmp_path}/state.db") as store:
            assert await store.put_many(items) == []
            for uuid in fenced:
                await store.put(uuid, b"newer owner", 5)
            refused = await store.put_many(
                [(uuid, b"again", 3) for uuid, _, _ in items])
            assert sorted((r.uuid, r.epoch, r.stored) for r in refused) == sorted(
                (uuid, 3, 5) for uuid in fenced)
            listed = {i.uuid: i.epoch for i in await store.list()}
            assert len(listed) == len(items)
            assert all(listed[u] == (5 if u in fenced else 3) for u in listed)
            got = await store.get(items[-1][0])
            assert got is not None
            assert got.state == b"newer owner"
            got = await store.get(items[-2][0])
            assert got is not None
            assert got.state == b"again"
