"""Failover figures over real sockets, with the hub and agents as separate processes.

Scenarios (each repeated ``--rounds`` times; median and worst printed):

- ``kill``: two agents offer one stateless container; SIGKILL the serving
  one; time from the kill until a request is served by the other.  The
  kernel closes the dead process's TCP connection, so the hub sees it at once.
- ``freeze``: the same with SIGSTOP: the process hangs with its socket open
  (a hung host), so only the alive timeout can tell; expect alive timeout
  plus at most one ping interval.
- ``close``: SIGTERM (clean shutdown: the agent unregisters); time until
  the other agent serves.
- ``hub-restart``: SIGKILL the hub and start a new one on the same port;
  time from the kill until an existing reference answers again (includes the
  new hub process's start-up, reported separately).
- ``hub-crash``: the hub runs under ``--supervise``; SIGKILL its worker
  process; time from the kill until an existing reference answers again
  (the supervisor forks a new worker at once).

Usage::

    .venv/bin/python -m benchmarks.harness --scenario failover  # 5 rounds, ~1 min
    .venv/bin/python -m benchmarks.failover          # the same, as a table
    .venv/bin/python -m benchmarks.failover --rounds 10 --alive 3 --scenario kill,close
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

import hulytrio

from .procs import child_environment, free_port

__all__ = ["SCENARIOS", "main", "measure"]

UUID = "bench-ha"
#: every figure this module can measure, in the order they are run
SCENARIOS = ("kill", "freeze", "close", "hub-restart", "hub-crash")


async def spawn(*args: str, env: dict[str, str] | None = None) -> trio.Process:
    """Start ``python -m hulytrio ARGS`` quietly (the working directory is inherited)."""
    return await trio.lowlevel.open_process(
        [sys.executable, "-m", "hulytrio", *args, "--log-level", "error"],
        env=child_environment(env),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def hub(port: int, alive: float, *extra: str) -> trio.Process:
    return await spawn("serve", "--host", "127.0.0.1", "--port", str(port),
                       "--alive-timeout", str(alive), *extra)


async def agent(url: str, agent_id: str) -> trio.Process:
    return await spawn("agent", "--url", url, "--factories", "benchmarks.harness.ha:FACTORIES",
                       "--agent-id", agent_id, env={"AGENT_ID": agent_id})


async def wait_agent(client: hulytrio.Client, agent_id: str) -> None:
    updates = client.updates()  # listen first, then look: no registration is missed
    try:
        if agent_id in [a.agent_id for a in await client.agents()]:
            return
        async for event in updates:
            if any(e.agent.agent_id == agent_id for e in event.agents):
                return
    finally:
        await updates.aclose()


async def stop(proc: trio.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
    await proc.wait()


async def standby_round(url: str, how: str, n: int) -> float:
    """One agent-failover measurement; returns seconds until the standby served."""
    procs = {}
    try:
        async with hulytrio.open_client(url) as client:
            for name in (f"a{n}", f"b{n}"):
                procs[name] = await agent(url, name)
                await wait_agent(client, name)
            ref = await client.get("ha", uuid=UUID)
            owner = (await ref.request("who"))["agent"]
            victim = procs[owner]
            start = trio.current_time()
            victim.send_signal({"kill": signal.SIGKILL, "freeze": signal.SIGSTOP,
                                "close": signal.SIGTERM}[how])
            # A clean close may still answer what reached it before the signal
            # did: the figure is the time until the standby answers.
            while (await ref.request("who"))["agent"] == owner:
                pass
            return trio.current_time() - start
    finally:
        for proc in procs.values():
            await stop(proc)


async def wait_listening(port: int) -> float:
    """Return when a TCP connection to ``port`` first succeeds (polling every 5 ms)."""
    while True:
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            await trio.sleep(0.005)
            continue
        await stream.aclose()
        return trio.current_time()


class _HubRound:
    """One hub round's processes and the reference the measuring client holds."""

    def __init__(self, port: int, hub_proc: trio.Process, ref: hulytrio.ContainerReference
                 ) -> None:
        self.port = port
        self.hub_proc = hub_proc  # replaced when the round starts a new hub
        self.ref = ref


@asynccontextmanager
async def _hub_round(alive: float, *hub_args: str) -> AsyncIterator[_HubRound]:
    """Start a hub (with ``hub_args``) and an agent; yield a round holding the HA reference.

    The agent and whichever hub process the round ends with are stopped on exit.
    """
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    hub_proc = await hub(port, alive, *hub_args)
    agent_proc = await agent(url, "steady")
    rnd: _HubRound | None = None
    try:
        async with hulytrio.open_client(url) as client:
            await wait_agent(client, "steady")
            ref = await client.get("ha", uuid=UUID)
            await ref.request("before")
            rnd = _HubRound(port, hub_proc, ref)
            yield rnd
    finally:
        await stop(agent_proc)
        await stop(rnd.hub_proc if rnd is not None else hub_proc)


async def hub_restart_round(alive: float) -> tuple[float, float, float]:
    """Returns (kill -> reference usable, new hub spawned -> listening, listening -> usable)."""
    async with _hub_round(alive) as rnd:
        start = trio.current_time()
        rnd.hub_proc.kill()
        await rnd.hub_proc.wait()
        spawned = trio.current_time()
        rnd.hub_proc = await hub(rnd.port, alive)
        listening = await wait_listening(rnd.port)
        await rnd.ref.request("after")
        end = trio.current_time()
        return end - start, listening - spawned, end - listening


def children(pid: int) -> list[int]:
    """Return the child processes of ``pid`` (Linux)."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


async def hub_crash_round(alive: float) -> float:
    """Returns kill of a supervised hub's worker -> reference usable, in seconds."""
    async with _hub_round(alive, "--supervise") as rnd:
        [worker] = children(rnd.hub_proc.pid)
        start = trio.current_time()
        os.kill(worker, signal.SIGKILL)
        await rnd.ref.request("after")
        return trio.current_time() - start


def summary(key: str, name: str, values: list[float], *, show: bool = True
            ) -> dict[str, object]:
    """Return one figure's row (``key`` names it in metrics); print it if ``show``."""
    ms = sorted(v * 1000 for v in values)
    row: dict[str, object] = {
        "key": key, "scenario": name, "rounds": len(ms),
        "median_ms": round(statistics.median(ms), 1), "worst_ms": round(ms[-1], 1),
        "best_ms": round(ms[0], 1)}
    if show:
        print(f"{name:<34} median {row['median_ms']:>8} ms   best {row['best_ms']:>8} ms   "
              f"worst {row['worst_ms']:>8} ms")
    return row


async def measure(rounds: int, alive: float, scenarios: list[str], *, show: bool = True
                  ) -> list[dict[str, object]]:
    """Run ``scenarios``, ``rounds`` times each; returns one summary row per figure.

    With ``show`` each figure is also printed as it is measured.
    """
    rows = []
    if show:
        print(f"hulytrio failover, {rounds} rounds, alive timeout {alive} s, "
              "ping interval 1 s")
    if any(s in scenarios for s in ("kill", "freeze", "close")):
        port = free_port()
        url = f"ws://127.0.0.1:{port}"
        hub_proc = await hub(port, alive)
        try:
            async with hulytrio.open_client(url) as probe:
                await probe.wait_connection()
            for how, label in (("kill", "agent SIGKILL -> standby serving"),
                               ("freeze", "agent SIGSTOP -> standby serving"),
                               ("close", "agent SIGTERM -> standby serving")):
                if how not in scenarios:
                    continue
                values = []
                for n in range(rounds):
                    with trio.fail_after(alive * 3 + 20):
                        values.append(await standby_round(url, how, n))
                rows.append(summary(f"agent_{how}", label, values, show=show))
        finally:
            await stop(hub_proc)
    if "hub-restart" in scenarios:
        total, startup, rebuild = [], [], []
        for _ in range(rounds):
            with trio.fail_after(30):
                t, s, r = await hub_restart_round(alive)
            total.append(t)
            startup.append(s)
            rebuild.append(r)
        rows.append(summary("hub_restart", "hub SIGKILL+restart -> ref usable", total,
                            show=show))
        rows.append(summary("hub_startup", "  new hub process start-up", startup, show=show))
        rows.append(summary("hub_rebuild", "  hub listening -> ref usable", rebuild,
                            show=show))
    if "hub-crash" in scenarios:
        values = []
        for _ in range(rounds):
            with trio.fail_after(30):
                values.append(await hub_crash_round(alive))
        rows.append(summary("hub_crash_supervised",
                            "supervised hub worker SIGKILL -> ref usable", values, show=show))
    return rows


def main(argv: list[str] | None = None) -> int:
    """The command line (also what ``python -m benchmarks`` runs, with defaults)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--alive", type=float, default=3.0, help="hub alive timeout (s)")
    parser.add_argument("--scenario", default=",".join(SCENARIOS))
    parser.add_argument("--json", help="append one JSON line per figure to this file")
    args = parser.parse_args(argv)
    figures = trio.run(measure, args.rounds, args.alive, args.scenario.split(","))
    if args.json:
        with open(args.json, "a") as out:
            for row in figures:
                out.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
