"""The benchmark's load process: clients driven by JSON commands on stdin.

Run as ``python -m benchmarks.harness.worker --url ws://HOST:PORT``.  It reads one
JSON command per line and prints one JSON reply per command (``{"error":
...}`` if the command failed); logs go to stderr.  Commands:

``connect`` ``{clients, start}``
    open ``clients`` clients at monotonic time ``start``; reply with each
    one's seconds from ``start`` to its first welcome.
``agents`` ``{kind, per_client}``
    every client hosts ``per_client`` (default 1) more idle agents of
    ``kind`` (no endpoint).
``prepare`` ``{path}``
    every client gets an ``echo`` container; with ``path == "direct"`` it
    also opens ``ref.connect()`` to the agent's endpoint.
``echo`` ``{inflight, payload, start, warmup, duration}``
    every client keeps ``inflight`` echo requests of ``payload`` bytes going
    from ``start``; requests started in ``[start + warmup, start + warmup +
    duration)`` are counted and their latencies kept in a ``Histogram``.
``coldget`` ``{count, warm}``
    the first client gets ``warm + count`` new containers one after another
    (each with a fresh uuid, released at once); the last ``count`` are timed.
``listen`` ``{markers}``
    every client watches its registry events for agents with these ids.
``collect`` ``{timeout}``
    wait (at most ``timeout`` s) until every client saw every marker; reply
    with the monotonic time each client first saw each one (null: never).
``trigger`` ``{agent_id}``
    the first client registers an agent ``agent_id``; reply with the
    monotonic time just before.

Times shared with the harness are ``time.monotonic()``: on Linux every
process reads the same clock, so a time taken here and one taken in the
harness or another worker are comparable.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import Any

import trio

import hulytrio
from hulytrio.core.events import ChangeKind
from hulytrio.testing.echo import start_echo

from .stats import Histogram

__all__ = ["Worker", "main"]

log = logging.getLogger("benchmarks.harness")

Call = Callable[[str, Any], Awaitable[Any]]


class Worker:
    """The clients of one load process and the commands that drive them."""

    def __init__(self, url: str, nursery: trio.Nursery) -> None:
        self.url = url
        self.nursery = nursery
        self.clients: list[hulytrio.Client] = []
        self.calls: list[Call] = []
        self.stack = AsyncExitStack()
        self.seen: list[dict[str, float]] = []
        self.markers: tuple[str, ...] = ()
        self.all_seen = trio.Event()
        self._missing = 0
        self._serial = 0

    async def run_command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Run one command; returns its JSON reply.

        Raises:
            ValueError: for an unknown command.
            hulytrio.HulyError: if a client operation fails.
        """
        name = cmd.get("cmd")
        handler = {
            "connect": self.connect, "agents": self.agents, "prepare": self.prepare,
            "echo": self.echo, "coldget": self.coldget, "listen": self.listen,
            "collect": self.collect, "trigger": self.trigger,
        }.get(str(name))
        if handler is None:
            raise ValueError(f"unknown command {name!r}")
        return await handler(cmd)

    async def connect(self, cmd: dict[str, Any]) -> dict[str, Any]:
        start = float(cmd["start"])
        count = int(cmd["clients"])
        await trio.sleep(max(0.0, start - time.monotonic()))
        first = len(self.clients)
        for _ in range(count):
            client: hulytrio.Client = await self.nursery.start(self._hold_client)
            self.clients.append(client)
        times = [0.0] * count

        async def welcome(i: int, client: hulytrio.Client) -> None:
            await client.wait_connection()
            times[i] = time.monotonic() - start

        async with trio.open_nursery() as nursery:
            for i, client in enumerate(self.clients[first:]):
                nursery.start_soon(welcome, i, client)
        return {"times": times}

    async def _hold_client(self, *, task_status: trio.TaskStatus[hulytrio.Client]
                           = trio.TASK_STATUS_IGNORED) -> None:
        self._serial += 1
        client_id = f"bench-{os.getpid()}-{self._serial}"
        async with hulytrio.open_client(self.url, client_id=client_id) as client:
            task_status.started(client)
            await trio.sleep_forever()

    async def agents(self, cmd: dict[str, Any]) -> dict[str, Any]:
        kind = str(cmd["kind"])
        per_client = int(cmd.get("per_client", 1))
        times = [0.0] * len(self.clients)

        async def host(i: int, client: hulytrio.Client) -> None:
            t = time.monotonic()
            for _ in range(per_client):
                self._serial += 1
                await client.serve_agent({kind: start_echo},
                                         agent_id=f"bench-{os.getpid()}-agent-{self._serial}")
            times[i] = time.monotonic() - t

        async with trio.open_nursery() as nursery:
            for i, client in enumerate(self.clients):
                nursery.start_soon(host, i, client)
        return {"times": times}

    async def prepare(self, cmd: dict[str, Any]) -> dict[str, Any]:
        direct = cmd["path"] == "direct"
        self.calls = []
        paths = []
        for client in self.clients:
            ref = await client.get("echo")
            if direct:
                conn = await self.stack.enter_async_context(ref.connect())
                paths.append("direct" if conn.direct else "hub")
                self.calls.append(conn.request)
            else:
                paths.append("hub")
                self.calls.append(ref.request)
        return {"paths": paths}

    async def echo(self, cmd: dict[str, Any]) -> dict[str, Any]:
        inflight = int(cmd["inflight"])
        size = int(cmd["payload"])
        start = float(cmd["start"])
        measure_from = start + float(cmd["warmup"])
        end = measure_from + float(cmd["duration"])
        data = "x" * size
        hist = Histogram()
        failures = {"errors": 0, "wrong": 0}

        async def loop(call: Call) -> None:
            clock = time.monotonic
            while True:
                t = clock()
                if t >= end:
                    return
                try:
                    result = await call("echo", data)
                except hulytrio.HulyError as exc:
                    failures["errors"] += 1
                    log.warning("echo failed: %r", exc)
                    await trio.sleep(0.01)
                    continue
                if t >= measure_from:
                    hist.add(clock() - t)
                    if result != data:
                        failures["wrong"] += 1

        await trio.sleep(max(0.0, start - time.monotonic()))
        async with trio.open_nursery() as nursery:
            for call in self.calls:
                for _ in range(inflight):
                    nursery.start_soon(loop, call)
        return {"hist": hist.to_json(), **failures}

    async def coldget(self, cmd: dict[str, Any]) -> dict[str, Any]:
        count = int(cmd["count"])
        warm = int(cmd["warm"])
        client = self.clients[0]
        hist = Histogram()
        for i in range(warm + count):
            t = time.monotonic()
            ref = await client.get("echo", uuid=f"cold-{os.getpid()}-{i}")
            elapsed = time.monotonic() - t
            if i >= warm:
                hist.add(elapsed)
            await ref.release()
        return {"hist": hist.to_json()}

    async def listen(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self.markers = tuple(str(m) for m in cmd["markers"])
        self.seen = [{} for _ in self.clients]
        self._missing = len(self.clients) * len(self.markers)
        self.all_seen = trio.Event()
        if self._missing == 0:
            self.all_seen.set()
        for i, client in enumerate(self.clients):
            self.nursery.start_soon(self._watch, i, client.updates())
        return {"listening": len(self.clients)}

    async def _watch(self, i: int, updates: hulytrio.Updates) -> None:
        wanted = set(self.markers)
        seen = self.seen[i]
        async for event in updates:
            now = time.monotonic()
            for change in event.agents:
                agent_id = change.agent.agent_id
                if (change.change is ChangeKind.ADDED and agent_id in wanted
                        and agent_id not in seen):
                    seen[agent_id] = now
                    self._missing -= 1
                    if self._missing == 0:
                        self.all_seen.set()
            if len(seen) == len(wanted):
                break
        await updates.aclose()

    async def collect(self, cmd: dict[str, Any]) -> dict[str, Any]:
        with trio.move_on_after(float(cmd["timeout"])):
            await self.all_seen.wait()
        return {"seen": [[seen.get(m) for seen in self.seen] for m in self.markers]}

    async def trigger(self, cmd: dict[str, Any]) -> dict[str, Any]:
        t0 = time.monotonic()
        await self.clients[0].serve_agent({"marker": start_echo}, agent_id=str(cmd["agent_id"]))
        return {"t0": t0, "registered_s": time.monotonic() - t0}


def _reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _serve(url: str) -> None:
    async with trio.open_nursery() as nursery:
        worker = Worker(url, nursery)
        _reply({"ready": True, "pid": os.getpid()})
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            if not line:
                break
            try:
                cmd = json.loads(line)
                reply = await worker.run_command(cmd)
            except (ValueError, KeyError, TypeError, hulytrio.HulyError) as exc:
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            _reply(reply)
        nursery.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve commands from stdin until it closes; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.harness.worker")
    parser.add_argument("--url", required=True, help="the hub, ws://HOST:PORT")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    trio.run(_serve, args.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
