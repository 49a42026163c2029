"""Container state across agents: a real hub, agents and a caller on loopback, one store.

A counter container with ``export_state``/``import_state``: its count must
survive a clean agent stop (a new agent restores it), the hub terminating it
when unused, and a stateless owner handing over to its standby; a failed
import fails the start, visibly; a stale write stops the old owner.  The
clean stop runs against both stores (SQLite and a real PostgreSQL), and so
do two agents' ``Checkpoints`` of one uuid, driven step by step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio

import hulytrio
from hulytrio.core.effects import SetServing
from hulytrio.state import StateStore, StateStoreError, open_state_store
from hulytrio.transport.checkpoints import Checkpoints
from hulytrio.wire.codec import decode_payload, encode_payload


class Counter(hulytrio.Container):
    """``inc`` adds one and returns the count; ``get`` returns it."""

    instances: list[Counter] = []

    def __init__(self, uuid: str | None = None) -> None:
        self.uuid = uuid
        self.count = 0
        self.terminated = trio.Event()
        Counter.instances.append(self)

    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        if operation == "inc":
            self.count += 1
            self.state_version += 1
        return self.count

    async def export_state(self) -> Any:
        return {"count": self.count}

    async def import_state(self, state: Any) -> None:
        self.count = state["count"]

    async def terminate(self) -> None:
        self.terminated.set()


class Corrupt(Counter):
    async def import_state(self, state: Any) -> None:
        raise ValueError(f"cannot read {state!r}")


async def start_counter(options: hulytrio.GetOptions) -> hulytrio.Container:
    return Counter(options.uuid)


async def start_corrupt(options: hulytrio.GetOptions) -> hulytrio.Container:
    return Corrupt(options.uuid)


FACTORIES = {"counter": start_counter, "corrupt": start_corrupt}


async def saved(store: StateStore, uuid: str) -> Any:
    got = await store.get(uuid)
    return None if got is None else decode_payload(got.state)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:{tmp_path}/state.db"


async def test_a_clean_stop_loses_nothing_and_a_new_agent_restores(store_url):
    with trio.fail_after(30):
        async with open_state_store(store_url) as store, \
                hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as caller:
            async with hulytrio.open_client(hub.url) as first:
                # a long interval: only the last checkpoint, on the way out, saves
                await first.serve_agent(FACTORIES, agent_id="a1", state_store=store)
                ref = await caller.get("counter", uuid="count-1")
                assert [await ref.request("inc") for _ in range(5)] == [1, 2, 3, 4, 5]
                assert await saved(store, "count-1") is None
            assert await saved(store, "count-1") == {"count": 5}
            async with hulytrio.open_client(hub.url) as second:
                agent = await second.serve_agent(FACTORIES, agent_id="a2", state_store=store)
                # the reference follows the uuid to the new agent: restored, not reset
                assert await ref.request("inc") == 6
                assert set(agent.containers()) == {"count-1"}
            assert await saved(store, "count-1") == {"count": 6}


async def test_a_container_the_hub_terminates_is_saved_and_restored(sqlite_url):
    Counter.instances.clear()
    timeouts = hulytrio.Timeouts(unused_container=0.2)
    with trio.fail_after(30):
        async with open_state_store(sqlite_url) as store, \
                hulytrio.serve_network(port=0, timeouts=timeouts) as hub, \
                hulytrio.open_client(hub.url) as host, \
                hulytrio.open_client(hub.url) as caller:
            agent = await host.serve_agent(FACTORIES, agent_id="a1", state_store=store)
            ref = await caller.get("counter", uuid="count-2")
            for _ in range(3):
                await ref.request("inc")
            await ref.release()
            await Counter.instances[0].terminated.wait()  # saved first, then terminated
            assert agent.containers() == {}
            assert await saved(store, "count-2") == {"count": 3}
            ref = await caller.get("counter", uuid="count-2")
            assert await ref.request("inc") == 4
            assert len(Counter.instances) == 2


class SlowCounter(Counter):
    """``slow_inc`` adds one only when the test opens ``gate``."""

    started = trio.Event()
    gate = trio.Event()

    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        if operation == "slow_inc":
            SlowCounter.started.set()
            await SlowCounter.gate.wait()
            operation = "inc"
        return await super().request(operation, data, client_id)


async def start_slow_counter(options: hulytrio.GetOptions) -> hulytrio.Container:
    return SlowCounter(options.uuid)


@pytest.mark.parametrize("checkpointed", [False, True])
async def test_a_terminate_saves_what_a_running_request_changed(sqlite_url, checkpointed):
    """A container terminated while a request runs in it: the request ends and is
    answered, and its change is in the last checkpoint (it was lost before:
    the checkpoint was written at once, the change came after it).  The
    caller's reference starts the uuid again on the agent meanwhile: the new
    instance claims only after that last checkpoint (claimed first, it fenced
    the write, and started from the state before it)."""
    SlowCounter.started, SlowCounter.gate = trio.Event(), trio.Event()
    Counter.instances.clear()
    with trio.fail_after(30):
        async with open_state_store(sqlite_url) as store, \
                hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as host, \
                hulytrio.open_client(hub.url) as caller, \
                hulytrio.open_client(hub.url) as admin:
            agent = await host.serve_agent({"slow": start_slow_counter}, agent_id="a1",
                                           state_store=store)
            ref = await caller.get("slow", uuid="slow-1")
            assert await ref.request("inc") == 1
            if checkpointed:
                assert await agent.checkpoint() == 1
            answers: list[Any] = []

            async def slow() -> None:
                answers.append(await ref.request("slow_inc"))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(slow)
                await SlowCounter.started.wait()
                await admin.terminate("slow-1")
                await trio.sleep(0.2)  # the agent is terminating it meanwhile
                SlowCounter.gate.set()
            assert answers == [2]
            await Counter.instances[0].terminated.wait()  # saved first, then terminated
            assert await saved(store, "slow-1") == {"count": 2}
            assert await ref.request("inc") == 3  # the new instance restored it


class GatedStore:
    """A store whose batch writes wait for ``gate`` while it is set up (the rest passes)."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.gate: trio.Event | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def put_many(self, items: Any) -> Any:
        if self.gate is not None:
            await self.gate.wait()
        return await self.store.put_many(items)


async def test_a_stateless_uuid_promoted_back_restores_after_its_last_write(sqlite_url):
    """Demoted and at once promoted again on the same agent: the demotion's last
    checkpoint is written before the promotion claims (claimed first, it fenced
    that write, the container was stopped as stale, and the restore imported
    the checkpoint before: the changes since were gone)."""
    counter = Counter("ha-1")
    with trio.fail_after(30):
        async with open_state_store(sqlite_url) as real, \
                hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as caller, \
                hulytrio.open_client(hub.url) as host:
            store = GatedStore(real)
            agent = await host.serve_agent(
                {}, agent_id="owner", state_store=store,  # type: ignore[arg-type]
                stateless=[hulytrio.StatelessContainer("ha-1", "counter", counter)])
            ref = await caller.get("counter", uuid="ha-1")
            assert [await ref.request("inc") for _ in range(3)][-1] == 3
            assert await agent.checkpoint() == 1
            assert await ref.request("inc") == 4  # changed since the checkpoint
            store.gate = gate = trio.Event()
            # The two effects as the session gives them (the hub's standby
            # answer, then its promotion), straight to the agent's runtime.
            runtime = agent._runtime
            runtime._set_serving(SetServing("owner", "ha-1", False, 1))
            runtime._set_serving(SetServing("owner", "ha-1", True, 1))
            restored = runtime._held["ha-1"]  # set when the take-over ends
            await trio.sleep(0.5)  # the last write waits at the gate meanwhile
            gate.set()
            store.gate = None
            await restored.wait()
            assert await saved(real, "ha-1") == {"count": 4}
            assert counter.count == 4
            assert agent.serving() == ("ha-1",)
            assert await ref.request("inc") == 5


@attrs.frozen
class Pair:
    """An owner and a standby agent offering the stateless counter ``ha-1``."""

    store: StateStore
    caller: Any
    ref: Any
    owner: Any
    standby: Any
    owner_counter: Counter
    standby_counter: Counter


@asynccontextmanager
async def stateless_pair(sqlite_url: str, owner_store: Callable[[StateStore], Any] = lambda s: s
                         ) -> AsyncIterator[Pair]:
    """Yield a ``Pair`` on a hub, one store shared (the owner's wrapped by ``owner_store``),
    and the caller's reference to ``ha-1``, served by the owner."""
    owner_counter, standby_counter = Counter("ha-1"), Counter("ha-1")
    async with open_state_store(sqlite_url) as store, \
            hulytrio.serve_network(port=0) as hub, \
            hulytrio.open_client(hub.url) as caller, \
            hulytrio.open_client(hub.url) as standby_host, \
            hulytrio.open_client(hub.url) as owner_host:
        owner = await owner_host.serve_agent(
            {}, agent_id="owner", state_store=owner_store(store),
            stateless=[hulytrio.StatelessContainer("ha-1", "counter", owner_counter)])
        standby = await standby_host.serve_agent(
            {}, agent_id="standby", state_store=store,
            stateless=[hulytrio.StatelessContainer("ha-1", "counter", standby_counter)])
        # At boot the first offer owns the uuid once the hub's recovery
        # window closes (docs/high-availability.md): the get waits for it.
        ref = await caller.get("counter", uuid="ha-1")
        assert owner.serving() == ("ha-1",)
        yield Pair(store, caller, ref, owner, standby, owner_counter, standby_counter)


async def test_a_stateless_owner_hands_over_to_its_standby_with_its_state(sqlite_url):
    with trio.fail_after(30):
        async with stateless_pair(sqlite_url) as p:
            assert [await p.ref.request("inc") for _ in range(7)][-1] == 7
            assert p.standby.serving() == ()
            assert p.standby_counter.count == 0
            # The owner stops cleanly while a request comes in: held, then
            # re-routed to the standby once that restored the state (the
            # owner's last checkpoint came before the hub heard of it).
            answers: list[int] = []
            async with trio.open_nursery() as nursery:
                started = trio.current_time()
                nursery.start_soon(p.owner.aclose)
                answers.append(await p.ref.request("inc"))
                took = trio.current_time() - started
            assert answers == [8]
            assert took < 2.0  # no wait for a timeout on the way
            assert p.standby.serving() == ("ha-1",)
            assert (p.owner_counter.count, p.standby_counter.count) == (7, 8)
            stored = await p.store.get("ha-1")
            assert stored is not None
            assert stored.epoch >= 1


async def test_an_admin_terminate_of_a_stateless_owner_hands_its_last_changes_over(
        sqlite_url):
    """An admin terminates the owner's instance while its store is slow: the hub
    activates the standby only once the owner says it stopped, after its last write,
    so the standby's claim does not fence that write (it did: the standby restored
    the checkpoint before)."""
    gated: list[GatedStore] = []

    def gate(store: StateStore) -> GatedStore:
        gated.append(GatedStore(store))
        return gated[-1]

    with trio.fail_after(30):
        async with stateless_pair(sqlite_url, owner_store=gate) as p:
            assert [await p.ref.request("inc") for _ in range(5)][-1] == 5
            gated[0].gate = trio.Event()
            await p.caller.terminate("ha-1")
            answers: list[int] = []
            async with trio.open_nursery() as nursery:
                async def request() -> None:
                    answers.append(await p.ref.request("inc"))

                nursery.start_soon(request)
                await trio.sleep(0.5)
                assert answers == []  # the reference waits for the owner's last write
                assert p.standby.serving() == ()
                gated[0].gate.set()
            assert answers == [6]
            assert p.standby.serving() == ("ha-1",)
            assert p.standby_counter.count == 6


async def test_a_failed_import_fails_the_start_and_the_caller_sees_why(sqlite_url):
    with trio.fail_after(30):
        async with open_state_store(sqlite_url) as store, \
                hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as host, \
                hulytrio.open_client(hub.url) as caller:
            await store.put("bad-1", encode_payload({"count": 9}), 0)
            agent = await host.serve_agent(FACTORIES, agent_id="a1", state_store=store)
            with pytest.raises(hulytrio.HulyError,
                               match=r"import_state of bad-1 raised ValueError: "
                                     r"cannot read \{'count': 9\}"):
                await caller.get("corrupt", uuid="bad-1")
            assert agent.containers() == {}
            assert await caller.list("corrupt") == ()
            # the saved state is kept for a fixed container to read
            assert await saved(store, "bad-1") == {"count": 9}


async def test_a_stale_write_stops_the_old_owner(sqlite_url):
    Counter.instances.clear()
    with trio.fail_after(30):
        async with open_state_store(sqlite_url) as store, \
                hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as host, \
                hulytrio.open_client(hub.url) as caller:
            agent = await host.serve_agent(FACTORIES, agent_id="a1", state_store=store)
            ref = await caller.get("counter", uuid="stale-1")
            await ref.request("inc")
            assert await agent.checkpoint() == 1
            # Another owner took stale-1 over meanwhile (a newer epoch), as a
            # paused agent's successor would.
            await store.put("stale-1", encode_payload({"count": 100}), 5)
            await ref.request("inc")
            assert await agent.checkpoint() == 0  # refused: the old instance stops
            old = Counter.instances[0]
            await old.terminated.wait()
            assert await saved(store, "stale-1") == {"count": 100}
            # the hub was told: the reference finds the uuid again, started
            # afresh from the successor's state
            assert await ref.request("inc") == 101
            assert agent.containers()["stale-1"] is not old
            stored = await store.get("stale-1")
            assert stored is not None
            assert stored.epoch == 6


async def test_a_paused_owner_that_never_checkpointed_cannot_overwrite_its_successor(
        store_url):
    """Owner A of an ordinary container (ownership epoch 0) pauses before its
    first checkpoint; the hub starts the uuid again on B, which serves and
    checkpoints; A wakes up and checkpoints: refused, and A stops serving it.
    Before, nothing stored meant nothing claimed: both wrote at epoch 0 and
    A's stale state replaced B's.  (The real clock: the autojump clock would
    jump to the ``fail_after`` deadline while the store's thread works.)"""
    stale_a: list[str] = []
    stale_b: list[str] = []
    with trio.fail_after(30):
        async with open_state_store(store_url) as store:
            a = Checkpoints(store, 60.0, "a", stale_a.append)
            b = Checkpoints(store, 60.0, "b", stale_b.append)
            first, second = Counter("u-1"), Counter("u-1")
            await a.restore("u-1", first, 0)  # nothing saved: a fresh container
            await first.request("inc")
            # A pauses here; the hub starts u-1 again on B
            await b.restore("u-1", second, 0)
            assert second.count == 0
            for _ in range(3):
                await second.request("inc")
            assert await b.checkpoint() == 1
            # A wakes up: its checkpoint is refused, and it stops serving u-1
            assert await a.checkpoint() == 0
            assert stale_a == ["u-1"]
            assert not a.tracks("u-1")
            assert await saved(store, "u-1") == {"count": 3}
            # B serves on, at the epoch its claim got
            assert (b.epoch("u-1"), stale_b) == (1, [])
            await second.request("inc")
            assert await b.checkpoint() == 1
            assert await saved(store, "u-1") == {"count": 4}


class Flaky(Counter):
    """Its import fails while ``broken`` (a state only a fixed release can read)."""

    def __init__(self, uuid: str, *, broken: bool) -> None:
        super().__init__(uuid)
        self.broken = broken
        self.imports = 0

    async def import_state(self, state: Any) -> None:
        self.imports += 1
        if self.broken:
            raise ValueError("cannot read it yet")
        await super().import_state(state)


async def _attempts(flaky: Flaky, n: int) -> bool:
    return flaky.imports >= n


async def _until(predicate: Callable[[], Awaitable[bool]]) -> None:
    while True:
        if await predicate():
            return
        await trio.sleep(0.02)


async def _serving(agent: hulytrio.Agent, uuid: str) -> None:
    async def serving() -> bool:
        return uuid in agent.serving()

    await _until(serving)


async def test_a_stateless_uuid_that_failed_to_restore_is_offered_again(sqlite_url):
    flaky = Flaky("ha-f", broken=True)
    with trio.fail_after(30):
        async with open_state_store(sqlite_url) as store, \
                hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as caller, \
                hulytrio.open_client(hub.url) as host:
            await store.put("ha-f", encode_payload({"count": 41}), 0)
            a = await host.serve_agent(
                {}, agent_id="a", state_store=store,
                stateless=[hulytrio.StatelessContainer("ha-f", "counter", flaky)])
            # Owner at registration; its import fails: it stops serving and
            # nobody serves ha-f, but the instance lives on (not terminated).
            async def nobody_serves() -> bool:
                return not a.serving() and not await caller.list("counter")

            await _until(lambda: _attempts(flaky, 1))
            started = trio.current_time()
            await _until(nobody_serves)
            assert not flaky.terminated.is_set()
            # Offered again after 1 s: it wins, fails again, stands down, and
            # waits twice as long (2 s) before the next offer.
            await _until(lambda: _attempts(flaky, 2))
            assert 0.8 < trio.current_time() - started < 2.5
            await _until(nobody_serves)
            # The state becomes readable (a fixed release, `hulytrio state
            # import`): the next offer wins and restores.
            flaky.broken = False
            await _serving(a, "ha-f")
            assert 2.5 < trio.current_time() - started < 8
            ref = await caller.get("counter", uuid="ha-f")
            assert await ref.request("inc") == 42  # served only once restored
            assert flaky.imports == 3


async def test_an_owner_that_failed_to_restore_hands_over_and_stands_by_again(sqlite_url):
    broken, good = Flaky("ha-g", broken=True), Flaky("ha-g", broken=False)
    with trio.fail_after(30):
        async with open_state_store(sqlite_url) as store, \
                hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as caller, \
                hulytrio.open_client(hub.url) as host_a:
            await store.put("ha-g", encode_payload({"count": 10}), 0)
            a = await host_a.serve_agent(
                {}, agent_id="a", state_store=store,
                stateless=[hulytrio.StatelessContainer("ha-g", "counter", broken)])
            async def a_stood_down() -> bool:
                return not a.serving()

            await _until(a_stood_down)
            async with hulytrio.open_client(hub.url) as host_b:
                b = await host_b.serve_agent(
                    {}, agent_id="b", state_store=store,
                    stateless=[hulytrio.StatelessContainer("ha-g", "counter", good)])
                await _serving(b, "ha-g")
                ref = await caller.get("counter", uuid="ha-g")
                assert await ref.request("inc") == 11
                await trio.sleep(1.5)  # a's offer is back: it stands by
                assert a.serving() == ()
                broken.broken = False
                await b.aclose()  # a clean handover: a takes ha-g with b's state
                await _serving(a, "ha-g")
                assert await ref.request("inc") == 12
            assert broken.count == 12


async def test_a_draining_owner_hands_its_stateless_uuid_over_with_its_last_changes(sqlite_url):
    """SIGTERM's drain: the standby restores what the owner changed since its last checkpoint."""
    with trio.fail_after(30):
        async with stateless_pair(sqlite_url) as p:
            assert [await p.ref.request("inc") for _ in range(7)][-1] == 7
            # A request that comes in during the drain is held, then
            # re-routed to the standby once that restored the state.
            answers: list[int] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(p.owner.drain, 10.0)
                answers.append(await p.ref.request("inc"))
            assert answers == [8]
            assert p.standby.serving() == ("ha-1",)
            assert await p.ref.request("inc") == 9
            assert (p.owner_counter.count, p.standby_counter.count) == (7, 9)


async def test_a_draining_agent_moves_its_containers_with_their_last_changes(sqlite_url):
    """SIGTERM's drain of an ordinary container: restarted elsewhere, with every change."""
    Counter.instances.clear()
    with trio.fail_after(30):
        async with open_state_store(sqlite_url) as store, \
                hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as caller, \
                hulytrio.open_client(hub.url) as second_host:
            async with hulytrio.open_client(hub.url) as first_host:
                first = await first_host.serve_agent(FACTORIES, agent_id="first",
                                                     state_store=store)
                ref = await caller.get("counter", uuid="c-1")
                assert [await ref.request("inc") for _ in range(7)][-1] == 7
                await second_host.serve_agent(FACTORIES, agent_id="second", state_store=store)
                assert await first.drain(10.0)
            assert await ref.request("inc") == 8
            assert [c.count for c in Counter.instances] == [7, 8]


class FailingStore(GatedStore):
    """A store whose batch writes fail while ``failing`` is set (and wait for ``gate``)."""

    failing = False

    async def put_many(self, items: Any) -> Any:
        if self.failing:
            await trio.lowlevel.checkpoint()
            raise StateStoreError("state store (test): the disk is gone for a moment")
        return await super().put_many(items)


@pytest.mark.parametrize("stop", ["drain", "aclose"])
async def test_a_stopping_agent_retries_its_last_checkpoint_while_the_store_fails(sqlite_url,
                                                                                  stop):
    """A store outage as the owner stops cleanly, by a drain (SIGTERM) or by ``aclose``
    outside a drain (a library user's stop; for up to ``CLOSE_CHECKPOINT_RETRY_FOR``):
    the hub hears of it only once the last checkpoint is written, and the standby
    restores every change.  (``aclose`` used to write once and give up.)"""
    failing: list[FailingStore] = []

    def wrapped(store: StateStore) -> FailingStore:
        failing.append(FailingStore(store))
        return failing[0]

    with trio.fail_after(30):
        async with stateless_pair(sqlite_url, wrapped) as p:
            assert [await p.ref.request("inc") for _ in range(5)][-1] == 5
            failing[0].failing = True
            async with trio.open_nursery() as nursery:
                if stop == "drain":
                    nursery.start_soon(p.owner.drain, 10.0)
                else:
                    nursery.start_soon(p.owner.aclose)
                await trio.sleep(1.2)  # a few tries fail meanwhile
                assert p.standby.serving() == ()  # the hub has not heard yet
                if stop == "drain":
                    assert p.owner.serving() == ("ha-1",)  # nor been asked
                failing[0].failing = False
            assert p.standby.serving() == ("ha-1",)
            assert await p.ref.request("inc") == 6
            assert (p.owner_counter.count, p.standby_counter.count) == (5, 6)


@pytest.mark.parametrize("trouble", ["slow", "failing"])
async def test_a_terminated_container_restarted_at_once_elsewhere_keeps_its_last_changes(
        sqlite_url, trouble):
    """The hub terminates an unused container while its agent's store is slow (the last
    write waits) or failing (the agent tries it again); a get of the same uuid would
    start it on the other agent (the agents take starts in turn), whose claim came
    first and fenced the last write: the new instance started from nothing.  The hub
    now keeps the uuid until the agent says it stopped, which it says once the write
    is answered."""
    Counter.instances.clear()
    with trio.fail_after(30):
        async with open_state_store(sqlite_url) as store, \
                hulytrio.serve_network(
                    port=0, timeouts=hulytrio.Timeouts(unused_container=0.5)) as hub, \
                hulytrio.open_client(hub.url) as caller, \
                hulytrio.open_client(hub.url) as a_host, \
                hulytrio.open_client(hub.url) as b_host:
            troubled = FailingStore(store)
            await a_host.serve_agent(FACTORIES, agent_id="a", state_store=troubled)
            await b_host.serve_agent(FACTORIES, agent_id="b", state_store=store)
            ref = await caller.get("counter", uuid="c-1")
            assert [await ref.request("inc") for _ in range(3)][-1] == 3
            gate = troubled.gate = trio.Event()  # a's writes wait from now on
            troubled.failing = trouble == "failing"
            if troubled.failing:
                gate.set()
            await ref.release()
            await trio.sleep(1.5)  # unused: the hub terminates c-1 on a
            got: list[hulytrio.ContainerReference] = []

            async def get_again() -> None:
                got.append(await caller.get("counter", uuid="c-1"))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(get_again)
                await trio.sleep(0.5)
                assert got == []  # waits for a's last write
                troubled.failing = False
                gate.set()
            assert await got[0].request("inc") == 4
