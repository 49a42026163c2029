"""WebSocket framing alone: our ``transport/frames.py`` against the ``websockets`` sans-IO core.

Usage: python -m benchmarks.ws_frames [--messages N] [--size BYTES] [--one ours|websockets]

One round trip is what every hop of a routed request costs the framing
layer: the client frames a binary message (masked), the server parses and
unmasks it, the server frames an answer (unmasked), the client parses it.
Prints microseconds per round trip for both, interleaved, best of 5 rounds;
``--one`` runs one side only and prints nothing (for valgrind's instruction
counts: ``valgrind --tool=cachegrind --cache-sim=no python -m
benchmarks.ws_frames --one ours`` against ``--messages 0``).  Needs the
``websockets`` package (``pip install websockets``); it is not a dependency.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from hulytrio.transport.frames import OP_BINARY, MessageReader, encode_frame

LIMIT = 16 * 1024 * 1024


def ours(size: int) -> Callable[[], None]:
    """Return one round trip through our frames."""
    payload = b"x" * size
    server = MessageReader(masked=True, max_message_size=LIMIT)
    client = MessageReader(masked=False, max_message_size=LIMIT)

    def round_trip() -> None:
        got, error = server.feed(encode_frame(OP_BINARY, payload, masked=True))
        assert error is None
        assert got[0] == payload
        got, error = client.feed(encode_frame(OP_BINARY, payload, masked=False))
        assert error is None
        assert got[0] == payload
    return round_trip


def theirs(size: int) -> Callable[[], None]:
    """Return one round trip through websockets' sans-IO protocol (OPEN, no handshake)."""
    from websockets.frames import Frame
    from websockets.protocol import OPEN, Protocol, Side

    payload = b"x" * size
    client = Protocol(Side.CLIENT, state=OPEN, max_size=LIMIT)
    server = Protocol(Side.SERVER, state=OPEN, max_size=LIMIT)

    def round_trip() -> None:
        client.send_binary(payload)
        server.receive_data(b"".join(client.data_to_send()))
        event = server.events_received()[0]
        assert isinstance(event, Frame)
        assert event.data == payload
        server.send_binary(payload)
        client.receive_data(b"".join(server.data_to_send()))
        event = client.events_received()[0]
        assert isinstance(event, Frame)
        assert event.data == payload
    return round_trip


def timed(make: Callable[[int], Callable[[], None]], size: int, messages: int) -> float:
    """Return microseconds per round trip."""
    round_trip = make(size)
    for _ in range(200):
        round_trip()
    started = time.perf_counter()
    for _ in range(messages):
        round_trip()
    return (time.perf_counter() - started) / messages * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--one", choices=("ours", "websockets"))
    args = parser.parse_args()
    sides = {"ours": ours, "websockets": theirs}
    if args.one:
        round_trip = sides[args.one](args.size)
        for _ in range(args.messages):
            round_trip()
        return 0
    try:
        import websockets
    except ImportError:
        print("benchmarks.ws_frames needs websockets: pip install websockets")
        return 0
    best = {name: float("inf") for name in sides}
    for _ in range(5):
        for name, make in sides.items():
            best[name] = min(best[name], timed(make, args.size, args.messages))
    print(f"framing round trip, {args.size}-byte binary message, best of 5 interleaved "
          f"(websockets {websockets.__version__})")
    for name, us in best.items():
        print(f"  {name:10} {us:6.2f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
