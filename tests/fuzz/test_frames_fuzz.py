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

import attrs
from fuzzing import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from hulytrio.transport.frames import Control, FrameError, MessageReader, mask

KEY = b"\x37\xfa\x21\x3d"
#: Sizes around the RFC's length encodings and the control frame limit.
EDGE_SIZES = (0, 1, 2, 124, 125, 126, 127, 65_535, 65_536, 65_537)
LIMITS = (125, 126, 65_535, 65_536, 70_000)
#: Close codes a peer may send (RFC 6455 7.4.1, 7.4.2 and IANA's 1012-1014): the model's own list.
VALID_CLOSE = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
               *range(3000, 5000)}


@attrs.frozen
class Spec:
    """One frame, field by field (RFC 6455 5.2)."""

    fin: bool
    rsv: int
    opcode: int
    payload: bytes
    masked: bool
    #: 0: the minimal length encoding; 1: 16-bit where it fits; 2: always 64-bit
    length_form: int = 0

    def encode(self) -> bytes:
        n = len(self.payload)
        b0 = (0x80 if self.fin else 0) | self.rsv << 4 | self.opcode
        bit = 0x80 if self.masked else 0
        if n < 126 and self.length_form == 0:
            header = bytes((b0, bit | n))
        elif n < 65_536 and self.length_form < 2:
            header = bytes((b0, bit | 126)) + n.to_bytes(2, "big")
        else:
            header = bytes((b0, bit | 127)) + n.to_bytes(8, "big")
        if self.masked:
            return header + KEY + mask(self.payload, KEY)
        return header + self.payload


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        size = draw(st.sampled_from(EDGE_SIZES))
        return draw(st.binary(min_size=1, max_size=4)) * size if size else b""
    return draw(st.binary(max_size=40))


@st.composite
def close_payloads(draw: st.DrawFn) -> bytes:
    shape = draw(st.integers(0, 5))
    if shape == 0:
        return b""
    if shape == 1:
        return draw(st.binary(min_size=1, max_size=1))  # one byte: always a violation
    code = draw(st.one_of(st.sampled_from(sorted({999, 1004, 1005, 1006, 1015, 1016, 2999,
                                                  5000, 65535} | VALID_CLOSE - set(
                                                      range(3001, 4999)))),
                          st.integers(0, 65535)))
    reason = (draw(st.text(max_size=20)).encode() if shape < 5
              else draw(st.binary(max_size=20)))
    return code.to_bytes(2, "big") + reason


@st.composite
def specs(draw: st.DrawFn, *, masked: bool) -> Spec:
    """One frame: mostly well-formed for a reader expecting ``masked`` frames, sometimes not."""
    odd = draw(st.integers(0, 7)) == 0  # one frame in eight breaks a header rule
    rsv = draw(st.integers(1, 7)) if odd and draw(st.booleans()) else 0
    wrong_mask = odd and draw(st.booleans())
    opcode = draw(st.sampled_from((0, 1, 2, 8, 9, 10) if not odd else range(16)))
    if opcode == 8:
        payload = draw(close_payloads())
    elif opcode == 1:
        payload = (draw(st.text(max_size=30)).encode() if draw(st.integers(0, 4))
                   else draw(payloads()))
    else:
        payload = draw(payloads())
    fin = draw(st.booleans()) if opcode < 8 or odd else True
    return Spec(fin, rsv, opcode, payload, masked != wrong_mask, draw(st.integers(0, 2)))


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
    for start, end in zip(points, points[1:], strict=False):
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
        assert error.reason and "\n" not in error.reason


@st.composite
def mutated_streams(draw: st.DrawFn, *, masked: bool) -> bytes:
    """A valid-looking stream, then damaged: flips, cuts, insertions, lying lengths."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=300))  # plain random bytes
    data = bytearray(b"".join(f.encode() for f in draw(st.lists(specs(masked=masked),
                                                                   min_size=1, max_size=6))))
    for _ in range(draw(st.integers(1, 4))):
        what = draw(st.integers(0, 4))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if what == 0 and data:
            data[at] ^= 1 << draw(st.integers(0, 7))  # a flipped bit
        elif what == 1:
            del data[at:at + draw(st.integers(1, 20))]  # a cut: truncated frames
        elif what == 2:
            data[at:at] = draw(st.binary(min_size=1, max_size=12))  # junk inserted
        elif what == 3 and len(data) > at + 1:
            data[at + 1] = (data[at + 1] & 0x80) | draw(st.sampled_from((126, 127)))
        else:  # a header declaring a huge length, then whatever follows
            data[at:at] = bytes((draw(st.integers(0, 255)), 0x80 * masked | 127)) + draw(
                st.sampled_from((1 << 63, (1 << 64) - 1, 1 << 32, 70_000, 126))).to_bytes(
                    8, "big")
    return bytes(data)


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
