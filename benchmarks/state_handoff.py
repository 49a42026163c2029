"""Clean handoff of a stateless container with a large state to its standby.

Usage: python -m benchmarks.state_handoff [--size BYTES] [--rounds R] [--postgresql URL]
       [--thread]

A hub, a caller and two agents in one process on loopback, sharing one
store: both agents offer the stateless uuid, the first serves, the other
stands by.  The caller changes the state (SIZE bytes, 1 MB by default), then
the owner stops cleanly while the caller sends a request at once, both ways
in turn: ``agent.drain()`` (SIGTERM to ``hulytrio agent``: hold its
requests, last checkpoint, then the hub hands the uuid over) and
``agent.aclose()`` (the same, then unregister).  The store runs in a child
process, as ``hulytrio agent`` runs it (``--thread``: on a worker thread, the
library's default).  Measured from the owner's stop to that request's
answer from the standby
(which claims and imports the state before serving it), and beside it the
store's own times for the same state: one write (the last checkpoint) and
one read (the standby's claim).  Target (issue "container state"): the first
request on the standby within 100 ms plus the store's read time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any

import trio

import hulytrio
from hulytrio.state import StateStore, open_state_store

UUID = "blob-1"


class Blob(hulytrio.Container):
    """A container whose state is one large bytes value; ``touch`` changes a byte."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.state = bytearray(size)

    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        if operation == "touch":
            self.state[data % len(self.state)] = (self.state[data % len(self.state)] + 1) % 256
            self.state_version += 1
        return {"agent": self.name, "size": len(self.state)}

    async def export_state(self) -> Any:
        return bytes(self.state)

    async def import_state(self, state: Any) -> None:
        self.state = bytearray(state)


async def one_round(hub_url: str, store: StateStore, size: int, r: int, how: str
                    ) -> dict[str, float]:
    """Return the handoff's seconds, and the store's write and read for its state."""
    async with hulytrio.open_client(hub_url) as caller, \
            hulytrio.open_client(hub_url) as owner_host, \
            hulytrio.open_client(hub_url) as standby_host:
        owner = await owner_host.serve_agent(
            {}, agent_id=f"owner-{r}", state_store=store,
            stateless=[hulytrio.StatelessContainer(UUID, "blob", Blob("owner", size))])
        await standby_host.serve_agent(
            {}, agent_id=f"standby-{r}", state_store=store,
            stateless=[hulytrio.StatelessContainer(UUID, "blob", Blob("standby", size))])
        ref = await caller.get("blob", uuid=UUID)
        assert (await ref.request("touch", r))["agent"] == "owner"
        answer: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:
            started = time.perf_counter()
            if how == "drain":
                nursery.start_soon(owner.drain, 30.0)
            else:
                nursery.start_soon(owner.aclose)

            async def ask() -> None:
                answer.update(await ref.request("get"))
                answer["at"] = time.perf_counter()

            nursery.start_soon(ask)
        assert answer["agent"] == "standby", answer
        handoff = answer["at"] - started
    # the store alone, for the same state
    blob = os.urandom(size)
    await store.delete("bench-probe")
    t = time.perf_counter()
    await store.put("bench-probe", blob, 0)
    write = time.perf_counter() - t
    t = time.perf_counter()
    await store.claim("bench-probe", 0)
    read = time.perf_counter() - t
    return {"handoff": handoff, "write": write, "read": read}


async def run(url: str, size: int, rounds: int, how: str, worker: bool
              ) -> list[dict[str, float]]:
    results = []
    async with open_state_store(url, worker=worker) as store, \
            hulytrio.serve_network(port=0) as hub:
        for r in range(rounds):
            results.append(await one_round(hub.url, store, size, r, how))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024 * 1024)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--postgresql", metavar="URL")
    parser.add_argument("--thread", action="store_true",
                        help="the store on a worker thread, not in a child process")
    args = parser.parse_args()
    urls = [f"sqlite:{tempfile.mkdtemp(prefix='hulytrio-bench-')}/state.db"]
    if args.postgresql:
        urls.append(args.postgresql)
    print(f"clean handoff of a stateless container with {args.size} bytes of state, "
          f"{args.rounds} rounds (median, max)")
    print("| store | stop | handoff to first answer | store write | store read | "
          "handoff - write - read |")
    print("|---|---|---:|---:|---:|---:|")
    for url, how in [(url, how) for url in urls for how in ("drain", "aclose")]:
        res = trio.run(run, url, args.size, args.rounds, how, not args.thread)

        def ms(key: str, res: list[dict[str, float]] = res) -> str:
            values = [r[key] for r in res]
            return f"{statistics.median(values) * 1000:.1f} / {max(values) * 1000:.1f} ms"

        rest = [r["handoff"] - r["write"] - r["read"] for r in res]
        print(f"| {url.split(':')[0]} | {how} | {ms('handoff')} | {ms('write')} | {ms('read')} | "
              f"{statistics.median(rest) * 1000:.1f} / {max(rest) * 1000:.1f} ms |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
