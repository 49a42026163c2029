"""What a frame's registrations would cost, read from msgpack headers before decoding.

A ``register`` message offering 60,000 containers costs the hub half a
second to decode (most of it building the offers), all of it in its one
loop, before the hub can see that the registration is over its limits and
refuse it.  The counts are in the msgpack array headers: ``registrations``
reads them, and skips every offer without building it (msgpack's ``skip``
makes no objects), in about a millisecond for that frame.  The driver asks
the hub whether each registration fits, and removes those that do not from
the frame (``without``) before the frame is decoded.

Only frames containing the bytes of the tag ``register`` are scanned (one
substring search, in C).  Whatever does not parse as a plain registration
here is left to the decoder, which says what is wrong with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import msgpack

from hulytrio.core.messages import RegisterAgent

__all__ = ["REGISTER_MARK", "Registration", "registrations", "without"]

#: The tag of a ``register`` message as msgpack encodes it (a fixstr of 8).
REGISTER_MARK = b"\xa8" + RegisterAgent.TAG.encode()

_FIELDS = [field.name for field in attrs.fields(RegisterAgent)]
#: positions after the tag of the fields read here
_ID, _AGENT_ID, _KINDS, _CONTAINERS = (_FIELDS.index(name) + 1 for name in
                                       ("id", "agent_id", "kinds", "containers"))


@attrs.frozen
class Registration:
    """One ``register`` message of a frame, as its headers describe it.

    ``start``/``end``: its bytes in the frame; ``kinds`` and ``offers``: how
    many kinds it names and containers it offers.
    """

    index: int
    start: int
    end: int
    call_id: int
    agent_id: str
    kinds: int
    offers: int


def registrations(data: bytes) -> list[Registration]:
    """Return the well-formed ``register`` messages of frame ``data``, in order.

    Reading stops at the first thing that is not a well-formed message
    header (the decoder reports it); a registration whose id or agent id
    has the wrong type is not returned (the decoder refuses it).  Never
    raises for any bytes.
    """
    if REGISTER_MARK not in data:
        return []
    found: list[Registration] = []
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    try:
        for index in range(unpacker.read_array_header()):
            start = unpacker.tell()
            fields = unpacker.read_array_header()
            if fields <= _KINDS or data[unpacker.tell():unpacker.tell() + 9] != REGISTER_MARK:
                for _ in range(fields):
                    unpacker.skip()
                continue
            unpacker.skip()  # the tag
            call_id = unpacker.unpack()
            agent_id = unpacker.unpack()
            kinds = unpacker.read_array_header()
            for _ in range(kinds):
                unpacker.skip()
            offers = 0
            for position in range(_KINDS + 1, fields):
                if position == _CONTAINERS:
                    offers = unpacker.read_array_header()
                    for _ in range(offers):
                        unpacker.skip()
                else:
                    unpacker.skip()
            if type(call_id) is int and type(agent_id) is str:
                found.append(Registration(index, start, unpacker.tell(), call_id, agent_id,
                                          kinds, offers))
    except Exception:
        # msgpack says "not this shape" with several exception types
        # (OutOfData, FormatError, StackError, ValueError...); the decoder
        # reports the problem properly.
        pass
    return found


def without(data: bytes, refused: Sequence[Registration]) -> bytes:
    """Return frame ``data`` with the ``refused`` messages (from ``registrations``) left out."""
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(len(data), 1))
    unpacker.feed(data)
    parts = [_array_header(unpacker.read_array_header() - len(refused))]
    position = unpacker.tell()
    for registration in refused:
        parts.append(data[position:registration.start])
        position = registration.end
    parts.append(data[position:])
    return b"".join(parts)


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")
