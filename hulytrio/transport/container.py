"""What users subclass and hand to agents: ``Container`` and ``StatelessContainer``."""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs

from hulytrio.core.types import GetOptions, labels_key

__all__ = ["Broadcast", "Container", "Factory", "StatelessContainer", "has_state"]

#: Pushes one event to one connected client (``await broadcast(event)``).
Broadcast = Callable[[Any], Awaitable[None]]


class Container(abc.ABC):
    """Base class of user containers; every hook is async.

    ``request`` must be overridden; ``terminate``, ``connect`` and
    ``disconnect`` default to doing nothing.

    State that survives (docs/state.md): a container that overrides
    ``export_state`` and ``import_state`` is checkpointed by an agent with a
    state store, and restored when its uuid starts again (after a crash, on
    another agent, on a stateless standby that takes over).  It bumps
    ``state_version`` whenever its state changes: a checkpoint exports only
    containers whose version moved since the last one, so an idle container
    costs nothing.  A container without the hooks is never checkpointed.
    """

    #: Bump (``self.state_version += 1``) on every change of the state
    #: ``export_state`` returns; checkpoints skip a container whose version
    #: did not move since its last one.
    state_version: int = 0

    @abc.abstractmethod
    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        """Handle one request; returns the result (any msgpack-encodable value).

        An exception raised here reaches the caller as ``RemoteError`` with the
        exception's type name and message.
        """

    async def export_state(self) -> Any:
        """Return the state to checkpoint: bytes or any msgpack-encodable value.

        Called by the agent's checkpoints (see ``state_version``) and once more
        before a clean stop; the value is what ``import_state`` receives when
        the uuid starts again.  Only containers that override it are
        checkpointed (the agent checks for the override), so this default,
        which exports nothing, is never called by the agent.
        """
        return None

    async def import_state(self, state: Any) -> None:
        """Replace this container's state with ``state`` (what ``export_state`` returned).

        Runs before the first request is served, when the uuid starts with a
        saved state.  Raising fails the start (the caller of ``get`` sees the
        error); the container never serves half-restored.
        """
        # A saved state this class cannot take must fail the start, not be dropped.
        raise NotImplementedError(
            f"{type(self).__name__} defines export_state but not import_state")

    async def terminate(self) -> None:  # noqa: B027 - an optional hook
        """The container is being stopped (released by all, or the agent shuts down)."""

    async def connect(self, client_id: str, broadcast: Broadcast) -> None:  # noqa: B027
        """``client_id`` opened an event stream; ``await broadcast(event)`` pushes to it."""

    async def disconnect(self, client_id: str) -> None:  # noqa: B027
        """``client_id``'s event stream closed."""


def has_state(container: Container) -> bool:
    """Return whether ``container`` keeps state across restarts (overrides ``export_state``)."""
    return type(container).export_state is not Container.export_state


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
