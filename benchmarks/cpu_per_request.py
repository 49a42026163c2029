"""CPU cost of one echo request, every side in one process (hub, agent, client).

The throughput scenarios of ``benchmarks.harness`` run three processes, and on a
2-vCPU VM their req/s swing by +-40% with what else runs and with how often
a vCPU has to be woken.  This benchmark removes both: hub, agent (with its
own endpoint) and client share one trio run over loopback sockets, so the
figure is the CPU work of a request (codec, frames, core machines, drivers,
trio's scheduler), not the scheduling between processes.

Usage: python -m benchmarks.cpu_per_request [--requests N] [--inflight K] [--size BYTES]
                                            [--ws ours|websockets]

Prints, for the direct path and the path through the hub, the CPU
microseconds per request (``time.process_time``, best of 3 runs).  For a
figure that does not move with the machine at all, count instructions::

    valgrind --tool=cachegrind --cache-sim=no \\
        .venv/bin/python -m benchmarks.cpu_per_request --one direct --requests 20000
    valgrind ... --requests 0        # the same start-up and set-up, no requests

and divide the difference by the number of requests (docs/performance.md).
``--size`` sets the echoed string's length (default 100); ``--ws websockets``
runs every side on the ``websockets`` framing (``benchmarks/ws_websockets.py``,
the A/B of issue 13).
"""

from __future__ import annotations

import argparse
import sys
import time

import trio

import hulytrio
from hulytrio.testing.echo import FACTORIES

PAYLOAD_BYTES = 100
WARM = 200


async def run(path: str, requests: int, inflight: int, size: int = PAYLOAD_BYTES) -> float:
    """Return the CPU seconds that ``requests`` echo requests of ``size`` took on ``path``."""
    payload = "x" * size
    async with hulytrio.serve_network(host="127.0.0.1", port=0) as hub, \
            hulytrio.open_client(hub.url) as agent_client:
        await agent_client.serve_agent(FACTORIES, agent_id="echo", endpoint="127.0.0.1:0")
        async with hulytrio.open_client(hub.url) as client:
            ref = await client.get("echo")
            async with ref.connect() as conn:
                if path == "direct" and not conn.direct:
                    raise RuntimeError("the direct connection fell back to the hub")
                call = conn.request if path == "direct" else ref.request
                for _ in range(WARM):
                    await call("echo", payload)
                left = requests

                async def loop() -> None:
                    nonlocal left
                    while left > 0:
                        left -= 1
                        if await call("echo", payload) != payload:
                            raise RuntimeError("echo returned something else")

                start = time.process_time()
                async with trio.open_nursery() as nursery:
                    for _ in range(inflight):
                        nursery.start_soon(loop)
                return time.process_time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--one", choices=("direct", "hub"),
                        help="one run of one path, nothing printed (for valgrind)")
    parser.add_argument("--size", type=int, default=PAYLOAD_BYTES,
                        help="length of the echoed string")
    parser.add_argument("--ws", choices=("ours", "websockets"), default="ours",
                        help="the WebSocket framing every side uses")
    args = parser.parse_args(sys.argv[1:])
    if args.ws == "websockets":
        from benchmarks.ws_websockets import install
        install()
    if args.one:
        trio.run(run, args.one, args.requests, args.inflight, args.size)
        return 0
    print(f"CPU per echo request, hub + agent + client in one process, "
          f"{args.requests:,} requests of {args.size:,} B, {args.inflight} in flight, "
          f"{args.ws} framing (best of 3)")
    for path in ("direct", "hub"):
        best = min(trio.run(run, path, args.requests, args.inflight, args.size)
                   for _ in range(3))
        print(f"  {path:<7} {best / max(args.requests, 1) * 1e6:7.1f} us/request", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
