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
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .world import Process

__all__ = ["CLOSE", "OPENED", "Connection", "Direction"]


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


def _no_wake() -> None:
    """A direction no driver has wired yet delivers nowhere."""


class Direction:
    """One direction of a connection: a FIFO of ``(ready_time, item)``."""

    __slots__ = ("blocked", "closed", "dead", "last", "queue", "scheduled", "wake")

    def __init__(self) -> None:
        self.queue: deque[tuple[float, Any]] = deque()
        #: the latest ready time queued (keeps FIFO under random latency)
        self.last = 0.0
        #: a pump event for this direction is in the event heap
        self.scheduled = False
        #: a hold partition: items wait
        self.blocked = False
        #: a hang partition: items vanish, for good
        self.dead = False
        #: the sender closed this direction: later sends are dropped
        self.closed = False
        #: ``(callback, args)`` the driver's event queue runs to deliver what is
        #: ready (set by the driver; one shared tuple, not one per message)
        self.wake: tuple[Any, tuple[Any, ...]] = (_no_wake, ())

    def push(self, ready: float, item: Any) -> float:
        """Queue ``item`` to be ready at ``ready`` or after the previous item; returns when."""
        if ready < self.last:
            ready = self.last
        self.last = ready
        self.queue.append((ready, item))
        return ready

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
    """One connection attempt of a process; the hub's ``conn`` handle."""

    __slots__ = ("cid", "client_open", "down", "established", "hub", "hub_open", "last_arrival",
                 "proc", "up")

    def __init__(self, cid: int, proc: Process) -> None:
        self.cid = cid
        self.proc = proc
        #: the Hub instance that accepted it (None until accepted)
        self.hub: object | None = None
        self.hub_open = False
        self.client_open = False
        #: the client saw the connection open (its handshake completed)
        self.established = False
        #: client -> hub
        self.up = Direction()
        #: hub -> client
        self.down = Direction()
        #: when the hub last received something on it (no-false-death check)
        self.last_arrival = 0.0

    def __repr__(self) -> str:
        return f"conn{self.cid}({self.proc.pid})"
