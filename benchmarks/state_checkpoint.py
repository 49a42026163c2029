"""A checkpoint of many changed containers to a state store, and what it costs the loop.

Usage: python -m benchmarks.state_checkpoint [--containers N] [--size BYTES]
       [--rounds R] [--postgresql URL] [--seconds S] [--json FILE]
       python -m benchmarks.state_checkpoint --ab BASE_DIR [--runs K] [...]

Measurements, each against a fresh SQLite file (and PostgreSQL when a URL is
given), after the VM's own noise (a 1 ms trio ticker with nothing else
running):

The store runs as ``hulytrio agent`` runs it, in a child process
(``open_state_store(url, worker=True)``), unless a figure says otherwise.

1. the store alone: N states of SIZE bytes in one ``put_many`` (one
   transaction), R rounds, while a trio task ticks every millisecond: the
   longest gap between its ticks is how long the write held trio's loop;
2. the agent's checkpoint (``transport.checkpoints.Checkpoints``): N changed
   containers exported on the trio thread (in slices), encoded and written in
   one batch, R rounds.  For each: the longest loop gap (wall time), the most
   CPU time the *process* used within one gap (its own share of a gap: the
   rest is the machine running other processes), and the garbage collector's
   passes during the checkpoint (``gc.callbacks``: count by generation, total
   and longest);
3. routed requests during checkpoints: a hub, an agent and a caller on
   loopback in this process; the caller sends echo requests one after the
   other for S seconds, once with no checkpoint and once with checkpoints of
   N changed containers running back to back in the same loop: p50, p99, max
   (the worst case: each request crosses the checkpointing loop six times);
4. the same with the agent and its checkpoints in a child process (this
   script again, ``--agent-of``), the hub and the caller here: a deployment's
   shape, where only the agent's own steps wait behind a checkpoint.  Idle
   and checkpointing windows of 1 s alternate, S seconds of each.

``--interference`` times (4) under each part of a checkpoint alone, and with
the store on a thread of the agent's process (``LOADS``).

``--ab BASE_DIR`` runs this script K times for each of two code trees,
alternating (BASE_DIR's ``hulytrio``, e.g. a detached worktree of main, put
first on ``PYTHONPATH``; then this tree's), and prints the median and range of
each figure per tree: the VM drifts within minutes, so only interleaved runs
compare code.

Target (issue "container state"): 10,000 states of 1 KB to SQLite in under
1 s, never blocking the loop for more than 10 ms; p99 of routed requests
during a checkpoint within 2x of without.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio

import hulytrio
from hulytrio.state import StateStore, open_state_store
from hulytrio.transport.checkpoints import Checkpoints

#: this file, run again as the agent's process
_SCRIPT = str(Path(__file__).resolve())


def _open_store(url: str, worker: bool) -> Any:
    """``open_state_store(url, worker=worker)``; on code from before the worker
    process (``--ab`` against an older tree) the store on a thread."""
    try:
        return open_state_store(url, worker=worker)
    except TypeError:
        return open_state_store(url)


class Ticker:
    """A trio task that ticks every millisecond and keeps the longest gap between ticks.

    ``gap``: the longest gap (seconds of wall time); ``own``: the most CPU
    time the whole process (every thread) used within one gap, i.e. how much
    of a gap this process can have caused (the rest was the machine's).
    """

    def __init__(self) -> None:
        self.gap = 0.0
        self.own = 0.0

    async def run(self) -> None:
        """Tick until cancelled."""
        last = time.perf_counter()
        cpu = time.process_time()
        while True:
            await trio.sleep(0.001)
            now = time.perf_counter()
            now_cpu = time.process_time()
            self.gap = max(self.gap, now - last)
            self.own = max(self.own, min(now - last, now_cpu - cpu))
            last, cpu = now, now_cpu


@contextmanager
def collections() -> Iterator[dict[str, float]]:
    """Count the garbage collector's passes inside the block: by generation, ms, longest ms."""
    counts: dict[str, float] = {"gen0": 0, "gen1": 0, "gen2": 0, "ms": 0.0, "longest_ms": 0.0}
    began = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
            return
        took = (time.perf_counter() - began[0]) * 1e3
        counts[f"gen{info['generation']}"] += 1
        counts["ms"] += took
        counts["longest_ms"] = max(counts["longest_ms"], took)

    gc.callbacks.append(callback)
    try:
        yield counts
    finally:
        gc.callbacks.remove(callback)


async def one_store(url: str, containers: int, size: int, rounds: int, worker: bool = True
                    ) -> list[dict[str, float]]:
    """Return seconds and the longest loop gap of each round's ``put_many``."""
    results = []
    async with _open_store(url, worker) as store:
        for r in range(rounds):
            items = [(f"container-{i}", bytes([r % 256]) * size, r + 1) for i in range(containers)]
            ticker = Ticker()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ticker.run)
                await trio.sleep(0.01)
                started = time.perf_counter()
                refused = await store.put_many(items)
                took = time.perf_counter() - started
                nursery.cancel_scope.cancel()
            assert not refused
            results.append({"seconds": took, "gap_ms": ticker.gap * 1e3,
                            "own_ms": ticker.own * 1e3})
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


async def agent_checkpoint(url: str, containers: int, size: int, rounds: int,
                           worker: bool = True) -> list[dict[str, float]]:
    """Return seconds, loop gaps and collections of each of ``rounds`` agent checkpoints."""
    results = []
    async with _open_store(url, worker) as store:
        checkpoints, kept = await _tracked(store, containers, size)
        for _ in range(rounds):
            for c in kept:
                c.state_version += 1
            ticker = Ticker()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ticker.run)
                await trio.sleep(0.01)
                with collections() as gcs:
                    started = time.perf_counter()
                    written = await checkpoints.checkpoint()
                    took = time.perf_counter() - started
                nursery.cancel_scope.cancel()
            assert written == containers
            results.append({"seconds": took, "gap_ms": ticker.gap * 1e3,
                            "own_ms": ticker.own * 1e3, **gcs})
    return results


async def requests_during(url: str, containers: int, size: int, seconds: float
                          ) -> dict[str, Any]:
    """Return request latencies (seconds) without and with back-to-back checkpoints."""
    async def start(options: hulytrio.GetOptions) -> hulytrio.Container:
        return Kept(0)

    latencies: dict[str, list[float]] = {"idle": [], "checkpointing": []}
    gcs: dict[str, dict[str, float]] = {}
    async with _open_store(url, True) as store, \
            hulytrio.serve_network(port=0) as hub, \
            hulytrio.open_client(hub.url) as host, hulytrio.open_client(hub.url) as caller:
        await host.serve_agent({"echo": start})
        ref = await caller.get("echo")
        checkpoints, kept = await _tracked(store, containers, size)
        checkpoint_count = 0

        async def checkpoint_forever() -> None:
            nonlocal checkpoint_count
            while True:
                await _touch(kept)
                await checkpoints.checkpoint()
                checkpoint_count += 1

        for phase in ("idle", "checkpointing"):
            async with trio.open_nursery() as nursery:
                with collections() as gcs[phase]:
                    if phase == "checkpointing":
                        nursery.start_soon(checkpoint_forever)
                    deadline = time.perf_counter() + seconds
                    while time.perf_counter() < deadline:
                        t = time.perf_counter()
                        await ref.request("ping", 1)
                        latencies[phase].append(time.perf_counter() - t)
                nursery.cancel_scope.cancel()
    return {"latencies": latencies, "checkpoints": checkpoint_count, "collections": gcs}


async def _touch(kept: list[Kept]) -> None:
    """Mark every container changed, yielding as a real agent's requests would.

    (In an agent the versions move one request at a time; 10,000 increments
    in one step would be the benchmark's own loop gap, not the checkpoint's.)
    """
    for i in range(0, len(kept), 500):
        for c in kept[i:i + 500]:
            c.state_version += 1
        await trio.lowlevel.checkpoint()


#: What the agent's process does while requests are timed (``--interference``):
#: the checkpoint, and its parts or stand-ins one at a time.
LOADS = {
    "checkpoints": "checkpoints back to back, the store in a child process (as `hulytrio agent`)",
    "checkpoints-thread": "the same, the store on a thread of the agent's process",
    "exports": "the same with a store that answers at once (no database)",
    "writes": "the store's writes alone (on a thread): the same batch, prepared, back to back",
    "writes-worker": "the same writes, the store in a child process",
    "cpu-thread": "a thread busy in C without Python's lock (sha256), back to back",
    "writer-process": "the same writes from another process, to the same file",
    "nothing": "nothing",
}


class _NoWrites:
    """A store whose ``put_many`` answers at once: a checkpoint without the database."""

    async def put_many(self, items: Any) -> list[Any]:
        await trio.lowlevel.checkpoint()
        return []


def _sha_forever(stop: Any) -> None:
    import hashlib
    chunk = bytes(1 << 20)
    while not stop.is_set():
        hashlib.sha256(chunk)  # releases Python's lock for inputs over 2 KB


async def _load(load: str, store: StateStore, store_url: str, checkpoints: Checkpoints,
                kept: list[Kept], size: int) -> None:
    """Run ``load`` (a key of ``LOADS``) until cancelled; count its rounds in ``_rounds``."""
    items = [(f"kept-{i}", bytes(size), 0) for i in range(len(kept))]
    if load == "exports":
        checkpoints.store = _NoWrites()  # type: ignore[assignment]
    if load in ("checkpoints", "checkpoints-thread", "exports"):
        while True:
            await _touch(kept)
            await checkpoints.checkpoint()
            _rounds[0] += 1
    if load in ("writes", "writes-worker"):
        while True:
            await store.put_many(items)
            _rounds[0] += 1
    if load == "cpu-thread":
        import threading
        stop = threading.Event()
        try:
            await trio.to_thread.run_sync(_sha_forever, stop, abandon_on_cancel=True)
        finally:
            stop.set()
    if load == "writer-process":
        argv = [sys.executable, _SCRIPT, "--write-forever", store_url,
                "--containers", str(len(kept)), "--size", str(size)]
        writer = await trio.lowlevel.open_process(argv)
        try:
            await trio.sleep_forever()
        finally:
            writer.kill()
            with trio.CancelScope(shield=True):
                await writer.wait()
    await trio.sleep_forever()


#: rounds of the load run so far (checkpoints, or batches written)
_rounds = [0]


async def write_forever(store_url: str, containers: int, size: int) -> None:
    """The writer of the ``writer-process`` load: the same batch, back to back, for ever."""
    items = [(f"other-{i}", bytes(size), 0) for i in range(containers)]
    async with open_state_store(store_url) as store:
        while True:
            await store.put_many(items)


#: the loads whose store runs on a thread of the agent's process
THREAD_LOADS = ("checkpoints-thread", "writes")


async def agent_process(hub_url: str, store_url: str, containers: int, size: int,
                        load: str = "checkpoints") -> None:
    """The child of ``requests_via_agent_process``: an agent that checkpoints on command.

    Serves ``echo`` at ``hub_url``, tracks ``containers`` changed containers,
    prints ``ready``; after each line ``go`` on stdin it runs ``load`` (by
    default checkpoints back to back; see ``LOADS``) until a line ``stop``,
    and prints ``stopped``; at a line ``end`` it prints how many rounds ran.
    """
    async def start(options: hulytrio.GetOptions) -> hulytrio.Container:
        return Kept(0)

    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    lines = _lines(stdin)
    worker = load not in THREAD_LOADS
    async with _open_store(store_url, worker) as store, \
            hulytrio.open_client(hub_url) as host:
        await host.serve_agent({"echo": start})
        checkpoints, kept = await _tracked(store, containers, size)
        print("ready", flush=True)
        while await anext(lines) == "go":
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_load, load, store, store_url, checkpoints, kept, size)
                assert await anext(lines) == "stop"
                nursery.cancel_scope.cancel()
            print("stopped", flush=True)
        print(_rounds[0], flush=True)


async def _lines(stream: trio.abc.ReceiveStream) -> AsyncIterator[str]:
    buffer = b""
    while True:
        while b"\n" not in buffer:
            data = await stream.receive_some()
            if not data:
                return
            buffer += data
        line, buffer = buffer.split(b"\n", 1)
        yield line.decode().strip()


#: Seconds of one idle or one checkpointing window (``requests_via_agent_process``).
WINDOW = 1.0


async def requests_via_agent_process(url: str, containers: int, size: int, seconds: float,
                                     load: str = "checkpoints") -> dict[str, Any]:
    """Return request latencies (seconds) through an agent in its own process.

    The deployment's shape: the hub and the caller here, the agent (and its
    checkpoints) in a child process, so only the agent's own steps share a
    loop with the checkpoint; ``requests_during`` is the worst case where
    every hop of a request does.  The phases alternate in windows of
    ``WINDOW`` seconds (``seconds`` in all for each), so the VM's drift
    over the run weighs on both alike.
    """
    latencies: dict[str, list[float]] = {"idle": [], "checkpointing": []}
    async with hulytrio.serve_network(port=0) as hub, \
            hulytrio.open_client(hub.url) as caller:
        argv = [sys.executable, _SCRIPT, "--agent-of", hub.url,
                "--store", url, "--containers", str(containers), "--size", str(size),
                "--load", load]
        process = await trio.lowlevel.open_process(argv, stdin=subprocess.PIPE,
                                                   stdout=subprocess.PIPE)
        assert process.stdin is not None
        assert process.stdout is not None
        lines = _lines(process.stdout)
        try:
            with trio.fail_after(120):
                assert await anext(lines) == "ready"
            ref = await caller.get("echo")
            for _ in range(max(1, round(seconds / WINDOW))):
                for phase in ("idle", "checkpointing"):
                    if phase == "checkpointing":
                        await process.stdin.send_all(b"go\n")
                        await trio.sleep(0.3)  # the first checkpoint under way
                    deadline = time.perf_counter() + WINDOW
                    while time.perf_counter() < deadline:
                        t = time.perf_counter()
                        await ref.request("ping", 1)
                        latencies[phase].append(time.perf_counter() - t)
                    if phase == "checkpointing":
                        await process.stdin.send_all(b"stop\n")
                        with trio.fail_after(60):
                            assert await anext(lines) == "stopped"
            await process.stdin.send_all(b"end\n")
            with trio.fail_after(60):
                count = int(await anext(lines))
                await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
    return {"latencies": latencies, "checkpoints": count,
            "collections": {"idle": {}, "checkpointing": {}}}


async def noise_floor(seconds: float) -> dict[str, float]:
    """Return the 1 ms ticker's longest gap with nothing else running (the VM's noise)."""
    ticker = Ticker()
    with trio.move_on_after(seconds):
        await ticker.run()
    return {"gap_ms": ticker.gap * 1e3, "own_ms": ticker.own * 1e3}


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def _fresh(url: str) -> str:
    if url.startswith("sqlite:"):
        return f"sqlite:{tempfile.mkdtemp(prefix='hulytrio-bench-')}/state.db"
    return url


def _latencies(lat: dict[str, Any]) -> dict[str, Any]:
    requests: dict[str, Any] = {"checkpoints": lat["checkpoints"]}
    for phase in ("idle", "checkpointing"):
        v = lat["latencies"][phase]
        requests[phase] = {"count": len(v), "p50_ms": _p(v, 50) * 1e3,
                           "p99_ms": _p(v, 99) * 1e3, "max_ms": max(v) * 1e3,
                           "collections": lat["collections"][phase]}
    return requests


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Return every figure of one run (see the module docstring), by store."""
    urls = [f"sqlite:{tempfile.mkdtemp(prefix='hulytrio-bench-')}/state.db"]
    if args.postgresql:
        urls.append(args.postgresql)
    out: dict[str, Any] = {"code": str(Path(hulytrio.__file__).parent),
                           "noise": trio.run(noise_floor, 2.0), "stores": {}}
    for url in urls:
        kind = url.split(":")[0]
        out["stores"][kind] = {
            "store_alone": trio.run(one_store, _fresh(url), args.containers, args.size,
                                    args.rounds),
            "agent": trio.run(agent_checkpoint, _fresh(url), args.containers, args.size,
                              args.rounds),
            "requests": _latencies(trio.run(requests_during, _fresh(url), args.containers,
                                            args.size, args.seconds)),
            "requests_process": _latencies(trio.run(
                requests_via_agent_process, _fresh(url), args.containers, args.size,
                args.seconds)),
        }
    return out


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    """Print one run's figures as markdown tables."""
    noise = result["noise"]
    print(f"code: {result['code']}")
    print(f"the 1 ms ticker alone for 2 s (this VM's noise): longest gap "
          f"{noise['gap_ms']:.1f} ms")
    for kind, r in result["stores"].items():
        print()
        print(f"{kind}: {args.containers} states of {args.size} bytes in one put_many")
        print("| round | seconds | longest loop gap | process CPU in a gap |")
        print("|---:|---:|---:|---:|")
        for i, s in enumerate(r["store_alone"]):
            print(f"| {i + 1} | {s['seconds']:.3f} | {s['gap_ms']:.1f} ms | "
                  f"{s['own_ms']:.1f} ms |")
        print()
        print(f"{kind}: agent checkpoint, {args.containers} changed containers of "
              f"{args.size} bytes exported, encoded, written in one batch")
        print("| round | seconds | longest loop gap | process CPU in a gap | "
              "collections gen0/1/2 | in them (longest) |")
        print("|---:|---:|---:|---:|---|---:|")
        for i, s in enumerate(r["agent"]):
            print(f"| {i + 1} | {s['seconds']:.3f} | {s['gap_ms']:.1f} ms | "
                  f"{s['own_ms']:.1f} ms | {s['gen0']:.0f}/{s['gen1']:.0f}/{s['gen2']:.0f} | "
                  f"{s['ms']:.1f} ms ({s['longest_ms']:.1f}) |")
        print()
        for key, where in (("requests", "hub, agent and caller in one process"),
                           ("requests_process", "the agent in its own process")):
            req = r[key]
            print()
            print(f"{kind}: routed echo requests, one at a time, {args.seconds:g} s each, "
                  f"{where}: idle, then with checkpoints back to back "
                  f"({req['checkpoints']} ran)")
            print("| phase | requests | p50 | p99 | max | collections gen0/1/2 |")
            print("|---|---:|---:|---:|---:|---|")
            for phase in ("idle", "checkpointing"):
                v = req[phase]
                c = v["collections"]
                gcs = (f"{c['gen0']:.0f}/{c['gen1']:.0f}/{c['gen2']:.0f}" if c
                       else "(in the child)")
                print(f"| {phase} | {v['count']} | {v['p50_ms']:.2f} ms | "
                      f"{v['p99_ms']:.2f} ms | {v['max_ms']:.2f} ms | {gcs} |")
            print(f"p99 during checkpoints / idle: "
                  f"{req['checkpointing']['p99_ms'] / req['idle']['p99_ms']:.2f}x")


def summary(run: dict[str, Any]) -> dict[str, float]:
    """Return one run's headline figures (SQLite): the ones the A/B table compares."""
    r = run["stores"]["sqlite"]
    agent = r["agent"]
    req = r["requests"]
    sep = r["requests_process"]
    return {
        "noise: ticker alone, longest gap (ms)": run["noise"]["gap_ms"],
        "checkpoint seconds (median of rounds)": statistics.median(a["seconds"] for a in agent),
        "checkpoint seconds (max of rounds)": max(a["seconds"] for a in agent),
        "longest loop gap in a checkpoint (ms)": max(a["gap_ms"] for a in agent),
        "process CPU in that gap's worst (ms)": max(a["own_ms"] for a in agent),
        "collections per checkpoint": statistics.mean(
            a["gen0"] + a["gen1"] + a["gen2"] for a in agent),
        "full collections per checkpoint": statistics.mean(a["gen2"] for a in agent),
        "ms in collections per checkpoint": statistics.mean(a["ms"] for a in agent),
        "requests idle: p99 (ms)": req["idle"]["p99_ms"],
        "requests checkpointing: p99 (ms)": req["checkpointing"]["p99_ms"],
        "p99 checkpointing / idle": req["checkpointing"]["p99_ms"] / req["idle"]["p99_ms"],
        "requests checkpointing: max (ms)": req["checkpointing"]["max_ms"],
        "agent process: requests idle: p99 (ms)": sep["idle"]["p99_ms"],
        "agent process: requests checkpointing: p99 (ms)": sep["checkpointing"]["p99_ms"],
        "agent process: p99 checkpointing / idle": (sep["checkpointing"]["p99_ms"]
                                                    / sep["idle"]["p99_ms"]),
        "store alone: longest loop gap (ms)": max(s["gap_ms"] for s in r["store_alone"]),
        "store alone: process CPU in a gap (ms)": max(s["own_ms"] for s in r["store_alone"]),
    }


def interference(args: argparse.Namespace) -> int:
    """Time requests through the agent's process under each of ``LOADS``; print the table.

    Which part of a checkpoint the requests wait for: the loads run in
    turn, ``--runs`` rounds, each against a fresh SQLite file.
    """
    rows: dict[str, list[tuple[float, float]]] = {load: [] for load in LOADS}
    for _ in range(args.runs):
        for load in LOADS:
            url = f"sqlite:{tempfile.mkdtemp(prefix='hulytrio-bench-')}/state.db"
            lat = _latencies(trio.run(requests_via_agent_process, url, args.containers,
                                      args.size, args.seconds, load))
            rows[load].append((lat["idle"]["p99_ms"], lat["checkpointing"]["p99_ms"]))
            print(f"{load}: p99 idle {rows[load][-1][0]:.2f} ms, loaded "
                  f"{rows[load][-1][1]:.2f} ms", flush=True)
    print()
    print(f"routed requests through an agent in its own process, {args.containers} x "
          f"{args.size} B, {args.seconds:g} s per phase, {args.runs} rounds (loads in turn)")
    print("| in the agent's process | p99 idle | p99 loaded | loaded / idle |")
    print("|---|---:|---:|---:|")
    for load, what in LOADS.items():
        idle = [r[0] for r in rows[load]]
        busy = [r[1] for r in rows[load]]
        ratios = sorted(b / i for i, b in rows[load])
        print(f"| {what} | {min(idle):.2f}-{max(idle):.2f} ms | {min(busy):.2f}-"
              f"{max(busy):.2f} ms | {ratios[0]:.2f}-{ratios[-1]:.2f}x |")
    return 0


def ab(args: argparse.Namespace) -> int:
    """Run this script alternately on BASE_DIR's code and this tree's; print the table."""
    here = Path(__file__).resolve().parent.parent
    sides = {"base": Path(args.ab).resolve(), "this": here}
    runs: dict[str, list[dict[str, float]]] = {"base": [], "this": []}
    passed = [a for a in sys.argv[1:] if a not in ("--ab", args.ab)]
    for i in range(args.runs):
        for side in (("base", "this") if i % 2 == 0 else ("this", "base")):
            with tempfile.NamedTemporaryFile(suffix=".json") as f:
                env = {**os.environ, "PYTHONPATH": str(sides[side])}
                cmd = [sys.executable, str(Path(__file__).resolve()), "--json", f.name,
                       *_strip_runs(passed)]
                subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
                run = json.loads(Path(f.name).read_text())
            if Path(run["code"]).resolve() != (sides[side] / "hulytrio").resolve():
                raise SystemExit(f"run {i + 1} ({side}) imported {run['code']}, "
                                 f"not {sides[side]}")
            runs[side].append(summary(run))
            print(f"run {i + 1} {side}: " + ", ".join(
                f"{k.split(' (')[0]} {v:.3g}" for k, v in runs[side][-1].items()
                if "p99" in k or "gap" in k), flush=True)
    print()
    print(f"{args.runs} interleaved runs per side; median [min-max]; base: {sides['base']}")
    print("| figure | base | this |")
    print("|---|---:|---:|")
    for key in runs["base"][0]:
        cells = []
        for side in ("base", "this"):
            v = [r[key] for r in runs[side]]
            cells.append(f"{_fmt(statistics.median(v))} [{_fmt(min(v))}-{_fmt(max(v))}]")
        print(f"| {key} | {cells[0]} | {cells[1]} |")
    return 0


def _strip_runs(argv: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--runs":
            skip = True
            continue
        if a.startswith("--runs="):
            continue
        out.append(a)
    return out


def _fmt(v: float) -> str:
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgresql", metavar="URL")
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="how long requests are timed in each phase")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--ab", metavar="BASE_DIR",
                        help="interleaved A/B: BASE_DIR's code against this tree's")
    parser.add_argument("--runs", type=int, default=5, help="runs per side with --ab")
    parser.add_argument("--interference", action="store_true",
                        help="what requests wait for: each part of a checkpoint alone "
                             "in the agent's process (--runs rounds)")
    parser.add_argument("--agent-of", metavar="HUB_URL", help=argparse.SUPPRESS)
    parser.add_argument("--store", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--load", choices=sorted(LOADS), default="checkpoints",
                        help=argparse.SUPPRESS)
    parser.add_argument("--write-forever", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.agent_of:  # the child of requests_via_agent_process
        trio.run(agent_process, args.agent_of, args.store, args.containers, args.size,
                 args.load)
        return 0
    if args.write_forever:  # the writer of the writer-process load
        trio.run(write_forever, args.write_forever, args.containers, args.size)
        return 0
    if args.interference:
        return interference(args)
    if args.ab:
        return ab(args)
    result = measure(args)
    report(result, args)
    if args.json:
        Path(args.json).write_text(json.dumps(result))
    return 0



if __name__ == "__main__":
    raise SystemExit(main())
