"""Structure-aware fuzz of the frame parser (``transport/frames.py``), issue 13.

Two properties, both fed in random splits:

- *structured*: frames built field by field (FIN, reserved bits, any of the
  16 opcodes, the mask bit right or wrong, lengths in their minimal or a
  longer encoding, payloads around 125/126/65535/65536, close codes and
  reasons, text valid or not, fragments and control frames interleaved)
  are read exactly as an independent model of RFC 6455 says: the same
  items up to the first violation, then an error whose close code is one
  the violation calls for;
- *mutated*: the same streams with bits flipped, bytes cut, inserted or
  lying lengths, and plain random bytes: ``feed`` returns items of the
  right types or our ``FrameError`` (never another exception), reads
  nothing after an error, and never holds more than the message limit
  plus ``MessageReader.OVERHEAD``.
"""

from __future__ import annotations

import itertools

from framegen import VALID_CLOSE, Spec, mutated_streams, specs
from fuzzing import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from hulytrio.transport.frames import Control, FrameError, MessageReader

LIMITS = (125, 126, 65_535, 65_536, 70_000)


def model(frames: list[Spec], *, masked: bool, limit: int
          ) -> tuple[list[bytes | str | Control], set[int] | None]:
    """What RFC 6455 says a reader makes of ``frames``: the items, and the codes the first
    violation may be answered with (None: no violation)."""
    items: list[bytes | str | Control] = []
    message: int | None = None  # the opcode of the fragmented message being read
    parts: list[bytes] = []
    for f in frames:
        codes: set[int] = set()
        if f.rsv:
            codes.add(1002)  # 5.2: no extension negotiated
        if f.masked != masked:
            codes.add(1002)  # 5.1, 5.3
        if f.opcode >= 8:
            if not f.fin or len(f.payload) > 125:
                codes.add(1002)  # 5.5
            if f.opcode not in (8, 9, 10):
                codes.add(1002)  # 5.2: reserved opcode
            if f.opcode == 8 and len(f.payload) == 1:
                codes.add(1002)  # 5.5.1
            if f.opcode == 8 and len(f.payload) >= 2:
                if int.from_bytes(f.payload[:2], "big") not in VALID_CLOSE:
                    codes.add(1002)  # 7.4
                try:
                    f.payload[2:].decode("utf-8")
                except UnicodeDecodeError:
                    codes.add(1007)  # 5.5.1, 8.1
            if codes:
                return items, codes
            if f.opcode == 8:
                code = int.from_bytes(f.payload[:2], "big") if f.payload else 1005
                items.append(Control(8, f.payload, code, f.payload[2:].decode("utf-8")))
            else:
                items.append(Control(f.opcode, f.payload))
            continue
        if f.opcode not in (0, 1, 2):
            codes.add(1002)
        if f.opcode == 0 and message is None:
            codes.add(1002)  # 5.4: a continuation with no message
        if f.opcode in (1, 2) and message is not None:
            codes.add(1002)  # 5.4: a new message inside a fragmented one
        if len(f.payload) > limit - sum(map(len, parts)):
            codes.add(1009)
        if codes:
            return items, codes
        opcode = message if f.opcode == 0 else f.opcode
        parts.append(f.payload)
        if not f.fin:
            message = opcode
            continue
        whole, parts, message = b"".join(parts), [], None
        if opcode == 1:
            try:
                items.append(whole.decode("utf-8"))
            except UnicodeDecodeError:
                return items, {1007}  # 8.1
        else:
            items.append(whole)
    return items, None


def feed_in_pieces(reader: MessageReader, data: bytes, cuts: list[int]
                   ) -> tuple[list[bytes | str | Control], FrameError | None]:
    """Feed ``data`` cut at ``cuts``; returns every item and the error (checking the bounds)."""
    items: list[bytes | str | Control] = []
    error: FrameError | None = None
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for start, end in itertools.pairwise(points):
        got, err = reader.feed(data[start:end])
        if error is not None:
            assert (got, err) == ([], None), "nothing is read after an error"
        items.extend(got)
        error = error or err
        assert all(isinstance(i, bytes | str | Control) for i in got)
        assert reader.buffered <= reader.max_message_size + MessageReader.OVERHEAD
    return items, error


@fuzz_settings(400)
@given(st.booleans(), st.sampled_from(LIMITS), st.data())
def test_structured_frames_are_read_as_the_rfc_says(masked, limit, data):
    frames = data.draw(st.lists(specs(masked=masked), max_size=10), label="frames")
    cuts = data.draw(st.lists(st.integers(0, 1 << 20), max_size=6), label="cuts")
    expected, codes = model(frames, masked=masked, limit=limit)
    reader = MessageReader(masked=masked, max_message_size=limit)
    items, error = feed_in_pieces(reader, b"".join(f.encode() for f in frames), cuts)
    assert items == expected
    if codes is None:
        assert error is None
        assert reader.buffered == 0 or not frames[-1].fin or frames[-1].opcode >= 8
    else:
        assert error is not None, f"expected a close with one of {codes}"
        assert error.code in codes, (error.code, error.reason, codes)
        assert error.reason
        assert "\n" not in error.reason


@fuzz_settings(400)
@given(st.booleans(), st.sampled_from(LIMITS), st.data())
def test_damaged_streams_give_frames_or_a_frame_error_and_bounded_memory(masked, limit, data):
    stream = data.draw(mutated_streams(masked=masked), label="stream")
    cuts = data.draw(st.lists(st.integers(0, 1 << 20), max_size=8), label="cuts")
    reader = MessageReader(masked=masked, max_message_size=limit)
    _, error = feed_in_pieces(reader, stream, cuts)
    if error is not None:
        assert error.code in (1002, 1007, 1009)
        assert reader.failed
    # an endless trickle after a header that promised more is bounded too
    for _ in range(3):
        reader.feed(b"\x00" * 50_000)
        assert reader.buffered <= limit + MessageReader.OVERHEAD


def test_a_control_frame_declaring_a_huge_length_is_refused_from_its_header():
    # Found by the fuzz above: the header of a ping that declares 2**62
    # bytes was accepted, and every byte after it buffered for ever.
    for masked in (True, False):
        reader = MessageReader(masked=masked, max_message_size=1000)
        header = bytes((0x89, 0x80 * masked | 127)) + (1 << 62).to_bytes(8, "big")
        items, error = reader.feed(header)
        assert items == []
        assert error is not None
        assert error.code == 1002
        assert "control frames" in error.reason
        assert reader.feed(b"x" * 10_000) == ([], None)
        assert reader.buffered == 0
