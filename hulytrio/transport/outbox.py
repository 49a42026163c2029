"""A bounded per-connection send queue, and the writer task that drains it into frames.

Theory of operation: drivers never await a socket while feeding a state
machine.  Every ``Send`` effect is handed to the connection's ``Outbox``
without blocking, and the outbox decides when it becomes bytes:

- when the writer is idle (nothing queued, nothing the kernel refused, no
  flush already due), the message is framed and written *at once*, from the
  caller's task: a lone request or reply costs no task switch;
- otherwise it is queued, and the writer task, which runs after every task
  made runnable in the same scheduler round, sends everything queued as *one*
  WebSocket frame (``encode_frame``).  The first message of a round goes out
  at once and the rest of that round's burst follows in one frame: no timer,
  no delay for a lone message, one frame per burst.

The queue is bounded: when it is full the peer has not been reading (the
kernel refused bytes and the writer is waiting for the socket), and the
driver drops that peer instead of buffering without limit or stalling
everyone else.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence

import attrs
import trio

from hulytrio.core.messages import Message

from .codec import encode_frame
from .websocket import WebSocket, WebSocketClosed

__all__ = ["CLOSE_WAIT", "Outbox", "OutboxStatistics"]

#: Seconds a closing connection waits for the peer's close frame before it is cut.
CLOSE_WAIT = 1.0


@attrs.frozen
class OutboxStatistics:
    """What one outbox has done: frames and messages sent, messages queued now."""

    frames: int
    messages: int
    queued: int


class Outbox:
    """A bounded queue of messages for one connection (``limit``: inf for unbounded)."""

    def __init__(self, limit: float = math.inf, *, max_batch: int = 4096,
                 eager: bool = True) -> None:
        self.limit = limit
        self.eager = eager
        self.max_batch = max_batch
        self.frames = 0
        self.messages = 0
        self.closing = False
        self._queue: collections.deque[Message] = collections.deque()
        self._ws: WebSocket | None = None
        # True while the writer has work coming (woken, sending, or waiting
        # for the socket): new messages queue behind it to keep their order.
        self._scheduled = False
        self._lot = trio.lowlevel.ParkingLot()
        self._close_reason: str | None = None

    def put_nowait(self, message: Message) -> bool:
        """Send or queue ``message``; returns False when the queue is full or closing."""
        if self.closing:
            return False
        ws = self._ws
        if not self._scheduled and ws is not None and self.eager:
            ws.send_nowait(encode_frame((message,)))
            self.frames += 1
            self.messages += 1
            self._wake()
            return True
        if len(self._queue) >= self.limit:
            return False
        self._queue.append(message)
        self._wake()
        return True

    def put_many(self, messages: Sequence[Message]) -> bool:
        """Send or queue ``messages`` (one frame if sent at once); False as ``put_nowait``."""
        if self.closing:
            return False
        ws = self._ws
        if (not self._scheduled and ws is not None and self.eager
                and len(messages) <= self.max_batch):
            ws.send_nowait(encode_frame(messages))
            self.frames += 1
            self.messages += len(messages)
            self._wake()
            return True
        if len(self._queue) + len(messages) > self.limit:
            return False
        self._queue.extend(messages)
        self._wake()
        return True

    def close_after_flush(self, reason: str) -> bool:
        """Ask the writer to send what is queued, then close; returns True.

        (The return value is kept for drivers that treat False as "could not
        queue the close": this queue always can.)
        """
        if not self.closing:
            self.closing = True
            self._close_reason = reason
            self._wake()
        return True

    def statistics(self) -> OutboxStatistics:
        """Return the counters of this outbox."""
        return OutboxStatistics(self.frames, self.messages, len(self._queue))

    def _wake(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._lot.unpark()

    async def run_writer(self, ws: WebSocket) -> None:
        """Send queued messages in frames until closed; returns when the connection ends.

        A ``close_after_flush`` sends what was queued before it, then a close
        frame (code 1000); if the peer has not answered it within
        ``CLOSE_WAIT`` seconds the socket is closed.
        """
        self._ws = ws
        queue = self._queue
        try:
            while True:
                if not queue and not ws.pending and self._close_reason is None:
                    self._scheduled = False
                    await self._lot.park()
                    continue
                while queue:
                    count = min(len(queue), self.max_batch)
                    batch = [queue.popleft() for _ in range(count)]
                    ws.send_nowait(encode_frame(batch))
                    self.frames += 1
                    self.messages += count
                if ws.pending:
                    await ws.wait_sent()
                    continue
                if self._close_reason is not None:
                    ws.close_nowait(1000, self._close_reason)
                    await ws.wait_sent()
                    with trio.move_on_after(CLOSE_WAIT):
                        await ws.wait_closed()
                    ws.abort()
                    return
        except WebSocketClosed:
            return
        finally:
            self._ws = None
