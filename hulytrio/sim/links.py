"""Simulated connections between the hub and one peer process.

What is modelled is what WebSocket over TCP really does, and no more:

- each direction is FIFO: a message never overtakes an earlier one on the
  same connection, and nothing is duplicated (a latency range is drawn per
  message, but a message is never ready before the one sent before it);
- TCP does not lose single messages: "loss" is the connection breaking.  A
  *drop* closes the connection and both sides see the close after the
  messages already in flight; a *hold* partition buffers everything and
  delivers it when the partition heals; a *hang* partition loses everything
  and no side ever sees a close (each must notice by its own timeout);
- a paused process reads nothing; its inbound data waits in the socket
  buffer and is read, in order, when it wakes up;
- data the hub's reader had already taken off a socket may still be handed
  to the hub after the hub closed that connection (a *late message*); the
  simulator does hand it over, and checks the hub ignores it.

A link owns its behaviour (latency, FIFO order, hold, hang, close, the
optional codec round-trip) and knows nothing of the processes at its ends:
its driver gives each direction the event that delivers what is ready
(``Direction.wake``) and reads the queue when it fires.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Any

from ..core.messages import Message
from ..wire.codec import decode_frame, encode_frame
from .clock import Clock, Event
from .scenario import Span

__all__ = ["CLOSE", "OPENED", "Connection", "Direction", "LinkProfile"]


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: queued in a direction: the sender closed (or reset) the connection
CLOSE: Any = _Marker("CLOSE")
#: queued towards the client: the hub accepted the connection
OPENED: Any = _Marker("OPENED")


class _Nowhere(Event):
    """A direction no driver has wired yet delivers nowhere."""

    __slots__ = ()

    def fire(self) -> None:
        """Deliver nothing."""


_NOWHERE = _Nowhere()


class LinkProfile:
    """How one end's links behave: latency (the scenario's, or a slow-link fault's) and its draws.

    One per simulated peer, shared by all its connections, so the draws of
    a connection still in flight and of a new one come from one stream.
    """

    __slots__ = ("codec", "default", "latency", "rng")

    def __init__(self, default: Span, *, codec: bool = False) -> None:
        self.default = default
        #: a slow-link fault's latency, overriding ``default`` while it lasts
        self.latency: Span | None = None
        self.rng = random.Random(0)
        #: every message goes through the wire codec on the way
        self.codec = codec

    def span(self) -> Span:
        """Return the latency range in force now."""
        return self.latency if self.latency is not None else self.default

    def draw(self) -> float:
        """Return one latency drawn from the range in force now."""
        span = self.span()
        if span.low == span.high:
            return span.low
        return self.rng.uniform(span.low, span.high)


class Direction:
    """One direction of a connection: a FIFO of ``(ready_time, item)``."""

    __slots__ = ("blocked", "clock", "closed", "dead", "last", "profile", "queue", "scheduled",
                 "wake")

    def __init__(self, clock: Clock, profile: LinkProfile) -> None:
        self.clock = clock
        self.profile = profile
        self.queue: deque[tuple[float, Any]] = deque()
        #: the latest ready time queued (keeps FIFO under random latency)
        self.last = 0.0
        #: the ``wake`` event is on the clock
        self.scheduled = False
        #: a hold partition: items wait
        self.blocked = False
        #: a hang partition: items vanish, for good
        self.dead = False
        #: the sender closed this direction: later sends are dropped
        self.closed = False
        #: the event that delivers what is ready (set by the driver; one per
        #: direction, not one per message)
        self.wake: Event = _NOWHERE

    def push(self, item: Any) -> None:
        """Send ``item``: ready after a drawn latency, never before the item sent before it.

        Dropped when the direction is dead (a hang).  With the codec on, a
        message arrives as the receiver would decode it from its frame.
        """
        if self.dead:
            return
        profile = self.profile
        if profile.codec and isinstance(item, Message):
            item = decode_frame(encode_frame([item]))[0]
        span = profile.latency if profile.latency is not None else profile.default
        low = span.low
        high = span.high
        # Random.uniform(low, high), inlined: the same draw and arithmetic.
        ready = self.clock.now + (low if low == high else
                                  low + (high - low) * profile.rng.random())
        if ready < self.last:
            ready = self.last
        self.last = ready
        self.queue.append((ready, item))
        if not self.scheduled and not self.blocked:
            self.scheduled = True
            self.clock.at(ready, self.wake)

    def close(self) -> None:
        """Send the close and send nothing more."""
        if not self.closed:
            self.push(CLOSE)
            self.closed = True

    def reschedule(self) -> None:
        """Put the wake-up back on the clock if items wait and nothing holds them."""
        if self.queue and not self.scheduled and not self.blocked:
            self.scheduled = True
            self.clock.at(self.queue[0][0], self.wake)

    def release(self, earliest: float) -> None:
        """After a hold: nothing is ready before ``earliest``; the order is kept."""
        last = earliest
        out: deque[tuple[float, Any]] = deque()
        for ready, item in self.queue:
            last = max(ready, last)
            out.append((last, item))
        self.queue = out
        self.last = max(self.last, last)


class Connection:
    """One connection attempt of the process named ``name``; the hub's ``conn`` handle."""

    __slots__ = ("cid", "client_open", "down", "established", "hub", "hub_open", "last_arrival",
                 "name", "up")

    def __init__(self, cid: int, name: str, clock: Clock, profile: LinkProfile) -> None:
        self.cid = cid
        self.name = name
        #: the Hub instance that accepted it (None until accepted)
        self.hub: object | None = None
        self.hub_open = False
        self.client_open = False
        #: the client saw the connection open (its handshake completed)
        self.established = False
        #: client -> hub
        self.up = Direction(clock, profile)
        #: hub -> client
        self.down = Direction(clock, profile)
        #: when the hub last received something on it (no-false-death check)
        self.last_arrival = 0.0

    def cut(self, mode: str) -> None:
        """Partition both directions: ``"hang"`` loses what is in flight and all
        that follows, with no close on either side; otherwise (``"hold"``) all
        of it waits until ``heal``."""
        for d in (self.up, self.down):
            if mode == "hang":
                d.dead = True
                d.queue.clear()
            else:
                d.blocked = True

    def heal(self, earliest: float) -> None:
        """End a hold: what waited in each direction is delivered in order, from ``earliest``."""
        for d in (self.up, self.down):
            if d.blocked:
                d.blocked = False
                d.release(earliest)
                d.reschedule()

    def __repr__(self) -> str:
        return f"conn{self.cid}({self.name})"
