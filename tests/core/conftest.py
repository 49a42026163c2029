"""Fixtures shared by the core tests: an in-memory cluster and a raw hub driver."""

from __future__ import annotations

from collections.abc import Hashable

import pytest

from hulytrio.core.effects import CloseConnection, Send
from hulytrio.core.hub import Hub
from hulytrio.core.messages import PROTOCOL_VERSION, Hello, Message
from hulytrio.core.timeouts import Timeouts


class RawHub:
    """A ``Hub`` driven message by message, with every effect sorted per connection.

    ``inbox[conn]`` collects what the hub sent to ``conn``; ``closed`` the
    connections the hub closed, in order.
    """

    def __init__(self, timeouts: Timeouts | None = None, **kwargs: object) -> None:
        self.hub = Hub("hub1", timeouts, **kwargs)  # type: ignore[arg-type]
        self.inbox: dict[Hashable, list[Message]] = {}
        self.closed: list[Hashable] = []

    def drain(self) -> None:
        for effect in self.hub.effects():
            if isinstance(effect, Send):
                self.inbox.setdefault(effect.conn, []).append(effect.message)
            elif isinstance(effect, CloseConnection):
                self.closed.append(effect.conn)

    def hello(self, conn: Hashable, now: float = 0.0, *, alive: float | None = None,
              peer: str | None = None) -> None:
        self.hub.connection_made(conn, now)
        self.hub.receive(conn, Hello(PROTOCOL_VERSION, peer or str(conn), alive), now)
        self.drain()

    def send(self, conn: Hashable, message: Message, now: float = 0.0) -> list[Message]:
        """Feed ``message`` and return what ``conn`` got back for it."""
        before = len(self.inbox.get(conn, []))
        self.hub.receive(conn, message, now)
        self.drain()
        return self.inbox.get(conn, [])[before:]

    def lost(self, conn: Hashable, now: float = 0.0) -> None:
        """The connection ``conn`` drops."""
        self.hub.connection_lost(conn, now)
        self.drain()

    def advance(self, now: float) -> None:
        """Fire every hub deadline up to ``now``, in order."""
        while (d := self.hub.next_deadline()) is not None and d <= now:
            self.hub.handle_timers(d)
            self.drain()
        self.hub.handle_timers(now)
        self.drain()

    def recovered(self) -> RawHub:
        """Make the hub one whose recovery window closed at 0.0 (up for a while).

        A new hub's first alive timeout treats stateless offers that did not
        serve as standbys (``registry.Registry._offer``); tests of a running
        hub start after it.  Returns ``self``.
        """
        registry = self.hub.registry
        alive = registry.timeouts.alive
        registry._recovery.open(-alive, alive)
        return self

    def take(self, conn: Hashable) -> list[Message]:
        """Return and forget what ``conn`` received so far."""
        return self.inbox.pop(conn, [])


@pytest.fixture
def raw() -> RawHub:
    return RawHub()


@pytest.fixture
def make_raw() -> type[RawHub]:
    return RawHub
