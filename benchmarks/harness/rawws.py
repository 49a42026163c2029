"""A yardstick for the machine: plain trio-websocket echo, one message per frame.

``python -m benchmarks.harness.rawws serve PORT`` echoes every message back;
``python -m benchmarks.harness.rawws load PORT INFLIGHT PAYLOAD START WARMUP
DURATION`` keeps ``INFLIGHT`` messages outstanding on one connection and
prints one JSON line with a latency ``Histogram`` of the measured window.
No hulytrio code is involved, so its figures say how fast this machine is
right now (the issue quotes 2.5-3.4k req/s at 1 in flight on an idle one).
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from collections.abc import Sequence

import trio
from trio_websocket import WebSocketRequest, open_websocket_url, serve_websocket

from .stats import Histogram

__all__ = ["main"]


async def _serve(port: int) -> None:
    async def echo(request: WebSocketRequest) -> None:
        ws = await request.accept()
        while True:
            await ws.send_message(await ws.get_message())

    await serve_websocket(echo, "127.0.0.1", port, ssl_context=None)


async def _load(port: int, inflight: int, size: int, start: float, warmup: float,
                duration: float) -> None:
    measure_from = start + warmup
    end = measure_from + duration
    data = b"x" * size
    hist = Histogram()
    async with open_websocket_url(f"ws://127.0.0.1:{port}") as ws:
        await trio.sleep(max(0.0, start - time.monotonic()))
        # Replies come back in order: the send times of outstanding messages are a FIFO.
        sent: deque[float] = deque()
        for _ in range(inflight):
            sent.append(time.monotonic())
            await ws.send_message(data)
        while sent:
            await ws.get_message()
            t = sent.popleft()
            now = time.monotonic()
            if measure_from <= t < end:
                hist.add(now - t)
            if now < end:
                sent.append(now)
                await ws.send_message(data)
    print(json.dumps({"hist": hist.to_json(), "errors": 0, "wrong": 0}), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the echo server or the load (see module docstring); returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["serve"] and len(args) == 2:
        trio.run(_serve, int(args[1]))
        return 0
    if args[:1] == ["load"] and len(args) == 7:
        trio.run(_load, int(args[1]), int(args[2]), int(args[3]), float(args[4]),
                 float(args[5]), float(args[6]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
