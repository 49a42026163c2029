"""A client's container references: what each one points at and where it stands.

Theory of operation
-------------------
A reference is the client's handle on one container: made by ``get``, held
while the user holds it, re-acquired whenever the container it points at is
lost (its agent died, the hub restarted, a request found it gone), and let go
by ``release``.  This module keeps the table of references, their lifecycle
and an index from container uuid to the references pointing there, so a
registry event touches only the references it names.  It decides nothing
about the wire: the session (``core/session.py``) sends the ``Get`` and
``Release`` messages and the effects; the reference table only says what
each reference is and allows the moves below.

Reference lifecycle (``RefStatus``)::

    get --> ACQUIRING --GetReply--> READY
            READY --container lost, or a reconnect--> ACQUIRING
            ACQUIRING/READY --release--> RELEASED     (final)
"""

from __future__ import annotations

import enum

from .events import NetworkEvent
from .transitions import TransitionTable
from .types import ContainerRecord, ContainerUuid, GetOptions

__all__ = ["REF_TRANSITIONS", "RefStatus", "Reference", "References"]


class RefStatus(enum.Enum):
    """Where one container reference stands."""

    #: A ``Get`` for it is in flight or waiting to be (re)sent.
    ACQUIRING = "acquiring"
    #: Held; requests flow.
    READY = "ready"
    #: Released by the user.
    RELEASED = "released"


#: The moves a reference may make (see the module docstring).
REF_TRANSITIONS: TransitionTable[RefStatus] = TransitionTable("reference", {
    RefStatus.ACQUIRING: (RefStatus.READY, RefStatus.RELEASED),
    RefStatus.READY: (RefStatus.ACQUIRING, RefStatus.RELEASED),
})


class Reference:
    """One container reference; ``status`` changes only through ``References``."""

    __slots__ = ("acquire_call", "asked", "held", "kind", "record", "ref_id", "retries",
                 "status", "waiting")

    def __init__(self, ref_id: int, kind: str, asked: GetOptions) -> None:
        self.ref_id = ref_id
        self.kind = kind
        #: what the user asked for (the uuid and labels of a re-acquire come
        #: from ``record`` once there is one)
        self.asked = asked
        #: the container it points at (None until first acquired)
        self.record: ContainerRecord | None = None
        self.status = RefStatus.ACQUIRING
        #: the call id of the Get in flight for it (None: none in flight)
        self.acquire_call: int | None = None
        #: request handles waiting for the reference to be ready
        self.waiting: dict[int, None] = {}
        #: failed Gets in a row (the retry delay grows with it)
        self.retries = 0
        #: the container instance whose hold the hub may still count for this
        #: reference (a re-acquire names it, so no second hold is taken);
        #: None once the hold is known lost
        self.held: int | None = None


class References:
    """The references of one session, by id, indexed by the uuid they point at."""

    __slots__ = ("_acquiring", "_by_uuid", "by_id")

    def __init__(self) -> None:
        #: ref id -> reference, in the order they were made (ids grow)
        self.by_id: dict[int, Reference] = {}
        # uuid -> ids of the references whose record has that uuid (kept in
        # step with ``Reference.record`` by ``point``/``drop``).
        self._by_uuid: dict[ContainerUuid, dict[int, None]] = {}
        # ids of the ACQUIRING references (kept in step with their status by
        # ``add``/``_transition``/``drop``): an event with agent changes
        # concerns each of them, and a session may hold many READY ones.
        self._acquiring: dict[int, None] = {}

    # --- lifecycle -----------------------------------------------------------

    def add(self, ref_id: int, kind: str, asked: GetOptions) -> Reference:
        """Return a new ACQUIRING reference ``ref_id``, now in the table."""
        ref = self.by_id[ref_id] = Reference(ref_id, kind, asked)
        self._acquiring[ref_id] = None
        return ref

    def acquired(self, ref: Reference, record: ContainerRecord) -> None:
        """A ``GetReply`` gave ``ref`` the container ``record``: it is READY.

        Raises:
            LocalProtocolError: if ``ref`` is not ACQUIRING.
        """
        self._transition(ref, RefStatus.READY)
        self.point(ref, record)
        ref.held = record.instance
        ref.retries = 0

    def lost(self, ref: Reference) -> bool:
        """``ref``'s container is gone (or the hub is new): acquire it again.

        Returns True when the reference was READY (the user must hear that it
        now points nowhere), False when it was acquiring already.
        """
        if ref.status is not RefStatus.READY:
            return False
        self._transition(ref, RefStatus.ACQUIRING)
        return True

    def released(self, ref: Reference) -> None:
        """The user released ``ref``.

        Raises:
            LocalProtocolError: if it was released already.
        """
        self._transition(ref, RefStatus.RELEASED)

    def _transition(self, ref: Reference, new: RefStatus) -> None:
        # The one place a reference changes state (REF_TRANSITIONS says where to).
        ref.status = REF_TRANSITIONS.check(ref.status, new)
        if new is RefStatus.ACQUIRING:
            self._acquiring[ref.ref_id] = None
        else:
            self._acquiring.pop(ref.ref_id, None)

    # --- the uuid index ------------------------------------------------------------

    def point(self, ref: Reference, record: ContainerRecord) -> None:
        """Point ``ref`` at ``record``, keeping the uuid index in step."""
        old = ref.record
        if old is not None and old.uuid != record.uuid:
            self._unindex(ref.ref_id, old.uuid)
        ref.record = record
        self._by_uuid.setdefault(record.uuid, {})[ref.ref_id] = None

    def drop(self, ref: Reference) -> None:
        """Forget ``ref`` for good."""
        del self.by_id[ref.ref_id]
        self._acquiring.pop(ref.ref_id, None)
        if ref.record is not None:
            self._unindex(ref.ref_id, ref.record.uuid)

    def _unindex(self, ref_id: int, uuid: ContainerUuid) -> None:
        ids = self._by_uuid.get(uuid)
        if ids is not None:
            ids.pop(ref_id, None)
            if not ids:
                del self._by_uuid[uuid]

    # --- queries --------------------------------------------------------------------

    def index(self) -> dict[ContainerUuid, tuple[int, ...]]:
        """Return the uuid index: uuid -> the ids of the references pointing there."""
        return {uuid: tuple(ids) for uuid, ids in self._by_uuid.items()}

    def live(self) -> dict[int, ContainerRecord | None]:
        """Return every reference not released, with its record (None while acquiring)."""
        released = RefStatus.RELEASED  # (an enum class read is dear: once, not per reference)
        return {i: r.record for i, r in self.by_id.items() if r.status is not released}

    def affected_by(self, event: NetworkEvent) -> list[int]:
        """Return the ids of the references ``event`` may concern, oldest first.

        Those pointing at a container the event names, and, when agents
        changed, every acquiring one (an agent for its kind may have come).
        Every session sees every event in "all" mode, so this looks at what
        the session has, not at the whole event, where it can.
        """
        affected: list[int] = []
        index = self._by_uuid
        if index:
            # Most events name none of our references: look them up first.
            for change in event.containers:
                ids = index.get(change.container.uuid)
                if ids:
                    affected.extend(ids)
        if event.agents:
            affected.extend(self._acquiring)
        if len(affected) > 1:
            # The order references were made in (ref ids grow).
            affected = sorted(set(affected))
        return affected
