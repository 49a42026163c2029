"""The container ``benchmarks/failover.py`` runs in its agent processes."""

from __future__ import annotations

import os

import hulytrio


class Who(hulytrio.Container):
    """Answers with the id of the agent serving it."""

    async def request(self, operation, data=None, client_id=None):
        return {"agent": os.environ.get("AGENT_ID", "?")}


async def start_who(options):
    return Who()


FACTORIES = {"who": start_who}
STATELESS = [hulytrio.StatelessContainer("bench-ha", "ha", Who())]
