"""A client's requests wait for room instead of piling up for the hub.

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

Only requests are held.  Every other message (pings, pongs, answers of a
hosted agent, gets, releases) goes out at once, so a hub that reads slowly
still hears our pings within ``budget`` bytes.  The user's ``ref.request``
already waits for its answer; a held request is simply one that has not left
yet.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from hulytrio.core.messages import Request

from .outbox import Outbox
from .websocket import WebSocket

__all__ = ["REQUEST_OVERHEAD", "RequestPacer"]

#: Bytes a request is counted for beyond its payload and operation name: an
#: upper bound of its id, uuid and headers, so that a flood of tiny requests
#: is bounded too (8 MiB of budget is at most 65,536 requests in one round,
#: under the outbox's 100,000 messages).
REQUEST_OVERHEAD = 128


class RequestPacer:
    """Requests waiting for room in ``budget`` bytes of one connection's unsent data."""

    def __init__(self, outbox: Outbox, budget: int) -> None:
        self.outbox = outbox
        self.budget = budget
        self.ws: WebSocket | None = None
        #: requests waiting for room, by call id, in the order they were sent
        self._held: dict[int, Request] = {}
        #: request bytes put on the outbox since its queue was last seen empty
        self._round = 0
        #: the outbox's queue of this round (the deque itself: read for every
        #: request, where the ``queued`` property's call costs more than the check)
        self._queue = outbox._queue
        self._wake = trio.Event()
        outbox.on_caught_up = self._caught_up

    @property
    def held(self) -> int:
        """Return the number of requests waiting for room."""
        return len(self._held)

    def send(self, message: Request) -> bool:
        """Queue ``message`` on the outbox if it fits, else hold it; returns False if
        the outbox refused it (full or closing: the connection is as good as dead)."""
        held = self._held
        if held:
            held[message.id] = message
            return True
        size = len(message.payload) + len(message.operation) + REQUEST_OVERHEAD
        # ``_unsent()`` inlined: this runs for every request (instructions per
        # routed request, benchmarks/instructions.py).
        queued = self._round if self._queue else 0
        ws = self.ws
        unsent = queued + ws.pending if ws is not None else queued
        if unsent and unsent + size > self.budget:
            held[message.id] = message
            self._wake.set()
            return True
        self._round = queued + size
        return self.outbox.put_nowait(message)

    def forget(self, call_id: int) -> bool:
        """The caller gave up on request ``call_id``: returns True if it was held (and
        is now forgotten: its ``Cancel`` must not be sent, the hub never saw it)."""
        return self._held.pop(call_id, None) is not None

    def _unsent(self) -> int:
        if not self._queue:
            self._round = 0  # flushed: what the kernel refused is in ``pending``
        ws = self.ws
        return self._round + (ws.pending if ws is not None else 0)

    def _caught_up(self) -> None:
        if self._held:
            self._wake.set()

    def _release(self) -> bool:
        """Move held requests to the outbox, in order, while they fit; returns False
        if the outbox refused one (the connection is as good as dead)."""
        held = self._held
        if self.outbox.closing:
            held.clear()  # the connection ends: the session resends them on the next
            return True
        while held:
            call_id = next(iter(held))
            message = held[call_id]
            size = len(message.payload) + len(message.operation) + REQUEST_OVERHEAD
            unsent = self._unsent()
            if unsent and unsent + size > self.budget:
                return True
            del held[call_id]
            self._round += size
            if not self.outbox.put_nowait(message):
                return False
        return True

    async def run(self, ws: WebSocket, full: Callable[[], None]) -> None:
        """Release held requests as room frees, until cancelled; calls ``full`` and
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
