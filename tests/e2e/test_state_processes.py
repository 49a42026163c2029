"""Container state with agent processes: SIGTERM saves everything, SIGKILL loses at most
the changes since the last checkpoint."""

from __future__ import annotations

import signal
from typing import Any

import trio
from e2e_support import kill, wait_for

import hulytrio
from hulytrio.state import open_state_store
from hulytrio.wire.codec import decode_payload

FAST = hulytrio.Timeouts(alive=1.0, ping_interval=0.25)


async def _agent(procs, url: str, agent_id: str, state: str, interval: str) -> trio.Process:
    return await procs.start("agent", "--url", url, "--factories", "e2e_containers:STATEFUL",
                             "--agent-id", agent_id, "--state", state,
                             "--checkpoint-interval", interval, env={"AGENT_ID": agent_id})


async def _saved(state: str, uuid: str) -> Any:
    async with open_state_store(state) as store:
        got = await store.get(uuid)
    return None if got is None else decode_payload(got.state)


async def test_sigterm_saves_the_state_and_the_next_agent_restores_it(procs, tmp_path):
    state = f"sqlite:{tmp_path}/state.db"
    with trio.fail_after(40):
        async with hulytrio.serve_network(port=0, timeouts=FAST) as hub, \
                hulytrio.open_client(hub.url) as caller:
            first = await _agent(procs, hub.url, "s1", state, "60")
            ref = await caller.get("counter", uuid="term-1")
            for _ in range(5):
                reply = await ref.request("inc")
            assert reply == {"count": 5, "agent": "s1"}
            await kill(first, signal.SIGTERM)
            assert first.returncode == 0, procs.logs()
            assert await _saved(state, "term-1") == {"count": 5}, procs.logs()
            await _agent(procs, hub.url, "s2", state, "60")
            assert await ref.request("inc") == {"count": 6, "agent": "s2"}, procs.logs()


async def test_a_crash_loses_only_the_changes_since_the_last_checkpoint(procs, tmp_path):
    state = f"sqlite:{tmp_path}/state.db"
    with trio.fail_after(40):
        async with hulytrio.serve_network(port=0, timeouts=FAST) as hub, \
                hulytrio.open_client(hub.url) as caller:
            first = await _agent(procs, hub.url, "k1", state, "2")
            ref = await caller.get("counter", uuid="crash-1")
            for _ in range(3):
                await ref.request("inc")
            # the first periodic checkpoint (about 2 s in) saves the three
            await wait_for(lambda: _saved(state, "crash-1"), interval=0.05)
            assert await _saved(state, "crash-1") == {"count": 3}
            # two more, well before the next checkpoint, then the agent dies
            await ref.request("inc")
            assert await ref.request("inc") == {"count": 5, "agent": "k1"}
            await kill(first, signal.SIGKILL)
            assert await _saved(state, "crash-1") == {"count": 3}
            await _agent(procs, hub.url, "k2", state, "2")
            # restored from the last checkpoint: the two changes after it are lost
            assert await ref.request("get") == {"count": 3, "agent": "k2"}, procs.logs()
