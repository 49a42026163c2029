"""HA stateless failover: two agent processes offer one container; kill one.

Starts two ``hulytrio agent`` processes offering the stateless uuid
``ha-counter`` (see ``ha_counter.py``), calls it, SIGKILLs the serving agent
and shows the other one take over while the reference keeps working.
Run ``make serve`` first, then ``python examples/04_ha_failover.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import trio

import hulytrio

URL = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("HULY_URL", "ws://127.0.0.1:3737")
HERE = Path(__file__).resolve().parent


async def start_agent(agent_id: str) -> trio.Process:
    return await trio.lowlevel.open_process(
        [sys.executable, "-m", "hulytrio", "agent", "--url", URL,
         "--factories", "ha_counter:FACTORIES", "--agent-id", agent_id, "--log-level", "warning"],
        cwd=str(HERE), env={**os.environ, "AGENT_ID": agent_id}, stdout=subprocess.DEVNULL)


async def wait_for_agent(client: hulytrio.Client, agent_id: str) -> None:
    updates = client.updates()  # listen first, then look: no registration is missed
    try:
        if agent_id in [a.agent_id for a in await client.agents()]:
            return
        async for event in updates:
            if any(e.agent.agent_id == agent_id for e in event.agents):
                return
    finally:
        await updates.aclose()


async def main() -> None:
    agents = {}
    try:
        with trio.fail_after(30):
            async with hulytrio.open_client(URL) as client:
                for agent_id in ("ha-1", "ha-2"):
                    agents[agent_id] = await start_agent(agent_id)
                    await wait_for_agent(client, agent_id)
                ref = await client.get("ha-counter", uuid="ha-counter")
                serving = (await ref.request("who"))["agent"]
                print("served by", serving)
                killed_at = trio.current_time()
                agents[serving].send_signal(signal.SIGKILL)
                await agents[serving].wait()
                print(f"killed {serving}")
                reply = await ref.request("who")
                took = trio.current_time() - killed_at
                print(f"now served by {reply['agent']} ({took * 1000:.0f} ms after the kill)")
    finally:
        for proc in agents.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await proc.wait()


if __name__ == "__main__":
    trio.run(main)
