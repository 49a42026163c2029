"""Containers for ``04_ha_failover.py``: one stateless (HA) counter every agent offers.

Run as an agent process::

    python -m hulytrio agent --url ws://127.0.0.1:3737 --factories ha_counter:FACTORIES
"""

from __future__ import annotations

import os

import hulytrio


class Counter(hulytrio.Container):
    async def request(self, operation, data=None, client_id=None):
        return {"agent": os.environ.get("AGENT_ID", "?"), "pid": os.getpid()}


async def start_counter(options):
    return Counter()


FACTORIES = {"counter": start_counter}

#: every agent offers the same uuid: the first serves, the others stand by
STATELESS = [hulytrio.StatelessContainer("ha-counter", "ha-counter", Counter())]
