"""End to end over real loopback sockets, hub and agents in this process."""

from __future__ import annotations

import msgpack
import pytest
import trio
import trio.lowlevel
import trio_websocket
from e2e_containers import Echo, start_echo
from e2e_support import free_port
from wsclient import dial

import hulytrio
from hulytrio.core.messages import (
    PROTOCOL_VERSION,
    Error,
    Event,
    Hello,
    Query,
    Request,
    Welcome,
)
from hulytrio.wire.codec import decode_frame, encode_frame

FAST = hulytrio.Timeouts(alive=1.0, ping_interval=0.2, unused_container=0.3)


class Tracked(Echo):
    """An echo that records when it is terminated."""

    terminated: dict[str, float] = {}

    async def terminate(self):
        Tracked.terminated[self.uuid] = trio.current_time()


async def start_tracked(options):
    return Tracked(options.uuid)


async def test_request_response_and_remote_errors():
    with trio.fail_after(10):
        async with hulytrio.serve_network(port=0) as hub, hulytrio.open_client(hub.url) as c:
            await c.wait_connection()
            await c.serve_agent({"echo": start_echo}, agent_id="a1")
            ref = await c.get("echo")
            assert ref.kind == "echo"
            reply = await ref.request("hello", {"n": 1, "b": b"\x00"})
            assert reply["op"] == "hello"
            assert reply["data"] == {"n": 1, "b": b"\x00"}
            assert reply["uuid"] == ref.uuid
            with pytest.raises(hulytrio.RemoteError) as info:
                await ref.request("fail", 7)
            assert info.value.remote_type == "ValueError"
            assert info.value.remote_message == "asked to fail: 7"
            # many concurrent requests share frames and all complete
            results: list[int] = []

            async def one(i: int) -> None:
                results.append((await ref.request("n", i))["data"])

            async with trio.open_nursery() as n:
                for i in range(200):
                    n.start_soon(one, i)
            assert sorted(results) == list(range(200))
            assert await c.kinds() == ("echo",)
            assert [a.agent_id for a in await c.agents()] == ["a1"]
            assert [r.uuid for r in await c.list("echo")] == [ref.uuid]
            await ref.release()


async def test_typed_proxy_does_not_proxy_dunders():
    class Calc:
        async def add(self, a: int, b: int) -> dict: ...

    with trio.fail_after(10):
        async with hulytrio.serve_network(port=0) as hub, hulytrio.open_client(hub.url) as c:
            await c.serve_agent({"echo": start_echo})
            ref = await c.get("echo")
            calc = ref.cast(Calc)
            assert (await calc.add(1, 2))["data"] == [1, 2]
            assert (await ref.cast(Calc, qualified=True).add(3, 4))["op"] == "Calc.add"
            with pytest.raises(AttributeError):
                calc.__await__  # noqa: B018
            with pytest.raises(TypeError):
                await calc  # the reference's proxy proxied `then`: awaiting it hung


async def test_labels_and_uuid_reuse():
    with trio.fail_after(10):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as agent_side, \
                hulytrio.open_client(hub.url) as c1, hulytrio.open_client(hub.url) as c2:
            await agent_side.serve_agent({"echo": start_echo})
            a1 = await c1.get("echo", labels=["tenant-a"])
            a2 = await c2.get("echo", labels=["tenant-a"])
            b = await c2.get("echo", labels=["tenant-b"])
            plain = await c1.get("echo")
            assert a1.uuid == a2.uuid, "a live container with the same labels is reused"
            assert b.uuid != a1.uuid
            assert plain.uuid not in (a1.uuid, b.uuid), "no tenant container for an unlabelled get"
            fixed = await c2.get("echo", uuid=b.uuid)
            assert fixed.uuid == b.uuid
            named = await c1.get("echo", uuid="my-own-uuid")
            assert named.uuid == "my-own-uuid"
            assert (await named.request("x"))["uuid"] == "my-own-uuid"
            labels = {r.uuid: r.labels for r in await c1.list()}
            assert labels[a1.uuid] == ("tenant-a",)
            assert labels[b.uuid] == ("tenant-b",)


async def test_reference_counting_and_orphan_termination():
    Tracked.terminated.clear()
    with trio.fail_after(10):
        async with hulytrio.serve_network(port=0, timeouts=FAST) as hub, \
                hulytrio.open_client(hub.url) as agent_side, \
                hulytrio.open_client(hub.url) as c1, hulytrio.open_client(hub.url) as c2:
            await agent_side.serve_agent({"echo": start_tracked})
            r1 = await c1.get("echo", uuid="shared")
            r1b = await c1.get("echo", uuid="shared")
            r2 = await c2.get("echo", uuid="shared")
            await r1.release()
            await r2.release()
            await trio.sleep(FAST.unused_container * 2)
            assert "shared" not in Tracked.terminated, "c1 still holds it once"
            # Released by all: terminated after the unused timeout.
            released_at = trio.current_time()
            await r1b.release()
            await _wait(lambda: "shared" in Tracked.terminated)
            took = Tracked.terminated["shared"] - released_at
            assert FAST.unused_container * 0.9 <= took < FAST.unused_container + 0.5
            assert await c1.list() == ()
            # A re-get before the deadline rescues an orphan.
            r = await c1.get("echo", uuid="rescued")
            await r.release()
            await trio.sleep(FAST.unused_container / 3)
            again = await c2.get("echo", uuid="rescued")
            await trio.sleep(FAST.unused_container * 2)
            assert "rescued" not in Tracked.terminated
            assert (await again.request("still"))["uuid"] == "rescued"


async def test_client_close_releases_its_references():
    Tracked.terminated.clear()
    with trio.fail_after(10):
        async with hulytrio.serve_network(port=0, timeouts=FAST) as hub, \
                hulytrio.open_client(hub.url) as agent_side:
            await agent_side.serve_agent({"echo": start_tracked})
            async with hulytrio.open_client(hub.url) as c:
                await c.get("echo", uuid="held")
            await _wait(lambda: "held" in Tracked.terminated)


async def test_updates_report_agents_and_containers():
    with trio.fail_after(10):
        async with hulytrio.serve_network(port=0) as hub, hulytrio.open_client(hub.url) as c:
            await c.wait_connection()
            updates = c.updates()
            async with hulytrio.open_client(hub.url) as agent_side:
                await agent_side.serve_agent({"echo": start_echo}, agent_id="watched")
                ref = await c.get("echo")
                seen_agent = seen_container = False
                async for event in updates:
                    seen_agent |= any(e.agent.agent_id == "watched" for e in event.agents)
                    seen_container |= any(e.container.uuid == ref.uuid
                                          for e in event.containers)
                    if seen_agent and seen_container:
                        break
            # The agent's client closed: its agent and container are removed at once.
            gone = False
            async for event in updates:
                if any(e.agent.agent_id == "watched" and e.change.value == "removed"
                       for e in event.agents):
                    gone = True
                    break
            assert gone
            await updates.aclose()


async def test_own_events_client_sees_only_its_containers():
    with trio.fail_after(10):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url, events="own") as mine, \
                hulytrio.open_client(hub.url) as other:
            await other.serve_agent({"echo": start_echo}, agent_id="host")
            updates = mine.updates()
            theirs = await other.get("echo", labels=["theirs"])
            ours = await mine.get("echo", labels=["ours"])
            await theirs.release()
            await ours.release()  # the orphan is terminated: a removal we hold no more
            ref = await mine.get("echo", labels=["again"])
            seen: set[str] = set()
            async for event in updates:
                seen.update(e.container.uuid for e in event.containers)
                if ref.uuid in seen:
                    break
            # Nothing about the other client's container ever reached us.
            assert theirs.uuid not in seen
            assert await ref.request("x", 1)
            await updates.aclose()


async def test_direct_endpoint_connect_and_events():
    with trio.fail_after(10):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as agent_side, hulytrio.open_client(hub.url) as c:
            agent = await agent_side.serve_agent({"echo": start_echo},
                                                 endpoint="127.0.0.1:0")
            assert agent.endpoint is not None
            assert agent.endpoint.startswith("ws://127.0.0.1:")
            ref = await c.get("echo")
            assert ref.record.endpoint == agent.endpoint
            forwarded = hub.hub.stats.forwarded
            async with ref.connect() as conn:
                assert conn.direct
                events = conn.events()
                assert await events.__anext__() == {"welcome": c.client_id}
                reply = await conn.request("direct", 5)
                assert reply["data"] == 5
                assert hub.hub.stats.forwarded == forwarded, "bypassed the hub"
                assert await ref.request("emit", {"tick": 1}) == 1
                assert await events.__anext__() == {"tick": 1}
                with pytest.raises(hulytrio.RemoteError):
                    await conn.request("fail")
            # The stream closed: the container no longer has the client.
            assert await _wait_value(lambda: ref.request("emit", {"tick": 2}), 0)


async def test_direct_connection_ends_when_its_agent_goes():
    with trio.fail_after(10):
        async with hulytrio.serve_network(port=0) as hub, hulytrio.open_client(hub.url) as c, \
                hulytrio.open_client(hub.url) as agent_side:
            agent = await agent_side.serve_agent({"echo": start_echo}, endpoint="127.0.0.1:0")
            ref = await c.get("echo")
            async with ref.connect() as conn:
                events = conn.events()
                assert await events.__anext__() == {"welcome": c.client_id}
                await agent.aclose()
                assert [e async for e in events] == [], "the stream ends, nothing more"
                with pytest.raises(hulytrio.ConnectionClosed):
                    await conn.request("anyone?")


async def test_direct_stream_ends_when_its_container_is_terminated():
    with trio.fail_after(10):
        async with hulytrio.serve_network(port=0, timeouts=FAST) as hub, \
                hulytrio.open_client(hub.url) as c, hulytrio.open_client(hub.url) as agent_side:
            await agent_side.serve_agent({"echo": start_echo}, endpoint="127.0.0.1:0")
            ref = await c.get("echo")
            async with ref.connect() as conn:
                assert conn.direct
                events = conn.events()
                assert await events.__anext__() == {"welcome": c.client_id}
                await ref.release()  # unused: terminated after FAST.unused_container
                assert [e async for e in events] == [], "the stream ends, nothing more"
                with pytest.raises(hulytrio.ContainerNotFound):
                    await conn.request("still there?")


async def test_hub_relayed_connect_without_endpoint():
    with trio.fail_after(10):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as agent_side, hulytrio.open_client(hub.url) as c:
            await agent_side.serve_agent({"echo": start_echo})
            ref = await c.get("echo")
            async with ref.connect() as conn:
                assert not conn.direct
                events = conn.events()
                assert await events.__anext__() == {"welcome": c.client_id}
                assert (await conn.request("via-hub"))["op"] == "via-hub"
                assert await ref.request("emit", [1, 2]) == 1
                assert await events.__anext__() == [1, 2]


async def test_bad_input_gets_an_error_and_disturbs_nobody():
    with trio.fail_after(10):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as agent_side, hulytrio.open_client(hub.url) as c:
            await agent_side.serve_agent({"echo": start_echo})
            ref = await c.get("echo")
            async with trio_websocket.open_websocket_url(hub.url) as raw:
                await raw.send_message(encode_frame([Hello(PROTOCOL_VERSION, "raw")]))
                assert isinstance((await _replies(raw))[0], Welcome)
                garbage = [b"\xc1\xc1", msgpack.packb([["req", "not-an-int"]]),
                           msgpack.packb([["nope", 1]]), msgpack.packb({"a": 1}), b""]
                for frame in garbage:
                    await raw.send_message(frame)
                    reply = await _replies(raw)
                    assert isinstance(reply[0], Error)
                    assert reply[0].code == "protocol"
                    assert (await ref.request("ok"))["op"] == "ok"
                await raw.send_message("text is not the protocol")
                reply = await _replies(raw)
                assert isinstance(reply[0], Error)
                # one bad message in a frame does not spoil the good ones
                good_and_bad = msgpack.packb([["query", 9, "kinds", None], ["req", "x"]])
                await raw.send_message(good_and_bad)
                answers = await _replies(raw)
                kinds = [type(m).__name__ for m in answers]
                assert sorted(kinds) == ["Error", "KindsReply"]
                # a request for an unknown container is answered, not fatal
                await raw.send_message(encode_frame([Request(3, "nope", "op")]))
                reply = await _replies(raw)
                assert isinstance(reply[0], Error)
                assert reply[0].code == "not_found"
            assert (await ref.request("still fine"))["op"] == "still fine"
            assert hub.statistics().bad_frames >= len(garbage) + 1


async def test_oversized_frames():
    with trio.fail_after(10):
        async with hulytrio.serve_network(port=0, max_frame_bytes=1000) as hub, \
                trio.open_nursery() as nursery:
            # dial(): trio-websocket leaves a client's socket open when the
            # server closes; we own the stream and close it.
            raw, stream = await dial(nursery, hub.url)
            async with stream:
                await raw.send_message(encode_frame([Hello(PROTOCOL_VERSION, "big")]))
                assert isinstance((await _replies(raw))[0], Welcome)
                # over the frame limit: answered with an error, the connection lives
                await raw.send_message(encode_frame([Request(1, "u", "op", b"x" * 1500)]))
                reply = (await _replies(raw))[0]
                assert isinstance(reply, Error)
                assert reply.code == "protocol"
                # far over it: the WebSocket layer closes the connection (1009)
                await raw.send_message(encode_frame([Request(2, "u", "op", b"x" * 5000)]))
                with pytest.raises(trio_websocket.ConnectionClosed):
                    await _replies(raw)
                assert raw.closed.code == 1009


async def test_slow_consumer_is_dropped_without_stalling_others():
    with trio.fail_after(30):
        async with hulytrio.serve_network(port=0, send_queue=200) as hub, \
                hulytrio.open_client(hub.url) as agent_side, hulytrio.open_client(hub.url) as c:
            await agent_side.serve_agent({"echo": start_echo})
            # Fat list replies: containers with long labels.
            for i in range(20):
                await c.get("echo", labels=[f"{i}-" + "x" * 300])
            ref = await c.get("echo")
            # A peer that asks and asks and never reads its socket.
            async with trio.open_nursery() as nursery:
                slow = await trio_websocket.connect_websocket_url(nursery, hub.url,
                                                                  message_queue_size=1)
                await slow.send_message(encode_frame([Hello(PROTOCOL_VERSION, "slow")]))
                worst = 0.0

                async def flood() -> None:
                    call = 0
                    try:
                        while hub.statistics().dropped_slow == 0:
                            frame = []
                            for _ in range(50):
                                call += 1
                                frame.append(Query(call, "list"))
                            await slow.send_message(encode_frame(frame))
                            await trio.lowlevel.checkpoint()
                    except trio_websocket.ConnectionClosed:
                        pass

                nursery.start_soon(flood)
                while hub.statistics().dropped_slow == 0:
                    start = trio.current_time()
                    await ref.request("meanwhile")
                    worst = max(worst, trio.current_time() - start)
                with trio.move_on_after(1):
                    await slow.aclose()
                nursery.cancel_scope.cancel()
            assert hub.statistics().dropped_slow == 1
            assert worst < 1.0, f"a request took {worst:.3f} s while a peer was stuck"
            assert (await ref.request("after"))["op"] == "after"


async def test_hub_restart_in_process_reference_keeps_working():
    """The whole rebuild path (same port, new hub id), without processes."""
    with trio.fail_after(15):
        port = free_port()
        async with hulytrio.open_client(f"ws://127.0.0.1:{port}") as agent_side, \
                hulytrio.open_client(f"ws://127.0.0.1:{port}") as c:
            async with hulytrio.serve_network(port=port, timeouts=FAST):
                await agent_side.serve_agent({"echo": start_echo}, agent_id="survivor")
                ref = await c.get("echo")
                uuid = ref.uuid
            async with hulytrio.serve_network(port=port, timeouts=FAST):
                reply = await ref.request("after restart")
                assert reply["uuid"] == uuid
                assert [a.agent_id for a in await c.agents()] == ["survivor"]


async def _replies(raw) -> list:
    """Return the next frame's messages that are not registry events."""
    while True:
        messages = [m for m in decode_frame(await raw.get_message())
                    if not isinstance(m, Event)]
        if messages:
            return messages


async def _wait(predicate) -> None:
    # Polls state that other tasks own (a container's terminate hook).
    while not predicate():  # noqa: ASYNC110
        await trio.sleep(0.01)


async def _wait_value(call, expected) -> bool:
    while await call() != expected:  # noqa: ASYNC110 - polls a remote container
        await trio.sleep(0.01)
    return True


async def test_a_direct_stream_to_a_stateless_owner_survives_a_hub_restart():
    """Re-registering fences the owner until the new hub answers; its streams stay open."""
    port = free_port()
    url = f"ws://127.0.0.1:{port}"

    async def hub_task(task_status=trio.TASK_STATUS_IGNORED):
        with trio.CancelScope() as scope:
            async with hulytrio.serve_network(port=port, timeouts=FAST):
                task_status.started(scope)
                await trio.sleep_forever()

    with trio.fail_after(15):
        async with trio.open_nursery() as hubs, hulytrio.open_client(url) as agent_side, \
                hulytrio.open_client(url) as c:
            first = await hubs.start(hub_task)
            agent = await agent_side.serve_agent(
                {}, agent_id="owner", endpoint="127.0.0.1:0",
                stateless=[hulytrio.StatelessContainer("ha-1", "ha", Echo("ha-1"))])
            ref = await c.get("ha", uuid="ha-1")
            async with ref.connect() as conn:
                assert conn.direct
                events = conn.events()
                assert await events.__anext__() == {"welcome": c.client_id}
                first.cancel()
                second = await hubs.start(hub_task)
                # Through the new hub: the agent has re-registered and been answered.
                assert (await ref.request("after restart"))["uuid"] == "ha-1"
                assert agent.serving() == ("ha-1",)
                # The direct stream was paused, not ended: it still carries events.
                assert await conn.request("emit", {"tick": 1}) == 1
                assert await events.__anext__() == {"tick": 1}
            second.cancel()
