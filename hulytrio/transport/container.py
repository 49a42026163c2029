"""What users subclass and hand to agents: ``Container`` and ``StatelessContainer``."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs

from hulytrio.core.types import GetOptions, labels_key

__all__ = ["Broadcast", "Container", "Factory", "StatelessContainer"]

#: Pushes one event to one connected client (``await broadcast(event)``).
Broadcast = Callable[[Any], Awaitable[None]]


class Container(abc.ABC):
    """Base class of user containers; every hook is async.

    ``request`` must be overridden; ``terminate``, ``connect`` and
    ``disconnect`` default to doing nothing.
    """

    @abc.abstractmethod
    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        """Handle one request; returns the result (any msgpack-encodable value).

        An exception raised here reaches the caller as ``RemoteError`` with the
        exception's type name and message.
        """

    async def terminate(self) -> None:  # noqa: B027 - an optional hook
        """The container is being stopped (released by all, or the agent shuts down)."""

    async def connect(self, client_id: str, broadcast: Broadcast) -> None:  # noqa: B027
        """``client_id`` opened an event stream; ``await broadcast(event)`` pushes to it."""

    async def disconnect(self, client_id: str) -> None:  # noqa: B027
        """``client_id``'s event stream closed."""


#: An agent's factory for one kind: builds a container for the hub's start order.
Factory = Callable[[GetOptions], Awaitable[Container]]


@attrs.frozen
class StatelessContainer:
    """A pre-existing HA instance an agent offers under a fixed ``uuid``.

    Several agents may offer the same uuid; the hub lets the first serve and
    the others stand by until it goes away.
    """

    uuid: str
    kind: str
    container: Container = attrs.field(eq=False)
    labels: Sequence[str] = attrs.field(default=(), converter=labels_key)
