"""State that survives: a counter restored on a new agent after a clean stop.

Run the hub first (``make serve``), then ``python examples/05_state.py``
(another hub: pass its URL, e.g. ``ws://host:3737``, or set HULY_URL).  The
state store is a SQLite file in a temporary directory.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid

import trio

import hulytrio
import hulytrio.state

URL = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("HULY_URL", "ws://127.0.0.1:3737")


class Counter(hulytrio.Container):
    def __init__(self) -> None:
        self.count = 0

    async def request(self, operation, data=None, client_id=None):
        if operation == "inc":
            self.count += 1
            self.state_version += 1  # changed: the next checkpoint saves it
        return self.count

    async def export_state(self):  # bytes or any msgpack-able value
        return {"count": self.count}

    async def import_state(self, state):  # what export_state returned, before any request
        self.count = state["count"]


async def start_counter(options: hulytrio.GetOptions) -> hulytrio.Container:
    return Counter()


async def main() -> None:
    store_url = f"sqlite:{tempfile.mkdtemp(prefix='hulytrio-example-')}/state.db"
    name = f"visits-{uuid.uuid4().hex[:8]}"
    with trio.fail_after(20):  # the hub must be up: `make serve`
        async with hulytrio.state.open_state_store(store_url) as store, \
                hulytrio.open_client(URL) as caller:
            async with hulytrio.open_client(URL) as host:
                await host.serve_agent({"counter": start_counter}, agent_id="first",
                                       state_store=store, checkpoint_interval=60)
                ref = await caller.get("counter", uuid=name)
                for _ in range(3):
                    print("count:", await ref.request("inc"))
            print("first agent stopped cleanly; saved:",
                  [(i.uuid == name, i.epoch) for i in await store.list()])
            async with hulytrio.open_client(URL) as host:
                await host.serve_agent({"counter": start_counter}, agent_id="second",
                                       state_store=store)
                print("after the move:", await ref.request("inc"))
                await ref.release()


if __name__ == "__main__":
    trio.run(main)
