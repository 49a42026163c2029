"""A fuzzed live hub (issue 13, deliverable 6) and its memory bound.

A real hub process (``hulytrio serve``) and a real agent process hosting
``echo`` run for the whole module.  Each Hypothesis example is a batch of
attacks over raw loopback sockets (nothing of hulytrio's own WebSocket code
on the attacker's side): random bytes before or after the upgrade, valid
frames carrying wrong contents (random msgpack, real messages with a field
replaced, messages forging another session's agent), oversized and truncated
frames, floods of frames and of connections.  After each batch:

- the hub process is alive and a healthy client gets correct answers;
- the registry (``agents()`` and ``list()``) is exactly what it was before
  any attack: rejected input changed nothing;
- the hub's resident memory is back within ``MEMORY_SLACK`` of its idle
  figure once the attacker has gone.

``make test`` draws a bounded number of batches; ``make fuzz`` many more.
``test_the_issue_attacks_stay_within_the_memory_target`` replays the issue's
memory attacks at full size and checks the target of its "Done means".
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import msgpack
import pytest
import trio
from framegen import Spec, mutated_streams
from fuzzing import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

import hulytrio
from hulytrio.core.messages import (
    PROTOCOL_VERSION,
    Cancel,
    Claim,
    Close,
    Connect,
    ContainerStopped,
    Disconnect,
    Drain,
    Error,
    Hello,
    Message,
    Ok,
    Ping,
    Pong,
    Push,
    Query,
    Release,
    Request,
    Response,
    Started,
    UnregisterAgent,
)
from hulytrio.core.types import OfferedContainer
from hulytrio.wire.codec import encode_frame, encode_payload

pytestmark = pytest.mark.e2e

MiB = 1 << 20
#: How far above its idle figure the hub's memory may stay once an attacker
#: has gone: the target of issue 13 ("within 50 MB of its idle figure").
MEMORY_SLACK = 50 * MiB
#: glibc's malloc otherwise raises its mmap threshold after the first large buffer is
#: freed, and later large buffers (frames, backlogs) come from the heap, which it rarely
#: gives back: docs/security.md, "Hub memory under attack".
HUB_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}
AGENT_ID = "healthy"
UUID = "fuzz-echo"
ROOT = Path(__file__).resolve().parents[2]
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
UPGRADE = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")


def rss(pid: int, field: str = "VmRSS") -> int:
    """Return a process's resident memory in bytes (``VmHWM``: its peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for process {pid}")


@attrs.define
class LiveHub:
    url: str
    port: int
    hub: subprocess.Popen[bytes]
    agent: subprocess.Popen[bytes]
    log: Path
    #: ``(agents(), list())`` before any attack
    registry: tuple[Any, Any] = None
    idle_rss: int = 0

    def check_alive(self) -> None:
        assert self.hub.poll() is None, f"the hub died:\n{self.log.read_text()[-3000:]}"
        assert self.agent.poll() is None, "the healthy agent died"


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _snapshot(url: str) -> tuple[Any, Any]:
    async with hulytrio.open_client(url) as client:
        agents = sorted((a.agent_id, a.kinds, a.endpoint) for a in await client.agents())
        containers = sorted((c.uuid, c.kind, c.agent_id) for c in await client.list())
        return agents, containers


async def _healthy_round(url: str, n: int) -> None:
    """A healthy client gets correct answers from the agent through the hub."""
    with trio.fail_after(20):
        async with hulytrio.open_client(url) as client:
            ref = await client.get("echo", uuid=UUID)
            for i in range(n):
                assert await ref.request("echo", {"i": i, "b": b"\x00" * i}) == {
                    "i": i, "b": b"\x00" * i}


async def _wait_ready(url: str) -> None:
    with trio.fail_after(30):
        while True:
            try:
                agents, _ = await _snapshot(url)
            except (OSError, hulytrio.HulyError):
                agents = []
            if agents:
                return
            await trio.sleep(0.1)


@pytest.fixture(scope="module")
def live_hub() -> Iterator[LiveHub]:
    port = _free_port()
    url = f"ws://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), **HUB_ENV}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "hub.log"
        with open(log, "wb") as out:
            # containers are kept (not orphaned away) so the registry snapshot holds still
            hub = subprocess.Popen(
                [sys.executable, "-m", "hulytrio", "serve", "--host", "127.0.0.1", "--port",
                 str(port), "--container-timeout", "3600", "--log-level", "warning"],
                stdout=out, stderr=subprocess.STDOUT, env=env)
            agent = subprocess.Popen(
                [sys.executable, "-m", "hulytrio", "agent", "--url", url, "--factories",
                 "hulytrio.testing.echo:FACTORIES", "--agent-id", AGENT_ID, "--log-level",
                 "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        live = LiveHub(url, port, hub, agent, log)
        try:
            trio.run(_wait_ready, url)
            trio.run(_healthy_round, url, 20)
            live.registry = trio.run(_snapshot, url)
            time.sleep(0.5)
            live.idle_rss = rss(hub.pid)
            yield live
        finally:
            for proc in (agent, hub):
                proc.kill()
                proc.wait()


# --- the attacker --------------------------------------------------------------------------


async def _connect(port: int, upgrade: bool) -> trio.SocketStream:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    if upgrade:
        await stream.send_all(UPGRADE)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await stream.receive_some()
            if not chunk:
                break
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head[:100]
    return stream


def ws_frame(payload: bytes, opcode: int = 2) -> bytes:
    """One masked (client) frame."""
    return Spec(True, 0, opcode, payload, True).encode()


def hello(peer: str) -> bytes:
    return ws_frame(encode_frame([Hello(PROTOCOL_VERSION, peer, 120.0)]))


#: Real messages that, sent by an attacker that hosts nothing, must change nothing in the
#: registry: calls to unknown containers, answers to calls never made, and claims on the
#: healthy agent's containers by a session that is not the agent's.
TEMPLATES: list[Message] = [
    Ping(), Pong(), Close("bye"), Query(1, "list"), Query(2, "agents"), Query(3, "kinds"),
    Query(4, "nonsense"), Request(5, "no-such-uuid", "op", encode_payload(1)),
    Request(6, UUID, "echo", b"\xc1"), Release(7, "no-such-uuid"), Response(8, b"\x90"),
    Error(9, "x", "y"), Ok(10), Cancel(11), Connect(12, "no-such-uuid"),
    Disconnect("no-such-uuid"), Push(UUID, b"\x90"), Started(13, UUID),
    ContainerStopped(AGENT_ID, UUID), UnregisterAgent(14, AGENT_ID), Drain(15, AGENT_ID),
    Claim(16, AGENT_ID, OfferedContainer(UUID, "echo")),
]

msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1) | st.floats()
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(
        st.text(max_size=5) | st.integers(-1000, 1000), inner, max_size=4),
    max_leaves=20)


@st.composite
def wrong_messages(draw: st.DrawFn) -> bytes:
    """A frame of msgpack that decodes, with contents the hub must refuse."""
    shape = draw(st.integers(0, 3))
    if shape == 0:
        return msgpack.packb(draw(msgpack_values))
    messages = draw(st.lists(st.sampled_from(TEMPLATES), min_size=1, max_size=5))
    raw = msgpack.unpackb(encode_frame(messages), raw=False)
    if shape >= 2:  # a field replaced by anything, the tag included
        for _ in range(draw(st.integers(1, 3))):
            message = draw(st.sampled_from(raw))
            message[draw(st.integers(0, len(message) - 1))] = draw(msgpack_values)
    return msgpack.packb(raw, use_bin_type=True)


@attrs.frozen
class Attack:
    kind: str
    data: tuple[bytes, ...] = ()
    hello: bool = True
    count: int = 1


@st.composite
def attacks(draw: st.DrawFn) -> Attack:
    kind = draw(st.sampled_from(["junk", "frames", "contents", "oversized", "truncated",
                                 "flood", "cycles"]))
    if kind == "junk":  # random bytes, no upgrade
        return Attack(kind, (draw(st.binary(min_size=1, max_size=2000)),), hello=False)
    if kind == "frames":  # damaged frames after the upgrade
        return Attack(kind, (draw(mutated_streams(masked=True)),), hello=draw(st.booleans()))
    if kind == "contents":  # valid frames, wrong contents
        frames = draw(st.lists(wrong_messages(), min_size=1, max_size=6))
        return Attack(kind, tuple(ws_frame(f, draw(st.sampled_from((1, 2, 2, 2))))
                                  for f in frames), hello=draw(st.integers(0, 4)) > 0)
    if kind == "oversized":  # a header over the limit, maybe some of what it promised
        length = draw(st.sampled_from((65 * 1024, 33 * MiB, 1 << 40)))
        header = bytes((0x82, 0x80 | 127)) + length.to_bytes(8, "big") + b"\x01\x02\x03\x04"
        return Attack(kind, (header + b"x" * draw(st.integers(0, 100_000)),),
                      hello=draw(st.booleans()))
    if kind == "truncated":  # a frame cut short, then the connection dropped
        frame = ws_frame(draw(wrong_messages()) + b"\xc0" * draw(st.integers(0, 70_000)))
        return Attack(kind, (frame[:draw(st.integers(1, max(1, len(frame) - 1)))],),
                      hello=draw(st.booleans()))
    if kind == "flood":  # many small frames at once: pings, bad messages, junk
        one = draw(st.sampled_from([ws_frame(b"", 9), ws_frame(b"\xc0"),
                                    ws_frame(encode_frame([Query(1, "list")])),
                                    ws_frame(msgpack.packb([None] * 50))]))
        return Attack(kind, (one * draw(st.integers(50, 400)),), hello=True)
    return Attack(kind, (), hello=draw(st.booleans()), count=draw(st.integers(5, 40)))


async def _run_attack(port: int, attack: Attack, n: int) -> None:
    """Carry out ``attack`` and leave (its connections closed)."""
    if attack.kind == "cycles":
        for i in range(attack.count):
            stream = await _connect(port, upgrade=True)
            if attack.hello:
                await stream.send_all(hello(f"cycle-{n}-{i}"))
            await stream.aclose()
        return
    stream = await _connect(port, upgrade=attack.kind != "junk")
    try:
        if attack.hello:
            await stream.send_all(hello(f"attacker-{n}"))
        for data in attack.data:
            await stream.send_all(data)
        # read what it answers for a moment (the hub may close first)
        with trio.move_on_after(0.2):
            while await stream.receive_some():
                pass
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the hub dropped us: fine
    finally:
        await stream.aclose()


async def _batch(live: LiveHub, batch: list[Attack]) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for n, attack in enumerate(batch):
                nursery.start_soon(_run_attack, live.port, attack, n)
        await _healthy_round(live.url, 3)


async def _settled_registry(live: LiveHub) -> tuple[Any, Any]:
    """The registry once the attackers' sessions have ended (closes take a moment)."""
    with trio.move_on_after(5):
        while (snapshot := await _snapshot(live.url)) != live.registry:  # noqa: ASYNC110
            await trio.sleep(0.1)  # polls another process: no event to wait on
    return snapshot


def _memory_settles(pid: int, bound: int, seconds: float = 5.0) -> int:
    """Return the hub's RSS once it is at most ``bound`` (or the last figure after ``seconds``)."""
    deadline = time.monotonic() + seconds
    while (now := rss(pid)) > bound and time.monotonic() < deadline:
        time.sleep(0.1)
    return now


@fuzz_settings(30)
@given(st.lists(attacks(), min_size=1, max_size=4))
def test_a_fuzzed_live_hub_keeps_serving_and_forgets_the_attacker(live_hub, batch):
    live_hub.check_alive()
    trio.run(_batch, live_hub, batch)
    live_hub.check_alive()
    assert trio.run(_settled_registry, live_hub) == live_hub.registry, (
        "rejected input changed the registry")
    now = _memory_settles(live_hub.hub.pid, live_hub.idle_rss + MEMORY_SLACK)
    assert now <= live_hub.idle_rss + MEMORY_SLACK, (
        f"hub RSS {now / MiB:.1f} MiB, idle {live_hub.idle_rss / MiB:.1f} MiB")


# --- the memory target of the issue's "Done means" ------------------------------------------

#: The hub's default bound on bytes kept for one peer that does not read (``send_bytes``).
SEND_BYTES = 32 * MiB
#: The largest frame a hulytrio peer sends (``MAX_FRAME_BYTES``).
FRAME = 16 * MiB
#: What the configured limits let the attacks below make the hub hold at once: the
#: backlog of the peer that does not read, the backlog its calls may build toward the
#: agent serving them (each bounded by ``send_bytes``), and one frame from the agent
#: while it is read (its bytes, unmasked, and its decoded messages).
LIMITS_ALLOW = 2 * SEND_BYTES + 3 * FRAME


async def _welcomed(port: int, peer: str, alive: float = 120.0) -> trio.SocketStream:
    stream = await _connect(port, upgrade=True)
    await _send(stream, ws_frame(encode_frame([Hello(PROTOCOL_VERSION, peer, alive)])))
    return stream


async def _send(stream: trio.SocketStream, data: bytes) -> bool:
    """Send ``data``; returns False if the hub has closed the connection already."""
    try:
        await stream.send_all(data)
    except trio.BrokenResourceError:
        return False
    return True


async def _until_closed(stream: trio.SocketStream, seconds: float) -> None:
    with trio.move_on_after(seconds):
        try:
            while await stream.receive_some():
                pass
        except trio.BrokenResourceError:
            pass
    await stream.aclose()


async def _issue_attacks(live: LiveHub) -> None:
    from hulytrio.core.messages import Get
    from hulytrio.core.types import GetOptions

    port = live.port
    # 1. one frame of 300,000 nil messages (250 MB and a 4 s stall before the fix)
    stream = await _welcomed(port, "nils")
    await _send(stream, ws_frame(msgpack.packb([None] * 300_000)))
    await _until_closed(stream, 5)
    # 2. a peer that never reads asks for 200 answers of 256 KiB (50 MiB) and for
    #    400 registry lists: dropped once 32 MiB wait for it
    stream = await _welcomed(port, "sloth")
    await _send(stream, ws_frame(encode_frame([Get(1, "echo", GetOptions(UUID))])))
    big = encode_payload(b"x" * (256 * 1024))
    for first in range(0, 200, 8):
        if not await _send(stream, ws_frame(encode_frame(
                [Request(10 + i, UUID, "echo", big) for i in range(first, first + 8)]))):
            break  # dropped already
        # At the pace the agent answers: a client sending faster than the agent
        # reads makes the hub drop the agent (docs/security.md, "Not bounded yet").
        await trio.sleep(0.05)
    await _send(stream, ws_frame(encode_frame([Query(1000 + i, "list") for i in range(400)])))
    await trio.sleep(3)
    await stream.aclose()
    # 3. 10 connections each holding 64 KiB of fragments before their hello
    held = []
    for _ in range(10):
        stream = await _connect(port, upgrade=True)
        await _send(stream, Spec(False, 0, 2, b"\xc0" * (60 * 1024), True).encode())
        held.append(stream)
    # 4. 1,000 sessions asking for an alive timeout of 1e9 s, then gone (10 at a time)
    async def forever(first: int) -> None:
        for i in range(first, first + 100):
            stream = await _welcomed(port, f"forever-{i}", alive=1e9)
            await stream.aclose()

    async with trio.open_nursery() as nursery:
        for first in range(0, 1000, 100):
            nursery.start_soon(forever, first)
    for stream in held:
        await stream.aclose()


def test_the_issue_attacks_stay_within_the_memory_target(live_hub):
    """Issue 13: within 50 MB of idle plus what the limits allow, and back after."""
    live_hub.check_alive()
    idle = rss(live_hub.hub.pid)
    peak = idle
    done = False

    def sample() -> None:
        nonlocal peak
        while not done:
            peak = max(peak, rss(live_hub.hub.pid))
            time.sleep(0.02)

    import threading
    sampler = threading.Thread(target=sample)
    sampler.start()

    async def attack_beside_a_healthy_pair() -> None:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                async def healthy() -> None:
                    while True:
                        await _healthy_round(live_hub.url, 5)
                        await trio.sleep(0.2)
                nursery.start_soon(healthy)
                await _issue_attacks(live_hub)
                nursery.cancel_scope.cancel()
        await _healthy_round(live_hub.url, 5)

    try:
        trio.run(attack_beside_a_healthy_pair)
    finally:
        done = True
        sampler.join()
    live_hub.check_alive()
    allowed = MEMORY_SLACK + LIMITS_ALLOW
    print(f"hub RSS: idle {idle / MiB:.1f} MiB, peak {peak / MiB:.1f} MiB "
          f"(bound {(idle + allowed) / MiB:.1f})")
    assert peak <= idle + allowed
    after = _memory_settles(live_hub.hub.pid, idle + MEMORY_SLACK, seconds=10)
    print(f"hub RSS after the attacker left: {after / MiB:.1f} MiB")
    assert after <= idle + MEMORY_SLACK
    assert trio.run(_settled_registry, live_hub) == live_hub.registry
