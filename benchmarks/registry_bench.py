"""Registry cost: per-operation get/release time and memory per container.

In-process, core only: a ``Registry`` holding 10^3 .. 10^6 live containers
(over 10 agents and 50 clients; half asked by uuid so they share one index
bucket, half with a label set of their own), then timed batches of:

- ``get new``: a get that starts a container (Start + Started round trip);
- ``get uuid``: a get that reuses a live container by uuid;
- ``get labels``: a get that reuses a live container by its label set;
- ``release``: dropping one of several holds;
- ``release last``: dropping the last hold (the container is orphaned, its
  timer armed);
- ``orphan kill``: the unused-timeout timer firing (Terminate + removal).

Memory per container is what ``tracemalloc`` sees allocated by the registry
(records, indexes, holder maps) divided by the number of containers; at 10^6
(where tracemalloc would take minutes) it is the growth of the process's
resident memory instead, allocator overhead included.

Usage: .venv/bin/python -m benchmarks.registry_bench [--quick]
Prints a table, then one JSON line with every figure.  ``--quick`` stops at
10^5 containers.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import sys
import time
import tracemalloc

from hulytrio.core.registry import Registry
from hulytrio.core.types import GetOptions
from hulytrio.testing.registry import answer_starts, populated_registry

AGENTS = 10
CLIENTS = 50
BATCH = 20_000
NEW_BATCH = 5_000


def populate(n: int) -> Registry:
    """A registry holding ``n`` live containers (see ``populated_registry``)."""
    return populated_registry(n, agents=AGENTS, clients=CLIENTS)


def per_op(fn, count: int, chunks: int = 4) -> float:
    """Run ``fn(i)`` for i in range(count); return nanoseconds per call.

    CPU time of this process, in ``chunks`` timed slices of which the
    fastest counts, so load from other processes does not pass for registry
    cost (on a shared machine wall-clock figures wander by 3x).
    """
    gc.collect()
    size = max(count // chunks, 1)
    best = float("inf")
    for start in range(0, count, size):
        stop = min(start + size, count)
        t0 = time.process_time_ns()
        for i in range(start, stop):
            fn(i)
        best = min(best, (time.process_time_ns() - t0) / (stop - start))
    return best


def measure(n: int) -> dict[str, float]:
    reg = populate(n)
    now = 40.0
    p = "probe"
    out: dict[str, float] = {}

    fresh: list[str] = []

    def get_new(i: int) -> None:
        reg.get(p, i, "echo", GetOptions(labels=(f"new{i}",)), now)
        uuid = answer_starts(reg, now)
        assert uuid is not None
        fresh.append(uuid)

    out["get new"] = per_op(get_new, NEW_BATCH)
    out["get uuid"] = per_op(
        lambda i: reg.get(p, i, "echo", GetOptions(uuid=f"u{(i * 7919) % n & ~1}"), now), BATCH)
    out["get labels"] = per_op(
        lambda i: reg.get(p, i, "echo", GetOptions(labels=(f"t{((i * 7919) % n) | 1}",)), now),
        BATCH)
    # Each new container holds 1, reused ones hold several times: release
    # the reuse holds first (not last), then the new ones (last: orphaned).
    holds = reg.holds(p)
    new = set(fresh)
    multi = [u for u in holds if u not in new for _ in range(holds[u])]
    out["release"] = per_op(lambda i: reg.release(p, i, multi[i], now), min(len(multi), BATCH))
    out["release last"] = per_op(lambda i: reg.release(p, i, fresh[i], now), len(fresh))
    reg.take_effects()
    # The orphans' deadlines all fall at one instant: one call kills them all
    # (timed once: the figure is that call's time per orphan).
    before = len(reg)
    t0 = time.process_time_ns()
    reg.handle_timers(now + 5, due=now + reg.timeouts.unused_container)
    killed = before - len(reg)
    out["orphan kill"] = (time.process_time_ns() - t0) / max(killed, 1)
    reg.take_effects()
    reg.events.flush()
    assert killed == len(fresh)
    assert len(reg) == n
    return out


def memory_per_container(n: int) -> float:
    """Bytes the registry allocates per live container, by tracemalloc."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    reg = populate(n)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert len(reg) == n
    return used / n


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_per_container(n: int) -> float:
    """Resident memory the process grows by per live container (for sizes where
    tracemalloc is too slow); includes allocator overhead, so it is an upper bound."""
    gc.collect()
    base = _rss_bytes()
    reg = populate(n)
    gc.collect()
    used = _rss_bytes() - base
    assert len(reg) == n
    return used / n


def main() -> None:
    quick = "--quick" in sys.argv
    sizes = [10**3, 10**4, 10**5] if quick else [10**3, 10**4, 10**5, 10**6]
    ops = ["get new", "get uuid", "get labels", "release", "release last", "orphan kill"]
    results: dict[int, dict[str, float]] = {}
    memory: dict[int, float] = {}
    for n in sizes:
        results[n] = measure(n)
        memory[n] = memory_per_container(n) if n <= 10**5 else rss_per_container(n)
    print("Registry cost per operation (ns), in-process, core only")
    print(f"{'containers':>12} " + " ".join(f"{op:>12}" for op in ops) + f" {'B/container':>12}")
    for n in sizes:
        mem = f"{memory[n]:12.0f}" if memory[n] == memory[n] else f"{'-':>12}"
        print(f"{n:>12,} " + " ".join(f"{results[n][op]:12.0f}" for op in ops) + f" {mem}")
    print(json.dumps({
        "bench": "registry",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "ns_per_op": {str(n): {op: round(v) for op, v in r.items()} for n, r in results.items()},
        "bytes_per_container": {str(n): round(m) for n, m in memory.items() if m == m},
    }))


if __name__ == "__main__":
    main()
