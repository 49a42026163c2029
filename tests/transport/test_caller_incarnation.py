"""A restarted caller under a fixed client id is never answered from its predecessor's memory.

The agent's answer memory (``core/answers.py``) is keyed by the caller's
peer id and its call id.  Two client instances with the same ``client_id``
stand for a process and its restart: each numbers its calls from its own
random offset (``transport/client.py``, ``CALL_ID_OFFSET_BITS``), so the
second one's request runs, though it repeats the first one's call number,
operation and payload within the memory's 60 s.
"""

from __future__ import annotations

from typing import Any

import trio

import hulytrio


class Counter(hulytrio.Container):
    """Answers how many requests it has run."""

    def __init__(self) -> None:
        self.runs = 0

    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        self.runs += 1
        return self.runs


async def test_a_restarted_caller_with_the_same_client_id_runs_its_request_again():
    counter = Counter()

    async def start(options: hulytrio.GetOptions) -> hulytrio.Container:
        return counter

    with trio.fail_after(20):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as host:
            await host.serve_agent({"counter": start})
            async with hulytrio.open_client(hub.url, client_id="billing") as first:
                ref = await first.get("counter", uuid="counter-1")
                assert await ref.request("count", "same") == 1
                first_ref = ref.ref_id
            async with hulytrio.open_client(hub.url, client_id="billing") as second:
                ref = await second.get("counter", uuid="counter-1")
                # Same container instance, same peer id, same call sequence,
                # operation and payload: it runs (2), it is not the first's 1.
                assert await ref.request("count", "same") == 2
                assert ref.ref_id != first_ref
            assert counter.runs == 2

