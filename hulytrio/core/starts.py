"""Container starts the hub asked an agent for and that are not answered yet.

Theory of operation
-------------------
A ``get`` that finds no live container to reuse asks an agent to start one
(``Start``) and waits; gets for the same uuid, or for the same selector
without a uuid, join that start instead of asking for a second one.  Until
the agent answers (``Started`` or an ``Error``), the start times out or the
agent goes, the container is PENDING and lives only here.

``PendingStarts`` finds a start three ways, each in O(1): by uuid (a get
naming it, an offer racing it), by the agent's start id (its answer, the
start's deadline) and by selector (a get joining the oldest start of the
same kind and label set).  ``pop`` takes a start out of all three at once,
so the indexes cannot disagree.  What the answer does to the waiting gets,
the agent's room and the start's deadline is the registry's decision
(``registry.Registry``: ``get``, ``started``, ``start_failed``).
"""

from __future__ import annotations

from .entries import PendingStart
from .placement import Selector, SelectorIndex
from .types import ContainerUuid

__all__ = ["PendingStarts"]


class PendingStarts:
    """The pending starts, by uuid, by start id and by selector."""

    __slots__ = ("_by_start", "_selectors", "by_uuid")

    def __init__(self) -> None:
        #: uuid -> its start (read freely; change only through methods)
        self.by_uuid: dict[ContainerUuid, PendingStart] = {}
        self._by_start: dict[int, PendingStart] = {}
        self._selectors = SelectorIndex()

    def __len__(self) -> int:
        return len(self.by_uuid)

    def add(self, p: PendingStart) -> None:
        """File start ``p`` (its uuid and start id are not pending yet)."""
        self.by_uuid[p.uuid] = p
        self._by_start[p.start_id] = p
        self._selectors.add((p.kind, p.labels), p.uuid)

    def for_start(self, start_id: int) -> PendingStart | None:
        """Return the start the agent knows as ``start_id``, or None if it is not pending."""
        return self._by_start.get(start_id)

    def first(self, selector: Selector) -> PendingStart | None:
        """Return the oldest pending start of ``selector``, or None."""
        uuid = self._selectors.first(selector)
        return None if uuid is None else self.by_uuid[uuid]

    def pop(self, uuid: ContainerUuid) -> PendingStart | None:
        """Take the start of ``uuid`` out of every index; return it (None: not pending)."""
        p = self.by_uuid.pop(uuid, None)
        if p is not None:
            del self._by_start[p.start_id]
            self._selectors.remove((p.kind, p.labels), uuid)
        return p
