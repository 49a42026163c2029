"""RFC 6455 framing for an open WebSocket: a sans-IO message reader and frame encoder.

wsproto does the HTTP upgrade; once the connection is open, this module
reads and writes its frames.  It is the per-message hot path of every hop
(hub, agent, client), and wsproto's general machinery (generators, event
objects, per-frame ``os.urandom``) cost more than the rest of a hop's
framing work together (docs/performance.md).  What it checks, as the RFC
requires of an endpoint that fails the connection:

- reserved bits and unknown opcodes (1002), a client's frames unmasked or a
  server's frames masked (1002);
- control frames fragmented or over 125 bytes (1002), from the header,
  before the payload is buffered; a continuation without a message, or a
  new message inside a fragmented one (1002);
- text that is not UTF-8 (1007); a close frame with a bad code or a
  one-byte payload (1002);
- a message over the size limit (1009), detected from the frame header,
  before its payload is buffered.

No extension is ever negotiated, so none is supported.
"""

from __future__ import annotations

import os
from typing import Final, NamedTuple

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "Control",
    "FrameError",
    "MessageReader",
    "close_payload",
    "encode_frame",
    "mask",
]

OP_CONTINUATION: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA

#: Close codes a peer may send (RFC 6455 7.4, and the IANA registry's 1012-1014).
_VALID_CLOSE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013,
                          1014})
#: Above this size the table-based mask beats the big-integer one.
_SMALL_MASK = 1024
#: ``_XOR_TABLES[k]`` maps every byte b to b ^ k; built with one big-integer XOR
#: per table (a generator over 65,536 bytes took a tenth of the hub's start-up).
_IDENTITY = int.from_bytes(bytes(range(256)), "big")
_XOR_TABLES = [(_IDENTITY ^ int.from_bytes(bytes((k,)) * 256, "big")).to_bytes(256, "big")
               for k in range(256)]


class Control(NamedTuple):
    """A control frame received: ping, pong or close (``code``/``reason`` for a close)."""

    opcode: int
    payload: bytes
    code: int = 0
    reason: str = ""


class FrameError(Exception):
    """The peer broke the framing rules: close the connection with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def mask(data: bytes, key: bytes) -> bytes:
    """Return ``data`` XORed with the 4-byte ``key`` repeated (masking and unmasking)."""
    n = len(data)
    if n <= _SMALL_MASK:
        if n == 0:
            return b""
        stream = (key * ((n + 3) >> 2))[:n]
        return (int.from_bytes(data, "little")
                ^ int.from_bytes(stream, "little")).to_bytes(n, "little")
    out = bytearray(data)
    for i in range(4):
        out[i::4] = out[i::4].translate(_XOR_TABLES[key[i]])
    return bytes(out)


class _KeySource:
    """Masking keys from the OS's strong random source, fetched 4 KiB at a time."""

    __slots__ = ("_pool", "_pos")

    def __init__(self) -> None:
        self._pool = b""
        self._pos = 0

    def take(self) -> bytes:
        pos = self._pos
        if pos + 4 > len(self._pool):
            self._pool, pos = os.urandom(4096), 0
        self._pos = pos + 4
        return self._pool[pos:pos + 4]


_keys = _KeySource()


def encode_frame(opcode: int, payload: bytes, *, masked: bool) -> bytes:
    """Return one final frame carrying ``payload`` (masked, as a client must)."""
    n = len(payload)
    bit = 0x80 if masked else 0
    if n < 126:
        header = bytes((0x80 | opcode, bit | n))
    elif n < 65536:
        header = bytes((0x80 | opcode, bit | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, bit | 127)) + n.to_bytes(8, "big")
    if masked:
        key = _keys.take()
        return header + key + mask(payload, key)
    return header + payload


def close_payload(code: int, reason: str) -> bytes:
    """Return a close frame's payload: ``code`` and ``reason`` cut to fit 125 bytes.

    The reason is cut at a character boundary: a peer fails a close frame
    whose reason is not UTF-8 (1007).
    """
    if code == 1005:  # "no status": sent as an empty close frame
        return b""
    cut = reason.encode("utf-8")[:123].decode("utf-8", "ignore").encode("utf-8")
    return code.to_bytes(2, "big") + cut


def _parse_close(payload: bytes) -> tuple[int, str]:
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise FrameError(1002, "a close frame with a one-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if code not in _VALID_CLOSE and not 3000 <= code <= 4999:
        raise FrameError(1002, f"invalid close code {code}")
    try:
        return code, payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(1007, "close reason is not UTF-8") from None


class MessageReader:
    """Turns received bytes into complete messages and control frames.

    ``feed(data)`` returns ``(items, error)``: ``items`` in order are binary
    messages as ``bytes``, text messages as ``str`` (fragments joined) and
    control frames as ``Control``; ``error`` is the ``FrameError`` that ends
    the connection, after which nothing more is read.
    """

    __slots__ = ("_buf", "_fragments", "_fragments_size", "_message_opcode", "failed",
                 "masked", "max_message_size")

    #: The most ``buffered`` exceeds ``max_message_size`` by: the largest frame
    #: header (14 bytes, with its mask) and a control frame (125 bytes) read
    #: while a fragmented message is buffered.
    OVERHEAD: Final = 14 + 125

    def __init__(self, *, masked: bool, max_message_size: int) -> None:
        #: whether incoming frames must be masked (a server reading a client)
        self.masked = masked
        self.max_message_size = max_message_size
        self._buf = bytearray()
        self._message_opcode = -1
        self._fragments: list[bytes] = []
        self._fragments_size = 0
        self.failed = False

    @property
    def buffered(self) -> int:
        """Return the bytes held between feeds: a partial frame and a message's fragments.

        Never more than ``max_message_size + OVERHEAD`` (tests/fuzz checks it
        after every feed).
        """
        return len(self._buf) + self._fragments_size

    def feed(self, data: bytes) -> tuple[list[bytes | str | Control], FrameError | None]:
        """Consume ``data``; returns the items it completed and the error, if any."""
        items: list[bytes | str | Control] = []
        if self.failed:
            return items, None
        buf = self._buf
        if buf:
            buf += data
            view: bytes | bytearray = buf
        else:
            view = data
        size = len(view)
        pos = 0
        try:
            while size - pos >= 2:
                b0 = view[pos]
                b1 = view[pos + 1]
                length = b1 & 0x7F
                start = pos + 2
                if length == 126:
                    if size - pos < 4:
                        break
                    length = int.from_bytes(view[start:start + 2], "big")
                    start += 2
                elif length == 127:
                    if size - pos < 10:
                        break
                    length = int.from_bytes(view[start:start + 8], "big")
                    start += 8
                if b0 & 0x70:
                    raise FrameError(1002, "reserved bits set (no extension was negotiated)")
                if bool(b1 & 0x80) is not self.masked:
                    raise FrameError(1002, "a client's frames must be masked, a server's not"
                                     if self.masked else "a server's frames must not be masked")
                opcode = b0 & 0x0F
                if opcode >= 8:
                    # From the header, as for data frames below: a control
                    # frame declaring a huge length would otherwise be
                    # buffered for ever (found by tests/fuzz).
                    if length > 125 or not b0 & 0x80:
                        raise FrameError(1002, "control frames must be final and at most "
                                               "125 bytes")
                elif length > self.max_message_size - self._fragments_size:
                    raise FrameError(1009, f"message exceeds the limit of "
                                           f"{self.max_message_size} bytes")
                if self.masked:
                    start += 4
                end = start + length
                if end > size:
                    break
                payload = bytes(view[start:end])
                if self.masked:
                    payload = mask(payload, bytes(view[start - 4:start]))
                pos = end
                if opcode == OP_BINARY and b0 & 0x80 and self._message_opcode < 0:
                    items.append(payload)  # the hot path
                else:
                    self._frame(items, bool(b0 & 0x80), opcode, payload)
        except FrameError as exc:
            self.failed = True
            self._buf = bytearray()
            return items, exc
        if view is buf:
            del buf[:pos]
        elif pos < size:
            self._buf = bytearray(view[pos:])
        return items, None

    def _frame(self, items: list[bytes | str | Control], fin: bool, opcode: int,
               payload: bytes) -> None:
        if opcode >= 8:  # final and at most 125 bytes: checked from the header
            if opcode == OP_CLOSE:
                code, reason = _parse_close(payload)
                items.append(Control(OP_CLOSE, payload, code, reason))
            elif opcode in (OP_PING, OP_PONG):
                items.append(Control(opcode, payload))
            else:
                raise FrameError(1002, f"unknown opcode {opcode:#x}")
            return
        if opcode == OP_CONTINUATION:
            if self._message_opcode < 0:
                raise FrameError(1002, "a continuation frame without a message")
            opcode = self._message_opcode
        elif opcode in (OP_BINARY, OP_TEXT):
            if self._message_opcode >= 0:
                raise FrameError(1002, "a new message inside a fragmented one")
        else:
            raise FrameError(1002, f"unknown opcode {opcode:#x}")
        if not fin:
            self._message_opcode = opcode
            self._fragments.append(payload)
            self._fragments_size += len(payload)
            return
        if self._fragments:
            self._fragments.append(payload)
            payload = b"".join(self._fragments)
            self._fragments = []
            self._fragments_size = 0
            self._message_opcode = -1
        if opcode == OP_TEXT:
            try:
                items.append(payload.decode("utf-8"))
            except UnicodeDecodeError:
                raise FrameError(1007, "a text message that is not UTF-8") from None
        else:
            items.append(payload)
