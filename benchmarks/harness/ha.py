"""The container the failover benchmark runs in its agent processes.

``python -m hulytrio agent --factories benchmarks.harness.ha:FACTORIES``: kind
"who" answers with the serving agent's id, and the stateless "bench-ha"
offer is the container whose failover is timed.
"""

from __future__ import annotations

import os
from typing import Any

import hulytrio


class Who(hulytrio.Container):
    """Answers with the id of the agent serving it."""

    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        return {"agent": os.environ.get("AGENT_ID", "?")}


async def start_who(options: hulytrio.GetOptions) -> hulytrio.Container:
    return Who()


FACTORIES: dict[str, hulytrio.Factory] = {"who": start_who}
STATELESS = [hulytrio.StatelessContainer("bench-ha", "ha", Who())]
