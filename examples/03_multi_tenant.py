"""Multi-tenant labels: one container per tenant, reused by every get with its labels.

Run ``make serve`` first, then ``python examples/03_multi_tenant.py``.
"""

from __future__ import annotations

import os
import sys

import trio

import hulytrio

URL = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("HULY_URL", "ws://127.0.0.1:3737")


class Counter(hulytrio.Container):
    def __init__(self, tenant: tuple[str, ...]) -> None:
        self.tenant = tenant
        self.count = 0

    async def request(self, operation, data=None, client_id=None):
        self.count += data or 1
        return {"tenant": list(self.tenant), "count": self.count}


async def start_counter(options):
    return Counter(options.labels)


async def main() -> None:
    with trio.fail_after(10):
        async with hulytrio.open_client(URL) as agent_side:
            await agent_side.serve_agent({"counter": start_counter})
            async with hulytrio.open_client(URL) as alice, hulytrio.open_client(URL) as bob:
                a1 = await alice.get("counter", labels=["tenant-a"])
                a2 = await bob.get("counter", labels=["tenant-a"])
                b1 = await bob.get("counter", labels=["tenant-b"])
                print("tenant-a shared:", a1.uuid == a2.uuid, a1.uuid)
                print("tenant-b apart: ", b1.uuid != a1.uuid, b1.uuid)
                print(await a1.request("add", 1))
                print(await a2.request("add", 10))
                print(await b1.request("add", 100))
                for record in await alice.list("counter"):
                    print("  hub lists", record.uuid, record.labels)


if __name__ == "__main__":
    trio.run(main)
