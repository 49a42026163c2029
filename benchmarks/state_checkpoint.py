"""A checkpoint of many changed containers to a state store, and what it costs the loop.

Usage: python -m benchmarks.state_checkpoint [--containers N] [--size BYTES]
       [--rounds R] [--postgresql URL] [--seconds S]

Three measurements, each against a fresh SQLite file (and PostgreSQL when a
URL is given):

1. the store alone: N states of SIZE bytes in one ``put_many`` (one
   transaction), R rounds, while a trio task ticks every millisecond: the
   longest gap between its ticks is how long the write held trio's loop;
2. the agent's checkpoint (``transport.checkpoints.Checkpoints``): N changed
   containers exported on the trio thread (in slices), encoded and written in
   one batch; the same tick task gives the longest loop gap;
3. routed requests during checkpoints: a hub, an agent and a caller on
   loopback in this process; the caller sends echo requests one after the
   other for S seconds, once with no checkpoint and once with checkpoints of
   N changed containers running back to back in the same loop: p50 and p99.

Target (issue "container state"): 10,000 states of 1 KB to SQLite in under
1 s, never blocking the loop for more than 10 ms; p99 of routed requests
during a checkpoint within 2x of without.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import trio

import hulytrio
from hulytrio.state import StateStore, open_state_store
from hulytrio.transport.checkpoints import Checkpoints


async def one_store(url: str, containers: int, size: int, rounds: int) -> list[tuple[float, float]]:
    """Return (seconds, longest loop gap in seconds) for each round."""
    results = []
    async with open_state_store(url) as store:
        for r in range(rounds):
            items = [(f"container-{i}", bytes([r % 256]) * size, r + 1) for i in range(containers)]
            gap = 0.0

            async def ticker() -> None:
                nonlocal gap
                last = trio.current_time()
                while True:
                    await trio.sleep(0.001)
                    now = trio.current_time()
                    gap = max(gap, now - last)
                    last = now

            async with trio.open_nursery() as nursery:
                nursery.start_soon(ticker)
                await trio.sleep(0.01)
                started = time.perf_counter()
                refused = await store.put_many(items)
                took = time.perf_counter() - started
                nursery.cancel_scope.cancel()
            assert not refused
            results.append((took, gap))
    return results


class Kept(hulytrio.Container):
    """A container with SIZE bytes of state."""

    def __init__(self, size: int) -> None:
        self.state = bytes(size)

    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        return data

    async def export_state(self) -> Any:
        return self.state

    async def import_state(self, state: Any) -> None:
        self.state = state


async def _tracked(store: StateStore, containers: int, size: int) -> tuple[Checkpoints,
                                                                           list[Kept]]:
    checkpoints = Checkpoints(store, 60.0, "bench", lambda uuid: None)
    kept = [Kept(size) for _ in range(containers)]
    for i, c in enumerate(kept):
        await checkpoints.restore(f"kept-{i}", c, 0)
    return checkpoints, kept


async def agent_checkpoint(url: str, containers: int, size: int, rounds: int
                           ) -> list[tuple[float, float]]:
    """Return (seconds, longest loop gap) of each of ``rounds`` agent checkpoints."""
    results = []
    async with open_state_store(url) as store:
        checkpoints, kept = await _tracked(store, containers, size)
        for _ in range(rounds):
            for c in kept:
                c.state_version += 1
            gap = 0.0

            async def ticker() -> None:
                nonlocal gap
                last = trio.current_time()
                while True:
                    await trio.sleep(0.001)
                    now = trio.current_time()
                    gap = max(gap, now - last)
                    last = now

            async with trio.open_nursery() as nursery:
                nursery.start_soon(ticker)
                await trio.sleep(0.01)
                started = time.perf_counter()
                written = await checkpoints.checkpoint()
                took = time.perf_counter() - started
                nursery.cancel_scope.cancel()
            assert written == containers
            results.append((took, gap))
    return results


async def requests_during(url: str, containers: int, size: int, seconds: float
                          ) -> dict[str, list[float]]:
    """Return request latencies (seconds) without and with back-to-back checkpoints."""
    async def start(options: hulytrio.GetOptions) -> hulytrio.Container:
        return Kept(0)

    latencies: dict[str, list[float]] = {"idle": [], "checkpointing": []}
    async with open_state_store(url) as store, hulytrio.serve_network(port=0) as hub, \
            hulytrio.open_client(hub.url) as host, hulytrio.open_client(hub.url) as caller:
        await host.serve_agent({"echo": start})
        ref = await caller.get("echo")
        checkpoints, kept = await _tracked(store, containers, size)
        checkpoint_count = 0

        async def checkpoint_forever() -> None:
            nonlocal checkpoint_count
            while True:
                for c in kept:
                    c.state_version += 1
                await checkpoints.checkpoint()
                checkpoint_count += 1

        for phase in ("idle", "checkpointing"):
            async with trio.open_nursery() as nursery:
                if phase == "checkpointing":
                    nursery.start_soon(checkpoint_forever)
                deadline = time.perf_counter() + seconds
                while time.perf_counter() < deadline:
                    t = time.perf_counter()
                    await ref.request("ping", 1)
                    latencies[phase].append(time.perf_counter() - t)
                nursery.cancel_scope.cancel()
        latencies["checkpoints"] = [float(checkpoint_count)]
    return latencies


async def noise_floor(seconds: float) -> float:
    """Return the longest gap of the 1 ms ticker with nothing else running (the VM's noise)."""
    gap = 0.0
    last = trio.current_time()
    deadline = last + seconds
    while last < deadline:
        await trio.sleep(0.001)
        now = trio.current_time()
        gap = max(gap, now - last)
        last = now
    return gap


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgresql", metavar="URL")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="how long requests are timed in each phase")
    args = parser.parse_args()
    urls = [f"sqlite:{tempfile.mkdtemp(prefix='hulytrio-bench-')}/state.db"]
    if args.postgresql:
        urls.append(args.postgresql)
    print(f"the 1 ms ticker alone for 2 s (this VM's noise): longest gap "
          f"{trio.run(noise_floor, 2.0) * 1000:.1f} ms")
    print()
    print(f"checkpoint of {args.containers} states of {args.size} bytes, one transaction")
    print("| store | round | seconds | longest loop gap |")
    print("|---|---:|---:|---:|")
    for url in urls:
        for i, (took, gap) in enumerate(trio.run(one_store, url, args.containers, args.size,
                                                 args.rounds)):
            print(f"| {url.split(':')[0]} | {i + 1} | {took:.3f} | {gap * 1000:.1f} ms |")
    print()
    print(f"agent checkpoint: {args.containers} changed containers of {args.size} bytes "
          f"exported, encoded, written in one batch")
    print("| store | round | seconds | longest loop gap |")
    print("|---|---:|---:|---:|")
    for url in urls:
        fresh = url if not url.startswith("sqlite:") else (
            f"sqlite:{tempfile.mkdtemp(prefix='hulytrio-bench-')}/state.db")
        for i, (took, gap) in enumerate(trio.run(agent_checkpoint, fresh, args.containers,
                                                 args.size, args.rounds)):
            print(f"| {url.split(':')[0]} | {i + 1} | {took:.3f} | {gap * 1000:.1f} ms |")
    print()
    print(f"routed echo requests, one at a time, {args.seconds:g} s each: idle, then with "
          f"checkpoints of {args.containers} changed containers back to back")
    print("| store | phase | requests | p50 | p99 | max |")
    print("|---|---|---:|---:|---:|---:|")
    for url in urls:
        fresh = url if not url.startswith("sqlite:") else (
            f"sqlite:{tempfile.mkdtemp(prefix='hulytrio-bench-')}/state.db")
        lat = trio.run(requests_during, fresh, args.containers, args.size, args.seconds)
        for phase in ("idle", "checkpointing"):
            v = lat[phase]
            print(f"| {url.split(':')[0]} | {phase} | {len(v)} | {_p(v, 50) * 1e3:.2f} ms | "
                  f"{_p(v, 99) * 1e3:.2f} ms | {max(v) * 1e3:.2f} ms |")
        print(f"({int(lat['checkpoints'][0])} checkpoints ran during the second phase)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
