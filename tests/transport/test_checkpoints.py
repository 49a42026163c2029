"""The agent's checkpoint scheduling: only changed containers are exported and written.

Driven with trio's autojump clock against an in-memory store that keeps the
real stores' rules (a fenced write, a claim raising the epoch) and records
every call.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pytest
import trio
import trio.testing

import hulytrio
from hulytrio.state import Claim, StaleEpoch, StateStore, StateStoreError, StoredState
from hulytrio.state.base import StateInfo
from hulytrio.transport.checkpoints import SLICE, Checkpoints, RestoreFailed
from hulytrio.transport.container import has_state
from hulytrio.wire.codec import decode_payload, encode_payload


class MemoryStore(StateStore):
    """A store in a dict, with the fenced write and the claim; records the calls.

    A claim of a uuid with nothing stored keeps a row with an empty state (the
    real stores' "claimed, nothing saved"), which ``get`` does not show.
    """

    def __init__(self) -> None:
        self.rows: dict[str, StoredState] = {}
        self.batches: list[list[str]] = []
        self.fail = False

    async def get(self, uuid: str) -> StoredState | None:
        row = self.rows.get(uuid)
        return row if row is not None and row.state else None

    async def claim(self, uuid: str, epoch: int) -> Claim:
        if self.fail:
            raise StateStoreError("state store (memory): disk on fire")
        row = self.rows.get(uuid)
        if row is None:
            self.rows[uuid] = StoredState(uuid, b"", epoch, 0.0)
            return Claim(uuid, epoch, None)
        row = StoredState(uuid, row.state, max(row.epoch + 1, epoch), row.written_at)
        self.rows[uuid] = row
        return Claim(uuid, row.epoch, row if row.state else None)

    async def put(self, uuid: str, state: bytes, epoch: int) -> None:
        refused = await self.put_many([(uuid, state, epoch)])
        if refused:
            raise refused[0]

    async def put_many(self, items: Sequence[tuple[str, bytes, int]]) -> list[StaleEpoch]:
        if self.fail:
            raise StateStoreError("state store (memory): disk on fire")
        if any(not state for _, state, _ in items):
            raise ValueError("an empty state cannot be stored")
        self.batches.append([uuid for uuid, _, _ in items])
        refused = []
        for uuid, state, epoch in items:
            row = self.rows.get(uuid)
            if row is not None and row.epoch > epoch:
                refused.append(StaleEpoch(uuid, epoch, row.epoch))
            else:
                self.rows[uuid] = StoredState(uuid, state, epoch, 0.0)
        return refused

    async def delete(self, uuid: str) -> bool:
        row = self.rows.pop(uuid, None)
        return row is not None and bool(row.state)

    async def list(self) -> list[StateInfo]:
        return [StateInfo(u, r.epoch, len(r.state), r.written_at)
                for u, r in sorted(self.rows.items()) if r.state]

    async def aclose(self) -> None:
        pass

    def value(self, uuid: str) -> Any:
        return decode_payload(self.rows[uuid].state)


class Counter(hulytrio.Container):
    def __init__(self) -> None:
        self.count = 0
        self.exports = 0

    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        self.count += 1
        self.state_version += 1
        return self.count

    async def export_state(self) -> Any:
        self.exports += 1
        return {"count": self.count}

    async def import_state(self, state: Any) -> None:
        self.count = state["count"]


class Plain(hulytrio.Container):
    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        return data


def _checkpoints(store: MemoryStore, stale: list[str] | None = None) -> Checkpoints:
    return Checkpoints(store, 60.0, "a1", (stale if stale is not None else []).append)


def test_only_containers_with_export_state_have_state():
    assert has_state(Counter())
    assert not has_state(Plain())


async def test_idle_containers_are_never_exported_nor_written(autojump_clock):
    store = MemoryStore()
    cp = _checkpoints(store)
    counters = {f"c{i}": Counter() for i in range(50)}
    for uuid, c in counters.items():
        await cp.restore(uuid, c, 0)
    with trio.move_on_after(10 * 60 + 1):
        await cp.run()  # ten intervals
    assert store.batches == []
    assert sum(c.exports for c in counters.values()) == 0
    assert cp.written == 0


async def test_each_interval_writes_the_changed_ones_in_one_batch(autojump_clock):
    store = MemoryStore()
    cp = _checkpoints(store)
    counters = {f"c{i}": Counter() for i in range(5)}
    for uuid, c in counters.items():
        await cp.restore(uuid, c, 0)

    async def traffic() -> None:
        await trio.sleep(30)
        await counters["c1"].request("inc")
        await counters["c3"].request("inc")
        await counters["c3"].request("inc")
        await trio.sleep(60)  # the second interval: c4 only
        await counters["c4"].request("inc")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(traffic)
        nursery.start_soon(cp.run)
        await trio.sleep(3 * 60 + 1)
        nursery.cancel_scope.cancel()
    assert store.batches == [["c1", "c3"], ["c4"]]
    assert (store.value("c1"), store.value("c3"), store.value("c4")) == (
        {"count": 1}, {"count": 2}, {"count": 1})
    assert [c.exports for c in counters.values()] == [0, 1, 0, 1, 1]
    assert cp.dirty() == []


async def test_a_change_during_the_export_is_written_next_time():
    store = MemoryStore()
    cp = _checkpoints(store)

    class Busy(Counter):
        async def export_state(self) -> Any:
            exported = await super().export_state()
            self.state_version += 1  # changed again while being exported
            return exported

    c = Busy()
    await cp.restore("c", c, 0)
    c.state_version += 1
    assert await cp.checkpoint() == 1
    assert cp.dirty() == ["c"]
    assert await cp.checkpoint() == 1


async def test_restore_imports_the_saved_state_and_claims_the_uuid():
    store = MemoryStore()
    await store.put("c", encode_payload({"count": 41}), 3)
    cp = _checkpoints(store)
    c = Counter()
    await cp.restore("c", c, 0)
    assert c.count == 41
    assert cp.epoch("c") == 4  # stored + 1: the earlier owner's writes are refused now
    assert store.rows["c"].epoch == 4
    assert await c.request("inc") == 42
    assert await cp.checkpoint() == 1
    assert (store.value("c"), store.rows["c"].epoch) == ({"count": 42}, 4)
    # a stateless owner's epoch from the hub wins when it is newer
    c2 = Counter()
    await _checkpoints(store).restore("c", c2, 9)
    assert store.rows["c"].epoch == 9


async def test_nothing_saved_means_a_fresh_container_at_the_ownership_epoch():
    store = MemoryStore()
    cp = _checkpoints(store)
    c = Counter()
    await cp.restore("c", c, 2)
    assert (c.count, cp.epoch("c"), cp.dirty()) == (0, 2, [])
    assert store.rows["c"].epoch == 2  # claimed all the same: the next owner fences it
    # the next owner of c (after a restart, say) claims above it
    await _checkpoints(store).restore("c", Counter(), 0)
    assert store.rows["c"].epoch == 3


async def test_a_state_of_none_is_saved_as_msgpack_nil_and_restored():
    """``None`` encodes as the empty payload, but zero bytes in the store mean
    "claimed, nothing saved": it is written as msgpack's nil instead."""
    store = MemoryStore()
    cp = _checkpoints(store)

    class Nothing(Counter):
        imported: list[Any]

        async def export_state(self) -> Any:
            return None

        async def import_state(self, state: Any) -> None:
            self.imported = [state]

    c = Nothing()
    await cp.restore("c", c, 0)
    c.state_version += 1
    assert await cp.checkpoint() == 1
    assert store.rows["c"].state == b"\xc0"
    again = Nothing()
    await _checkpoints(store).restore("c", again, 0)
    assert again.imported == [None]


@pytest.mark.parametrize(("saved", "container", "says"), [
    (encode_payload({"count": 1}), "raising", r"import_state of c raised KeyError: 'nope'"),
    (b"\xc1", "counter", r"the saved state of c \(epoch 1\) cannot be decoded"),
    (encode_payload(1), "no import", r"import_state of c raised NotImplementedError: "
                                     r"Half defines export_state but not import_state"),
])
async def test_a_failed_restore_says_why_and_tracks_nothing(saved, container, says):
    store = MemoryStore()
    await store.put("c", saved, 0)

    class Raising(Counter):
        async def import_state(self, state: Any) -> None:
            raise KeyError("nope")

    class Half(Plain):
        async def export_state(self) -> Any:
            return 1

    c = {"raising": Raising, "counter": Counter, "no import": Half}[container]()
    cp = _checkpoints(store)
    with pytest.raises(RestoreFailed, match=says):
        await cp.restore("c", c, 0)
    assert not cp.tracks("c")


async def test_a_store_failure_fails_the_restore_and_a_checkpoint_retries():
    store = MemoryStore()
    cp = _checkpoints(store)
    c = Counter()
    store.fail = True
    with pytest.raises(RestoreFailed, match=r"reading the saved state of c failed: .*on fire"):
        await cp.restore("c", c, 0)
    store.fail = False
    await cp.restore("c", c, 0)
    await c.request("inc")
    store.fail = True
    assert await cp.checkpoint() == 0  # logged; still dirty
    store.fail = False
    assert cp.dirty() == ["c"]
    assert await cp.checkpoint() == 1


async def test_a_stale_write_stops_that_container_only():
    store = MemoryStore()
    stale: list[str] = []
    cp = _checkpoints(store, stale)
    a, b = Counter(), Counter()
    await cp.restore("a", a, 0)
    await cp.restore("b", b, 0)
    await store.put("a", encode_payload({"count": 100}), 5)  # a newer owner of a
    await a.request("inc")
    await b.request("inc")
    assert await cp.checkpoint() == 1
    assert stale == ["a"]
    assert not cp.tracks("a")
    assert cp.tracks("b")
    assert store.value("a") == {"count": 100}  # the new owner's state is untouched
    assert store.value("b") == {"count": 1}


async def test_final_writes_a_leaving_container_if_it_changed():
    store = MemoryStore()
    cp = _checkpoints(store)
    c = Counter()
    await cp.restore("c", c, 0)
    await cp.final("c", cp.forget("c"))
    assert store.batches == []  # unchanged: nothing to write
    await cp.restore("c", c, 0)
    await c.request("inc")
    await cp.final("c", cp.forget("c"))
    assert store.value("c") == {"count": 1}
    assert not cp.tracks("c")


async def test_final_says_when_the_store_failed_and_the_same_write_may_be_tried_again():
    store = MemoryStore()
    cp = _checkpoints(store)
    c = Counter()
    await cp.restore("c", c, 0)
    await c.request("inc")
    leaving = cp.forget("c")
    store.fail = True
    assert await cp.final("c", leaving) is False
    store.fail = False
    assert await cp.final("c", leaving) is True  # the write was still due
    assert store.value("c") == {"count": 1}
    assert await cp.final("c", None) is True  # nothing to write


async def test_a_long_checkpoint_lets_other_tasks_run():
    """Exports run on the trio thread: the loop gets a turn every SLICE seconds."""
    store = MemoryStore()
    cp = _checkpoints(store)

    class Slow(Counter):
        async def export_state(self) -> Any:
            deadline = time.perf_counter() + SLICE / 4
            while time.perf_counter() < deadline:  # CPU-bound, never awaits
                pass
            return await super().export_state()

    for i in range(200):
        c = Slow()
        await cp.restore(f"c{i}", c, 0)
        c.state_version += 1
    turns = 0

    async def other() -> None:
        nonlocal turns
        while True:
            await trio.lowlevel.checkpoint()
            turns += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        await trio.lowlevel.checkpoint()
        assert await cp.checkpoint() == 200
        nursery.cancel_scope.cancel()
    # 200 exports of SLICE/4 each: at least one turn per 4 exports, give or take
    assert turns >= 200 // 4 // 2

