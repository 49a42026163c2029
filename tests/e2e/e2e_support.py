"""Shared by the e2e tests: free ports, hub and agent processes, waiting."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import trio

import hulytrio

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _command() -> list[str]:
    # ``python -m hulytrio`` needs every sub-command module to import; fall
    # back to the transport's own entry point while one is missing.
    try:
        import hulytrio.cli as cli
        cli.build_parser()
    except ImportError:
        return [sys.executable, "-m", "hulytrio.transport.commands"]
    return [sys.executable, "-m", "hulytrio"]


class Processes:
    """Starts hub and agent processes; kills whatever is left at teardown."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: list[trio.Process] = []
        self.count = 0

    async def start(self, *args: str, env: dict[str, str] | None = None) -> trio.Process:
        self.count += 1
        log = self._log_file()
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "info",
                    **(env or {})}
        proc = await trio.lowlevel.open_process(
            [*_command(), *args], stdout=log, stderr=subprocess.STDOUT, env=full_env,
            cwd=str(HERE))
        log.close()
        self.procs.append(proc)
        return proc

    def _log_file(self):
        return open(self.tmp / f"proc{self.count}.log", "wb")

    async def hub(self, port: int, *extra: str) -> trio.Process:
        return await self.start("serve", "--host", "127.0.0.1", "--port", str(port), *extra)

    async def agent(self, url: str, agent_id: str, *extra: str,
                    env: dict[str, str] | None = None) -> trio.Process:
        return await self.start("agent", "--url", url, "--factories",
                                "e2e_containers:FACTORIES", "--agent-id", agent_id, *extra,
                                env={"AGENT_ID": agent_id, **(env or {})})

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.tmp.glob("*.log")))

    async def cleanup(self) -> None:
        with trio.move_on_after(10):
            for proc in self.procs:
                if proc.returncode is None:
                    proc.kill()
                await proc.wait()


async def kill(proc: trio.Process, sig: int = signal.SIGKILL) -> None:
    proc.send_signal(sig)
    with trio.fail_after(10):
        await proc.wait()


async def wait_for(predicate, *, interval: float = 0.02):
    """Poll ``predicate`` (sync or async) until truthy; returns its value."""
    while True:
        value = predicate()
        if hasattr(value, "__await__"):
            value = await value
        if value:
            return value
        await trio.sleep(interval)


async def agent_ids(client: hulytrio.Client) -> list[str]:
    return sorted(a.agent_id for a in await client.agents())
