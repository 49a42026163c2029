"""Hypothesis strategies for WebSocket frames built field by field (RFC 6455 5.2), for fuzzing.

``specs`` draws one frame, mostly well-formed and sometimes breaking a header
rule; ``mutated_streams`` damages a stream of them (flipped bits, cuts,
insertions, lying lengths) or draws plain random bytes.
"""

from __future__ import annotations

import attrs
from hypothesis import strategies as st

from hulytrio.transport.frames import mask

KEY = b"\x37\xfa\x21\x3d"
#: Sizes around the RFC's length encodings and the control frame limit.
EDGE_SIZES = (0, 1, 2, 124, 125, 126, 127, 65_535, 65_536, 65_537)
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
