"""End to end with hubs and agents as separate processes (kill, restart, failover)."""

from __future__ import annotations

import os
import signal

import trio
from e2e_support import agent_ids, free_port, kill, wait_for

import hulytrio

ALIVE = 1.0
PING = 0.25
FAST = hulytrio.Timeouts(alive=ALIVE, ping_interval=PING)


async def _removed(updates: hulytrio.Updates, uuid: str) -> float:
    """Wait for the event removing container ``uuid``; returns when it arrived."""
    async for event in updates:
        for ce in event.containers:
            if ce.container.uuid == uuid and ce.change.value == "removed":
                return trio.current_time()
    raise AssertionError("updates ended")


async def test_agent_killed_containers_removed_within_alive_timeout(procs):
    with trio.fail_after(30):
        async with hulytrio.serve_network(port=0, timeouts=FAST) as hub, \
                hulytrio.open_client(hub.url) as c:
            proc = await procs.agent(hub.url, "doomed")
            await wait_for(lambda: _has_agent(c, "doomed"))
            ref = await c.get("echo")
            assert (await ref.request("hi"))["agent"] == "doomed"
            updates = c.updates()
            killed_at = trio.current_time()
            await kill(proc, signal.SIGKILL)
            removed_at = await _removed(updates, ref.uuid)
            assert removed_at - killed_at < ALIVE + PING, procs.logs()
            assert "doomed" not in await agent_ids(c)


async def test_hung_agent_removed_by_alive_timeout(procs):
    # SIGSTOP: the process keeps its socket open but goes silent (a hung host).
    with trio.fail_after(30):
        async with hulytrio.serve_network(port=0, timeouts=FAST) as hub, \
                hulytrio.open_client(hub.url) as c:
            proc = await procs.agent(hub.url, "frozen")
            await wait_for(lambda: _has_agent(c, "frozen"))
            ref = await c.get("echo")
            updates = c.updates()
            stopped_at = trio.current_time()
            proc.send_signal(signal.SIGSTOP)
            try:
                removed_at = await _removed(updates, ref.uuid)
            finally:
                proc.send_signal(signal.SIGCONT)
            took = removed_at - stopped_at
            assert ALIVE - PING <= took < ALIVE + PING + 0.5, procs.logs()


async def test_clean_agent_close_removes_at_once(procs):
    # The default alive timeout (3 s): removal must not wait for it.
    with trio.fail_after(30):
        async with hulytrio.serve_network(port=0) as hub, hulytrio.open_client(hub.url) as c:
            proc = await procs.agent(hub.url, "polite")
            await wait_for(lambda: _has_agent(c, "polite"))
            ref = await c.get("echo")
            updates = c.updates()
            stopped_at = trio.current_time()
            await kill(proc, signal.SIGTERM)
            assert proc.returncode == 0, procs.logs()
            removed_at = await _removed(updates, ref.uuid)
            assert removed_at - stopped_at < 1.0, procs.logs()
            assert "polite" not in await agent_ids(c)


async def test_ha_stateless_failover_between_agent_processes(procs):
    with trio.fail_after(30):
        async with hulytrio.serve_network(port=0, timeouts=FAST) as hub, \
                hulytrio.open_client(hub.url) as c:
            env = {"E2E_HA_UUID": "ha-1"}
            first = await procs.agent(hub.url, "ha-a", env=env)
            await wait_for(lambda: _has_agent(c, "ha-a"))
            second = await procs.agent(hub.url, "ha-b", env=env)
            await wait_for(lambda: _has_agent(c, "ha-b"))
            ref = await c.get("ha", uuid="ha-1")
            owner = (await ref.request("who"))["agent"]
            assert owner == "ha-a", "the first registration wins"
            killed_at = trio.current_time()
            await kill(first, signal.SIGKILL)
            reply = await ref.request("who")
            took = trio.current_time() - killed_at
            assert reply["agent"] == "ha-b"
            assert reply["uuid"] == "ha-1" == ref.uuid
            assert took < ALIVE + PING, procs.logs()
            # and back: a restarted first agent stands by, the second keeps serving
            first = await procs.agent(hub.url, "ha-a", env=env)
            await wait_for(lambda: _has_agent(c, "ha-a"))
            assert (await ref.request("who"))["agent"] == "ha-b"
            await kill(second, signal.SIGTERM)
            assert (await ref.request("who"))["agent"] == "ha-a"


async def test_hub_killed_and_restarted_reference_works_again(procs):
    with trio.fail_after(40):
        port = free_port()
        url = f"ws://127.0.0.1:{port}"
        hub = await procs.hub(port, "--alive-timeout", str(ALIVE))
        agent = await procs.agent(url, "steady")
        async with hulytrio.open_client(url) as c:
            await c.wait_connection()
            await wait_for(lambda: _has_agent(c, "steady"))
            ref = await c.get("echo")
            uuid = ref.uuid
            pid = (await ref.request("before"))["pid"]
            await kill(hub, signal.SIGKILL)
            restarted_at = trio.current_time()
            hub = await procs.hub(port, "--alive-timeout", str(ALIVE))
            # No user code: the agent re-registers, the reference re-acquires.
            reply = await ref.request("after")
            assert reply["uuid"] == uuid == ref.uuid
            assert reply["pid"] == pid
            usable = trio.current_time() - restarted_at
            assert usable < 10, procs.logs()
            assert await agent_ids(c) == ["steady"]
        await kill(agent, signal.SIGTERM)
        assert agent.returncode == 0, procs.logs()
        await kill(hub, signal.SIGTERM)
        assert hub.returncode == 0, procs.logs()


async def test_agent_process_direct_endpoint(procs):
    with trio.fail_after(30):
        async with hulytrio.serve_network(port=0) as hub, hulytrio.open_client(hub.url) as c:
            port = free_port()
            await procs.agent(hub.url, "direct", "--endpoint", f"127.0.0.1:{port}")
            await wait_for(lambda: _has_agent(c, "direct"))
            ref = await c.get("echo")
            assert ref.record.endpoint == f"ws://127.0.0.1:{port}"
            async with ref.connect() as conn:
                assert conn.direct
                events = conn.events()
                assert await events.__anext__() == {"welcome": c.client_id}
                assert (await conn.request("direct"))["agent"] == "direct"
                assert await conn.request("emit", "ping") == 1
                assert await events.__anext__() == "ping"


async def _has_agent(client: hulytrio.Client, agent_id: str) -> bool:
    return agent_id in await agent_ids(client)


def _children(pid: int) -> list[int]:
    """Return the child processes of ``pid`` (Linux)."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_supervised_hub_worker_killed_is_replaced_and_references_work(procs):
    with trio.fail_after(40):
        port = free_port()
        url = f"ws://127.0.0.1:{port}"
        hub = await procs.hub(port, "--alive-timeout", str(ALIVE), "--supervise")
        agent = await procs.agent(url, "steady")
        async with hulytrio.open_client(url) as c:
            await wait_for(lambda: _has_agent(c, "steady"))
            ref = await c.get("echo")
            pid = (await ref.request("before"))["pid"]
            [worker] = _children(hub.pid)
            os.kill(worker, signal.SIGKILL)
            killed_at = trio.current_time()
            reply = await ref.request("after")
            assert reply["pid"] == pid
            assert trio.current_time() - killed_at < 5, procs.logs()
            [second] = await wait_for(lambda: _children(hub.pid))
            assert second != worker
            assert hub.returncode is None, "the supervisor lives on"
        await kill(agent, signal.SIGTERM)
        # SIGTERM to the supervisor stops the worker cleanly, then itself.
        await kill(hub, signal.SIGTERM)
        assert hub.returncode == 0, procs.logs()
        await wait_for(lambda: not _alive(second))
        assert "killed by SIGKILL" in procs.logs()


async def test_supervised_hub_worker_ends_when_the_supervisor_is_killed(procs):
    with trio.fail_after(40):
        port = free_port()
        hub = await procs.hub(port, "--supervise")
        async with hulytrio.open_client(f"ws://127.0.0.1:{port}") as c:
            await c.wait_connection()
            [worker] = _children(hub.pid)
        await kill(hub, signal.SIGKILL)
        await wait_for(lambda: not _alive(worker))
        assert "the supervisor is gone" in procs.logs()
