"""Coverage-guided fuzzing of the WebSocket layer with atheris (libFuzzer for Python): make fuzz.

Usage: python tools/fuzz_atheris.py frames|handshake [libFuzzer options]
       e.g. ``-max_total_time=300 -jobs=1`` (``make fuzz`` passes ``FUZZ_SECONDS``)

Targets:

- ``frames``: ``transport/frames.py``'s ``MessageReader`` fed the input in
  pieces the input chooses, as a server or a client, under a limit the input
  chooses.  Fails on any exception other than the ``FrameError`` it returns,
  and on more bytes held than ``max_message_size + MessageReader.OVERHEAD``.
- ``handshake``: ``accept_websocket`` (wsproto's parser and ours) given the
  input as the peer's bytes over a socket pair; then, if it opened, the rest
  read as frames to the close.  Fails on anything but a WebSocket or a
  ``HandshakeError``, and on ``receive`` raising anything but
  ``WebSocketClosed``.

A crash writes its input to ``crash-*`` in the working directory (libFuzzer's
way); ``make fuzz`` runs from ``build/fuzz/``.  The corpus grows in
``build/fuzz/corpus-TARGET`` and is seeded with a few valid inputs.
Needs ``pip install atheris`` (the ``fuzz`` extra).
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["hulytrio", "wsproto", "h11"]):
    import trio

    from hulytrio.transport.frames import OP_BINARY, FrameError, MessageReader, encode_frame
    from hulytrio.transport.websocket import (
        HandshakeError,
        WebSocketClosed,
        accept_websocket,
    )

UPGRADE = (b"GET / HTTP/1.1\r\nHost: hub:3737\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def frames(data: bytes) -> None:
    """One input: reader settings, cut points, then the bytes."""
    fdp = atheris.FuzzedDataProvider(data)
    masked = fdp.ConsumeBool()
    limit = fdp.ConsumeIntInRange(0, 70_000)
    cuts = sorted(fdp.ConsumeIntInRange(0, 4096) for _ in range(fdp.ConsumeIntInRange(0, 6)))
    stream = fdp.ConsumeBytes(fdp.remaining_bytes())
    reader = MessageReader(masked=masked, max_message_size=limit)
    start = 0
    for end in [*cuts, len(stream)]:
        items, error = reader.feed(stream[start:max(start, end)])
        start = max(start, end)
        if error is not None and not isinstance(error, FrameError):
            raise AssertionError(f"not a FrameError: {error!r}")
        for item in items:
            assert isinstance(item, bytes | str) or type(item).__name__ == "Control"
        if reader.buffered > limit + MessageReader.OVERHEAD:
            raise AssertionError(f"{reader.buffered} bytes held under a limit of {limit}")


async def _serve(request: bytes) -> None:
    ours, theirs = socket.socketpair()
    peer = trio.socket.from_stdlib_socket(theirs)
    with trio.fail_after(5):
        try:
            await peer.send(request)
            peer.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        try:
            ws = await accept_websocket(trio.SocketStream(trio.socket.from_stdlib_socket(ours)),
                                        max_message_size=70_000, path="/")
        except HandshakeError:
            peer.close()
            return
        try:
            while await ws.receive():
                pass
        except WebSocketClosed:
            pass
        finally:
            ws.abort()
            peer.close()


def handshake(data: bytes) -> None:
    """One input: the bytes a peer sends to the hub's port (request head and frames)."""
    trio.run(_serve, data)


TARGETS = {"frames": frames, "handshake": handshake}


def seeds(target: str) -> list[bytes]:
    """A few valid inputs to start the corpus from."""
    if target == "handshake":
        return [UPGRADE, UPGRADE + encode_frame(OP_BINARY, b"\x91\xc0", masked=True)]
    return [b"\x01\xff\xff" + encode_frame(OP_BINARY, b"x" * n, masked=True) for n in
            (0, 125, 126, 70_000)]


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(TARGETS)} [libFuzzer options]")
    target = sys.argv[1]
    corpus = Path(f"corpus-{target}")
    if not corpus.exists():
        corpus.mkdir(parents=True)
        for i, seed in enumerate(seeds(target)):
            (corpus / f"seed-{i}").write_bytes(seed)
    atheris.Setup([sys.argv[0], *sys.argv[2:], str(corpus)], TARGETS[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
