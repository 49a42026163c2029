"""Both state stores: fenced writes, checkpoints in one transaction, listing, deleting."""

from __future__ import annotations

import pytest
import trio
import trio.lowlevel

from hulytrio.state import (
    StaleEpoch,
    StateStore,
    StateStoreError,
    open_state_store,
    parse_state_url,
)
from hulytrio.state.base import StateUrl


async def test_get_put_delete_round_trip(store_url, worker):
    with trio.fail_after(30):
        async with open_state_store(store_url, worker=worker) as store:
            assert await store.get("c1") is None
            await store.put("c1", b"\x00state\xff", 3)
            got = await store.get("c1")
            assert got is not None
            assert (got.uuid, got.state, got.epoch) == ("c1", b"\x00state\xff", 3)
            assert got.written_at > 1.6e9
            assert await store.delete("c1") is True
            assert await store.delete("c1") is False
            assert await store.get("c1") is None


async def test_an_older_epoch_is_refused_and_changes_nothing(store_url, worker):
    with trio.fail_after(30):
        async with open_state_store(store_url, worker=worker) as store:
            await store.put("c1", b"new owner", 5)
            with pytest.raises(StaleEpoch) as info:
                await store.put("c1", b"paused old owner", 4)
            assert (info.value.uuid, info.value.epoch, info.value.stored) == ("c1", 4, 5)
            assert "epoch 4 refused" in str(info.value)
            got = await store.get("c1")
            assert got is not None
            assert (got.state, got.epoch) == (b"new owner", 5)
            # the same owner writes again at its own epoch; a newer one takes over
            await store.put("c1", b"new owner, later", 5)
            await store.put("c1", b"next owner", 6)
            got = await store.get("c1")
            assert got is not None
            assert (got.state, got.epoch) == (b"next owner", 6)


async def test_a_checkpoint_writes_all_but_the_stale_in_one_call(store_url, worker):
    with trio.fail_after(30):
        async with open_state_store(store_url, worker=worker) as store:
            await store.put("b", b"fenced", 9)
            refused = await store.put_many([("a", b"A", 1), ("b", b"B", 2), ("c", b"C", 1)])
            assert [(r.uuid, r.epoch, r.stored) for r in refused] == [("b", 2, 9)]
            listed = await store.list()
            assert [(i.uuid, i.epoch, i.size) for i in listed] == [
                ("a", 1, 1), ("b", 9, 6), ("c", 1, 1)]


async def test_the_store_outlives_its_connection(store_url, worker):
    with trio.fail_after(30):
        async with open_state_store(store_url, worker=worker) as store:
            await store.put("c1", b"kept", 1)
        async with open_state_store(store_url, worker=worker) as store:
            got = await store.get("c1")
            assert got is not None
            assert got.state == b"kept"


async def test_requests_go_on_while_a_checkpoint_runs(store_url, worker):
    """The database works on a worker thread: trio's loop is not blocked."""
    ticks = 0
    with trio.fail_after(60):
        async with open_state_store(store_url, worker=worker) as store:
            async def tick() -> None:
                nonlocal ticks
                while True:
                    await trio.lowlevel.checkpoint()
                    ticks += 1
            async with trio.open_nursery() as nursery:
                nursery.start_soon(tick)
                await store.put_many([(f"c{i}", b"x" * 1024, 1) for i in range(2000)])
                nursery.cancel_scope.cancel()
    assert ticks > 10


@pytest.mark.parametrize(("url", "parsed"), [
    ("sqlite:/var/lib/hulytrio/state.db", StateUrl("sqlite", "/var/lib/hulytrio/state.db")),
    ("sqlite:///var/lib/state.db", StateUrl("sqlite", "/var/lib/state.db")),
    ("sqlite:state.db", StateUrl("sqlite", "state.db")),
    ("postgresql://u@db/hub", StateUrl("postgresql", "postgresql://u@db/hub")),
    ("postgres://u@db/hub", StateUrl("postgresql", "postgres://u@db/hub")),
])
def test_urls_accepted(url, parsed):
    assert parse_state_url(url) == parsed


@pytest.mark.parametrize(("url", "says"), [
    ("", "unknown kind"),
    ("redis://x", "unknown kind"),
    ("sqlite:", "no database file"),
    ("sqlite://host/x.db", "sqlite is a local file"),
])
def test_urls_refused_with_a_reason(url, says):
    with pytest.raises(StateStoreError, match=says):
        parse_state_url(url)


async def test_an_unopenable_store_is_a_clear_error(tmp_path):
    with trio.fail_after(30):
        with pytest.raises(StateStoreError, match=r"missing/state\.db"):
            async with open_state_store(f"sqlite:{tmp_path}/missing/state.db"):
                pass
        with pytest.raises(StateStoreError, match=r"127\.0\.0\.1"):
            async with open_state_store("postgresql://u:secret@127.0.0.1:1/db"):
                pass


async def test_a_password_never_reaches_the_error(tmp_path):
    with trio.fail_after(30), pytest.raises(StateStoreError) as info:
        async with open_state_store("postgresql://u:hunter2@127.0.0.1:1/db"):
            pass
    assert "hunter2" not in str(info.value)


async def test_a_claim_fences_every_earlier_writer(store_url, worker):
    with trio.fail_after(30):
        async with open_state_store(store_url, worker=worker) as store:
            await store.put("c1", b"old owner", 3)
            claimed = await store.claim("c1", 0)  # the hub's epoch restarted: stored + 1 wins
            assert claimed.epoch == 4
            assert claimed.saved is not None
            assert (claimed.saved.state, claimed.saved.epoch) == (b"old owner", 4)
            with pytest.raises(StaleEpoch):
                await store.put("c1", b"old owner wakes up", 3)
            claimed = await store.claim("c1", 9)  # a newer hub epoch wins over stored + 1
            assert claimed.epoch == 9
            assert claimed.saved is not None
            assert claimed.saved.state == b"old owner"
            await store.put("c1", b"new owner", 9)
            stored = await store.get("c1")
            assert stored is not None
            assert (stored.state, stored.epoch) == (b"new owner", 9)


async def test_a_claim_fences_an_earlier_owner_that_never_wrote(store_url, worker):
    """Two owners of a uuid never checkpointed, both at ownership epoch 0 (an
    ordinary container): the second claim fences the first all the same."""
    with trio.fail_after(30):
        async with open_state_store(store_url, worker=worker) as store:
            first = await store.claim("c1", 0)  # owner A, then paused
            second = await store.claim("c1", 0)  # the hub started c1 again on B
            # A wakes up and checkpoints at its own epoch: refused
            with pytest.raises(StaleEpoch) as info:
                await store.put("c1", b"A's stale state", 0)
            assert (info.value.epoch, info.value.stored) == (0, 1)
            assert (first.epoch, first.saved) == (0, None)
            assert (second.epoch, second.saved) == (1, None)
            await store.put("c1", b"B's state", second.epoch)
            with pytest.raises(StaleEpoch):
                await store.put("c1", b"A's stale state", first.epoch)
            got = await store.get("c1")
            assert got is not None
            assert (got.state, got.epoch) == (b"B's state", 1)


async def test_a_claim_with_nothing_saved_is_no_state_to_read(store_url, worker):
    with trio.fail_after(30):
        async with open_state_store(store_url, worker=worker) as store:
            claimed = await store.claim("c1", 3)  # nothing stored: the ownership epoch
            assert (claimed.uuid, claimed.epoch, claimed.saved) == ("c1", 3, None)
            await store.put("c2", b"two", 1)
            assert await store.get("c1") is None
            assert [i.uuid for i in await store.list()] == ["c2"]
            claimed = await store.claim("c1", 0)  # still nothing saved, but owned: stored + 1
            assert (claimed.epoch, claimed.saved) == (4, None)
            with pytest.raises(StaleEpoch):
                await store.put("c1", b"the owner at 3", 3)
            await store.put("c1", b"the owner at 4", 4)
            got = await store.get("c1")
            assert got is not None
            assert (got.state, got.epoch) == (b"the owner at 4", 4)
            # deleting a claim with nothing saved removes it, and says there was no state
            await store.claim("c3", 5)
            assert await store.delete("c3") is False
            assert (await store.claim("c3", 0)).epoch == 0  # forgotten: a first claim


async def test_an_empty_state_is_refused(store_url, worker):
    """Zero bytes mark a claim with nothing saved: no write may store them."""
    with trio.fail_after(30):
        async with open_state_store(store_url, worker=worker) as store:
            with pytest.raises(ValueError, match=r"state of c1: an empty state cannot be "):
                await store.put("c1", b"", 0)
            with pytest.raises(ValueError, match=r"state of c2: an empty state"):
                await store.put_many([("c0", b"zero", 0), ("c2", b"", 0)])
            assert await store.list() == []  # nothing of the batch was stored


async def test_concurrent_claims_from_two_connections_get_distinct_epochs(store_url, worker):
    """Two agents sharing a store claim the same uuids at once: each uuid ends
    with one claim at epoch 0 and the other at 1 (never two at 0)."""
    uuids = [f"u{i}" for i in range(40)]
    epochs: dict[str, list[int]] = {u: [] for u in uuids}

    async def claim_all(store: StateStore) -> None:
        for uuid in uuids:
            epochs[uuid].append((await store.claim(uuid, 0)).epoch)

    with trio.fail_after(60):
        async with open_state_store(store_url, worker=worker) as a, \
                open_state_store(store_url, worker=worker) as b, \
                trio.open_nursery() as nursery:
            nursery.start_soon(claim_all, a)
            nursery.start_soon(claim_all, b)
    assert {u: sorted(e) for u, e in epochs.items()} == {u: [0, 1] for u in uuids}
