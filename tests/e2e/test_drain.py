"""Draining shutdown with separate processes: SIGTERM an agent, then a hub, under load.

Every request gets an answer (none lost, none hanging), the processes exit 0
(docs/operations.md, "Stopping and draining").
"""

from __future__ import annotations

import json
import signal
from collections import Counter

import trio
from e2e_support import agent_ids, free_port, wait_for

import hulytrio
from hulytrio.transport.http import fetch

ALIVE = 1.0
PING = 0.25
FAST = hulytrio.Timeouts(alive=ALIVE, ping_interval=PING)
#: Each request of the load must be answered within this (none may hang).
ANSWER_WITHIN = 15.0


class Load:
    """Tasks that call their references continuously and record every answer."""

    def __init__(self) -> None:
        self.answers: Counter[str] = Counter()
        self.last: dict[str, str] = {}
        self.stop = trio.Event()

    async def run(self, name: str, ref: hulytrio.ContainerReference, seconds: float) -> None:
        while not self.stop.is_set():
            with trio.fail_after(ANSWER_WITHIN):
                reply = await ref.request("sleep", seconds)
            self.answers[name] += 1
            self.last[name] = reply["agent"]


async def _has_agent(client: hulytrio.Client, agent_id: str) -> bool:
    return agent_id in await agent_ids(client)


async def test_sigterm_an_agent_under_load_moves_its_containers_and_loses_nothing(procs):
    with trio.fail_after(60):
        async with hulytrio.serve_network(port=0, timeouts=FAST) as hub, \
                hulytrio.open_client(hub.url) as c:
            env = {"E2E_HA_UUID": "ha-1"}
            first = await procs.agent(hub.url, "a", env=env)
            await wait_for(lambda: _has_agent(c, "a"))
            second = await procs.agent(hub.url, "b", env=env)
            await wait_for(lambda: _has_agent(c, "b"))
            ha = await c.get("ha", uuid="ha-1")
            on_a = await c.get("echo", labels=["x"])
            on_b = await c.get("echo", labels=["y"])
            assert (await ha.request("who"))["agent"] == "a"
            assert (await on_a.request("who"))["agent"] == "a"
            assert (await on_b.request("who"))["agent"] == "b"
            load = Load()
            async with trio.open_nursery() as nursery:
                for i in range(3):
                    nursery.start_soon(load.run, f"ha{i}", ha, 0.05)
                    nursery.start_soon(load.run, f"on_a{i}", on_a, 0.05)
                    nursery.start_soon(load.run, f"on_b{i}", on_b, 0.01)
                # A long request is in flight on "a" when it is told to stop:
                # it is answered there, not failed and re-run elsewhere.
                slow_answer: list[dict[str, object]] = []

                async def slow() -> None:
                    slow_answer.append(await on_a.request("sleep", 1.0))

                nursery.start_soon(slow)
                await trio.sleep(0.5)
                before = sum(load.answers.values())
                first.send_signal(signal.SIGTERM)
                with trio.fail_after(20):
                    await first.wait()
                assert first.returncode == 0, procs.logs()
                await trio.sleep(0.5)  # the load goes on after the agent is gone
                load.stop.set()
            # Every task ran to the end without an error or a hang, and kept
            # being answered after the drain.
            assert sum(load.answers.values()) > before, load.answers
            assert slow_answer[0]["agent"] == "a"
            assert hub.hub.probes.counts["agent drained"] == 1
            assert hub.hub.probes.counts["drained container dropped"] >= 1
            assert {load.last[f"ha{i}"] for i in range(3)} == {"b"}
            assert {load.last[f"on_a{i}"] for i in range(3)} == {"b"}
            assert ha.uuid == "ha-1"
            reply = await ha.request("who")
            assert (reply["agent"], reply["uuid"]) == ("b", "ha-1")
            assert await agent_ids(c) == ["b"]
            assert "drained and closed" in procs.logs()
            second.send_signal(signal.SIGTERM)
            with trio.fail_after(20):
                await second.wait()
            assert second.returncode == 0, procs.logs()


async def test_sigterm_the_hub_under_load_answers_in_flight_and_clients_come_back(procs):
    with trio.fail_after(60):
        port = free_port()
        url = f"ws://127.0.0.1:{port}"
        grace = 5.0
        hub = await procs.hub(port, "--alive-timeout", str(ALIVE), "--shutdown-timeout",
                              str(grace))
        agent = await procs.agent(url, "steady")
        async with hulytrio.open_client(url) as c:
            await c.wait_connection()
            await wait_for(lambda: _has_agent(c, "steady"))
            ref = await c.get("echo")
            assert await fetch(url, "/ready") == (200, b'{"ready":true,"role":"active"}')
            load = Load()
            async with trio.open_nursery() as nursery:
                for i in range(4):
                    nursery.start_soon(load.run, f"short{i}", ref, 0.02)
                await trio.sleep(0.3)
                # A long request is in flight when the hub is told to stop.
                long_call = trio.Event()
                long_answer: list[object] = []

                async def slow() -> None:
                    long_answer.append(await ref.request("sleep", 1.5))
                    long_call.set()

                nursery.start_soon(slow)
                await trio.sleep(0.2)
                stopped_at = trio.current_time()
                hub.send_signal(signal.SIGTERM)
                # Draining: not ready at once, alive, and says so.
                status, body = await wait_for(lambda: _not_ready(url))
                assert json.loads(body) == {"ready": False, "role": "draining"}
                status, body = await fetch(url, "/health")
                assert (status, json.loads(body)["role"]) == (200, "draining")
                with trio.fail_after(grace + 5):
                    await hub.wait()
                assert hub.returncode == 0, procs.logs()
                assert trio.current_time() - stopped_at < grace + 2
                # The request that was in flight was answered by the old hub.
                assert long_call.is_set()
                assert long_answer[0]["agent"] == "steady"  # type: ignore[index]
                assert c.session.probes.counts["hub said close"] >= 1
                answered_while_down = sum(load.answers.values())
                hub = await procs.hub(port, "--alive-timeout", str(ALIVE))
                await wait_for(lambda: sum(load.answers.values()) > answered_while_down + 20)
                load.stop.set()
            assert (await ref.request("who"))["agent"] == "steady"
            assert " drained: " in procs.logs()  # the hub's "hub H drained: N connections left"
        for proc in (agent, hub):
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(20):
                await proc.wait()
            assert proc.returncode == 0, procs.logs()


async def _not_ready(url: str) -> tuple[int, bytes] | None:
    status, body = await fetch(url, "/ready")
    return (status, body) if status == 503 else None
