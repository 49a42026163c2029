"""A client's session with the hub, as a sans-IO machine.

Theory of operation
-------------------
The session owns everything a client must remember across connections:
its calls in flight (``core/calls.py``), its container references
(``core/references.py``), the agents it hosts (``core/hosting.py``) and its
view of the registry (``core/view.py``).  This module keeps the connection
lifecycle and the dispatch: what each message from the hub, each timer and
each user operation does to those parts.

The driver opens connections when told (``OpenConnection``), reports them
(``connection_made`` / ``connection_lost``), feeds decoded messages
(``receive``) and the time (``handle_timers``), and performs the effects it
drains.  User operations (``get``, ``request``, ``release``, ``query``,
``register_agent`` ...) return a *handle*; the outcome arrives later as
``Resolve(handle, value)`` or ``Reject(handle, error)``.  Handles double as
wire call ids: they are unique for the life of the session, so a call
resent on a new connection keeps its id.

Connection lifecycle (``SessionState``, table ``SESSION_TRANSITIONS``)::

    IDLE --connect--> CONNECTING --connection_made--> HANDSHAKE --Welcome--> READY
    CONNECTING/HANDSHAKE/READY --lost, or hub silent past its alive timeout--> BACKOFF
    BACKOFF --backoff delay elapsed--> CONNECTING          (forever, until close)
    READY --another Welcome--> READY                       (rebuilds again)
    HANDSHAKE --Welcome with a redirect, or an older term--> BACKOFF
    HANDSHAKE --Error "unauthorized" (the credential refused)--> CLOSED  (final)
    any --close--> CLOSED

Several hubs (one active, standbys on a lease): a standby answers the hello
with a ``Welcome`` whose ``redirect`` names the active hub; the session
follows the first redirect at once (``OpenConnection(url=...)``) and backs off
before any further one, so two standbys naming each other cannot make it
spin.  Without a redirect the driver picks the next hub of its list.  Every
``Welcome`` carries the active hub's ``term``; the session refuses one older
than the newest it has seen (a deposed hub that has not noticed yet): it
closes that connection and reconnects elsewhere.  Orders arrive only on a
welcomed connection, so none from an older term is ever obeyed.

After every ``Welcome`` but the first the session rebuilds: it re-registers
its agents, re-acquires every reference (by its current uuid; a reference
whose container comes back under another uuid is re-keyed), then resends
the requests that had no answer (at-least-once delivery).  A reference is
also re-acquired when the hub reports its container removed, or when a
request on it fails with ``agent_gone`` / ``not_found``.

``get`` retries while no agent hosts the kind (``no_agent``), with backoff up
to ``get_retry_max``, and at once when an agent with the kind appears.  A
stateless offer standing by here claims its uuid (after a jittered delay
within ``claim_window``) when the hub reports the owner's container removed.

Timers are keyed by ``SessionTimer`` members (one of each per session) and by
``GetRetry`` / ``Resend`` / ``ClaimAfter`` (one per reference, call or
standby); ``handle_timers`` matches on them.
"""

from __future__ import annotations

import collections
import enum
import math
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs

from .agent import AgentState
from .answers import Answer
from .calls import GET_RETRY_CODES, REACQUIRE_CODES, Call, CallKind, CallTable
from .effects import (
    CloseConnection,
    DeliverEvent,
    DeliverPush,
    OpenConnection,
    ReferenceChanged,
    Reject,
    Resolve,
    Send,
    SessionEffect,
)
from .errors import (
    AuthenticationError,
    ConnectionClosed,
    ContainerNotFound,
    ErrorCode,
    HulyError,
    LocalProtocolError,
    error_from_code,
)
from .events import ChangeKind, ContainerEvent, NetworkEvent
from .hosting import Hosting
from .messages import (
    PROTOCOL_VERSION,
    Activate,
    AgentsReply,
    Cancel,
    Claim,
    ClientsReply,
    Close,
    Connect,
    Disconnect,
    Drain,
    Error,
    Event,
    Get,
    GetReply,
    Hello,
    KindsReply,
    ListReply,
    Message,
    Ok,
    Ping,
    Pong,
    Push,
    Query,
    RegisterReply,
    Release,
    Request,
    Response,
    Retry,
    Start,
    Terminate,
    TerminateAny,
    UnregisterAgent,
    Welcome,
)
from .probes import Probes
from .references import Reference, References, RefStatus
from .timers import Timers
from .transitions import TransitionTable
from .types import AgentId, AgentInfo, ContainerRecord, ContainerUuid, GetOptions, OfferedContainer
from .view import RegistryView

if TYPE_CHECKING:
    # Only the type: the generator is always injected, never created here.
    from random import Random

__all__ = [
    "FENCE_SHARE",
    "SESSION_TRANSITIONS",
    "Backoff",
    "ClaimAfter",
    "ClientSession",
    "GetRetry",
    "RefStatus",
    "Resend",
    "SessionState",
    "SessionTimer",
    "TimerKey",
]


class SessionState(enum.Enum):
    """Where the session's connection stands."""

    #: Not started yet.
    IDLE = "idle"
    #: The driver is opening a connection.
    CONNECTING = "connecting"
    #: Connected; ``Hello`` sent, waiting for ``Welcome``.
    HANDSHAKE = "handshake"
    #: Welcomed: calls flow.
    READY = "ready"
    #: Waiting to reconnect.
    BACKOFF = "backoff"
    #: Closed for good.
    CLOSED = "closed"


#: The moves the connection lifecycle may make (see the module docstring).
#: READY -> READY is a second ``Welcome`` on one connection: the hub's input,
#: so it must not be an error here; the session rebuilds as after a reconnect.
SESSION_TRANSITIONS: TransitionTable[SessionState] = TransitionTable("session", {
    SessionState.IDLE: (SessionState.CONNECTING, SessionState.CLOSED),
    SessionState.CONNECTING: (SessionState.HANDSHAKE, SessionState.BACKOFF,
                              SessionState.CLOSED),
    SessionState.HANDSHAKE: (SessionState.READY, SessionState.BACKOFF, SessionState.CLOSED),
    SessionState.READY: (SessionState.READY, SessionState.BACKOFF, SessionState.CLOSED),
    SessionState.BACKOFF: (SessionState.CONNECTING, SessionState.CLOSED),
})


class SessionTimer(enum.Enum):
    """The session's own timers, one of each at most."""

    #: Send a ``Ping`` (periodic while READY).
    PING = "ping"
    #: Has the hub been heard from within its alive timeout?
    HUB_ALIVE = "hub-alive"
    #: The backoff delay elapsed: open a connection again.
    RECONNECT = "reconnect"
    #: Has the hub heard from us within the fence lease?  (only while hosting)
    FENCE = "fence"

    # Timers hash their keys on every arming and firing, and every session
    # pings: identity hashing (in C) instead of Enum's hash of the name (in
    # Python).  Members are singletons, so equality is identity anyway.
    __hash__ = object.__hash__


@attrs.frozen
class GetRetry:
    """Timer: retry the ``Get`` of reference ``ref_id`` (it failed; see ``CallTable``)."""

    ref_id: int


@attrs.frozen
class Resend:
    """Timer: resend call ``call_id``, which the hub answered ``Retry``."""

    call_id: int


@attrs.frozen
class ClaimAfter:
    """Timer: hosted agent ``agent_id`` claims the stateless ``uuid`` it stands by for."""

    agent_id: AgentId
    uuid: ContainerUuid


#: Every key the session arms its timers with.
TimerKey: TypeAlias = SessionTimer | GetRetry | Resend | ClaimAfter

#: a message without fields is immutable: one instance serves every ping
_PING = Ping()
#: error codes that answer a hello the hub will not accept (see ``refused``)
_REFUSALS = frozenset({ErrorCode.UNAUTHORIZED.value, ErrorCode.FORBIDDEN.value})
#: and so is the effect that sends it
_SEND_PING = Send(None, _PING)

# The enum members the per-request and per-event paths compare with, read
# once: on Python 3.11 reading ``RefStatus.READY`` costs ~1,100 instructions
# (``EnumType`` defines ``__getattr__``, so every attribute read on an enum
# class goes through a slot wrapper), a module global ~10.  Measured in
# docs/performance.md, "Churn instructions recovered (2026-12-06)".
_REF_READY = RefStatus.READY
_REF_RELEASED = RefStatus.RELEASED
_REF_ACQUIRING = RefStatus.ACQUIRING
_CALL_REQUEST = CallKind.REQUEST
_CHANGE_REMOVED = ChangeKind.REMOVED


@attrs.frozen
class Backoff:
    """Exponential backoff with jitter: ``min(initial * factor**(n-1), maximum)``.

    The jitter takes up to ``jitter`` (a fraction) off each delay, drawn from
    the session's injected random generator.
    """

    initial: float = 0.05
    maximum: float = 5.0
    factor: float = 2.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: Random) -> float:
        """Return the delay before attempt number ``attempt`` (1-based)."""
        base = min(self.initial * self.factor ** max(attempt - 1, 0), self.maximum)
        return base * (1.0 - self.jitter * rng.random())


#: The default fence lease, as a share of the alive timeout the hub applies
#: to this session (its ``Welcome``): 10% of it is the margin for the two
#: clocks' rates (docs/high-availability.md, "Self-fencing agents").
FENCE_SHARE = 0.9


#: After a standby's redirect the reconnect delay is that of this attempt at
#: most (50 ms x 1.5^2 = 113 ms with the client driver's backoff).
_REDIRECT_ATTEMPT_CAP = 3


class ClientSession:
    """A client's side of the protocol (see module docstring).

    ``rng`` is the only source of randomness (reconnect jitter, claim
    jitter).  ``alive_timeout`` is asked of the hub in the hello (None: the
    hub's default).  ``seeded_bugs`` switches on deliberate faults for the
    simulator's self-test; production never sets it.

    The parts it is made of are public attributes a driver or test may read:
    ``calls`` (``CallTable``), ``refs`` (``References``), ``hosting``
    (``Hosting``), ``view`` (``RegistryView``) and ``timers``; only the
    session changes them.
    """

    def __init__(
        self,
        client_id: str,
        *,
        rng: Random,
        alive_timeout: float | None = None,
        backoff: Backoff = Backoff(),
        get_retry_initial: float = 0.05,
        get_retry_max: float = 5.0,
        claim_window: float = 0.01,
        events: str = "all",
        probes: Probes | None = None,
        seeded_bugs: frozenset[str] = frozenset(),
        credentials: str | None = None,
        first_call_id: int = 0,
    ) -> None:
        if events not in ("all", "own"):
            raise LocalProtocolError(f"events must be 'all' or 'own', got {events!r}")
        self.client_id = client_id
        #: "all": every registry event and a full view; "own": only what
        #: concerns this session (its references, its standbys, agents)
        self.events = events
        #: the token presented in every hello (None: the hub runs without authentication)
        self.credentials = credentials
        #: the hub's refusal of the last hello (``unauthorized``: the credential;
        #: ``forbidden``: the peer id is another principal's); None once welcomed.
        #: The session keeps reconnecting with backoff meanwhile.
        self.refused: Error | None = None
        #: why the session closed by itself (a refused credential); None
        #: while open or closed by ``close()``.  Calls made after fail with it.
        self.closed_by: HulyError | None = None
        self.rng = rng
        self.alive_timeout = alive_timeout
        self.backoff = backoff
        self.claim_window = claim_window
        self.probes = probes if probes is not None else Probes()
        self.seeded_bugs = seeded_bugs
        self.state = SessionState.IDLE
        # ``state is READY``, kept by ``_transition``: read on every message
        # and every send, where a member looked up through its Enum class
        # costs ~60 ns on CPython 3.11 (churn events +5% without it).
        self._ready = False
        #: the hub's id from the last Welcome (changes when the hub restarts)
        self.hub_id: str | None = None
        #: the newest hub term a Welcome announced (0: none yet)
        self.term = 0
        self.welcomes = 0
        #: redirects followed since the last real Welcome
        self._redirects = 0
        #: requests sent on an earlier connection that the user cancelled
        #: while none was welcomed: their ``Cancel`` goes at the next Welcome
        self._cancels_owed: list[int] = []
        self.timers = Timers()
        # ``first_call_id``: the driver's per-process offset (a restarted
        # caller under the same peer id must not reuse its predecessor's ids)
        self.calls = CallTable(get_retry_initial, get_retry_max, first_call_id)
        self.refs = References()
        #: this client's view of the registry, built from events
        self.view = RegistryView()
        #: the agents hosted here
        self.hosting = Hosting(self.probes)
        self._effects: list[SessionEffect] = []
        self._attempt = 0
        self._hub_alive = 3.0
        self._last_heard = 0.0
        #: when the hello of the current connection was sent
        self._hello_at = 0.0
        #: send times of the pings the hub has not answered yet on this
        #: connection (a stream keeps order: a Pong answers the oldest)
        self._pings: collections.deque[float] = collections.deque()
        #: the latest time we know the hub heard us: the send time of the
        #: last ping it answered (or of the hello its Welcome answered)
        self._heard_us = 0.0
        #: the fence lease in force (``fence_lease_for``), and when it ends;
        #: inf while no agent is hosted or nothing serves
        self._lease = FENCE_SHARE * self._hub_alive
        self._fence_at = math.inf
        #: the hub's ping interval, and the one the session pings at
        self._ping_interval = 1.0
        self._pinging = 0.0

    @property
    def view_agents(self) -> dict[AgentId, AgentInfo]:
        """Return the agents of the registry view (``view.agents``)."""
        return self.view.agents

    @property
    def view_containers(self) -> dict[ContainerUuid, ContainerRecord]:
        """Return the containers of the registry view (``view.containers``)."""
        return self.view.containers

    def _transition(self, new: SessionState) -> None:
        # The one place the connection lifecycle moves (SESSION_TRANSITIONS).
        self.state = SESSION_TRANSITIONS.check(self.state, new)
        self._ready = new is SessionState.READY

    # --- driver interface -------------------------------------------------------

    def effects(self) -> list[SessionEffect]:
        """Return and clear the effects produced since the last call, in order."""
        out = self._effects
        self._effects = []
        return out

    def next_deadline(self) -> float | None:
        """Return when ``handle_timers`` must be called next, or None."""
        return self.timers.next_deadline()

    def connect(self, now: float) -> None:
        """Start the session: ask the driver to open the first connection.

        Raises:
            LocalProtocolError: if the session was already started.
        """
        if self.state is not SessionState.IDLE:
            raise LocalProtocolError(f"connect() in state {self.state.name}")
        self._open(now)

    def connection_made(self, now: float) -> None:
        """The driver's connection is open: say hello (ignored unless CONNECTING)."""
        if self.state is not SessionState.CONNECTING:
            return
        self._transition(SessionState.HANDSHAKE)
        self._last_heard = now
        self._hello_at = now
        self._pings.clear()
        # The handshake must finish within the hub's alive timeout as we know it.
        self.timers.call_at(now + self._hub_alive, SessionTimer.HUB_ALIVE)
        self._send(Hello(PROTOCOL_VERSION, self.client_id, self.alive_timeout,
                         self.credentials, events=self.events))

    def connection_lost(self, now: float) -> None:
        """The connection failed or closed: back off and reconnect.

        Calls in flight stay; they are resent after the next ``Welcome``.
        """
        if self.state in (SessionState.CLOSED, SessionState.BACKOFF, SessionState.IDLE):
            return
        self.probes.hit("connection lost")
        self._transition(SessionState.BACKOFF)
        self.timers.cancel(SessionTimer.PING)
        self.timers.cancel(SessionTimer.HUB_ALIVE)
        self.hosting.connection_lost()
        if self._fence_at != math.inf and self.hosting.serves_stateless():
            # No ping ticks until the next Welcome: the lease needs its timer.
            self.timers.call_at(self._fence_at, SessionTimer.FENCE)
        self.calls.connection_lost()
        self.timers.call_at(now + self.backoff.delay(self._attempt, self.rng),
                            SessionTimer.RECONNECT)

    def close(self, now: float) -> None:
        """Close for good: say ``Close``, fail every call with ``ConnectionClosed``."""
        state = self.state
        if state is SessionState.CLOSED:
            return
        if state is SessionState.READY:
            self._send(Close("client closing"))
        if state in (SessionState.READY, SessionState.HANDSHAKE, SessionState.CONNECTING):
            self._effects.append(CloseConnection(None, "client closing"))
        self._transition(SessionState.CLOSED)
        for call in self.calls.close():
            self._effects.append(Reject(call.call_id, ConnectionClosed("client closed")))
        self.timers = Timers()

    def handle_timers(self, now: float) -> None:
        """Fire every deadline that is due at ``now``."""
        for key in self.timers.expired(now):
            match key:
                case SessionTimer.PING:
                    if self._ready:
                        if now >= self._fence_at:
                            self._check_fence(now)
                            if not self._ready:
                                continue
                        self._pings.append(now)
                        self._effects.append(_SEND_PING)
                        if self._fence_at != math.inf:
                            self._watch_fence()
                case SessionTimer.HUB_ALIVE:
                    self._check_hub_alive(now)
                case SessionTimer.FENCE:
                    self._check_fence(now)
                case SessionTimer.RECONNECT:
                    if self.state is SessionState.BACKOFF:
                        self._open(now)
                case GetRetry(ref_id=ref_id):
                    ref = self.refs.by_id.get(ref_id)
                    if ref is not None and ref.status is RefStatus.ACQUIRING:
                        # The failed Get is still the ref's acquire call (unsent):
                        # resend it; _acquire() alone would see it and do nothing.
                        self._acquire_now(ref)
                case Resend(call_id=call_id):
                    call = self.calls.pending.get(call_id)
                    if call is not None and not call.sent:
                        self._send_call(call)
                case ClaimAfter(agent_id=agent_id, uuid=uuid):
                    self._claim(agent_id, uuid)
                case _:  # pragma: no cover - only the keys above are armed
                    raise AssertionError(key)

    def receive(self, message: Message, now: float) -> None:
        """Handle one decoded message from the hub (ignored unless connected)."""
        if self._ready:
            if now >= self._fence_at:
                # Checked before anything is read: a message that waited out
                # the lease (this process was paused) proves nothing.
                self._check_fence(now)
                if not self._ready:
                    return
            self._last_heard = now
            kind = type(message)
            if kind is Pong:
                # Most of an idle session's input: its sign of life is noted,
                # and the ping it answers is the latest the hub heard of us.
                pings = self._pings
                if pings:
                    self._heard_us = heard = pings.popleft()
                    if self._fence_at != math.inf:
                        self._fence_at = heard + self._lease
                return
            handler = _HANDLERS.get(kind)
            if handler is not None:
                handler(self, message, now)
        elif self.state is SessionState.HANDSHAKE:
            self._last_heard = now
            if isinstance(message, Welcome):
                self._welcome(message, now)
            elif isinstance(message, Error) and message.code in _REFUSALS:
                self.probes.hit("hello refused")
                self.refused = message
                if message.code == ErrorCode.UNAUTHORIZED.value:
                    self._credential_refused(message)

    def _credential_refused(self, refusal: Error) -> None:
        """The hub refused the credential itself: retrying cannot cure it, so close.

        (A ``forbidden`` hello, a peer id another principal holds, may heal
        when that session ends: the session keeps retrying then.)
        """
        self.probes.hit("credential refused: closed")
        self.closed_by = AuthenticationError(refusal.message)
        self._effects.append(CloseConnection(None, f"unauthorized: {refusal.message}"))
        self._transition(SessionState.CLOSED)
        for call in self.calls.close():
            self._effects.append(Reject(call.call_id, self.closed_by))
        self.timers = Timers()

    # --- user operations -------------------------------------------------------

    def get(self, kind: str, options: GetOptions | None = None) -> int:
        """Acquire a container of ``kind``; returns the handle that is also the ref id.

        Resolves with the ``ContainerRecord``; rejects with ``ConnectionClosed``,
        ``RemoteError``/``HulyError`` for errors that waiting cannot cure
        (``bad_kind``, ``start_failed``).  Retries forever while no agent hosts
        the kind; bound it with a timeout in the caller.
        """
        ref_id = self.calls.new_id()
        ref = self.refs.add(ref_id, kind, options if options is not None else GetOptions())
        self._acquire(ref, call_id=ref_id)
        return ref_id

    def reference(self, ref_id: int) -> ContainerRecord | None:
        """Return the record reference ``ref_id`` points at now (None while acquiring)."""
        ref = self.refs.by_id.get(ref_id)
        return None if ref is None else ref.record

    def ref_status(self, ref_id: int) -> RefStatus | None:
        """Return the status of reference ``ref_id``, or None if unknown."""
        ref = self.refs.by_id.get(ref_id)
        return None if ref is None else ref.status

    def references(self) -> dict[int, ContainerRecord | None]:
        """Return every live reference's current record (None while acquiring)."""
        return self.refs.live()

    def request(self, ref_id: int, operation: str, payload: bytes) -> int:
        """Call ``operation`` on the container of reference ``ref_id``; returns a handle.

        Resolves with the response payload (bytes); rejects with the container's
        error.  Survives reconnects and failover (at-least-once).

        Raises:
            LocalProtocolError: if ``ref_id`` is unknown or released.
        """
        ref = self.refs.by_id.get(ref_id)
        if ref is None or ref.status is _REF_RELEASED:
            raise LocalProtocolError(f"reference {ref_id} is not held")
        call = self.calls.open(_CALL_REQUEST, True, ref_id, None, (operation, payload))
        if ref.status is _REF_READY:
            self._send_request(call)
        else:
            ref.waiting[call.call_id] = None
        return call.call_id

    def cancel(self, handle: int) -> None:
        """The user abandoned call ``handle``: forget it, and tell the hub if it was sent.

        No outcome is emitted for it.  A request or a ``connect``: the hub
        frees its in-flight slot (and the agent stops the request).  A
        ``get``: its reference is released; a get the hub was waiting on a
        container start for stops waiting there, and one the hub answered
        already is given back when the answer lands.  A query is forgotten
        (the hub holds nothing for it).  A no-op for a handle that is not a
        pending call of the user's (answered already, or the session's own).
        """
        call = self.calls.pending.get(handle)
        if call is None:
            return
        kind = call.kind
        if kind is not CallKind.REQUEST:
            if kind is CallKind.GET:
                self._cancel_get(call)
            elif kind is CallKind.QUERY or kind is CallKind.CONNECT:
                self.calls.finish(handle)
                self.timers.cancel(Resend(handle))
                if kind is CallKind.CONNECT and call.sent and self._ready:
                    self._send(Cancel(handle))
            return
        self.calls.finish(handle)
        self.timers.cancel(Resend(handle))
        ref = self.refs.by_id.get(call.ref_id) if call.ref_id is not None else None
        if ref is not None:
            ref.waiting.pop(handle, None)
        if call.sent_before:
            # Sent on an earlier connection, unanswered: the hub may still
            # hold that forward, and the agent run it (docs/protocol.md,
            # "Cancelling a call"): cancel it now, or once welcomed again.
            if self._ready:
                self._send(Cancel(handle))
            else:
                self._cancels_owed.append(handle)
        elif call.sent and self._ready:
            self._send(Cancel(handle))

    def _cancel_get(self, call: Call) -> None:
        """The user abandoned its ``get`` ``call``: release the reference it was acquiring.

        Sent, the call stays open for the hub's one answer: ``cancelled``
        (the hub stopped waiting for a start) or a ``GetReply`` that crossed
        the cancel, which is given back with a release (``_on_got``).
        """
        handle = call.call_id
        self.timers.cancel(Resend(handle))
        ref = self.refs.by_id.get(call.ref_id) if call.ref_id is not None else None
        if ref is not None:
            self.timers.cancel(GetRetry(ref.ref_id))
            if ref.status is not RefStatus.RELEASED:
                self.refs.released(ref)
        if call.sent and self._ready:
            self._send(Cancel(handle))
            return
        self.calls.finish(handle)
        if ref is not None:
            ref.acquire_call = None
            self.refs.drop(ref)

    def release(self, ref_id: int) -> int:
        """Release reference ``ref_id``; returns a handle resolved with None.

        Requests still waiting for the reference fail with ``ContainerNotFound``.

        Raises:
            LocalProtocolError: if ``ref_id`` is unknown or already released.
        """
        ref = self.refs.by_id.get(ref_id)
        if ref is None or ref.status is RefStatus.RELEASED:
            raise LocalProtocolError(f"reference {ref_id} is not held")
        was_ready = ref.status is RefStatus.READY
        self.refs.released(ref)
        self.timers.cancel(GetRetry(ref_id))
        for handle in ref.waiting:
            self.calls.finish(handle)
            self._effects.append(Reject(handle, ContainerNotFound("reference released")))
        ref.waiting.clear()
        if was_ready and ref.record is not None and self.state is SessionState.READY:
            call = self.calls.open(CallKind.RELEASE, True, data=ref.record.uuid)
            self._send_call(call)
            self.refs.drop(ref)
            return call.call_id
        # Not held at the hub (yet): a Get in flight is released when it lands.
        handle = self.calls.new_id()
        if ref.acquire_call is None:
            self.refs.drop(ref)
        self._effects.append(Resolve(handle, None))
        return handle

    def query(self, what: str, kind: str | None = None) -> int:
        """Ask the hub for ``"list"``, ``"agents"``, ``"kinds"`` or ``"clients"``; returns a handle.

        Resolves with a tuple of ``ContainerRecord``, ``AgentInfo``, ``str``
        or ``ClientInfo`` (``"clients"``: the admin role, else ``Forbidden``).
        """
        call = self.calls.open(CallKind.QUERY, True, data=(what, kind))
        self._send_call(call)
        return call.call_id

    def terminate_any(self, uuid: str) -> int:
        """Ask the hub to terminate container ``uuid``, whoever holds it; returns a handle.

        Needs the ``admin`` role.  Resolves with None; rejects with
        ``Forbidden`` (not an admin) or ``ContainerNotFound`` (no such
        container, or it is still starting).
        """
        call = self.calls.open(CallKind.TERMINATE, True, data=uuid)
        self._send_call(call)
        return call.call_id

    def connect_container(self, ref_id: int) -> int:
        """Open an event stream from ``ref_id``'s container through the hub; returns a handle.

        Raises:
            LocalProtocolError: if the reference is not ready.
        """
        ref = self.refs.by_id.get(ref_id)
        if ref is None or ref.record is None:
            raise LocalProtocolError(f"reference {ref_id} is not ready")
        call = self.calls.open(CallKind.CONNECT, True, data=ref.record.uuid)
        self._send_call(call)
        return call.call_id

    def disconnect_container(self, uuid: ContainerUuid) -> None:
        """Close the event stream from ``uuid`` opened through the hub."""
        if self.state is SessionState.READY:
            self._send(Disconnect(uuid))

    # --- agents -------------------------------------------------------------

    def register_agent(self, agent: AgentState) -> int:
        """Host ``agent`` in this session and register it; returns a handle.

        Resolves with the ``RegisterReply``.

        Raises:
            LocalProtocolError: if an agent with that id is already hosted here.
        """
        self.hosting.add(agent)
        if self._ready:
            self._ping_every(self._last_heard)
            self._arm_fence()
        call = self.calls.open(CallKind.REGISTER, True, agent_id=agent.agent_id)
        self._send_call(call)
        return call.call_id

    def forget_agent(self, agent_id: AgentId) -> None:
        """Stop hosting ``agent_id`` without telling the hub (it refused the registration).

        Emits ``StopContainer`` for anything the agent ran.
        """
        agent = self.hosting.agents.pop(agent_id, None)
        if agent is not None:
            self._effects.extend(agent.stop_all())

    def unregister_agent(self, agent_id: AgentId) -> int:
        """Stop hosting ``agent_id``; returns a handle resolved once the hub agrees.

        Emits ``StopContainer`` for everything the agent ran.
        """
        self._effects.extend(self.hosting.remove(agent_id))
        call = self.calls.open(CallKind.UNREGISTER, True, agent_id=agent_id)
        self._send_call(call)
        return call.call_id

    def drain_agent(self, agent_id: AgentId) -> int:
        """Ask the hub to move ``agent_id``'s containers away; returns a handle.

        The agent cancels its starts and takes no new ones at once; its
        containers serve on until the hub answers (the handle resolves with
        None), then stop serving (``SetServing(False)``) while the requests
        they run finish.  The driver then closes the agent
        (``unregister_agent``).  After a reconnect the ``Drain`` is sent again,
        after the agent's registration.

        Raises:
            LocalProtocolError: if ``agent_id`` is not hosted here, or drains already.
        """
        agent = self.hosting.get(agent_id)
        if agent is None:
            raise LocalProtocolError(f"agent {agent_id!r} is not hosted here")
        self._effects.extend(agent.drain())
        call = self.calls.open(CallKind.DRAIN, True, agent_id=agent_id)
        self._send_call(call)
        return call.call_id

    def agent(self, agent_id: AgentId) -> AgentState | None:
        """Return the hosted agent ``agent_id``, or None."""
        return self.hosting.get(agent_id)

    def agent_started(self, agent_id: AgentId, uuid: ContainerUuid,
                      endpoint: str | None = None) -> None:
        """The driver started container ``uuid`` for ``agent_id``."""
        self._emit(self.hosting.started(agent_id, uuid, endpoint))

    def agent_start_failed(self, agent_id: AgentId, uuid: ContainerUuid, message: str) -> None:
        """The driver failed to start ``uuid`` for ``agent_id``."""
        self._emit(self.hosting.start_failed(agent_id, uuid, message))

    def agent_stopped(self, agent_id: AgentId, uuid: ContainerUuid) -> None:
        """Container ``uuid`` of ``agent_id`` ended on its own."""
        self._emit(self.hosting.stopped(agent_id, uuid))

    def agent_terminated(self, agent_id: AgentId, uuid: ContainerUuid) -> None:
        """Container ``uuid`` of ``agent_id``, which the hub terminated, saved its last changes."""
        self._emit(self.hosting.terminated(agent_id, uuid))

    def agent_offer_again(self, agent_id: AgentId, offer: OfferedContainer) -> None:
        """Hosted ``agent_id`` offers the stateless ``offer`` again and claims it.

        For an offer it stopped serving on its own (``agent_stopped``, e.g.
        after its saved state failed to import): the claim makes it the
        owner if nobody owns the uuid now, else a standby again.  Without a
        connection the next registration lists it.  A no-op for an agent not
        hosted here or an offer ``AgentState.offer_again`` does not take.
        """
        agent = self.hosting.agents.get(agent_id)
        if agent is None or not agent.offer_again(offer):
            return
        if self.state is SessionState.READY:
            self.probes.hit("stateless offered again")
            self._send_call(self.calls.open(CallKind.CLAIM, False, agent_id=agent_id,
                                            data=offer))

    def agent_reply(self, call_id: int, payload: bytes, *, now: float) -> None:
        """The run ``call_id`` (a ``RunRequest``'s) completed with ``payload`` at ``now``.

        The answer is remembered for a resend (``core/answers.py``) and sent
        to every hub call waiting for it on the current connection.
        """
        self._emit(self.hosting.reply(call_id, Answer(payload), now))

    def agent_error(self, call_id: int, code: str, message: str, type_name: str = "",
                    *, now: float) -> None:
        """The run ``call_id`` failed (``code``: an ``ErrorCode`` value) at ``now``.

        A ``remote`` error (the container raised) is remembered like an
        answer; any other says the request did not run, so a resend runs.
        """
        self._emit(self.hosting.reply(call_id, Answer(b"", code, message, type_name), now))

    def agent_push(self, uuid: ContainerUuid, client_id: str, payload: bytes) -> None:
        """Container ``uuid`` broadcasts ``payload`` to ``client_id`` (connected via the hub)."""
        self._send(Push(uuid, payload, client_id))

    # --- connection lifecycle ------------------------------------------------------

    def _open(self, now: float, url: str | None = None) -> None:
        self._attempt += 1
        self._transition(SessionState.CONNECTING)
        self._effects.append(OpenConnection(self._attempt, url) if url is not None
                             else OpenConnection(self._attempt))

    def _check_hub_alive(self, now: float) -> None:
        state = self.state
        if state is not SessionState.HANDSHAKE and state is not SessionState.READY:
            return
        deadline = self._last_heard + self._hub_alive
        if deadline > now:
            self.timers.call_at(deadline, SessionTimer.HUB_ALIVE)
            return
        # fix: the reference never looked at pongs and could not tell the hub
        # was gone; a silent hub is a dead connection.
        self.probes.hit("hub silent: reconnect")
        self._effects.append(CloseConnection(None, "hub silent past its alive timeout"))
        self.connection_lost(now)

    def fence_lease_for(self, alive_timeout: float) -> float:
        """Return the fence lease under a hub whose alive timeout for us is ``alive_timeout``.

        ``FENCE_SHARE`` (0.9) of it, or the shortest lease a hosted agent
        asks for (``AgentState.fence_lease``) when that is shorter: an agent
        may fence sooner, never later than the margin allows.
        """
        lease = FENCE_SHARE * alive_timeout
        asked = self.hosting.fence_lease()
        return lease if asked is None or asked > lease else asked

    def _ping_every(self, now: float, *, force: bool = False) -> None:
        """Ping at the hub's interval, or at A / 3 when hosting agents, whichever is shorter.

        The fence lease counts from the last ping the hub answered, so pings
        must come well within it: with the hub's defaults (3 s, pings every
        1 s) nothing changes, but a hub with a 1 s alive timeout and 1 s
        pings (its idle peers live on their other traffic) would have its
        agents fence between two pings.
        """
        interval = self._ping_interval
        if self.hosting.agents:
            interval = min(interval, self._hub_alive / 3)
        if force or interval != self._pinging:
            self._pinging = interval
            self.timers.call_every(interval, SessionTimer.PING, now + interval)

    def _arm_fence(self) -> None:
        """Start counting the fence lease from the last time the hub heard us."""
        self._lease = self.fence_lease_for(self._hub_alive)
        self._fence_at = self._heard_us + self._lease
        self._watch_fence()

    def _watch_fence(self) -> None:
        """Arm the FENCE timer unless the next ping tick comes first (it looks then).

        While the hub answers, the lease ends after the next tick and no
        timer is armed (no wake-ups of their own: the simulator's traces of
        a healthy cluster do not change); without ping ticks (not READY) the
        timer is armed at the lease's end.
        """
        fence_at = self._fence_at
        tick = self.timers.deadline(SessionTimer.PING) if self._ready else None
        if tick is None or fence_at <= tick:
            self.timers.call_at(fence_at, SessionTimer.FENCE)

    def _check_fence(self, now: float) -> None:
        """The fence lease may be over: pause serving stateless offers if it is.

        Past it, the hub may have declared us dead and given our stateless
        uuids to a standby: they stop serving (``Hosting.self_fence``), and a
        connection still open is dropped, so the reconnect's registration
        lets the hub decide ownership again.
        """
        if not self.hosting.agents or self.state is SessionState.CLOSED:
            self._fence_at = math.inf
            return
        if self._fence_at == math.inf:
            return  # fenced already: the next Welcome counts again
        if now < self._fence_at:
            self._watch_fence()
            return
        self._fence_at = math.inf  # until the next Welcome
        fenced = self.hosting.self_fence()
        if not fenced:
            return
        self.probes.hit("self-fenced: hub silent past the fence lease")
        self._effects.extend(fenced)
        if self.state is SessionState.READY or self.state is SessionState.HANDSHAKE:
            self._effects.append(CloseConnection(None, "hub silent past the fence lease"))
            self.connection_lost(now)

    def _welcome(self, msg: Welcome, now: float) -> None:
        if msg.redirect is not None:
            self._redirected(msg.redirect, now)
            return
        if msg.term < self.term:
            # A deposed hub (paused, cut off) that has not noticed yet: none
            # of its answers or orders may count.  Look for the active one.
            self.probes.hit("older hub term refused")
            self._effects.append(CloseConnection(
                None, f"hub term {msg.term} is older than term {self.term} already seen"))
            self.connection_lost(now)
            return
        self.term = msg.term
        self._redirects = 0
        restarted = self.hub_id is not None and msg.hub_id != self.hub_id
        if restarted:
            self.probes.hit("hub restarted")
        rebuilding = self.welcomes > 0
        self.welcomes += 1
        self.refused = None
        self.hub_id = msg.hub_id
        self._transition(SessionState.READY)
        self._attempt = 0
        self._hub_alive = msg.alive_timeout
        self._ping_interval = msg.ping_interval
        self._ping_every(now, force=True)
        self.timers.call_at(now + self._hub_alive, SessionTimer.HUB_ALIVE)
        # The Welcome answers our hello: the hub heard us when we sent it.
        self._heard_us = self._hello_at
        if self.hosting.agents:
            self._arm_fence()
        if self._cancels_owed:
            for handle in self._cancels_owed:
                self._send(Cancel(handle))
            self._cancels_owed.clear()
        # Events continue from the hub's current number (a restarted hub
        # counts from 0 again); what we missed meanwhile comes from a resync,
        # and a snapshot half answered on the old connection is dropped.
        self.view.restart(msg.event_seq)
        if rebuilding:
            self._rebuild()
        else:
            for call in list(self.calls.pending.values()):
                self._send_call(call)
            if msg.event_seq > 0:
                # The hub published changes before we joined: events alone
                # would never tell us about them, so start from a snapshot.
                self._resync()

    def _redirected(self, url: str, now: float) -> None:
        """A standby hub named the active one (``url``; empty: it does not know)."""
        self.probes.hit("redirected by a standby hub")
        self._effects.append(CloseConnection(None, f"standby hub; redirected to {url or '?'}"))
        # A hub answered: the pair is alive and a takeover is under way or
        # done (a redirect to a dead leader is the standby's view before it
        # wins).  Keep retrying at a short delay instead of backing off
        # towards the maximum, so the new active hub is found soon after it
        # wins the lease.
        self._attempt = min(self._attempt, _REDIRECT_ATTEMPT_CAP)
        self.connection_lost(now)
        if url and self._redirects == 0:
            # Follow at once; a second redirect in a row waits its backoff
            # (the standbys' view of the leader may be stale for a moment).
            self.timers.cancel(SessionTimer.RECONNECT)
            self._open(now, url)
        self._redirects += 1

    def _rebuild(self) -> None:
        """After a reconnect: agents, then references, then everything else."""
        self.probes.hit("session rebuild")
        # A snapshot is the two answers of one hub session.  A resync the old
        # connection half answered would be finished by the new hub with the
        # other half only, mixing two registries; start it over (the _resync
        # below; the view stopped waiting for it in _welcome).  fix: the half
        # answered before the loss stayed in the view.
        self.calls.forget_kind(CallKind.RESYNC)
        for agent_id in self.hosting.agents:
            self._send_call(self.calls.open(CallKind.REGISTER, False, agent_id=agent_id))
        for ref in list(self.refs.by_id.values()):
            if ref.status is RefStatus.RELEASED:
                # Released (or its get cancelled) while a Get was in flight:
                # the new hub session holds nothing, there is nothing to give back.
                if ref.acquire_call is not None:
                    self.calls.finish(ref.acquire_call)
                    self.refs.drop(ref)
                continue
            if self.refs.lost(ref):
                self._effects.append(ReferenceChanged(ref.ref_id, None))
            ref.held = None  # a new hub session holds nothing for us
            call_id = ref.acquire_call
            pending = self.calls.pending.get(call_id) if call_id is not None else None
            if pending is not None:
                # A Get already waits for this reference (perhaps the user's
                # own): resend that one, or its caller would never hear back.
                if pending.kind is CallKind.REACQUIRE:
                    pending.data = True
                self._send_call(pending)
            else:
                ref.acquire_call = None
                self._acquire(ref, rebuild=True)
        for call in list(self.calls.pending.values()):
            if call.sent:
                continue
            match call.kind:
                case CallKind.REQUEST:
                    if "skip-resend" in self.seeded_bugs:
                        # Seeded bug for the simulator's self-test.
                        continue
                    waiting_ref = (self.refs.by_id.get(call.ref_id)
                                   if call.ref_id is not None else None)
                    if waiting_ref is not None and waiting_ref.status is not RefStatus.READY:
                        waiting_ref.waiting[call.call_id] = None
                        continue
                case CallKind.RELEASE:
                    # The new session holds nothing: the release is done.
                    self.calls.finish(call.call_id)
                    self._effects.append(Resolve(call.call_id, None))
                    continue
                case CallKind.GET | CallKind.REACQUIRE:
                    continue
            self._send_call(call)
        self._resync()

    def _resync(self) -> None:
        """Rebuild the registry view from a snapshot (after a reconnect or an event gap)."""
        if self.view.resyncing or self.events == "own":
            return
        self.probes.hit("view resync")
        self.view.resyncing = 2
        for what in ("agents", "list"):
            self._send_call(self.calls.open(CallKind.RESYNC, False, data=(what, None)))

    # --- calls: acquiring and sending --------------------------------------------------

    def _acquire(self, ref: Reference, call_id: int | None = None, *, rebuild: bool = False
                 ) -> None:
        """Send a ``Get`` for ``ref`` unless one is in flight.

        ``rebuild`` marks the re-acquire after a reconnect (``data=True``): only
        that one may be parked by a hub in its recovery window.
        """
        if ref.acquire_call is not None and ref.acquire_call in self.calls.pending:
            return
        user = call_id == ref.ref_id
        call = self.calls.open(CallKind.GET if user else CallKind.REACQUIRE, user,
                               ref_id=ref.ref_id, data=rebuild, call_id=call_id)
        ref.acquire_call = call.call_id
        self._send_call(call)

    def _acquire_now(self, ref: Reference) -> None:
        call_id = ref.acquire_call
        call = self.calls.pending.get(call_id) if call_id is not None else None
        if call is None:
            self._acquire(ref)
        elif not call.sent:
            self._send_call(call)

    def _send_call(self, call: Call) -> None:
        """Send ``call`` if the session is READY (else it waits for the next ``Welcome``).

        A call made on a closed session fails at once (it would wait for ever).
        """
        if not self._ready:
            if (self.state is SessionState.CLOSED and call.user
                    and self.calls.finish(call.call_id) is not None):
                self._effects.append(Reject(call.call_id, self.closed_by
                                            or ConnectionClosed("client closed")))
            return
        message: Message
        match call.kind:
            case CallKind.REQUEST:
                self._send_request(call)
                return
            case CallKind.GET | CallKind.REACQUIRE:
                ref = self.refs.by_id.get(call.ref_id) if call.ref_id is not None else None
                if ref is None:
                    return
                options = ref.asked
                if ref.record is not None:
                    # Re-acquire the container we had, under its current uuid.
                    options = GetOptions(ref.record.uuid, ref.asked.labels, ref.asked.extra)
                reacquire = call.kind is CallKind.REACQUIRE
                message = Get(call.call_id, ref.kind, options,
                              reacquire=reacquire and call.data is True,
                              held_instance=ref.held if reacquire else None)
            case CallKind.RELEASE:
                message = Release(call.call_id, call.data)
            case CallKind.QUERY | CallKind.RESYNC:
                what, qkind = call.data
                message = Query(call.call_id, what, qkind)
            case CallKind.REGISTER:
                agent = self.hosting.get(call.agent_id or "")
                if agent is None:
                    return
                # Listed before the fence, so the offers that serve say so
                # (``OfferedContainer.serving``); they serve again only once
                # the hub has answered this.
                message = agent.registration(call.call_id)
                self._effects.extend(agent.fence())
            case CallKind.UNREGISTER:
                message = UnregisterAgent(call.call_id, call.agent_id or "")
            case CallKind.CLAIM:
                message = Claim(call.call_id, call.agent_id or "", call.data)
            case CallKind.CONNECT:
                message = Connect(call.call_id, call.data)
            case CallKind.DRAIN:
                message = Drain(call.call_id, call.agent_id or "")
            case CallKind.TERMINATE:
                message = TerminateAny(call.call_id, call.data)
        call.sent = True
        self._send(message)

    def _send_request(self, call: Call) -> None:
        """Send a REQUEST call, or park it on its reference until that is ready."""
        if not self._ready:
            return
        ref = self.refs.by_id.get(call.ref_id) if call.ref_id is not None else None
        if ref is None or ref.status is _REF_RELEASED:
            # fix: released while this request was in flight and the
            # connection dropped; it can never be resent, so end it.
            self.calls.finish(call.call_id)
            self._effects.append(Reject(call.call_id, ContainerNotFound("reference released")))
            return
        if ref.record is None or ref.status is not _REF_READY:
            ref.waiting[call.call_id] = None
            return
        operation, payload = call.data
        call.sent = True
        self._send(Request(call.call_id, ref.record.uuid, operation, payload))

    def _send(self, message: Message) -> None:
        self._effects.append(Send(None, message))

    def _emit(self, effects: list[SessionEffect]) -> None:
        # Agent replies go to the hub only while connected; the hub forgets
        # calls of a connection that ended, so they would be stale anyway.
        if self._ready:
            self._effects.extend(effects)
            return
        for effect in effects:
            if not isinstance(effect, Send):
                self._effects.append(effect)

    # --- handlers: answers to calls ---------------------------------------------------

    def _on_got(self, msg: GetReply, now: float) -> None:
        call = self.calls.finish(msg.id)
        if call is None or call.ref_id is None:
            return
        ref = self.refs.by_id.get(call.ref_id)
        if ref is None:
            return
        ref.acquire_call = None
        if ref.status is RefStatus.RELEASED:
            # Released while the Get was in flight: give it back.
            self.refs.drop(ref)
            self._send_call(self.calls.open(CallKind.RELEASE, False, data=msg.container.uuid))
            return
        old = ref.record
        self.refs.acquired(ref, msg.container)
        if call.user:
            self._effects.append(Resolve(msg.id, msg.container))
        else:
            if old is not None and old.uuid != msg.container.uuid:
                self.probes.hit("reference re-keyed")
            self.probes.hit("reference re-acquired")
            self._effects.append(ReferenceChanged(ref.ref_id, msg.container))
        waiting, ref.waiting = ref.waiting, {}
        for handle in waiting:
            request = self.calls.pending.get(handle)
            if request is not None:
                self._send_call(request)

    def _on_error(self, msg: Error, now: float) -> None:
        call = self.calls.pending.get(msg.id)
        if call is None:
            return
        match call.kind:
            case CallKind.GET | CallKind.REACQUIRE:
                self._get_failed(call, msg, now)
                return
            case CallKind.REQUEST if msg.code in REACQUIRE_CODES:
                ref = self.refs.by_id.get(call.ref_id) if call.ref_id is not None else None
                if ref is not None and ref.status is not RefStatus.RELEASED:
                    # The container moved or died: re-acquire, then resend.
                    self.probes.hit("request rerouted after container loss")
                    call.sent = False
                    ref.waiting[msg.id] = None
                    self._lose(ref)
                    return
            case CallKind.RESYNC:
                self.calls.finish(msg.id)
                self.view.snapshot_done()
                return
            case CallKind.CLAIM if call.agent_id is not None:
                self.calls.finish(msg.id)
                return
        self.calls.finish(msg.id)
        if call.user:
            self._effects.append(Reject(msg.id, error_from_code(msg.code, msg.message, msg.type)))

    def _get_failed(self, call: Call, msg: Error, now: float) -> None:
        """A ``Get`` failed: retry it later, or give up on the reference."""
        ref = self.refs.by_id.get(call.ref_id) if call.ref_id is not None else None
        if ref is None:
            self.calls.finish(msg.id)
            return
        if msg.code in GET_RETRY_CODES and ref.status is not RefStatus.RELEASED:
            # Wait for an agent (or for a standby to take over) and retry.
            call.sent = False
            ref.acquire_call = msg.id
            self.probes.hit("get retry scheduled")
            self._retry_get_later(ref, now)
            return
        self.calls.finish(msg.id)
        ref.acquire_call = None
        if call.user:
            self.refs.drop(ref)
            for handle in ref.waiting:
                self.calls.finish(handle)
                self._effects.append(Reject(handle, error_from_code(msg.code, msg.message,
                                                                    msg.type)))
            ref.waiting.clear()
            self._effects.append(Reject(msg.id, error_from_code(msg.code, msg.message, msg.type)))
        else:
            # A re-acquire that cannot succeed: keep trying later, the
            # kind may come back (user code bounds it with a timeout).
            self.calls.reopen(call)
            ref.acquire_call = msg.id
            self._retry_get_later(ref, now)

    def _retry_get_later(self, ref: Reference, now: float) -> None:
        ref.retries += 1
        self.timers.call_at(now + self.calls.get_retry_delay(ref.retries), GetRetry(ref.ref_id))

    def _lose(self, ref: Reference) -> None:
        """The reference's container is gone: re-acquire it."""
        if self.refs.lost(ref):
            self._effects.append(ReferenceChanged(ref.ref_id, None))
        self._acquire(ref)

    def _on_retry(self, msg: Retry, now: float) -> None:
        call = self.calls.pending.get(msg.id)
        if call is None:
            return
        if call.kind is CallKind.GET and call.ref_id is not None:
            ref = self.refs.by_id.get(call.ref_id)
            if ref is not None and ref.status is RefStatus.RELEASED:
                # Released or cancelled: the hub holds nothing for it; not resent.
                self.calls.finish(msg.id)
                self.refs.drop(ref)
                return
        call.sent = False
        self.timers.call_at(now + msg.after, Resend(msg.id))

    def _on_response(self, msg: Response, now: float) -> None:
        if self.calls.finish(msg.id) is not None:
            self._effects.append(Resolve(msg.id, msg.payload))

    def _on_ok(self, msg: Ok, now: float) -> None:
        call = self.calls.finish(msg.id)
        if call is None:
            return
        if call.kind is CallKind.DRAIN:
            agent = self.hosting.get(call.agent_id or "")
            if agent is not None:
                self._effects.extend(agent.on_drained())
        if call.user:
            self._effects.append(Resolve(msg.id, None))

    def _on_registered(self, msg: RegisterReply, now: float) -> None:
        call = self.calls.finish(msg.id)
        if call is None or call.agent_id is None:
            return
        if call.kind is CallKind.CLAIM:
            self._effects.extend(self.hosting.claimed(call.agent_id, call.data.uuid, msg))
        else:
            self._effects.extend(self.hosting.registered(call.agent_id, msg))
        if call.user:
            self._effects.append(Resolve(msg.id, msg))

    def _on_query_reply(self, msg: ListReply | AgentsReply | KindsReply | ClientsReply,
                        now: float) -> None:
        call = self.calls.finish(msg.id)
        if call is None:
            return
        if call.kind is CallKind.RESYNC and not isinstance(msg, ClientsReply):
            event = self.view.replace(msg)
            if event is not None:
                self._effects.append(DeliverEvent(event))
                self._react(event)
            return
        value: tuple[Any, ...]
        if isinstance(msg, ListReply):
            value = msg.containers
        elif isinstance(msg, AgentsReply):
            value = msg.agents
        elif isinstance(msg, ClientsReply):
            value = msg.clients
        else:
            value = msg.kinds
        self._effects.append(Resolve(msg.id, value))

    # --- handlers: registry events ------------------------------------------------------

    def _on_event(self, msg: Event, now: float) -> None:
        event = msg.event
        view = self.view
        if event.seq <= view.seq:
            return  # a duplicate or stale event
        gap = view.follow(event)
        if self.events == "own":
            # A filtered stream: numbers skip what was not ours, and there is
            # no full view to keep, only references to follow.
            self._effects.append(DeliverEvent(event))
            self._react(event, now)
            return
        view.apply(event)
        self._effects.append(DeliverEvent(event))
        self._react(event, now)
        if gap:
            self.probes.hit("event gap")
            self._resync()

    def _react(self, event: NetworkEvent, now: float | None = None) -> None:
        """Act on registry changes: follow moved containers, retry gets, claim."""
        if self.refs.by_id:  # most sessions in a churn hold no reference
            affected = self.refs.affected_by(event)
            if affected:
                self._follow(event, affected)
        if now is None or not self.hosting.agents:
            return
        for ce in event.containers:
            if ce.change is not _CHANGE_REMOVED:
                continue
            uuid = ce.container.uuid
            for agent_id in self.hosting.standing_by(uuid):
                delay = self.claim_window * self.rng.random()
                self.timers.call_at(now + delay, ClaimAfter(agent_id, uuid))

    def _follow(self, event: NetworkEvent, affected: list[int]) -> None:
        """Update the references ``event`` concerns (``affected``: their ids, oldest first)."""
        by_uuid: dict[ContainerUuid, ContainerEvent] | None = None
        new_kinds: set[str] | None = None
        for ref_id in affected:
            ref = self.refs.by_id.get(ref_id)
            if ref is None:
                continue
            status = ref.status
            if status is _REF_RELEASED:
                continue
            if status is _REF_ACQUIRING:
                if not event.agents or GetRetry(ref_id) not in self.timers:
                    continue
                if new_kinds is None:
                    new_kinds = {kind for ae in event.agents
                                 if ae.change is not _CHANGE_REMOVED
                                 for kind in ae.agent.kinds}
                if ref.kind in new_kinds:
                    # An agent with the kind appeared: retry at once.
                    self.probes.hit("get retried on agent added")
                    self.timers.cancel(GetRetry(ref_id))
                    self._acquire_now(ref)
                continue
            if ref.record is None or not event.containers:
                continue
            if by_uuid is None:
                by_uuid = {ce.container.uuid: ce for ce in event.containers}
            ce = by_uuid.get(ref.record.uuid)
            if ce is None:
                continue
            instance = ce.container.instance
            if instance < ref.record.instance:
                continue  # news about an instance older than the one we hold
            if ce.change is _CHANGE_REMOVED or instance > ref.record.instance:
                # Our instance is gone (removed, or replaced by a new one under
                # the same uuid and folded into "added"): the hub dropped our
                # hold.  fix: the reference left such references dangling.
                self.probes.hit("reference lost: re-acquiring")
                ref.held = None
                self._lose(ref)
            elif ce.container != ref.record:
                self.refs.point(ref, ce.container)
                self._effects.append(ReferenceChanged(ref_id, ce.container))

    def _claim(self, agent_id: AgentId, uuid: ContainerUuid) -> None:
        """Hosted agent ``agent_id`` claims ``uuid`` if it still stands by and nobody owns it."""
        if self.state is not SessionState.READY:
            return
        offer = self.hosting.claim_offer(agent_id, uuid)
        if offer is None or uuid in self.view.containers:
            return  # promoted already, or someone else owns it again
        self.probes.hit("standby claim")
        self._send_call(self.calls.open(CallKind.CLAIM, False, agent_id=agent_id, data=offer))

    # --- handlers: the hub's orders to hosted agents ---------------------------------------

    def _on_start(self, msg: Start, now: float) -> None:
        self._emit(self.hosting.on_start(msg))

    def _on_terminate(self, msg: Terminate, now: float) -> None:
        self._emit(self.hosting.on_terminate(msg))

    def _on_activate(self, msg: Activate, now: float) -> None:
        self._emit(self.hosting.on_activate(msg))

    def _on_request(self, msg: Request, now: float) -> None:
        self._emit(self.hosting.on_request(msg, now))

    def _on_cancel(self, msg: Cancel, now: float) -> None:
        # The hub's request msg.id, to one of the agents hosted here.
        self._effects.extend(self.hosting.cancel(msg.id))

    def _on_connect(self, msg: Connect, now: float) -> None:
        self._emit(self.hosting.on_connect(msg))

    def _on_disconnect(self, msg: Disconnect, now: float) -> None:
        self._emit(self.hosting.on_disconnect(msg))

    def _on_push(self, msg: Push, now: float) -> None:
        self._effects.append(DeliverPush(msg.uuid, msg.payload))

    def _on_close(self, msg: Close, now: float) -> None:
        # The hub is going away on purpose (it drains, e.g. on SIGTERM) and
        # closes the connection next; its loss sends us reconnecting, and the
        # calls it answered Retry go to the next hub.
        self.probes.hit("hub said close")


#: What a READY session does with each message from the hub (``Pong`` is
#: noted in ``receive``; anything else, e.g. a hub-bound message, is ignored).
_HANDLERS: dict[type[Message], Any] = {
    Response: ClientSession._on_response,
    Request: ClientSession._on_request,
    Event: ClientSession._on_event,
    GetReply: ClientSession._on_got,
    Error: ClientSession._on_error,
    Retry: ClientSession._on_retry,
    Ok: ClientSession._on_ok,
    RegisterReply: ClientSession._on_registered,
    ListReply: ClientSession._on_query_reply,
    AgentsReply: ClientSession._on_query_reply,
    KindsReply: ClientSession._on_query_reply,
    ClientsReply: ClientSession._on_query_reply,
    Start: ClientSession._on_start,
    Terminate: ClientSession._on_terminate,
    Activate: ClientSession._on_activate,
    Connect: ClientSession._on_connect,
    Cancel: ClientSession._on_cancel,
    Disconnect: ClientSession._on_disconnect,
    Push: ClientSession._on_push,
    Welcome: ClientSession._welcome,
    Close: ClientSession._on_close,
}
