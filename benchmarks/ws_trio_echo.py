"""One WebSocket hop, whole layer: our ``transport/websocket.py`` against ``websockets.trio``.

Usage: python -m benchmarks.ws_trio_echo [--messages N] [--size BYTES] [--one ours|websockets]

Client and server in one trio run over loopback; the client sends a binary
message and waits for the server's echo, one at a time (every message its
own frame, as at 1 in flight).  Prints CPU microseconds per round trip for
both, interleaved, best of 3; ``--one`` runs one side once and prints
nothing (for valgrind, as ``benchmarks/instructions.py`` does).  This is
the "if it fits" part of issue 13's A/B: ``websockets.trio`` owns its
connection's tasks (a reader task and an assembler per connection, a lock
per send), so it cannot be driven by our outbox's round flush the way its
sans-IO core can (``benchmarks/ws_websockets.py``); this measures what one
hop costs in each design.  Needs ``pip install websockets``.
"""

from __future__ import annotations

import argparse
import time

import trio

from hulytrio.transport.websocket import WebSocket, accept_websocket, connect_websocket

LIMIT = 16 * 1024 * 1024
WARM = 100


async def ours(messages: int, size: int) -> float:
    """Return CPU seconds for ``messages`` round trips through our WebSocket."""
    payload = b"x" * size
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        async def serve() -> None:
            ws = await accept_websocket(await listeners[0].accept(), max_message_size=LIMIT)
            while True:
                for message in await ws.receive():
                    assert isinstance(message, bytes)
                    ws.send_nowait(message)
                if ws.pending:
                    await ws.wait_sent()

        nursery.start_soon(serve)
        client = await connect_websocket(f"ws://127.0.0.1:{port}/", max_message_size=LIMIT)

        async def round_trip(ws: WebSocket) -> None:
            ws.send_nowait(payload)
            if ws.pending:
                await ws.wait_sent()
            got = await ws.receive()
            assert got == [payload]

        for _ in range(WARM):
            await round_trip(client)
        start = time.process_time()
        for _ in range(messages):
            await round_trip(client)
        spent = time.process_time() - start
        client.abort()
        nursery.cancel_scope.cancel()
    return spent


async def theirs(messages: int, size: int) -> float:
    """Return CPU seconds for ``messages`` round trips through ``websockets.trio``."""
    from websockets.trio.client import connect
    from websockets.trio.server import ServerConnection, serve

    payload = b"x" * size

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(lambda task_status=trio.TASK_STATUS_IGNORED: serve(
            echo, 0, host="127.0.0.1", compression=None, max_size=LIMIT,
            ping_interval=None, task_status=task_status))
        port = server.listeners[0].socket.getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/", compression=None, max_size=LIMIT,
                           ping_interval=None) as client:
            for _ in range(WARM):
                await client.send(payload)
                assert await client.recv() == payload
            start = time.process_time()
            for _ in range(messages):
                await client.send(payload)
                assert await client.recv() == payload
            spent = time.process_time() - start
        nursery.cancel_scope.cancel()
    return spent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--one", choices=("ours", "websockets"))
    args = parser.parse_args()
    sides = {"ours": ours, "websockets": theirs}
    if args.one:
        trio.run(sides[args.one], args.messages, args.size)
        return 0
    try:
        import websockets
    except ImportError:
        print("benchmarks.ws_trio_echo needs websockets: pip install websockets")
        return 0
    best = {name: float("inf") for name in sides}
    for _ in range(3):
        for name, run in sides.items():
            best[name] = min(best[name], trio.run(run, args.messages, args.size))
    print(f"one WebSocket hop, {args.size}-byte echo, 1 in flight, CPU per round trip, "
          f"best of 3 interleaved (websockets {websockets.__version__})")
    for name, spent in best.items():
        print(f"  {name:10} {spent / max(args.messages, 1) * 1e6:7.1f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
