"""A bounded per-connection send queue and the writer that drains it into frames.

Theory of operation: drivers never await a socket while feeding a state
machine.  Every ``Send`` effect is put on the connection's ``Outbox`` without
blocking; the connection's writer task takes everything queued at that moment
and sends it as *one* WebSocket frame (``encode_frame``), so a burst of
messages costs one frame and a lone message is sent at once (the writer
flushes whenever the queue drains, there is no timer).  The queue is bounded:
when it is full the peer is not reading fast enough, and the driver drops
that peer instead of buffering without limit or stalling everyone else.
"""

from __future__ import annotations

import math

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from hulytrio.core.messages import Message

from .codec import encode_frame

__all__ = ["Outbox", "OutboxStatistics"]


@attrs.frozen
class _CloseAfter:
    reason: str


@attrs.frozen
class OutboxStatistics:
    """What one outbox has done: frames and messages sent, messages queued now."""

    frames: int
    messages: int
    queued: int


class Outbox:
    """A bounded queue of messages for one connection (``limit``: inf for unbounded)."""

    def __init__(self, limit: float = math.inf, *, max_batch: int = 4096) -> None:
        self._tx, self._rx = trio.open_memory_channel[Message | _CloseAfter](limit)
        self.max_batch = max_batch
        self.frames = 0
        self.messages = 0
        self.closing = False

    def put_nowait(self, message: Message) -> bool:
        """Queue ``message``; returns False when the queue is full or closing."""
        if self.closing:
            return False
        try:
            self._tx.send_nowait(message)
        except trio.WouldBlock:
            return False
        return True

    def close_after_flush(self, reason: str) -> bool:
        """Ask the writer to send what is queued, then close; returns False if full."""
        if self.closing:
            return True
        self.closing = True
        try:
            self._tx.send_nowait(_CloseAfter(reason))
        except trio.WouldBlock:
            return False
        return True

    def statistics(self) -> OutboxStatistics:
        """Return the counters of this outbox."""
        return OutboxStatistics(self.frames, self.messages,
                                self._rx.statistics().current_buffer_used)

    async def run_writer(self, ws: WebSocketConnection) -> None:
        """Send queued messages in frames until closed; returns when the connection ends.

        A ``close_after_flush`` closes the WebSocket (code 1000) once what was
        queued before it is sent.
        """
        rx = self._rx
        try:
            while True:
                item = await rx.receive()
                batch: list[Message] = []
                close: _CloseAfter | None = None
                while True:
                    if isinstance(item, _CloseAfter):
                        close = item
                        break
                    batch.append(item)
                    if len(batch) >= self.max_batch:
                        break
                    try:
                        item = rx.receive_nowait()
                    except trio.WouldBlock:
                        break
                if batch:
                    await ws.send_message(encode_frame(batch))
                    self.frames += 1
                    self.messages += len(batch)
                if close is not None:
                    with trio.move_on_after(1):
                        await ws.aclose(1000, close.reason[:120])
                    return
        except ConnectionClosed:
            return
