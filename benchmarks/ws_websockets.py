"""Benchmark only: our WebSocket driver with the ``websockets`` sans-IO core doing the framing.

Issue 13 asks whether ``transport/frames.py`` (our own RFC 6455 framing) is
worth keeping against ``websockets`` (17.x), whose sans-IO ``Protocol`` has a
C-accelerated mask.  To compare the framing and nothing else, this module
keeps everything of ``transport/websocket.py`` (the non-blocking socket, the
optimistic writes, the byte-bounded backlog, the outbox's round flush) and
replaces only what turns bytes into messages and messages into bytes: a
``websockets.protocol.Protocol`` in the OPEN state (wsproto still does the
HTTP upgrade, exactly as in production).

``install()`` makes ``accept_websocket``/``connect_websocket`` build this
class, so a whole hub, agent and client run on it.  It is not shipped
(``benchmarks/`` is outside the package) and needs ``pip install websockets``.
Where it is used: ``benchmarks/cpu_per_request.py --ws websockets`` (instruction
counts, ``benchmarks/instructions.py --ws websockets``) and ``benchmarks/ab.py
--variant websockets`` (processes started with ``benchmarks/wsvariant`` on
``PYTHONPATH``, whose ``sitecustomize`` calls ``install()``).
"""

from __future__ import annotations

import socket

from websockets.frames import BINARY, CLOSE, CONT, TEXT, Frame
from websockets.protocol import OPEN, Protocol, Side

from hulytrio.transport import websocket as ours

__all__ = ["WebsocketsFramedWebSocket", "install"]


class WebsocketsFramedWebSocket(ours.WebSocket):
    """``transport.websocket.WebSocket`` with ``websockets.protocol.Protocol`` as its framing."""

    # no __slots__: the base's slots stay, these two live in a __dict__
    def __init__(self, sock: socket.socket, *, client: bool, max_message_size: int,
                 remote: str, received: bytes = b"") -> None:
        self._proto = Protocol(Side.CLIENT if client else Side.SERVER, state=OPEN,
                               max_size=max_message_size)
        self._fragments: list[bytes] = []
        super().__init__(sock, client=client, max_message_size=max_message_size,
                         remote=remote, received=received)

    @property
    def max_message_size(self) -> int:
        """Return the largest message accepted now."""
        size = self._proto.max_message_size
        assert size is not None
        return size

    @max_message_size.setter
    def max_message_size(self, size: int) -> None:
        self._proto.max_message_size = size

    def _flush_proto(self) -> None:
        for data in self._proto.data_to_send():
            if data:  # b"" is websockets' "half-close now"; the close path does that
                self._write(data)

    def _feed(self, data: bytes) -> None:
        proto = self._proto
        proto.receive_data(data)
        inbox = self._inbox
        for frame in proto.events_received():
            assert isinstance(frame, Frame)
            opcode = frame.opcode
            if opcode is BINARY or opcode is TEXT or opcode is CONT:
                if not frame.fin:
                    self._fragments.append(frame.data)
                    continue
                payload = frame.data
                if self._fragments:
                    self._fragments.append(payload)
                    payload = b"".join(self._fragments)
                    self._fragments = []
                if opcode is TEXT:
                    try:
                        inbox.append(payload.decode())
                    except UnicodeDecodeError:
                        # websockets' sans-IO core leaves UTF-8 to its drivers
                        proto.fail(1007, "a text message that is not UTF-8")
                        break
                    continue
                inbox.append(payload)
            elif opcode is CLOSE:
                close = proto.close_rcvd
                assert close is not None
                self._close_sent = True  # the protocol answered it already
                self._flush_proto()
                self._finish(close.code, close.reason)
                return
        # pongs the protocol queued, or its close frame after a protocol error
        self._flush_proto()
        failed = proto.parser_exc is not None or proto.close_sent is not None
        if failed and self._closed is None:
            sent = proto.close_sent
            self._close_sent = True
            self._finish(sent.code if sent else 1006, sent.reason if sent else "")

    def send_nowait(self, data: bytes) -> None:
        """Send ``data`` as one binary message (see the base class)."""
        if self._close_sent or self._closed is not None:
            return
        self._proto.send_binary(data)
        self._flush_proto()

    def close_nowait(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake (see the base class)."""
        if self._closed is not None or self._close_sent:
            return
        self._close_sent = True
        self._proto.send_close(code, reason)
        self._flush_proto()


def install() -> None:
    """Make ``accept_websocket``/``connect_websocket`` build ``WebsocketsFramedWebSocket``."""
    ours.WebSocket = WebsocketsFramedWebSocket  # type: ignore[misc]
