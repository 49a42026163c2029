"""Registry change events and the queue that coalesces them.

Theory of operation: the registry records every change as it happens
(``EventQueue.agent`` / ``EventQueue.container``); the hub flushes the queue
at most once per batching window and broadcasts one combined
``NetworkEvent`` to every client.  Within a window the changes to one agent
id or one container uuid are folded into a single change that leaves a
client in the same state as replaying all of them would:

==========  ==========  ===========================================
earlier     later       folded
==========  ==========  ===========================================
ADDED       UPDATED     ADDED (with the later record)
ADDED       REMOVED     REMOVED (a client that never saw it ignores it)
UPDATED     UPDATED     UPDATED (later record)
UPDATED     REMOVED     REMOVED
REMOVED     ADDED       ADDED  (the reference dropped this: a re-add was lost)
REMOVED     UPDATED     ADDED
==========  ==========  ===========================================

Every flushed event carries a sequence number that grows by one per flush, so
a client that sees a gap knows it missed something and resyncs from a
snapshot (``list`` + ``agents``).

A window's changes may be too many for one frame (one registration offering
60,000 stateless containers): with ``max_bytes`` set, ``flush`` returns the
changes in the order they were queued (agents first) only up to that many
bytes *as encoded on the wire*, and leaves the rest queued (``dirty``) for
the next call, each part numbered one more.  The core does not encode, so
it counts an upper bound (``change_bytes``: a byte per character of ASCII
strings, 4 otherwise, the most UTF-8 takes, plus every msgpack header at its
largest); a single change over the bound goes alone.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable
from typing import Any, TypeVar

import attrs

from .fastinit import fast_init
from .types import AgentId, AgentInfo, ContainerRecord, ContainerUuid

__all__ = [
    "EVENT_ENVELOPE_BYTES", "AgentEvent", "ChangeKind", "ContainerEvent", "EventQueue",
    "NetworkEvent", "change_bytes",
]


class ChangeKind(enum.Enum):
    """What happened to one agent or container."""

    #: It appeared (or reappeared) in the registry.
    ADDED = "added"
    #: It is still there with a new record (endpoint, owner, counts).
    UPDATED = "updated"
    #: It is gone.
    REMOVED = "removed"


@fast_init
@attrs.frozen
class AgentEvent:
    """One agent's change within a ``NetworkEvent``."""

    change: ChangeKind
    agent: AgentInfo


@fast_init
@attrs.frozen
class ContainerEvent:
    """One container's change within a ``NetworkEvent``."""

    change: ChangeKind
    container: ContainerRecord


@fast_init
@attrs.frozen
class NetworkEvent:
    """A batch of coalesced registry changes, numbered by ``seq``."""

    seq: int
    agents: tuple[AgentEvent, ...] = ()
    containers: tuple[ContainerEvent, ...] = ()


_K = TypeVar("_K")
_C = TypeVar("_C", AgentEvent, ContainerEvent)

#: The most an ``event`` message takes on the wire besides its changes: the
#: frame's and the message's array headers, the tag, ``seq`` and two array
#: headers (msgpack: at most 5 bytes per header, 9 per int).
EVENT_ENVELOPE_BYTES = 32
#: The most one change takes besides the characters of its strings: its
#: arrays' and strings' headers (5 bytes each at most), the change kind,
#: bools, ints (9 bytes each) and ``None``s.
_CHANGE_OVERHEAD = 64


def change_bytes(change: AgentEvent | ContainerEvent) -> int:
    """Return an upper bound of the bytes ``change`` takes encoded in an ``event``.

    A byte per character when every string is ASCII (``isascii`` costs
    nothing: CPython records it), four otherwise (UTF-8's most), plus every
    header at its largest: never less than the codec produces.
    """
    endpoint: str | None
    if type(change) is ContainerEvent:
        c = change.container
        uuid, kind, agent_id = c.uuid, c.kind, c.agent_id
        chars = len(uuid) + len(kind) + len(agent_id)
        ascii_only = uuid.isascii() and kind.isascii() and agent_id.isascii()
        strings, endpoint = c.labels, c.endpoint
    else:
        a = change.agent  # type: ignore[union-attr]  # an AgentEvent
        chars = len(a.agent_id)
        ascii_only = a.agent_id.isascii()
        strings, endpoint = a.kinds, a.endpoint
    if endpoint:
        chars += len(endpoint)
        ascii_only = ascii_only and endpoint.isascii()
    for text in strings:
        chars += len(text)
        ascii_only = ascii_only and text.isascii()
    return _CHANGE_OVERHEAD + (chars if ascii_only else 4 * chars) + 5 * len(strings)


def _fold(earlier: ChangeKind, later: ChangeKind) -> ChangeKind:
    if later is ChangeKind.REMOVED:
        return ChangeKind.REMOVED
    if earlier is ChangeKind.UPDATED and later is ChangeKind.UPDATED:
        return ChangeKind.UPDATED
    # Anything that was added or removed earlier in the window and is present
    # now must look added to a client, whatever it saw before the window.
    return ChangeKind.ADDED


class EventQueue:
    """Collects registry changes and folds them per agent id / container uuid.

    Insertion order of the first change to a key is kept, so the flushed event
    is deterministic.
    """

    __slots__ = ("_agents", "_containers", "dirty", "max_bytes", "seq")

    def __init__(self, max_bytes: int | None = None) -> None:
        #: the most one flushed event may take encoded (None: no bound)
        self.max_bytes = max_bytes
        self._agents: dict[AgentId, AgentEvent] = {}
        self._containers: dict[ContainerUuid, ContainerEvent] = {}
        #: Sequence number of the last flushed event (0: none yet).
        self.seq = 0
        #: Whether a change is queued (a plain attribute: the hub reads it
        #: after every message, so it must cost no call).
        self.dirty = False

    def __len__(self) -> int:
        return len(self._agents) + len(self._containers)

    def agent(self, change: ChangeKind, agent: AgentInfo) -> None:
        """Record a change to ``agent``."""
        old = self._agents.get(agent.agent_id)
        if old is not None:
            change = _fold(old.change, change)
        self._agents[agent.agent_id] = AgentEvent(change, agent)
        self.dirty = True

    def container(self, change: ChangeKind, container: ContainerRecord) -> None:
        """Record a change to ``container``."""
        old = self._containers.get(container.uuid)
        if old is not None:
            change = _fold(old.change, change)
        self._containers[container.uuid] = ContainerEvent(change, container)
        self.dirty = True

    def flush(self) -> NetworkEvent | None:
        """Return the folded event and take its changes from the queue; None when empty.

        With ``max_bytes`` set the event holds the oldest changes (agents
        first) up to that many encoded bytes, at least one change; the rest
        stay queued and ``dirty`` stays set, so the caller flushes again for
        the next part.
        """
        agents, containers = self._agents, self._containers
        if not agents and not containers:
            return None
        self.seq += 1
        if self.max_bytes is not None:
            n_agents, room = _fitting(agents.values(), self.max_bytes - EVENT_ENVELOPE_BYTES)
            n_containers = _fitting(containers.values(), room)[0] if n_agents == len(agents) \
                else 0
            if n_agents < len(agents) or n_containers < len(containers):
                if not n_agents and not n_containers:
                    # One change over the bound: it goes alone (a frame takes it,
                    # or the driver refuses it and the client resyncs).
                    n_agents = 1 if agents else 0
                    n_containers = 1 - n_agents
                part = NetworkEvent(self.seq, _take(agents, n_agents),
                                    _take(containers, n_containers))
                self._agents = _rest(agents, n_agents)
                self._containers = _rest(containers, n_containers)
                return part
        event = NetworkEvent(self.seq, tuple(agents.values()), tuple(containers.values()))
        self._agents = {}
        self._containers = {}
        self.dirty = False
        return event


def _fitting(changes: Iterable[AgentEvent | ContainerEvent], room: int) -> tuple[int, int]:
    """Return how many of ``changes`` (from the first) fit ``room`` bytes, and the room left."""
    n = 0
    for change in changes:
        room -= change_bytes(change)
        if room < 0:
            break
        n += 1
    return n, room


def _take(queued: dict[Any, _C], n: int) -> tuple[_C, ...]:
    """Return the first ``n`` changes of ``queued``, oldest first."""
    return tuple(itertools.islice(queued.values(), n))


def _rest(queued: dict[_K, _C], n: int) -> dict[_K, _C]:
    """Return ``queued`` without its first ``n`` changes (order kept)."""
    return dict(itertools.islice(queued.items(), n, None)) if n else queued
