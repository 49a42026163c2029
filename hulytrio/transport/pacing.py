"""Requests, gets and answers wait for room instead of piling up for a peer.

Theory of operation
-------------------
A client's connection to the hub keeps at most ``SEND_BYTES`` for a hub
that does not read, then drops the connection as dead (``outbox.py``).  The
client's own requests must never trip that: user code may start any number
of ``ref.request`` calls at once, and after a reconnect the session resends
every unanswered one.  Before, 100 concurrent requests of 1 MiB went over
the bound in one round, the client dropped its own connection, resent them
all on the next, and so on for ever.

So every ``Request`` the session sends goes through the connection's
``RequestPacer``: it joins the outbox only while the bytes not yet taken by
the kernel (``WebSocket.pending``, plus the requests queued this round)
leave room for it in ``budget``; otherwise it is held, in order, and
released as the writer catches up.  A request larger than the budget goes
alone, once nothing else waits.  Held requests belong to the connection: if
it ends they are dropped with it, and the session resends them (in order)
on the next one, through that connection's pacer.  A ``Cancel`` of a held
request removes it and is itself not sent: the hub never saw the call.

The same holds for the other messages whose size user code chooses, on
every connection that carries them (``pace``):

- a ``get`` with a large ``extra`` (the session re-sends one ``Get`` per
  reference after every reconnect: 300 references with 256 KiB of
  ``extra`` dropped the connection as the 100 MiB of requests did);
- the answers (``Response``) of a hosted agent to the hub, and of an
  agent's endpoint to a direct client: 300 answers of 256 KiB finished at
  once went over the bound of the connection carrying them (the host
  dropped its own hub connection, the endpoint its client).  An answer held
  when its connection ends is not lost: the caller resends the request and
  the agent answers it from memory (``core/answers.py``);
- requests on a direct connection to an agent's endpoint
  (``connection.py``), which had no bound at all.

These are held in one queue, in order; only a held request can be taken
back (``forget``).  Every other message (pings, pongs, cancels, releases,
errors, registrations) goes out at once, so a peer that reads slowly still
hears our pings within ``budget`` bytes.  The user's ``ref.request``
already waits for its answer; a held request is simply one that has not left
yet.

What the pacer holds is the peer's to take: a peer that takes none of the
bytes waiting for it for ``STALL_TIMEOUT`` seconds is not reading at all,
and ``watch_progress`` drops it (its held messages would wait for ever).
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from hulytrio.core.messages import Get, Message, Request

from ..wire.codec import encode_frame
from .outbox import Outbox
from .websocket import WebSocket

__all__ = ["REQUEST_OVERHEAD", "STALL_TIMEOUT", "RequestPacer", "get_size", "watch_progress"]

#: Bytes a request is counted for beyond its payload and operation name: an
#: upper bound of its id, uuid and headers, so that a flood of tiny requests
#: is bounded too (8 MiB of budget is at most 65,536 requests in one round,
#: under the outbox's 100,000 messages).  Answers and gets are counted the same.
REQUEST_OVERHEAD = 128
#: Seconds a peer may take none of the bytes waiting for it before the
#: connection counts as dead: it is not reading (what waits for it would
#: pile up for ever).  A peer that reads slowly makes progress.
STALL_TIMEOUT = 10.0


def get_size(message: Get) -> int:
    """Return the bytes ``message`` is counted for: its encoding if it has an ``extra``."""
    if message.options.extra:
        return len(encode_frame((message,)))  # user data of any shape: measured
    return REQUEST_OVERHEAD + len(message.kind)


class RequestPacer:
    """Messages waiting for room in ``budget`` bytes of one connection's unsent data."""

    def __init__(self, outbox: Outbox, budget: int) -> None:
        self.outbox = outbox
        self.budget = budget
        self.ws: WebSocket | None = None
        #: messages waiting for room, with their sizes, in the order they were
        #: sent: a request by its call id, anything else by a negative serial
        self._held: dict[int, tuple[Message, int]] = {}
        self._serial = 0
        #: paced bytes put on the outbox since its queue was last seen empty
        self._round = 0
        #: the outbox's queue of this round (the deque itself: read for every
        #: request, where the ``queued`` property's call costs more than the check)
        self._queue = outbox._queue
        self._wake = trio.Event()
        #: set once nothing is held (``wait_released``)
        self._released: trio.Event | None = None
        outbox.on_caught_up = self._caught_up

    @property
    def held(self) -> int:
        """Return the number of messages waiting for room."""
        return len(self._held)

    def send(self, message: Request) -> bool:
        """Queue request ``message`` on the outbox if it fits, else hold it; returns
        False if the outbox refused it (full or closing: the connection is as good as dead)."""
        return self.pace(message, len(message.payload) + len(message.operation)
                         + REQUEST_OVERHEAD, message.id)

    def pace(self, message: Message, size: int, key: int | None = None) -> bool:
        """Queue ``message`` (counted as ``size`` bytes) on the outbox if it fits, else
        hold it, behind what is held already; returns False as ``send`` does.

        ``key`` is a request's call id (``forget`` takes it back); None for
        anything else.
        """
        held = self._held
        if held:
            held[key if key is not None else self._next_key()] = (message, size)
            return True
        # ``_unsent()`` inlined: this runs for every request and answer
        # (instructions per routed request, benchmarks/instructions.py).
        queued = self._round if self._queue else 0
        ws = self.ws
        unsent = queued + ws.pending if ws is not None else queued
        if unsent and unsent + size > self.budget:
            held[key if key is not None else self._next_key()] = (message, size)
            self._wake.set()
            return True
        self._round = queued + size
        return self.outbox.put_nowait(message)

    def _next_key(self) -> int:
        self._serial -= 1
        return self._serial

    def forget(self, call_id: int) -> bool:
        """The caller gave up on request ``call_id``: returns True if it was held (and
        is now forgotten: its ``Cancel`` must not be sent, the peer never saw it)."""
        if self._held.pop(call_id, None) is None:
            return False
        if not self._held:
            self._set_released()
        return True

    async def wait_released(self) -> None:
        """Return once nothing is held (at once if nothing is)."""
        while self._held:
            if self._released is None:
                self._released = trio.Event()
            await self._released.wait()

    def drop_held(self) -> None:
        """The connection ended: forget what is held, and wake ``wait_released``."""
        self._held.clear()
        self._set_released()

    def _set_released(self) -> None:
        released = self._released
        if released is not None:
            self._released = None
            released.set()

    def _unsent(self) -> int:
        if not self._queue:
            self._round = 0  # flushed: what the kernel refused is in ``pending``
        ws = self.ws
        return self._round + (ws.pending if ws is not None else 0)

    def _caught_up(self) -> None:
        if self._held:
            self._wake.set()

    def _release(self) -> bool:
        """Move held messages to the outbox, in order, while they fit; returns False
        if the outbox refused one (the connection is as good as dead)."""
        held = self._held
        if self.outbox.closing:
            # The connection ends: the session resends requests and gets on
            # the next, and callers resend the requests whose answers these were.
            self.drop_held()
            return True
        while held:
            key = next(iter(held))
            message, size = held[key]
            unsent = self._unsent()
            if unsent and unsent + size > self.budget:
                return True
            del held[key]
            self._round += size
            if not self.outbox.put_nowait(message):
                return False
        self._set_released()
        return True

    async def run(self, ws: WebSocket, full: Callable[[], None]) -> None:
        """Release held messages as room frees, until cancelled; calls ``full`` and
        returns if the outbox refuses one (the connection is as good as dead)."""
        self.ws = ws
        while True:
            wake = self._wake
            if wake.is_set():
                self._wake = wake = trio.Event()
            if not self._release():
                full()
                return
            if not self._held or ws.pending:
                # Nothing to release, or the writer is sending: it wakes us
                # when it has caught up (``Outbox.on_caught_up``).
                await wake.wait()
            else:
                # Only this round's requests are ahead: they go to the
                # kernel at the round's end (the outbox's flush); look again then.
                await trio.lowlevel.checkpoint()


async def watch_progress(ws: WebSocket, interval: float, stalled: Callable[[int], None]
                         ) -> None:
    """Call ``stalled(pending)`` and return if the peer takes none of our bytes for ``interval``.

    Bytes waiting at two looks ``interval`` apart with none taken between
    them (``WebSocket.drained``): the peer is not reading at all, and what
    waits for it (held by a ``RequestPacer``, never reaching the
    connection's byte bound) would wait for ever.  A peer that reads,
    however slowly, takes some.
    """
    drained, waiting = ws.drained, False
    while True:
        await trio.sleep(interval)
        if waiting and ws.pending and ws.drained == drained:
            stalled(ws.pending)
            return
        drained, waiting = ws.drained, ws.pending > 0
