"""An ``Event`` sent to many sessions is converted once: same bytes, bounded cache."""

from __future__ import annotations

import pytest

from hulytrio.core.events import ChangeKind, ContainerEvent, NetworkEvent
from hulytrio.core.messages import Event, Ping, Response
from hulytrio.core.types import ContainerRecord
from hulytrio.wire import codec
from hulytrio.wire.codec import decode_frame, encode_frame


def _event(seq: int, n: int = 3, size: int = 0) -> Event:
    return Event(NetworkEvent(seq, (), tuple(
        ContainerEvent(ChangeKind.ADDED,
                       ContainerRecord(f"u{seq}-{i}", "echo", "ag", None, ("x" * size,)))
        for i in range(n))))


def _plain(messages) -> bytes:
    return codec._pack([codec._to_wire(m) for m in messages])


@pytest.mark.parametrize("before", [0, 1, 14, 15, 16, 65_534, 65_535, 65_536])
def test_a_frame_with_an_event_is_the_same_bytes_whatever_its_length(before: int) -> None:
    messages = [Ping()] * before + [_event(1), Response(7, b"r")]
    frame = encode_frame(messages)
    assert frame == _plain(messages)
    assert decode_frame(frame) == messages


def test_one_event_sent_to_many_sessions_is_converted_once(monkeypatch) -> None:
    event = _event(2, n=100)
    converted: list[object] = []
    real = codec._to_wire

    def counting(message):
        converted.append(message)
        return real(message)

    monkeypatch.setattr(codec, "_to_wire", counting)
    frames = [encode_frame([Ping(), event]) for _ in range(50)]
    assert len(set(frames)) == 1
    assert converted.count(event) == 1
    assert frames[0] == _plain([Ping(), event])


def test_the_cache_is_bounded_in_entries_and_bytes() -> None:
    kept = [_event(100 + i) for i in range(3 * codec._EVENT_CACHE_ENTRIES)]
    for event in kept:
        encode_frame([event])
    cache = codec._event_caches.cache
    assert len(cache) <= codec._EVENT_CACHE_ENTRIES
    # The most recent ones are kept.
    assert all(id(e) in cache for e in kept[-codec._EVENT_CACHE_ENTRIES + 1:])
    big = [_event(500 + i, n=4, size=1024 * 1024) for i in range(8)]  # ~4 MiB each
    for event in big:
        assert encode_frame([event]) == _plain([event])
    assert codec._event_caches.size <= codec._EVENT_CACHE_BYTES
    assert codec._event_caches.size == sum(len(v[1]) for v in cache.values())


def test_a_reused_id_never_returns_another_events_bytes() -> None:
    event = _event(900)
    other = _event(901)
    # As if ``other`` had died and ``event`` were allocated at its address.
    encode_frame([event])
    cache = codec._event_caches.cache
    cache[id(event)] = (other, b"stale")
    codec._event_caches.size += len(b"stale")
    assert encode_frame([event]) == _plain([event])
    assert cache[id(event)][0] is event
