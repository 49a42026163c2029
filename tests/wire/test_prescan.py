"""Reading a frame's registrations from its msgpack headers (``wire.prescan``)."""

from __future__ import annotations

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from hulytrio.core.messages import Ping, RegisterAgent, Request, Response
from hulytrio.core.types import OfferedContainer
from hulytrio.wire.codec import decode_frame, decode_frame_lenient, encode_frame
from hulytrio.wire.prescan import registrations, without

_offer = st.builds(OfferedContainer, st.text(max_size=8), st.text(max_size=5),
                   st.lists(st.text(max_size=3), max_size=2).map(tuple), st.booleans())
_register = st.builds(RegisterAgent, st.integers(0, 2**40), st.text(max_size=8),
                      st.lists(st.text(max_size=6), max_size=5).map(tuple),
                      st.none() | st.just("ws://h:1"),
                      st.lists(_offer, max_size=6).map(tuple),
                      st.none() | st.integers(1, 9))
_other = st.one_of(st.just(Ping()),
                   st.builds(Request, st.integers(0, 99), st.text(max_size=4), st.text(max_size=3),
                             st.binary(max_size=20)),
                   # a payload holding the tag's bytes must not confuse the reader
                   st.builds(Response, st.integers(0, 99), st.just(b"\xa8register\x93")))
_frames = st.lists(st.one_of(_register, _other), max_size=8)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(_frames)
def test_the_headers_give_what_decoding_gives(messages) -> None:
    frame = encode_frame(messages)
    found = registrations(frame)
    expected = [(i, m.id, m.agent_id, len(m.kinds), len(m.containers))
                for i, m in enumerate(messages) if isinstance(m, RegisterAgent)]
    assert [(r.index, r.call_id, r.agent_id, r.kinds, r.offers) for r in found] == expected
    # Cutting any of them out leaves exactly the others, decodable.
    for cut in (found, found[:1], found[1:]):
        indexes = {r.index for r in cut}
        assert decode_frame(without(frame, cut)) == [
            m for i, m in enumerate(messages) if i not in indexes]


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=200), st.binary(max_size=40))
def test_any_bytes_give_a_list_and_no_exception(prefix, suffix) -> None:
    for data in (prefix, prefix + b"\xa8register" + suffix,
                 b"\x91\x94\xa8register" + suffix, b"\x92\x96\xa8register\x01\xa1a" + suffix):
        found = registrations(data)
        assert isinstance(found, list)
        for r in found:
            assert 0 <= r.start < r.end <= len(data)


def test_a_frame_without_the_tag_is_not_read() -> None:
    frame = encode_frame([Request(1, "u", "op", b"x" * 100_000)] * 3)
    assert registrations(frame) == []


def test_a_registration_with_mistyped_fields_is_left_to_the_decoder() -> None:
    frame = msgpack.packb([["register", "not-an-id", "ag", ["k"]], ["ping"]])
    assert registrations(frame) == []
    _messages, errors = decode_frame_lenient(frame)
    assert len(errors) == 1


def test_many_messages_keep_a_correct_header_after_a_cut() -> None:
    big = RegisterAgent(1, "big", ("k",), containers=tuple(
        OfferedContainer(f"u{i}", "k") for i in range(20)))
    messages = [Ping()] * 70_000 + [big]  # a 32-bit array header, cut to 70,000
    frame = encode_frame(messages)
    (found,) = registrations(frame)
    assert found.offers == 20
    assert len(decode_frame(without(frame, [found]))) == 70_000
