"""The examples run as they are against ``hulytrio serve`` (the README's promise)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import trio
from e2e_support import ROOT, free_port, kill

import hulytrio

EXAMPLES = {
    "01_request_response.py": ["reply: {'op': 'hello'", "remote error: ZeroDivisionError"],
    "02_events.py": ["connected directly to the agent", "event: {'tick': 2}"],
    "03_multi_tenant.py": ["tenant-a shared: True", "tenant-b apart:  True",
                           "{'tenant': ['tenant-a'], 'count': 11}"],
    "04_ha_failover.py": ["served by ha-1", "now served by ha-2"],
    "05_state.py": ["count: 3", "after the move: 4"],
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
async def test_example_runs_against_hulytrio_serve(procs, name):
    with trio.fail_after(60):
        port = free_port()
        url = f"ws://127.0.0.1:{port}"
        hub = await procs.hub(port)
        async with hulytrio.open_client(url) as probe:
            await probe.wait_connection()
        result = await trio.run_process(
            [sys.executable, str(ROOT / "examples" / name), url], capture_stdout=True,
            stderr=subprocess.STDOUT, check=False, cwd=str(ROOT),
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        out = result.stdout.decode(errors="replace")
        assert result.returncode == 0, out
        for line in EXAMPLES[name]:
            assert line in out, out
        await kill(hub, signal.SIGTERM)
