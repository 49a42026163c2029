"""A checkpoint of many changed containers to a state store, and what it costs the loop.

Usage: python -m benchmarks.state_checkpoint [--containers N] [--size BYTES]
       [--rounds R] [--postgresql URL]

Writes N states of SIZE bytes in one ``put_many`` (one transaction), R rounds,
to a fresh SQLite file (and to PostgreSQL when a URL is given), while a trio
task ticks every millisecond: the longest gap between its ticks is how long
the checkpoint held trio's loop (the database runs on a worker thread, so it
should be about one tick).  Target (issue "container state"): 10,000 states
of 1 KB to SQLite in under 1 s, never blocking the loop for more than 10 ms.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import trio

from hulytrio.state import open_state_store


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgresql", metavar="URL")
    args = parser.parse_args()
    urls = [f"sqlite:{tempfile.mkdtemp(prefix='hulytrio-bench-')}/state.db"]
    if args.postgresql:
        urls.append(args.postgresql)
    print(f"checkpoint of {args.containers} states of {args.size} bytes, one transaction")
    print("| store | round | seconds | longest loop gap |")
    print("|---|---:|---:|---:|")
    for url in urls:
        for i, (took, gap) in enumerate(trio.run(one_store, url, args.containers, args.size,
                                                 args.rounds)):
            print(f"| {url.split(':')[0]} | {i + 1} | {took:.3f} | {gap * 1000:.1f} ms |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
