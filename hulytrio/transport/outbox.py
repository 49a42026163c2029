"""A bounded per-connection send queue, flushed as one frame per scheduler round.

Theory of operation: drivers never await a socket while feeding a state
machine.  Every ``Send`` effect is put on the connection's ``Outbox``
without blocking, and the outbox decides when it becomes bytes: at the end
of the current trio scheduler round.  A trio ``Instrument`` (``_RoundFlush``)
runs just before the run loop polls for I/O, that is once every task made
runnable has had its turn, and writes each outbox that received messages in
that round: everything queued goes out as *one* WebSocket frame
(``encode_frame``), handed straight to the kernel.  So a burst that several
tasks produce in one round costs one frame and one system call, and a lone
message is written before the process sleeps: no timer, no task switch, no
added delay.  (Measured against writing each message at once and against a
writer task: docs/performance.md.)  One refinement: a burst as large as the
previous round's leaves in two frames, the first as soon as half of it is
queued, so that the peer can start on it (``MIN_SPLIT``).

The connection's writer task only steps in when the kernel refuses bytes:
it waits until the socket is writable and sends the rest.  Messages queued
meanwhile are still encoded at the end of their round and kept as bytes by
the WebSocket, so what a connection holds for its peer is measured in bytes
in one place (``WebSocket.pending``, pongs and early halves included) and
bounded there (``max_bytes``, set as the WebSocket's ``max_pending``): a
peer that does not read is dropped instead of buffering without limit or
stalling everyone else.  The message count (``limit``) bounds what one
round may queue.
"""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import Callable, Sequence

import attrs
import trio

from hulytrio.core.messages import Message

from ..wire.codec import MAX_FRAME_BYTES, encode_frame
from .websocket import WebSocket, WebSocketClosed

__all__ = ["CLOSE_WAIT", "Outbox", "OutboxStatistics", "Oversized"]

log = logging.getLogger("hulytrio.transport")

#: A round that queues as many messages as the last one sends the first half
#: at once, as soon as it is queued, and the rest when the round ends: the
#: peer (on the other core) starts on the first half while this process
#: produces the second, instead of the two taking turns.  Measured, quiet
#: 2-core machine, 4 interleaved rounds: direct-16 14.2k -> 24.8k req/s,
#: direct-64 21.1k -> 23.6k, hub-16 8.8k -> 10.2k, hub-64 13.8k -> 14.5k
#: (docs/performance.md).  Bursts under twice this many stay one frame.
MIN_SPLIT = 4
_NEVER = 1 << 62

#: The most a msgpack array header takes (the frame of a batch is this plus its messages).
_ARRAY_HEADER = 5

#: Seconds a closing connection waits for the peer's close frame before it is cut.
CLOSE_WAIT = 1.0


@attrs.frozen
class OutboxStatistics:
    """What one outbox has done: frames and messages sent, messages queued now."""

    frames: int
    messages: int
    queued: int


class _RoundFlush(trio.abc.Instrument):
    """Flushes the outboxes that got messages in this round, before the I/O wait."""

    def __init__(self) -> None:
        self.dirty: list[Outbox] = []
        self.token = trio.lowlevel.current_trio_token()

    def before_io_wait(self, timeout: float) -> None:
        dirty = self.dirty
        if not dirty:
            return
        self.dirty = []
        for outbox in dirty:
            # An exception here would make trio drop this instrument (and
            # every later flush with it): a failure is handed to the writer.
            try:
                outbox._flush()
            except Exception as exc:  # pragma: no cover - encode_frame of core messages
                outbox._failure = exc
                self.token.run_sync_soon(outbox._wake)


_FLUSH: trio.lowlevel.RunVar[_RoundFlush] = trio.lowlevel.RunVar("hulytrio_round_flush")


def _round_flush() -> _RoundFlush:
    """Return this trio run's flusher, installing it on first use."""
    try:
        return _FLUSH.get()
    except LookupError:
        flush = _RoundFlush()
        trio.lowlevel.add_instrument(flush)
        _FLUSH.set(flush)
        return flush


#: Called (soon, from the run loop) with a message too large to send alone and its size.
Oversized = Callable[[Message, int], None]


class Outbox:
    """A bounded queue of messages for one connection (``limit``: inf for unbounded).

    No frame it writes is larger than ``max_frame_bytes`` (the peer's limit):
    a batch that encodes larger is split by bytes, and a message too large
    to go alone is not sent but handed to ``oversized`` (or logged and
    dropped without one), which fails its call.
    """

    def __init__(self, limit: float = math.inf, *, max_batch: int = 4096,
                 max_frame_bytes: int = MAX_FRAME_BYTES,
                 max_bytes: float = math.inf,
                 oversized: Oversized | None = None) -> None:
        self.limit = limit
        #: bytes kept for the peer beyond which it is dropped (``WebSocket.max_pending``)
        self.max_bytes = max_bytes
        self.max_batch = max_batch
        self.max_frame_bytes = max_frame_bytes
        self._oversized = oversized
        self._token: trio.lowlevel.TrioToken | None = None
        self.frames = 0
        self.messages = 0
        self.closing = False
        self._queue: collections.deque[Message] = collections.deque()
        self._ws: WebSocket | None = None
        self._flusher: _RoundFlush | None = None
        self._dirty = False
        self._lot = trio.lowlevel.ParkingLot()
        self._close_reason: str | None = None
        self._close_code = 1000
        self._failure: Exception | None = None
        #: messages of this round already sent early, and when to send early
        self._round_sent = 0
        self._split_at = _NEVER
        #: called by the writer when the kernel has taken every byte kept
        #: for the peer (``WebSocket.pending`` back to 0 after a backlog)
        self.on_caught_up: Callable[[], None] | None = None

    def put_nowait(self, message: Message) -> bool:
        """Queue ``message`` for this round's frame; returns False when full or closing."""
        if self.closing or len(self._queue) >= self.limit:
            return False
        self._queue.append(message)
        if not self._dirty:
            self._mark_dirty()
        elif len(self._queue) >= self._split_at:
            self._send_half()
        return True

    def _send_half(self) -> None:
        """Send what this round queued so far (once per round; see ``MIN_SPLIT``)."""
        self._split_at = _NEVER
        ws = self._ws
        if ws is None or ws.pending:
            return
        self._round_sent += len(self._queue)
        self._send_queued(ws)

    def close_after_flush(self, reason: str, code: int = 1000) -> bool:
        """Ask the writer to send what is queued, then close with ``code``; returns True.

        ``code`` is the WebSocket close code (1001, "going away", for a hub
        that shuts down).  (The return value is kept for drivers that treat
        False as "could not queue the close": this queue always can.)
        """
        if not self.closing:
            self.closing = True
            self._close_reason = reason
            self._close_code = code
            self._wake()
        return True

    @property
    def queued(self) -> int:
        """Return the number of messages queued and not yet encoded (this round's)."""
        return len(self._queue)

    def statistics(self) -> OutboxStatistics:
        """Return the counters of this outbox."""
        return OutboxStatistics(self.frames, self.messages, len(self._queue))

    def _mark_dirty(self) -> None:
        flusher = self._flusher
        if flusher is None:
            flusher = self._flusher = _round_flush()
        self._dirty = True
        flusher.dirty.append(self)

    def _wake(self) -> None:
        self._lot.unpark()

    def _flush(self) -> None:
        """Write everything queued, as few frames as ``max_batch`` allows (end of a round)."""
        self._dirty = False
        burst = self._round_sent + len(self._queue)
        self._round_sent = 0
        self._split_at = max(MIN_SPLIT, burst // 2)
        ws = self._ws
        if ws is None or not self._queue:
            return
        # Even while the writer waits for the socket: the WebSocket keeps the
        # bytes in order and counts them against its bound.
        self._send_queued(ws)

    def _backlogged(self) -> None:
        """The kernel refused part of a write (``ws.on_backlog``): the writer takes over.

        Woken through the run loop, since the write may have happened in the
        flush between rounds, where a task rescheduled directly would wait
        for the next I/O event.
        """
        assert self._token is not None
        self._token.run_sync_soon(self._wake)

    def _send_queued(self, ws: WebSocket) -> None:
        queue = self._queue
        while queue:
            count = min(len(queue), self.max_batch)
            if count == len(queue):
                batch: Sequence[Message] = queue
            else:
                batch = [queue.popleft() for _ in range(count)]
            frame = encode_frame(batch)
            if len(frame) <= self.max_frame_bytes:
                ws.send_nowait(frame)
                self.frames += 1
                if batch is queue:
                    queue.clear()
            else:
                messages = list(batch)
                if batch is queue:
                    queue.clear()
                self._send_by_size(ws, messages)
            self.messages += count

    def _send_by_size(self, ws: WebSocket, batch: list[Message]) -> None:
        """Send ``batch`` as frames of at most ``max_frame_bytes`` (it encoded larger).

        Rare, so it encodes each message alone to measure it; a frame is its
        messages' encodings after an array header of at most 5 bytes.
        """
        limit = self.max_frame_bytes
        group: list[Message] = []
        size = _ARRAY_HEADER
        for message in batch:
            one = len(encode_frame((message,))) - 1  # without its one-byte array header
            if one + _ARRAY_HEADER > limit:
                self._refuse(message, one)
                continue
            if size + one > limit:
                ws.send_nowait(encode_frame(group))
                self.frames += 1
                group, size = [], _ARRAY_HEADER
            group.append(message)
            size += one
        if group:
            ws.send_nowait(encode_frame(group))
            self.frames += 1

    def _refuse(self, message: Message, size: int) -> None:
        """Hand ``message`` (``size`` bytes, too large for any frame) to the driver."""
        if self._oversized is None or self._token is None:
            log.warning("dropped a %r message of %d bytes: over the peer's frame limit "
                        "of %d bytes", message.TAG, size, self.max_frame_bytes)
            return
        # From the run loop, not here: the driver feeds its machine and queues
        # answers, which must not happen inside the flush between rounds.
        self._token.run_sync_soon(self._oversized, message, size)

    async def run_writer(self, ws: WebSocket) -> None:
        """Serve the connection's slow path until it ends; returns when it does.

        Sends what the kernel refused once the socket is writable, and
        performs ``close_after_flush``: what was queued before it goes out,
        then a close frame (its code, 1000 unless told); if the peer has not answered within
        ``CLOSE_WAIT`` seconds the socket is closed.
        """
        self._ws = ws
        self._token = trio.lowlevel.current_trio_token()
        ws.on_backlog = self._backlogged
        ws.max_pending = self.max_bytes
        if self._queue and not self._dirty:
            self._mark_dirty()  # queued before the connection was up
        try:
            while True:
                if self._failure is not None:
                    raise self._failure
                if ws.pending:
                    await ws.wait_sent()
                    if self.on_caught_up is not None:
                        self.on_caught_up()
                    continue
                if self._close_reason is not None:
                    self._send_queued(ws)
                    ws.close_nowait(self._close_code, self._close_reason)
                    await ws.wait_sent()
                    with trio.move_on_after(CLOSE_WAIT):
                        await ws.wait_closed()
                    ws.abort()
                    return
                await self._lot.park()
        except WebSocketClosed:
            return
        finally:
            ws.on_backlog = None
            self._ws = None
