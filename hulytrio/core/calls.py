"""A client's calls in flight, and when to resend or retry them.

Theory of operation
-------------------
Every operation a session sends the hub is a ``Call`` of one ``CallKind``,
kept under its id until the hub answers.  The id doubles as the user's
handle: ids are unique for the life of the session, so a call resent on a
new connection keeps its id.  A call not yet sent on the current connection
(``sent`` False) is (re)sent when the session is next welcomed, or when its
resend timer fires.

The retry policy lives here too:

- a ``Retry(id, after)`` answer (back-pressure) resends the call once
  ``after`` seconds have passed (the session arms the ``Resend`` timer);
- a ``Get`` that fails with a code in ``GET_RETRY_CODES`` (no agent for the
  kind yet, the agent went away or is full) is retried after
  ``CallTable.get_retry_delay``, doubling per failure up to a maximum;
- a ``Request`` that fails with a code in ``REACQUIRE_CODES`` (its
  container moved or died) re-acquires the reference, then is resent.

The table builds no messages: the session (``core/session.py``) turns a call
into its message, because that needs the references and agents it hosts.
"""

from __future__ import annotations

import enum
from typing import Any

from .errors import ErrorCode

__all__ = ["GET_RETRY_CODES", "REACQUIRE_CODES", "Call", "CallKind", "CallTable"]


class CallKind(enum.Enum):
    """What a call asks of the hub (the message it is sent as)."""

    #: The user's ``get``: a ``Get`` whose answer resolves the user's handle.
    GET = "get"
    #: A ``Get`` the session sends on its own to re-acquire a lost reference.
    REACQUIRE = "reacquire"
    #: The user's ``request`` on a reference.
    REQUEST = "request"
    #: A ``Release`` of a reference (the user's, or a late ``Get``'s give-back).
    RELEASE = "release"
    #: The user's ``query`` (list, agents, kinds).
    QUERY = "query"
    #: A ``Query`` the session sends to rebuild its registry view.
    RESYNC = "resync"
    #: A ``RegisterAgent`` of an agent hosted here.
    REGISTER = "register"
    #: An ``UnregisterAgent``.
    UNREGISTER = "unregister"
    #: A standby's ``Claim`` of a stateless uuid whose owner went away.
    CLAIM = "claim"
    #: The user's ``connect_container`` (an event stream through the hub).
    CONNECT = "connect"
    #: A ``Drain`` of an agent hosted here that shuts down.
    DRAIN = "drain"
    #: The user's ``terminate_any`` (an admin's ``TerminateAny``).
    TERMINATE = "terminate"


#: Error codes on which a ``Get`` is retried later: waiting may cure them.
GET_RETRY_CODES = frozenset({
    ErrorCode.NO_AGENT.value, ErrorCode.AGENT_GONE.value, ErrorCode.FULL.value,
    ErrorCode.NOT_FOUND.value,
})
#: Error codes on which a ``Request`` re-acquires its reference and is resent.
REACQUIRE_CODES = frozenset({ErrorCode.AGENT_GONE.value, ErrorCode.NOT_FOUND.value})


class Call:
    """One operation in flight under id ``call_id``."""

    __slots__ = ("agent_id", "call_id", "data", "kind", "ref_id", "sent", "sent_before", "user")

    def __init__(self, call_id: int, kind: CallKind, user: bool, ref_id: int | None,
                 agent_id: str | None, data: Any) -> None:
        self.call_id = call_id
        self.kind = kind
        #: the outcome resolves or rejects the user's handle ``call_id``
        self.user = user
        #: the reference it is about (GET, REACQUIRE, REQUEST)
        self.ref_id = ref_id
        #: the hosted agent it is about (REGISTER, UNREGISTER, CLAIM)
        self.agent_id = agent_id
        #: what the message needs besides: (operation, payload) of a REQUEST,
        #: the uuid of a RELEASE or CONNECT, (what, kind) of a QUERY or RESYNC,
        #: the offer of a CLAIM, and for a REACQUIRE whether it is the one
        #: after a reconnect (a hub in its recovery window may park it)
        self.data = data
        #: sent on the current connection (False: to send when ready)
        self.sent = False
        #: sent on an earlier connection and not answered there: the hub may
        #: still hold a forward of it (a ``Cancel`` of the call must reach it)
        self.sent_before = False


class CallTable:
    """The calls of one session in flight, by id, and the ids handed out.

    ``get_retry_initial`` and ``get_retry_max`` bound the delay before a
    failed ``Get`` is retried.
    """

    __slots__ = ("_next_id", "get_retry_initial", "get_retry_max", "pending")

    def __init__(self, get_retry_initial: float = 0.05, get_retry_max: float = 5.0,
                 first_id: int = 0) -> None:
        self.get_retry_initial = get_retry_initial
        self.get_retry_max = get_retry_max
        #: call id -> call, in the order they were made
        self.pending: dict[int, Call] = {}
        #: ids count up from ``first_id`` + 1 (the driver may give each
        #: process its own offset: core/answers.py keys on caller id + call id)
        self._next_id = first_id

    def new_id(self) -> int:
        """Return a fresh id (user handles and call ids share the numbering)."""
        self._next_id += 1
        return self._next_id

    def open(self, kind: CallKind, user: bool, ref_id: int | None = None,
             agent_id: str | None = None, data: Any = None, call_id: int | None = None
             ) -> Call:
        """Return a new call of ``kind`` under ``call_id`` (a fresh id if None), now pending."""
        if call_id is None:
            call_id = self._next_id = self._next_id + 1
        call = self.pending[call_id] = Call(call_id, kind, user, ref_id, agent_id, data)
        return call

    def finish(self, call_id: int) -> Call | None:
        """Return the call ``call_id`` and forget it (None if it is not pending)."""
        return self.pending.pop(call_id, None)

    def reopen(self, call: Call) -> None:
        """Put a finished ``call`` back, unsent, to be sent again later."""
        call.sent = False
        self.pending[call.call_id] = call

    def connection_lost(self) -> None:
        """The connection ended: nothing pending was sent on the next one."""
        for call in self.pending.values():
            if call.sent:
                call.sent = False
                call.sent_before = True

    def close(self) -> list[Call]:
        """Forget every call; returns those whose user handle must be failed."""
        users = [call for call in self.pending.values() if call.user]
        self.pending.clear()
        return users

    def forget_kind(self, kind: CallKind) -> None:
        """Forget every pending call of ``kind``."""
        for stale in [i for i, c in self.pending.items() if c.kind is kind]:
            del self.pending[stale]

    def get_retry_delay(self, retries: int) -> float:
        """Return the delay before retrying a ``Get`` that failed ``retries`` times in a row."""
        delay: float = min(self.get_retry_initial * 2 ** (retries - 1), self.get_retry_max)
        return delay
