"""The wire codec: protocol messages <-> WebSocket binary frames, and user payloads.

Theory of operation.  One WebSocket binary frame carries a msgpack array of
messages, so a driver can flush everything it has queued for a peer in one
send.  Each message is itself an array ``[tag, field1, field2, ...]`` with the
fields in the attrs declaration order of its class in
``hulytrio.core.messages``; nested records (``GetOptions``, ``ContainerRecord``,
``NetworkEvent`` ...) are arrays of their fields too, and enums travel as their
value.  Positional arrays are about half the size of maps and need no key
lookups; the price is that field order is part of the protocol (see
docs/protocol.md, "Versioning").

Encoding trusts the caller (the attrs classes do not validate their fields
either); decoding trusts nothing.  Every decoded field is checked against the
annotation of its attrs field: an int is an ``int`` and never a ``bool``, a str
is a ``str``, bytes are ``bytes``, tuple fields arrive as arrays and become
tuples, enums are looked up by value.  Anything wrong, at any depth, raises
``WireError`` (a ``RemoteProtocolError``) whose message names the message
index, its tag and the field path, and never another exception type: a bad
peer must not be able to crash the driver that reads it.

The per-class field lists, checkers and encoders are computed once at import
time from the attrs metadata, so the steady state does no introspection.  The
hot messages (``Request``, ``Response``, ``Ping``, ``Pong``) have hand-written
encoders, and decoders that validate the common, complete shape inline and fall
back to the generic path only to explain an error or fill in defaults.
"""

from __future__ import annotations

import enum
import math
import threading
import types
import typing
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any, Final

import attrs
import msgpack

from hulytrio.core.errors import LocalProtocolError, RemoteProtocolError
from hulytrio.core.messages import MESSAGE_TYPES, Event, Message, Ping, Pong, Request, Response

__all__ = [
    "MAX_FRAME_BYTES",
    "WireError",
    "decode_frame",
    "decode_frame_lenient",
    "decode_payload",
    "encode_frame",
    "encode_payload",
]

#: Default limit on the size of one incoming frame (16 MiB).  Checked before
#: unpacking, so an oversized frame costs nothing but its length check.
MAX_FRAME_BYTES: Final = 16 * 1024 * 1024
#: Bytes asked of the socket per read (trio-websocket's default is 4 KiB).
RECEIVE_BYTES: Final = 64 * 1024


class WireError(RemoteProtocolError):
    """A frame, or one message in it, could not be decoded.

    ``code`` is always ``ErrorCode.PROTOCOL``.  ``index`` is the position of
    the bad message in its frame (``None`` when the frame as a whole is bad);
    ``tag`` is its tag when it was a known one; ``call_id`` is its ``id``
    field when the message class has one and it could be read as an int.
    For a call (``req``, ``get`` ...) that id is the peer's, so the receiver
    can answer it with an ``Error``; for a reply (``res``, ``ok`` ...) it is
    the receiver's own call that the garbled reply was meant to answer.
    """

    def __init__(
        self,
        message: str,
        *,
        index: int | None = None,
        tag: str | None = None,
        call_id: int | None = None,
    ) -> None:
        super().__init__(message)
        self.index = index
        self.tag = tag
        self.call_id = call_id


# --- field checking -----------------------------------------------------------


class _Invalid(Exception):
    """A value does not fit its field; ``path`` is filled in while unwinding.

    Internal: it never leaves this module (``_decode_generic`` turns it into a
    ``WireError``).  Building the path on the way out keeps the success path
    free of string formatting.
    """

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path: list[str] = []

    def render(self) -> str:
        path = "".join(
            seg if seg.startswith("[") or i == 0 else "." + seg for i, seg in enumerate(self.path)
        )
        return f"field '{path}' {self.problem}" if path else self.problem


def _type_name(value: Any) -> str:
    if value is None:
        return "None"
    return type(value).__name__


def _expected(what: str, value: Any) -> _Invalid:
    return _Invalid(f"must be {what}, got {_type_name(value)}")


#: Turns a decoded msgpack value into the field's Python value, or raises _Invalid.
_Check = Callable[[Any], Any]
#: Turns a field's Python value into something msgpack packs as-is.
_Encode = Callable[[Any], Any]


def _check_int(value: Any) -> Any:
    # type() and not isinstance(): bool is an int subclass and must not pass.
    if type(value) is int:
        return value
    raise _expected("int", value)


def _check_str(value: Any) -> Any:
    if type(value) is str:
        return value
    raise _expected("str", value)


def _check_bytes(value: Any) -> Any:
    if type(value) is bytes:
        return value
    raise _expected("bytes", value)


def _check_bool(value: Any) -> Any:
    if type(value) is bool:
        return value
    raise _expected("bool", value)


def _check_float(value: Any) -> Any:
    # Ints are accepted and widened: peers written in JavaScript cannot tell
    # 30 from 30.0 and send the former.  Non-finite values are refused because
    # every float on the wire is a duration, and NaN would poison deadlines.
    if type(value) is float or type(value) is int:
        result = float(value)
        if math.isfinite(result):
            return result
        raise _Invalid(f"must be a finite number, got {value!r}")
    raise _expected("float", value)


def _check_str_dict(value: Any) -> Any:
    # ``extra`` dicts are user data: only the top-level keys are constrained
    # (the annotation says dict[str, Any]); values are whatever msgpack gave.
    if type(value) is not dict:
        raise _expected("a map", value)
    for key in value:
        if type(key) is not str:
            raise _Invalid(f"must have str keys, got a {_type_name(key)} key")
    return value


_SCALAR_CHECKS: dict[Any, _Check] = {
    int: _check_int,
    str: _check_str,
    bytes: _check_bytes,
    bool: _check_bool,
    float: _check_float,
}


def _optional(check: _Check) -> _Check:
    def check_optional(value: Any) -> Any:
        return None if value is None else check(value)

    return check_optional


def _tuple_of(check: _Check) -> _Check:
    def check_tuple(value: Any) -> Any:
        if type(value) is not list:
            raise _expected("an array", value)
        out = []
        for i, item in enumerate(value):
            try:
                out.append(check(item))
            except _Invalid as exc:
                exc.path.insert(0, f"[{i}]")
                raise
        return tuple(out)

    return check_tuple


def _enum_by_value(cls: type[enum.Enum]) -> _Check:
    members = {member.value: member for member in cls}
    names = ", ".join(repr(v) for v in members)

    def check_enum(value: Any) -> Any:
        # Hash lookups need hashable keys; every enum value here is a str.
        if type(value) is str:
            member = members.get(value)
            if member is not None:
                return member
            raise _Invalid(f"must be one of {names}, got {value!r}")
        raise _expected(f"one of {names}", value)

    return check_enum


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(tp)
    if origin is types.UnionType or origin is typing.Union:
        return typing.get_args(tp)
    return None


def _checker_for(tp: Any) -> _Check:
    """Return the decoder-side check for annotation ``tp`` (import time only)."""
    if tp in _SCALAR_CHECKS:
        return _SCALAR_CHECKS[tp]
    args = _union_args(tp)
    if args is not None:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            return _optional(_checker_for(rest[0]))
    origin = typing.get_origin(tp)
    if origin is tuple:
        item, ellipsis = typing.get_args(tp)
        if ellipsis is Ellipsis:
            return _tuple_of(_checker_for(item))
    if origin is dict and typing.get_args(tp) == (str, Any):
        return _check_str_dict
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum_by_value(tp)
    if isinstance(tp, type) and attrs.has(tp):
        return _record_checker(_spec_for(tp))
    # A new field type in core/messages.py must be taught to the codec; fail
    # at import time rather than decode it unchecked.
    raise TypeError(f"codec cannot handle field type {tp!r}")


def _encoder_for(tp: Any) -> _Encode | None:
    """Return the encoder-side conversion for ``tp``; None when msgpack packs it as-is."""
    args = _union_args(tp)
    if args is not None:
        rest = [a for a in args if a is not type(None)]
        inner = _encoder_for(rest[0]) if len(rest) == 1 else None
        if inner is None:
            return None
        inner_encode = inner
        return lambda value: None if value is None else inner_encode(value)
    if typing.get_origin(tp) is tuple:
        item = _encoder_for(typing.get_args(tp)[0])
        if item is None:
            return None  # msgpack packs a tuple of scalars as an array itself
        item_encode = item
        return lambda value: [item_encode(x) for x in value]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return attrgetter("value")
    if isinstance(tp, type) and attrs.has(tp):
        return _spec_for(tp).encode
    return None


# --- per-class specs ----------------------------------------------------------


@attrs.frozen
class _Spec:
    """What the codec knows about one attrs class, computed at import time."""

    cls: type[Any]
    names: tuple[str, ...]
    checks: tuple[_Check, ...]
    #: Fields without a default; a peer may omit trailing fields that have one.
    required: int
    #: Class instance -> list of its fields, ready for msgpack.
    encode: Callable[[Any], list[Any]]

    def describe_count(self) -> str:
        total = len(self.names)
        if self.required == total:
            return f"{total} field{'s' if total != 1 else ''}"
        return f"{self.required} to {total} fields"


_SPECS: dict[type[Any], _Spec] = {}


def _fields_encoder(
    names: tuple[str, ...], encoders: list[_Encode | None]
) -> Callable[[Any], list[Any]]:
    if not names:
        return lambda obj: []
    get = attrgetter(*names)
    if all(e is None for e in encoders):
        if len(names) == 1:
            return lambda obj: [get(obj)]
        return lambda obj: list(get(obj))
    pairs = tuple(zip(names, encoders, strict=True))

    def encode_fields(obj: Any) -> list[Any]:
        return [
            getattr(obj, name) if enc is None else enc(getattr(obj, name)) for name, enc in pairs
        ]

    return encode_fields


def _spec_for(cls: type[Any]) -> _Spec:
    spec = _SPECS.get(cls)
    if spec is not None:
        return spec
    hints = typing.get_type_hints(cls)
    fields = attrs.fields(cls)
    names = tuple(f.name for f in fields)
    required = sum(1 for f in fields if f.default is attrs.NOTHING)
    # attrs itself forbids a field without a default after one with a default,
    # which is what makes "omit trailing defaulted fields" well defined.
    spec = _Spec(
        cls=cls,
        names=names,
        checks=tuple(_checker_for(hints[n]) for n in names),
        required=required,
        encode=_fields_encoder(names, [_encoder_for(hints[n]) for n in names]),
    )
    _SPECS[cls] = spec
    return spec


def _build(spec: _Spec, values: list[Any], start: int) -> Any:
    """Check ``values[start:]`` against ``spec`` and construct the instance."""
    args = []
    for name, check, value in zip(spec.names, spec.checks, values[start:], strict=False):
        try:
            args.append(check(value))
        except _Invalid as exc:
            exc.path.insert(0, name)
            raise
    return spec.cls(*args)


def _record_checker(spec: _Spec) -> _Check:
    def check_record(value: Any) -> Any:
        if type(value) is not list:
            raise _expected(f"an array of {spec.cls.__name__} fields", value)
        if not spec.required <= len(value) <= len(spec.names):
            raise _Invalid(
                f"must be an array of {spec.describe_count()} ({spec.cls.__name__}),"
                f" got {len(value)}"
            )
        return _build(spec, value, 0)

    return check_record


# --- messages -----------------------------------------------------------------

_MESSAGE_SPECS: dict[str, _Spec] = {tag: _spec_for(cls) for tag, cls in MESSAGE_TYPES.items()}


def _decode_generic(spec: _Spec, m: list[Any], index: int) -> Message:
    tag = m[0]
    call_id = None
    if spec.names and spec.names[0] == "id" and len(m) > 1 and type(m[1]) is int:
        call_id = m[1]
    count = len(m) - 1
    if not spec.required <= count <= len(spec.names):
        raise WireError(
            f"message {index} ({tag}): expected {spec.describe_count()} after the tag, got {count}",
            index=index,
            tag=tag,
            call_id=call_id,
        )
    try:
        message: Message = _build(spec, m, 1)
    except _Invalid as exc:
        raise WireError(
            f"message {index} ({tag}): {exc.render()}", index=index, tag=tag, call_id=call_id
        ) from None
    return message


def _generic_decoder(spec: _Spec) -> Callable[[list[Any], int], Message]:
    def decode(m: list[Any], index: int) -> Message:
        return _decode_generic(spec, m, index)

    return decode


def _generic_encoder(tag: str, spec: _Spec) -> Callable[[Any], list[Any]]:
    encode_fields = spec.encode
    prefix = [tag]
    return lambda message: prefix + encode_fields(message)


# The hot messages, by hand.  The decoders accept the complete, well-typed
# shape inline (one length check and a type() per field) and leave everything
# else, defaults and error messages, to the generic path.

_REQUEST_SPEC = _MESSAGE_SPECS[Request.TAG]
_RESPONSE_SPEC = _MESSAGE_SPECS[Response.TAG]


def _encode_request(m: Request) -> list[Any]:
    if m.caller_id is None:
        return ["req", m.id, m.uuid, m.operation, m.payload, m.client_id]
    return ["req", m.id, m.uuid, m.operation, m.payload, m.client_id, m.caller_id]


def _decode_request(m: list[Any], index: int) -> Message:
    if len(m) == 6:
        _, id_, uuid, operation, payload, client_id = m
        if (
            type(id_) is int
            and type(uuid) is str
            and type(operation) is str
            and type(payload) is bytes
            and (client_id is None or type(client_id) is str)
        ):
            return Request(id_, uuid, operation, payload, client_id)
    elif len(m) == 7:
        _, id_, uuid, operation, payload, client_id, caller_id = m
        if (
            type(id_) is int
            and type(uuid) is str
            and type(operation) is str
            and type(payload) is bytes
            and type(client_id) is str
            and type(caller_id) is int
        ):
            return Request(id_, uuid, operation, payload, client_id, caller_id)
    return _decode_generic(_REQUEST_SPEC, m, index)


def _encode_response(m: Response) -> list[Any]:
    return ["res", m.id, m.payload]


def _decode_response(m: list[Any], index: int) -> Message:
    if len(m) == 3:
        _, id_, payload = m
        if type(id_) is int and type(payload) is bytes:
            return Response(id_, payload)
    return _decode_generic(_RESPONSE_SPEC, m, index)


# Ping and Pong have no fields: one shared instance each is enough (frozen).
_PING = Ping()
_PONG = Pong()
_PING_WIRE = ["ping"]
_PONG_WIRE = ["pong"]


def _decode_ping(m: list[Any], index: int) -> Message:
    if len(m) == 1:
        return _PING
    return _decode_generic(_MESSAGE_SPECS[Ping.TAG], m, index)


def _decode_pong(m: list[Any], index: int) -> Message:
    if len(m) == 1:
        return _PONG
    return _decode_generic(_MESSAGE_SPECS[Pong.TAG], m, index)


_ENCODERS: dict[type[Any], Callable[[Any], list[Any]]] = {
    cls: _generic_encoder(tag, _MESSAGE_SPECS[tag]) for tag, cls in MESSAGE_TYPES.items()
}
_ENCODERS[Request] = _encode_request
_ENCODERS[Response] = _encode_response
_ENCODERS[Ping] = lambda m: _PING_WIRE
_ENCODERS[Pong] = lambda m: _PONG_WIRE

_DECODERS: dict[str, Callable[[list[Any], int], Message]] = {
    tag: _generic_decoder(spec) for tag, spec in _MESSAGE_SPECS.items()
}
_DECODERS[Request.TAG] = _decode_request
_DECODERS[Response.TAG] = _decode_response
_DECODERS[Ping.TAG] = _decode_ping
_DECODERS[Pong.TAG] = _decode_pong


def _to_wire(message: Message) -> list[Any]:
    """Return ``message`` as its wire array (before msgpack); for the codec and benchmarks."""
    encode = _ENCODERS.get(type(message))
    if encode is None:
        raise LocalProtocolError(f"not a protocol message: {type(message).__qualname__}")
    try:
        return encode(message)
    except (AttributeError, TypeError) as exc:
        # A field holds something of the wrong shape (None for a nested record...).
        raise LocalProtocolError(f"cannot encode {message.TAG!r} message: {exc}") from exc


def _from_wire(obj: Any, index: int) -> Message:
    """Return the message for wire array ``obj`` (after msgpack); raises WireError."""
    if type(obj) is list and obj:
        tag = obj[0]
        if type(tag) is str:
            decode = _DECODERS.get(tag)
            if decode is not None:
                return decode(obj, index)
            shown = tag if len(tag) <= 40 else tag[:40] + "..."
            raise WireError(f"message {index}: unknown tag {shown!r}", index=index)
        raise WireError(f"message {index}: tag must be str, got {_type_name(tag)}", index=index)
    if type(obj) is list:
        raise WireError(f"message {index}: empty array, expected [tag, fields...]", index=index)
    raise WireError(
        f"message {index}: must be an array [tag, fields...], got {_type_name(obj)}",
        index=index,
    )


# --- msgpack ------------------------------------------------------------------


def _refuse_value(value: Any) -> Any:
    # msgpack's ``default`` hook: the value is of a type msgpack cannot pack,
    # or an int it cannot pack (msgpack ints are 64-bit).
    if isinstance(value, int):
        raise LocalProtocolError(f"cannot encode int {value}: outside the 64-bit range")
    raise LocalProtocolError(
        f"cannot encode a value of type {type(value).__qualname__}"
        " (only None, bool, int, float, str, bytes, lists, tuples and dicts encode)"
    )


def _unpack(data: bytes, what: str) -> Any:
    try:
        # No ext_hook: passing one costs a third of the unpack time of a small
        # frame.  Extension values become msgpack.ExtType / Timestamp objects,
        # which fail every typed field check and are otherwise user data.
        return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=False)
    except msgpack.ExtraData:
        raise WireError(f"{what} is not valid msgpack: trailing bytes after the value") from None
    except msgpack.StackError:
        raise WireError(f"{what} is not valid msgpack: nested too deeply") from None
    except msgpack.FormatError:
        raise WireError(f"{what} is not valid msgpack: invalid type byte") from None
    except Exception as exc:
        # msgpack also raises ValueError (truncated), TypeError
        # (a map key that is an array or map) and UnicodeDecodeError; all
        # mean the same thing to the peer.
        reason = str(exc) or type(exc).__name__
        if "incomplete input" in reason:
            reason = "truncated"
        raise WireError(f"{what} is not valid msgpack: {reason}") from None


# A reused Packer halves the cost of packb, which builds one per call.  It
# keeps a buffer between calls, so each thread gets its own: a thread switch
# inside the ``default`` hook must not interleave two frames in one buffer.
_packers = threading.local()
#: A packer that packed more than this is dropped: its buffer keeps the size of the
#: largest value it ever packed (a 34 MiB burst for a peer that did not read stayed
#: allocated for ever; found by tests/fuzz/test_live_hub.py's memory target).
_KEEP_PACKER_BYTES = 1 << 20


def _new_packer() -> Any:
    packer = msgpack.Packer(use_bin_type=True, default=_refuse_value)
    _packers.packer = packer
    return packer


def _pack(value: Any) -> bytes:
    packer = getattr(_packers, "packer", None) or _new_packer()
    try:
        # autoreset (the default) empties the buffer after each pack, and
        # after a failed one too.
        packed: bytes = packer.pack(value)
        if len(packed) > _KEEP_PACKER_BYTES:
            _packers.packer = None
    except LocalProtocolError:
        raise
    except (OverflowError, ValueError, TypeError) as exc:
        # OverflowError: int beyond 64 bits; ValueError: nesting too deep or
        # data too large for msgpack; TypeError: an unhashable or odd key type.
        raise LocalProtocolError(f"cannot encode: {exc}") from exc
    return packed


# --- registry events: encoded once for every session ------------------------------

#: The encodings of the latest ``Event`` messages, most recently used last:
#: the hub sends one ``Event`` object to every session that sees all events,
#: and each session's outbox encodes its own frame.  Converting a 60,000-
#: change event takes over a second of Python; packed once and reused it
#: costs each further session a copy of its bytes.  Bounded in entries and
#: bytes; per thread, like the packers.
_EVENT_CACHE_ENTRIES = 16
_EVENT_CACHE_BYTES = 16 * 1024 * 1024
_event_caches = threading.local()


def _event_bytes(message: Message) -> bytes:
    """Return ``message`` (an ``Event``) packed alone, from the cache when it was before."""
    cache: dict[int, tuple[Message, bytes]] | None = getattr(_event_caches, "cache", None)
    if cache is None:
        cache = _event_caches.cache = {}
        _event_caches.size = 0
    key = id(message)
    hit = cache.pop(key, None)
    if hit is not None and hit[0] is message:
        cache[key] = hit  # most recently used now
        return hit[1]
    if hit is not None:  # the id of an event no longer alive, reused
        _event_caches.size -= len(hit[1])
    data = _pack(_to_wire(message))
    if len(data) <= _EVENT_CACHE_BYTES:
        size = _event_caches.size + len(data)
        while cache and (len(cache) >= _EVENT_CACHE_ENTRIES or size > _EVENT_CACHE_BYTES):
            size -= len(cache.pop(next(iter(cache)))[1])
        cache[key] = (message, data)
        _event_caches.size = size
    return data


def _array_header(n: int) -> bytes:
    """Return the msgpack header of an array of ``n`` items."""
    if n < 16:
        return bytes((0x90 | n,))
    if n < 0x10000:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _encode_frame_with_events(messages: Sequence[Message]) -> bytes:
    """``encode_frame`` for a frame with an ``Event``: each message packed alone, joined."""
    parts = [_array_header(len(messages))]
    for m in messages:
        parts.append(_event_bytes(m) if type(m) is Event else _pack(_to_wire(m)))
    return b"".join(parts)


# --- public API -----------------------------------------------------------------


def encode_frame(messages: Sequence[Message]) -> bytes:
    """Encode ``messages`` as one WebSocket binary frame (a msgpack array).

    Returns the frame's bytes.  Field values are not type-checked here (the
    receiving side checks them); ``decode_frame(encode_frame(ms)) == list(ms)``
    for well-typed messages, except that ``extra`` dicts come back with lists
    where they had tuples.

    Raises ``LocalProtocolError`` if an item is not a protocol message, or a
    field holds something msgpack cannot encode (the message names the type).
    """
    for m in messages:
        if type(m) is Event:
            # The same bytes: a msgpack array is its header and its items.
            return _encode_frame_with_events(messages)
    return _pack([_to_wire(m) for m in messages])


def _unpack_frame(data: bytes, max_bytes: int) -> list[Any]:
    # A tuple, not a union: isinstance on a union is three times slower.
    if type(data) is not bytes and not isinstance(data, (bytearray, memoryview)):
        raise WireError(f"frame must be bytes, got {_type_name(data)}")
    size = len(data)
    if size > max_bytes:
        raise WireError(f"frame too large: {size} bytes > limit {max_bytes}")
    obj = _unpack(data, "frame")
    if type(obj) is not list:
        raise WireError(f"frame must be an array of messages, got {_type_name(obj)}")
    return obj


def decode_frame(data: bytes, max_bytes: int = MAX_FRAME_BYTES) -> list[Message]:
    """Decode one frame into its messages, all or nothing.

    Returns the messages in frame order (an empty frame gives ``[]``).

    Raises ``WireError`` (a ``RemoteProtocolError``, code ``PROTOCOL``) when
    the frame is larger than ``max_bytes``, is not valid msgpack, is not an
    array, or any message in it is malformed: not an array, unknown tag, wrong
    field count, or a field of the wrong type.  The error's ``index``, ``tag``
    and ``call_id`` describe the first bad message.  No other exception type
    escapes, whatever the bytes.
    """
    return [_from_wire(obj, i) for i, obj in enumerate(_unpack_frame(data, max_bytes))]


def decode_frame_lenient(
    data: bytes, max_bytes: int = MAX_FRAME_BYTES, max_errors: int | None = None
) -> tuple[list[Message], list[WireError]]:
    """Decode one frame, keeping the good messages when some are bad.

    Returns ``(messages, errors)``: the messages that decoded, in frame order,
    and one ``WireError`` per bad message, in frame order, each with
    ``index`` and, when readable, ``tag`` and ``call_id`` so the caller can
    answer that call with an ``Error`` and carry on with the rest.  With
    ``max_errors``, decoding stops at bad message ``max_errors + 1``: more
    than ``max_errors`` errors means the rest of the frame was not decoded.

    Raises ``WireError`` when the frame as a whole is unusable (too large, not
    msgpack, not an array): then there are no messages to keep.
    """
    messages: list[Message] = []
    errors: list[WireError] = []
    for i, obj in enumerate(_unpack_frame(data, max_bytes)):
        try:
            messages.append(_from_wire(obj, i))
        except WireError as exc:
            errors.append(exc)
            if max_errors is not None and len(errors) > max_errors:
                break
    return messages, errors


def encode_payload(value: Any) -> bytes:
    """Encode user data for a ``Request``, ``Response`` or ``Push`` payload.

    Returns msgpack bytes (str as str, bytes as bin); ``None`` encodes as the
    empty payload ``b""``, the default of the message fields.  Tuples are
    encoded as arrays and so decode as lists; subclasses of the basic types
    (``IntEnum``, ``str`` enums, dict subclasses) encode as their base type;
    ``msgpack.ExtType`` and ``msgpack.Timestamp`` values are kept.

    Raises ``LocalProtocolError`` naming the type when the value holds
    something msgpack cannot encode (sets, datetimes, arbitrary objects), or
    an int outside the 64-bit range.
    """
    if value is None:
        return b""
    return _pack(value)


def decode_payload(data: bytes) -> Any:
    """Decode a payload produced by ``encode_payload`` (or any msgpack peer).

    Returns the value: ``None`` for the empty payload, lists for arrays,
    dicts with whatever key types were sent (str, int, float, bool, bytes,
    None), ``msgpack.ExtType`` / ``msgpack.Timestamp`` for extension values.

    Raises ``RemoteProtocolError`` (a ``WireError``) when ``data`` is not
    exactly one valid msgpack value, or a map key is an array or map (those
    cannot be Python dict keys; ``encode_payload`` accepts tuple keys, which
    therefore do not survive the round trip).
    """
    if not data:
        return None
    return _unpack(data, "payload")
