"""The recovery window after a hub start: re-acquires wait for their agents.

Theory of operation
-------------------
A restarted hub knows no containers until agents re-register them.  A
session rebuilding after the restart re-acquires the uuids it held; if one
of them is not known yet, starting it afresh elsewhere would lose its state.
So during the window (the hub's first session plus one alive timeout, the
time every agent has to re-register) such a re-acquire is *parked* by uuid:
an agent that registers the uuid answers it (``take``), and when the window
closes every get still parked runs as an ordinary get (``close``).
"""

from __future__ import annotations

from collections.abc import Sequence

from .types import ClientId, ContainerKind, ContainerUuid, GetOptions

__all__ = ["ParkedGet", "Recovery"]

#: (client id, call id, kind, options) of a get waiting for recovery
ParkedGet = tuple[ClientId, int, ContainerKind, GetOptions]


class Recovery:
    """The window's end and the re-acquires parked in it."""

    __slots__ = ("_parked", "until")

    def __init__(self) -> None:
        #: end of the window (None until the hub's first session opens it)
        self.until: float | None = None
        self._parked: dict[ContainerUuid, list[ParkedGet]] = {}

    def open(self, now: float, length: float) -> float | None:
        """The hub's first session arrived: return the window's end, if this opened it."""
        if self.until is not None:
            return None
        self.until = now + length
        return self.until

    def is_open(self, now: float) -> bool:
        """Return whether re-acquires of unknown uuids are parked at ``now``."""
        return self.until is not None and now < self.until

    def park(self, uuid: ContainerUuid, get: ParkedGet) -> None:
        """Park ``get`` until ``uuid`` is registered or the window closes."""
        self._parked.setdefault(uuid, []).append(get)

    def take(self, uuid: ContainerUuid) -> Sequence[ParkedGet]:
        """Return (and forget) the gets parked for ``uuid``, in arrival order."""
        return self._parked.pop(uuid, ())

    def forget_client(self, client_id: ClientId, uuids: dict[ContainerUuid, None]) -> None:
        """``client_id`` is gone: drop its gets parked for ``uuids``."""
        for uuid in uuids:
            entries = self._parked.get(uuid)
            if entries is None:
                continue
            kept = [e for e in entries if e[0] != client_id]
            if kept:
                self._parked[uuid] = kept
            else:
                del self._parked[uuid]

    def close(self) -> list[ParkedGet]:
        """The window ended: return every parked get (arrival order per uuid,
        uuids in parking order) and forget them."""
        parked, self._parked = self._parked, {}
        return [entry for entries in parked.values() for entry in entries]
