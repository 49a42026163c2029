"""A client's session with the hub, as a sans-IO machine.

Theory of operation
-------------------
The session owns everything a client must remember across connections:
its calls in flight, its container references, the agents it hosts and its
view of the registry.  The driver opens connections when told
(``OpenConnection``), reports them (``connection_made`` / ``connection_lost``),
feeds decoded messages (``receive``) and the time (``handle_timers``), and
performs the effects it drains.  User operations (``get``, ``request``,
``release``, ``query``, ``register_agent`` ...) return a *handle*; the
outcome arrives later as ``Resolve(handle, value)`` or ``Reject(handle,
error)``.  Handles double as wire call ids: they are unique for the life of
the session, so a call resent on a new connection keeps its id.

Connection lifecycle (``SessionState``)::

    IDLE --connect--> CONNECTING --connection_made--> HANDSHAKE --Welcome--> READY
    CONNECTING/HANDSHAKE/READY --lost, or hub silent past its alive timeout--> BACKOFF
    BACKOFF --backoff delay elapsed--> CONNECTING          (forever, until close)
    any --close--> CLOSED

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
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

import attrs

from .agent import AgentState
from .effects import (
    CloseConnection,
    DeliverEvent,
    DeliverPush,
    Effect,
    OpenConnection,
    ReferenceChanged,
    Reject,
    Resolve,
    Send,
)
from .errors import (
    ConnectionClosed,
    ContainerNotFound,
    ErrorCode,
    LocalProtocolError,
    error_from_code,
)
from .events import AgentEvent, ChangeKind, ContainerEvent, NetworkEvent
from .messages import (
    PROTOCOL_VERSION,
    Activate,
    AgentsReply,
    Claim,
    Close,
    Connect,
    Disconnect,
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
    UnregisterAgent,
    Welcome,
)
from .probes import Probes
from .timers import Timers
from .types import AgentId, AgentInfo, ContainerRecord, ContainerUuid, GetOptions

if TYPE_CHECKING:
    # Only the type: the generator is always injected, never created here.
    from random import Random

__all__ = ["Backoff", "ClientSession", "RefStatus", "SessionState"]

#: a message without fields is immutable: one instance serves every ping
_PING = Ping()
#: and so is the effect that sends it
_SEND_PING = Send(None, _PING)


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


class RefStatus(enum.Enum):
    """Where one container reference stands."""

    #: A ``Get`` for it is in flight or waiting to be (re)sent.
    ACQUIRING = "acquiring"
    #: Held; requests flow.
    READY = "ready"
    #: Released by the user.
    RELEASED = "released"


# The hot paths compare with these module constants: on CPython 3.11 an enum
# member looked up through its class goes through the enum metaclass (about
# four times a plain attribute), and a simulated run feeds sessions millions
# of inputs.
_READY = SessionState.READY
_HANDSHAKE = SessionState.HANDSHAKE
_BACKOFF = SessionState.BACKOFF
_REF_ACQUIRING = RefStatus.ACQUIRING
_REF_READY = RefStatus.READY
_REF_RELEASED = RefStatus.RELEASED
_REMOVED = ChangeKind.REMOVED


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


class _Ref:
    __slots__ = ("acquire_call", "asked", "held", "kind", "record", "ref_id", "retries",
                 "status", "waiting")

    def __init__(self, ref_id: int, kind: str, asked: GetOptions) -> None:
        self.ref_id = ref_id
        self.kind = kind
        self.asked = asked
        self.record: ContainerRecord | None = None
        self.status = RefStatus.ACQUIRING
        #: the call id of the Get in flight for it (None: none in flight)
        self.acquire_call: int | None = None
        #: request handles waiting for the reference to be ready
        self.waiting: dict[int, None] = {}
        self.retries = 0
        #: the container instance whose hold the hub may still count for this
        #: reference (a re-acquire names it, so no second hold is taken);
        #: None once the hold is known lost
        self.held: int | None = None


class _Call:
    """One operation in flight; ``message`` is what to (re)send, built lazily for requests."""

    __slots__ = ("agent_id", "data", "kind", "ref_id", "sent", "user")

    def __init__(self, kind: str, user: bool, ref_id: int | None = None,
                 agent_id: str | None = None, data: Any = None) -> None:
        self.kind = kind
        self.user = user  # resolve/reject a user handle on completion
        self.ref_id = ref_id
        self.agent_id = agent_id
        self.data = data
        self.sent = False


_REACQUIRE_CODES = frozenset({ErrorCode.AGENT_GONE.value, ErrorCode.NOT_FOUND.value})
_GET_RETRY_CODES = frozenset({
    ErrorCode.NO_AGENT.value, ErrorCode.AGENT_GONE.value, ErrorCode.FULL.value,
    ErrorCode.NOT_FOUND.value,
})


class ClientSession:
    """A client's side of the protocol (see module docstring).

    ``rng`` is the only source of randomness (reconnect jitter, claim
    jitter).  ``alive_timeout`` is asked of the hub in the hello (None: the
    hub's default).  ``seeded_bugs`` switches on deliberate faults for the
    simulator's self-test; production never sets it.
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
    ) -> None:
        if events not in ("all", "own"):
            raise LocalProtocolError(f"events must be 'all' or 'own', got {events!r}")
        self.client_id = client_id
        #: "all": every registry event and a full view; "own": only what
        #: concerns this session (its references, its standbys, agents)
        self.events = events
        self.rng = rng
        self.alive_timeout = alive_timeout
        self.backoff = backoff
        self.get_retry_initial = get_retry_initial
        self.get_retry_max = get_retry_max
        self.claim_window = claim_window
        self.probes = probes if probes is not None else Probes()
        self.seeded_bugs = seeded_bugs
        self.state = SessionState.IDLE
        #: the hub's id from the last Welcome (changes when the hub restarts)
        self.hub_id: str | None = None
        self.welcomes = 0
        self.timers = Timers()
        self._effects: list[Effect] = []
        self._next_id = 0
        self._calls: dict[int, _Call] = {}
        self._refs: dict[int, _Ref] = {}
        #: uuid -> ids of the references whose record has that uuid (kept in
        #: step with ``_Ref.record``): a registry event touches only the
        #: references it names, not every reference the session holds
        self._refs_by_uuid: dict[ContainerUuid, dict[int, None]] = {}
        self._agents: dict[AgentId, AgentState] = {}
        self._attempt = 0
        self._hub_alive = 3.0
        self._ping_interval = 1.0
        self._last_heard = 0.0
        self._event_seq = 0
        #: this client's view of the registry, built from events
        self.view_agents: dict[AgentId, AgentInfo] = {}
        self.view_containers: dict[ContainerUuid, ContainerRecord] = {}
        self._resyncing = 0

    # --- driver interface -------------------------------------------------------

    def effects(self) -> list[Effect]:
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
        """The driver's connection is open: say hello."""
        if self.state is not SessionState.CONNECTING:
            return
        self.state = SessionState.HANDSHAKE
        self._last_heard = now
        # The handshake must finish within the hub's alive timeout as we know it.
        self.timers.call_at(now + self._hub_alive, "hub-alive")
        self._send(Hello(PROTOCOL_VERSION, self.client_id, self.alive_timeout,
                         events=self.events))

    def connection_lost(self, now: float) -> None:
        """The connection failed or closed: back off and reconnect.

        Calls in flight stay; they are resent after the next ``Welcome``.
        """
        if self.state in (SessionState.CLOSED, SessionState.BACKOFF, SessionState.IDLE):
            return
        self.probes.hit("connection lost")
        self.state = SessionState.BACKOFF
        self.timers.cancel("ping")
        self.timers.cancel("hub-alive")
        for call in self._calls.values():
            call.sent = False
        self.timers.call_at(now + self.backoff.delay(self._attempt, self.rng), "reconnect")

    def close(self, now: float) -> None:
        """Close for good: say ``Close``, fail every call with ``ConnectionClosed``."""
        if self.state is SessionState.CLOSED:
            return
        if self.state is SessionState.READY:
            self._send(Close("client closing"))
        if self.state in (SessionState.READY, SessionState.HANDSHAKE, SessionState.CONNECTING):
            self._effects.append(CloseConnection(None, "client closing"))
        self.state = SessionState.CLOSED
        for call_id, call in list(self._calls.items()):
            if call.user:
                self._effects.append(Reject(call_id, ConnectionClosed("client closed")))
        self._calls.clear()
        for key in ("ping", "hub-alive", "reconnect"):
            self.timers.cancel(key)
        self.timers = Timers()

    def handle_timers(self, now: float) -> None:
        """Fire every deadline that is due at ``now``."""
        for key in self.timers.expired(now):
            if key == "ping":
                if self.state is _READY:
                    self._effects.append(_SEND_PING)
            elif key == "hub-alive":
                self._check_hub_alive(now)
            elif key == "reconnect":
                if self.state is _BACKOFF:
                    self._open(now)
            elif isinstance(key, tuple) and key[0] == "get-retry":
                ref = self._refs.get(key[1])
                if ref is not None and ref.status is _REF_ACQUIRING:
                    # The failed Get is still the ref's acquire call (unsent):
                    # resend it; _acquire() alone would see it and do nothing.
                    self._acquire_now(ref)
            elif isinstance(key, tuple) and key[0] == "resend":
                call = self._calls.get(key[1])
                if call is not None and not call.sent:
                    self._send_call(key[1], call)
            elif isinstance(key, tuple) and key[0] == "claim":
                self._claim(key[1], key[2])

    def receive(self, message: Message, now: float) -> None:
        """Handle one decoded message from the hub."""
        state = self.state
        if state is not _READY and state is not _HANDSHAKE:
            return
        self._last_heard = now
        if isinstance(message, Welcome):
            self._welcome(message, now)
            return
        if state is not _READY:
            return
        kind = type(message)
        if kind is Pong:
            return  # most of an idle session's input: the sign of life is noted above
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, message, now)

    # --- user operations -------------------------------------------------------

    def get(self, kind: str, options: GetOptions | None = None) -> int:
        """Acquire a container of ``kind``; returns the handle that is also the ref id.

        Resolves with the ``ContainerRecord``; rejects with ``ConnectionClosed``,
        ``RemoteError``/``HulyError`` for errors that waiting cannot cure
        (``bad_kind``, ``start_failed``).  Retries forever while no agent hosts
        the kind; bound it with a timeout in the caller.
        """
        ref_id = self._new_id()
        ref = _Ref(ref_id, kind, options if options is not None else GetOptions())
        self._refs[ref_id] = ref
        self._acquire(ref, call_id=ref_id)
        return ref_id

    def reference(self, ref_id: int) -> ContainerRecord | None:
        """Return the record reference ``ref_id`` points at now (None while acquiring)."""
        ref = self._refs.get(ref_id)
        return None if ref is None else ref.record

    def ref_status(self, ref_id: int) -> RefStatus | None:
        """Return the status of reference ``ref_id``, or None if unknown."""
        ref = self._refs.get(ref_id)
        return None if ref is None else ref.status

    def references(self) -> dict[int, ContainerRecord | None]:
        """Return every live reference's current record (None while acquiring)."""
        return {i: r.record for i, r in self._refs.items() if r.status is not RefStatus.RELEASED}

    def request(self, ref_id: int, operation: str, payload: bytes) -> int:
        """Call ``operation`` on the container of reference ``ref_id``; returns a handle.

        Resolves with the response payload (bytes); rejects with the container's
        error.  Survives reconnects and failover (at-least-once).

        Raises:
            LocalProtocolError: if ``ref_id`` is unknown or released.
        """
        ref = self._refs.get(ref_id)
        if ref is None or ref.status is _REF_RELEASED:
            raise LocalProtocolError(f"reference {ref_id} is not held")
        # The hot user operation: _new_id inlined, the call built positionally.
        handle = self._next_id = self._next_id + 1
        call = self._calls[handle] = _Call("request", True, ref_id, None, (operation, payload))
        if ref.status is _REF_READY:
            self._send_call(handle, call)
        else:
            ref.waiting[handle] = None
        return handle

    def release(self, ref_id: int) -> int:
        """Release reference ``ref_id``; returns a handle resolved with None.

        Requests still waiting for the reference fail with ``ContainerNotFound``.

        Raises:
            LocalProtocolError: if ``ref_id`` is unknown or already released.
        """
        ref = self._refs.get(ref_id)
        if ref is None or ref.status is RefStatus.RELEASED:
            raise LocalProtocolError(f"reference {ref_id} is not held")
        was_ready = ref.status is RefStatus.READY
        ref.status = RefStatus.RELEASED
        self.timers.cancel(("get-retry", ref_id))
        for handle in ref.waiting:
            self._calls.pop(handle, None)
            self._effects.append(Reject(handle, ContainerNotFound("reference released")))
        ref.waiting.clear()
        handle = self._new_id()
        if was_ready and ref.record is not None and self.state is SessionState.READY:
            self._calls[handle] = _Call("release", user=True, data=ref.record.uuid)
            self._send_call(handle, self._calls[handle])
            self._drop_ref(ref)
        else:
            # Not held at the hub (yet): a Get in flight is released when it lands.
            if ref.acquire_call is None:
                self._drop_ref(ref)
            self._effects.append(Resolve(handle, None))
        return handle

    def query(self, what: str, kind: str | None = None) -> int:
        """Ask the hub for ``"list"``, ``"agents"`` or ``"kinds"``; returns a handle.

        Resolves with a tuple of ``ContainerRecord``, ``AgentInfo`` or ``str``.
        """
        handle = self._new_id()
        self._calls[handle] = _Call("query", user=True, data=(what, kind))
        self._send_call(handle, self._calls[handle])
        return handle

    def connect_container(self, ref_id: int) -> int:
        """Open an event stream from ``ref_id``'s container through the hub; returns a handle.

        Raises:
            LocalProtocolError: if the reference is not ready.
        """
        ref = self._refs.get(ref_id)
        if ref is None or ref.record is None:
            raise LocalProtocolError(f"reference {ref_id} is not ready")
        handle = self._new_id()
        self._calls[handle] = _Call("connect", user=True, data=ref.record.uuid)
        self._send_call(handle, self._calls[handle])
        return handle

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
        if agent.agent_id in self._agents:
            raise LocalProtocolError(f"agent {agent.agent_id!r} is already registered here")
        self._agents[agent.agent_id] = agent
        handle = self._new_id()
        self._calls[handle] = _Call("register", user=True, agent_id=agent.agent_id)
        self._send_call(handle, self._calls[handle])
        return handle

    def unregister_agent(self, agent_id: AgentId) -> int:
        """Stop hosting ``agent_id``; returns a handle resolved once the hub agrees.

        Emits ``StopContainer`` for everything the agent ran.
        """
        agent = self._agents.pop(agent_id, None)
        if agent is not None:
            self._effects.extend(agent.stop_all())
        handle = self._new_id()
        self._calls[handle] = _Call("unregister", user=True, agent_id=agent_id)
        self._send_call(handle, self._calls[handle])
        return handle

    def agent(self, agent_id: AgentId) -> AgentState | None:
        """Return the hosted agent ``agent_id``, or None."""
        return self._agents.get(agent_id)

    def agent_started(self, agent_id: AgentId, uuid: ContainerUuid,
                      endpoint: str | None = None) -> None:
        """The driver started container ``uuid`` for ``agent_id``."""
        agent = self._agents.get(agent_id)
        if agent is not None:
            self._emit(agent.started(uuid, endpoint))

    def agent_start_failed(self, agent_id: AgentId, uuid: ContainerUuid, message: str) -> None:
        """The driver failed to start ``uuid`` for ``agent_id``."""
        agent = self._agents.get(agent_id)
        if agent is not None:
            self._emit(agent.start_failed(uuid, message))

    def agent_stopped(self, agent_id: AgentId, uuid: ContainerUuid) -> None:
        """Container ``uuid`` of ``agent_id`` ended on its own."""
        agent = self._agents.get(agent_id)
        if agent is not None:
            self._emit(agent.stopped(uuid))

    def agent_reply(self, call_id: int, payload: bytes) -> None:
        """A forwarded request ``call_id`` completed with ``payload``."""
        self._send(Response(call_id, payload))

    def agent_error(self, call_id: int, code: str, message: str, type_name: str = "") -> None:
        """A forwarded request ``call_id`` failed (``code``: an ``ErrorCode`` value)."""
        self._send(Error(call_id, code, message, type_name))

    def agent_push(self, uuid: ContainerUuid, client_id: str, payload: bytes) -> None:
        """Container ``uuid`` broadcasts ``payload`` to ``client_id`` (connected via the hub)."""
        self._send(Push(uuid, payload, client_id))

    # --- internals ---------------------------------------------------------------

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _send(self, message: Message) -> None:
        self._effects.append(Send(None, message))

    def _emit(self, effects: list[Effect]) -> None:
        # Agent replies go to the hub only while connected; the hub forgets
        # calls of a connection that ended, so they would be stale anyway.
        for effect in effects:
            if isinstance(effect, Send):
                if self.state is _READY:
                    self._effects.append(effect)
            else:
                self._effects.append(effect)

    def _open(self, now: float) -> None:
        self._attempt += 1
        self.state = SessionState.CONNECTING
        self._effects.append(OpenConnection(self._attempt))

    def _check_hub_alive(self, now: float) -> None:
        state = self.state
        if state is not _HANDSHAKE and state is not _READY:
            return
        deadline = self._last_heard + self._hub_alive
        if deadline > now:
            self.timers.call_at(deadline, "hub-alive")
            return
        # fix: the reference never looked at pongs and could not tell the hub
        # was gone; a silent hub is a dead connection.
        self.probes.hit("hub silent: reconnect")
        self._effects.append(CloseConnection(None, "hub silent past its alive timeout"))
        self.connection_lost(now)

    def _welcome(self, msg: Welcome, now: float) -> None:
        if msg.redirect is not None:
            self._effects.append(CloseConnection(None, f"redirected to {msg.redirect}"))
            self.connection_lost(now)
            return
        restarted = self.hub_id is not None and msg.hub_id != self.hub_id
        if restarted:
            self.probes.hit("hub restarted")
        rebuilding = self.welcomes > 0
        self.welcomes += 1
        self.hub_id = msg.hub_id
        self.state = SessionState.READY
        self._attempt = 0
        self._hub_alive = msg.alive_timeout
        self._ping_interval = msg.ping_interval
        self.timers.call_every(msg.ping_interval, "ping", now + msg.ping_interval)
        self.timers.call_at(now + self._hub_alive, "hub-alive")
        # Events continue from the hub's current number (a restarted hub
        # counts from 0 again); what we missed meanwhile comes from a resync.
        self._event_seq = msg.event_seq
        if rebuilding:
            self._rebuild()
        else:
            for call_id, call in list(self._calls.items()):
                self._send_call(call_id, call)
            if msg.event_seq > 0:
                # The hub published changes before we joined: events alone
                # would never tell us about them, so start from a snapshot.
                self._resync()

    def _rebuild(self) -> None:
        """After a reconnect: agents, then references, then everything else."""
        self.probes.hit("session rebuild")
        # A snapshot is the two answers of one hub session.  A resync the old
        # connection half answered would be finished by the new hub with the
        # other half only, mixing two registries; start it over (the _resync
        # below).  fix: the half answered before the loss stayed in the view.
        for stale in [i for i, c in self._calls.items() if c.kind == "resync"]:
            del self._calls[stale]
        self._resyncing = 0
        for agent in self._agents.values():
            handle = self._new_id()
            self._calls[handle] = _Call("register", user=False, agent_id=agent.agent_id)
            self._send_call(handle, self._calls[handle])
        for ref in self._refs.values():
            if ref.status is RefStatus.RELEASED:
                continue
            if ref.status is RefStatus.READY:
                ref.status = RefStatus.ACQUIRING
                self._effects.append(ReferenceChanged(ref.ref_id, None))
            ref.held = None  # a new hub session holds nothing for us
            call_id = ref.acquire_call
            pending = self._calls.get(call_id) if call_id is not None else None
            if pending is not None and call_id is not None:
                # A Get already waits for this reference (perhaps the user's
                # own): resend that one, or its caller would never hear back.
                if pending.kind == "reacquire":
                    pending.data = True
                self._send_call(call_id, pending)
            else:
                ref.acquire_call = None
                self._acquire(ref, rebuild=True)
        for call_id, call in list(self._calls.items()):
            if call.sent:
                continue
            if call.kind == "request":
                if "skip-resend" in self.seeded_bugs:
                    # Seeded bug for the simulator's self-test.
                    continue
                waiting_ref = self._refs.get(call.ref_id) if call.ref_id is not None else None
                if waiting_ref is not None and waiting_ref.status is not RefStatus.READY:
                    waiting_ref.waiting[call_id] = None
                    continue
            elif call.kind == "release":
                # The new session holds nothing: the release is done.
                del self._calls[call_id]
                self._effects.append(Resolve(call_id, None))
                continue
            elif call.kind in ("get", "reacquire"):
                continue
            self._send_call(call_id, call)
        self._resync()

    def _resync(self) -> None:
        """Rebuild the registry view from a snapshot (after a reconnect or an event gap)."""
        if self._resyncing or self.events == "own":
            return
        self.probes.hit("view resync")
        self._resyncing = 2
        for what in ("agents", "list"):
            handle = self._new_id()
            self._calls[handle] = _Call("resync", user=False, data=(what, None))
            self._send_call(handle, self._calls[handle])

    def _acquire(self, ref: _Ref, call_id: int | None = None, *, rebuild: bool = False
                 ) -> None:
        """Send a ``Get`` for ``ref`` unless one is in flight.

        ``rebuild`` marks the re-acquire after a reconnect (``data=True``): only
        that one may be parked by a hub in its recovery window.
        """
        if ref.acquire_call is not None and ref.acquire_call in self._calls:
            return
        if call_id is None:
            call_id = self._new_id()
        ref.acquire_call = call_id
        user = call_id == ref.ref_id
        self._calls[call_id] = _Call("get" if user else "reacquire", user=user,
                                     ref_id=ref.ref_id, data=rebuild)
        self._send_call(call_id, self._calls[call_id])

    def _send_call(self, call_id: int, call: _Call) -> None:
        if self.state is not _READY:
            return
        message: Message
        kind = call.kind
        if kind == "request":
            ref = self._refs.get(call.ref_id) if call.ref_id is not None else None
            if ref is None or ref.status is _REF_RELEASED:
                # fix: released while this request was in flight and the
                # connection dropped; it can never be resent, so end it.
                self._calls.pop(call_id, None)
                self._effects.append(Reject(call_id, ContainerNotFound("reference released")))
                return
            if ref.record is None or ref.status is not _REF_READY:
                ref.waiting[call_id] = None
                return
            operation, payload = call.data
            message = Request(call_id, ref.record.uuid, operation, payload)
        elif kind in ("get", "reacquire"):
            ref = self._refs[call.ref_id] if call.ref_id is not None else None
            if ref is None:
                return
            options = ref.asked
            if ref.record is not None:
                # Re-acquire the container we had, under its current uuid.
                options = GetOptions(ref.record.uuid, ref.asked.labels, ref.asked.extra)
            message = Get(call_id, ref.kind, options,
                          reacquire=kind == "reacquire" and call.data is True,
                          held_instance=ref.held if kind == "reacquire" else None)
        elif kind == "release":
            message = Release(call_id, call.data)
        elif kind in ("query", "resync"):
            what, qkind = call.data
            message = Query(call_id, what, qkind)
        elif kind == "register":
            agent = self._agents.get(call.agent_id or "")
            if agent is None:
                return
            # Serve stateless offers only once the hub has answered this.
            self._effects.extend(agent.fence())
            message = agent.registration(call_id)
        elif kind == "unregister":
            message = UnregisterAgent(call_id, call.agent_id or "")
        elif kind == "claim":
            message = Claim(call_id, call.agent_id or "", call.data)
        elif kind == "connect":
            message = Connect(call_id, call.data)
        else:  # pragma: no cover - every kind is listed above
            raise AssertionError(kind)
        call.sent = True
        self._effects.append(Send(None, message))  # _send, inlined

    def _finish(self, call_id: int) -> _Call | None:
        return self._calls.pop(call_id, None)

    # --- handlers ---------------------------------------------------------------

    def _on_got(self, msg: GetReply, now: float) -> None:
        call = self._finish(msg.id)
        if call is None or call.ref_id is None:
            return
        ref = self._refs.get(call.ref_id)
        if ref is None:
            return
        ref.acquire_call = None
        if ref.status is RefStatus.RELEASED:
            # Released while the Get was in flight: give it back.
            self._drop_ref(ref)
            handle = self._new_id()
            self._calls[handle] = _Call("release", user=False, data=msg.container.uuid)
            self._send_call(handle, self._calls[handle])
            return
        old = ref.record
        self._set_record(ref, msg.container)
        ref.status = RefStatus.READY
        ref.held = msg.container.instance
        ref.retries = 0
        if call.user:
            self._effects.append(Resolve(msg.id, msg.container))
        else:
            if old is not None and old.uuid != msg.container.uuid:
                self.probes.hit("reference re-keyed")
            self.probes.hit("reference re-acquired")
            self._effects.append(ReferenceChanged(ref.ref_id, msg.container))
        waiting, ref.waiting = ref.waiting, {}
        for handle in waiting:
            request = self._calls.get(handle)
            if request is not None:
                self._send_call(handle, request)

    def _on_error(self, msg: Error, now: float) -> None:
        call = self._calls.get(msg.id)
        if call is None:
            return
        if call.kind in ("get", "reacquire"):
            ref = self._refs.get(call.ref_id) if call.ref_id is not None else None
            if ref is None:
                self._finish(msg.id)
                return
            if msg.code in _GET_RETRY_CODES and ref.status is not RefStatus.RELEASED:
                # Wait for an agent (or for a standby to take over) and retry.
                call.sent = False
                ref.acquire_call = msg.id
                ref.retries += 1
                delay = min(self.get_retry_initial * 2 ** (ref.retries - 1), self.get_retry_max)
                self.probes.hit("get retry scheduled")
                self.timers.call_at(now + delay, ("get-retry", ref.ref_id))
                return
            self._finish(msg.id)
            ref.acquire_call = None
            if call.user:
                self._drop_ref(ref)
                self._reject_waiting(ref, msg)
                self._effects.append(Reject(msg.id, error_from_code(msg.code, msg.message,
                                                                    msg.type)))
            else:
                # A re-acquire that cannot succeed: keep trying later, the
                # kind may come back (user code bounds it with a timeout).
                self._calls[msg.id] = call
                call.sent = False
                ref.acquire_call = msg.id
                ref.retries += 1
                delay = min(self.get_retry_initial * 2 ** (ref.retries - 1), self.get_retry_max)
                self.timers.call_at(now + delay, ("get-retry", ref.ref_id))
            return
        if call.kind == "request" and msg.code in _REACQUIRE_CODES:
            ref = self._refs.get(call.ref_id) if call.ref_id is not None else None
            if ref is not None and ref.status is not RefStatus.RELEASED:
                # The container moved or died: re-acquire, then resend.
                self.probes.hit("request rerouted after container loss")
                call.sent = False
                ref.waiting[msg.id] = None
                self._lose(ref)
                return
        self._finish(msg.id)
        if call.kind == "resync":
            self._resyncing = max(0, self._resyncing - 1)
            return
        if call.kind == "claim" and call.agent_id is not None:
            return
        if call.user:
            self._effects.append(Reject(msg.id, error_from_code(msg.code, msg.message, msg.type)))

    def _reject_waiting(self, ref: _Ref, msg: Error) -> None:
        for handle in ref.waiting:
            self._calls.pop(handle, None)
            self._effects.append(Reject(handle, error_from_code(msg.code, msg.message, msg.type)))
        ref.waiting.clear()

    def _lose(self, ref: _Ref) -> None:
        """The reference's container is gone: re-acquire it."""
        if ref.status is RefStatus.READY:
            ref.status = RefStatus.ACQUIRING
            self._effects.append(ReferenceChanged(ref.ref_id, None))
        self._acquire(ref)

    def _on_retry(self, msg: Retry, now: float) -> None:
        call = self._calls.get(msg.id)
        if call is None:
            return
        call.sent = False
        self.timers.call_at(now + msg.after, ("resend", msg.id))

    def _on_response(self, msg: Response, now: float) -> None:
        if self._calls.pop(msg.id, None) is not None:  # _finish, inlined
            self._effects.append(Resolve(msg.id, msg.payload))

    def _on_ok(self, msg: Ok, now: float) -> None:
        call = self._finish(msg.id)
        if call is not None and call.user:
            self._effects.append(Resolve(msg.id, None))

    def _on_registered(self, msg: RegisterReply, now: float) -> None:
        call = self._finish(msg.id)
        if call is None or call.agent_id is None:
            return
        agent = self._agents.get(call.agent_id)
        if agent is not None:
            if call.kind == "claim":
                self._effects.extend(agent.claimed(call.data.uuid, msg))
            else:
                self._effects.extend(agent.on_registered(msg))
        if call.user:
            self._effects.append(Resolve(msg.id, msg))

    def _on_query_reply(self, msg: ListReply | AgentsReply | KindsReply, now: float) -> None:
        call = self._finish(msg.id)
        if call is None:
            return
        if isinstance(msg, ListReply):
            value: tuple[Any, ...] = msg.containers
        elif isinstance(msg, AgentsReply):
            value = msg.agents
        else:
            value = msg.kinds
        if call.kind == "resync":
            self._apply_snapshot(msg)
            return
        self._effects.append(Resolve(msg.id, value))

    def _apply_snapshot(self, msg: ListReply | AgentsReply | KindsReply) -> None:
        """Replace part of the view with a snapshot and deliver the difference."""
        self._resyncing = max(0, self._resyncing - 1)
        agents: list[AgentEvent] = []
        containers: list[ContainerEvent] = []
        if isinstance(msg, AgentsReply):
            fresh = {a.agent_id: a for a in msg.agents}
            for agent_id, info in self.view_agents.items():
                if agent_id not in fresh:
                    agents.append(AgentEvent(ChangeKind.REMOVED, info))
            for agent_id, info in fresh.items():
                old = self.view_agents.get(agent_id)
                if old != info:
                    change = ChangeKind.ADDED if old is None else ChangeKind.UPDATED
                    agents.append(AgentEvent(change, info))
            self.view_agents = fresh
        elif isinstance(msg, ListReply):
            fresh_c = {c.uuid: c for c in msg.containers}
            for uuid, rec in self.view_containers.items():
                if uuid not in fresh_c:
                    containers.append(ContainerEvent(ChangeKind.REMOVED, rec))
            for uuid, rec in fresh_c.items():
                old_c = self.view_containers.get(uuid)
                if old_c != rec:
                    change = ChangeKind.ADDED if old_c is None else ChangeKind.UPDATED
                    containers.append(ContainerEvent(change, rec))
            self.view_containers = fresh_c
        if agents or containers:
            event = NetworkEvent(self._event_seq, tuple(agents), tuple(containers))
            self._effects.append(DeliverEvent(event))
            self._react(event)

    def _on_event(self, msg: Event, now: float) -> None:
        event = msg.event
        if event.seq <= self._event_seq:
            return  # a duplicate or stale event
        gap = event.seq != self._event_seq + 1
        self._event_seq = event.seq
        if self.events == "own":
            # A filtered stream: numbers skip what was not ours, and there is
            # no full view to keep, only references to follow.
            self._effects.append(DeliverEvent(event))
            self._react(event, now)
            return
        # Every session applies every event: after a hub start that is
        # sessions x agents updates, so the loops bind what they use once.
        removed = _REMOVED
        view_agents = self.view_agents
        for ae in event.agents:
            if ae.change is removed:
                view_agents.pop(ae.agent.agent_id, None)
            else:
                view_agents[ae.agent.agent_id] = ae.agent
        view_containers = self.view_containers
        for ce in event.containers:
            if ce.change is removed:
                view_containers.pop(ce.container.uuid, None)
            else:
                view_containers[ce.container.uuid] = ce.container
        self._effects.append(DeliverEvent(event))
        self._react(event, now)
        if gap:
            self.probes.hit("event gap")
            self._resync()

    def _set_record(self, ref: _Ref, record: ContainerRecord) -> None:
        """Point ``ref`` at ``record``, keeping ``_refs_by_uuid`` in step."""
        old = ref.record
        if old is not None and old.uuid != record.uuid:
            self._unindex(ref.ref_id, old.uuid)
        ref.record = record
        self._refs_by_uuid.setdefault(record.uuid, {})[ref.ref_id] = None

    def _drop_ref(self, ref: _Ref) -> None:
        """Forget ``ref`` for good."""
        del self._refs[ref.ref_id]
        if ref.record is not None:
            self._unindex(ref.ref_id, ref.record.uuid)

    def _unindex(self, ref_id: int, uuid: ContainerUuid) -> None:
        ids = self._refs_by_uuid.get(uuid)
        if ids is not None:
            ids.pop(ref_id, None)
            if not ids:
                del self._refs_by_uuid[uuid]

    def _react(self, event: NetworkEvent, now: float | None = None) -> None:
        """Act on registry changes: follow moved containers, retry gets, claim.

        Every session sees every event in "all" mode, so the work here is kept
        to what this session has: the references a container change names
        (``_refs_by_uuid``), the acquiring ones only when agents changed, and
        the kinds of new agents only when a get waits.
        """
        by_uuid: dict[ContainerUuid, ContainerEvent] | None = None
        affected: list[int] = []
        index = self._refs_by_uuid
        if index:
            # Most events name none of our references: look them up first,
            # index the event by uuid only when some reference needs it (below).
            for change in event.containers:
                ids = index.get(change.container.uuid)
                if ids:
                    affected.extend(ids)
        if event.agents:
            for ref_id, r in self._refs.items():
                if r.status is _REF_ACQUIRING:
                    affected.append(ref_id)
        if len(affected) > 1:
            # The order references were made in (ref ids grow), as before.
            affected = sorted(set(affected))
        new_kinds: set[str] | None = None
        refs = self._refs
        for ref_id in affected:
            ref = refs.get(ref_id)
            if ref is None:
                continue
            status = ref.status
            if status is _REF_RELEASED:
                continue
            if status is _REF_ACQUIRING:
                if not event.agents or ("get-retry", ref.ref_id) not in self.timers:
                    continue
                if new_kinds is None:
                    new_kinds = {kind for ae in event.agents
                                 if ae.change is not _REMOVED
                                 for kind in ae.agent.kinds}
                if ref.kind in new_kinds:
                    # An agent with the kind appeared: retry at once.
                    self.probes.hit("get retried on agent added")
                    self.timers.cancel(("get-retry", ref.ref_id))
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
            if ce.change is _REMOVED or instance > ref.record.instance:
                # Our instance is gone (removed, or replaced by a new one under
                # the same uuid and folded into "added"): the hub dropped our
                # hold.  fix: the reference left such references dangling.
                self.probes.hit("reference lost: re-acquiring")
                ref.held = None
                self._lose(ref)
            elif ce.container != ref.record:
                ref.record = ce.container
                self._effects.append(ReferenceChanged(ref.ref_id, ce.container))
        if now is None or not self._agents:
            return
        for ce in event.containers:
            if ce.change is not _REMOVED:
                continue
            for agent in self._agents.values():
                if agent.is_standby(ce.container.uuid):
                    delay = self.claim_window * self.rng.random()
                    self.timers.call_at(now + delay,
                                        ("claim", agent.agent_id, ce.container.uuid))

    def _acquire_now(self, ref: _Ref) -> None:
        call_id = ref.acquire_call
        call = self._calls.get(call_id) if call_id is not None else None
        if call is not None and call_id is not None:
            if not call.sent:
                self._send_call(call_id, call)
        else:
            self._acquire(ref)

    def _claim(self, agent_id: AgentId, uuid: ContainerUuid) -> None:
        agent = self._agents.get(agent_id)
        if agent is None or self.state is not SessionState.READY:
            return
        offer = agent.offer(uuid)
        if offer is None or uuid in self.view_containers:
            return  # promoted already, or someone else owns it again
        self.probes.hit("standby claim")
        handle = self._new_id()
        self._calls[handle] = _Call("claim", user=False, agent_id=agent_id, data=offer)
        self._send_call(handle, self._calls[handle])

    # --- hub -> agent ------------------------------------------------------------

    def _agent_for_uuid(self, uuid: ContainerUuid) -> AgentState | None:
        for agent in self._agents.values():
            if uuid in agent:
                return agent
        return None

    def _on_start(self, msg: Start, now: float) -> None:
        agent = self._agents.get(msg.agent_id)
        if agent is None:
            self._send(Error(msg.id, ErrorCode.NOT_FOUND.value,
                             f"agent {msg.agent_id!r} is not hosted here"))
            return
        self._emit(agent.on_start(msg))

    def _on_terminate(self, msg: Terminate, now: float) -> None:
        agent = self._agents.get(msg.agent_id)
        if agent is not None:
            self._emit(agent.on_terminate(msg))

    def _on_activate(self, msg: Activate, now: float) -> None:
        agent = self._agents.get(msg.agent_id)
        if agent is not None:
            self.probes.hit("standby activated")
            self._emit(agent.on_activate(msg))

    def _on_request(self, msg: Request, now: float) -> None:
        # Every forwarded request passes here: _agent_for_uuid and _emit, inlined.
        uuid = msg.uuid
        for agent in self._agents.values():
            if uuid in agent:
                break
        else:
            self._send(Error(msg.id, ErrorCode.NOT_FOUND.value,
                             f"container {msg.uuid!r} is not running here"))
            return
        for effect in agent.on_request(msg):
            if not isinstance(effect, Send) or self.state is _READY:
                self._effects.append(effect)

    def _on_connect(self, msg: Connect, now: float) -> None:
        agent = self._agent_for_uuid(msg.uuid)
        if agent is None:
            self._send(Error(msg.id, ErrorCode.NOT_FOUND.value,
                             f"container {msg.uuid!r} is not running here"))
            return
        self._emit(agent.on_connect(msg))

    def _on_disconnect(self, msg: Disconnect, now: float) -> None:
        agent = self._agent_for_uuid(msg.uuid)
        if agent is not None:
            self._emit(agent.on_disconnect(msg))

    def _on_push(self, msg: Push, now: float) -> None:
        self._effects.append(DeliverPush(msg.uuid, msg.payload))

    def _on_ignored(self, msg: Message, now: float) -> None:
        pass  # Pong: the sign of life was noted in receive()


_HANDLERS: dict[type[Message], Any] = {
    GetReply: ClientSession._on_got,
    Error: ClientSession._on_error,
    Retry: ClientSession._on_retry,
    Response: ClientSession._on_response,
    Ok: ClientSession._on_ok,
    RegisterReply: ClientSession._on_registered,
    ListReply: ClientSession._on_query_reply,
    AgentsReply: ClientSession._on_query_reply,
    KindsReply: ClientSession._on_query_reply,
    Event: ClientSession._on_event,
    Start: ClientSession._on_start,
    Terminate: ClientSession._on_terminate,
    Activate: ClientSession._on_activate,
    Request: ClientSession._on_request,
    Connect: ClientSession._on_connect,
    Disconnect: ClientSession._on_disconnect,
    Push: ClientSession._on_push,
    Pong: ClientSession._on_ignored,
}
