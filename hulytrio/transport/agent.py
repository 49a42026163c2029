"""The agent driver: runs user containers for an agent hosted in a client.

Theory of operation
-------------------
The agent's decisions (what runs, what stands by, what a request may reach)
are the core ``AgentState`` inside the client's ``ClientSession``; the
agent's direct connections are core ``EndpointSession`` machines.  This
driver performs their effects with user code:

- ``StartContainer``: call the kind's factory in a task, then report
  ``agent_started`` / ``agent_start_failed`` (a container whose start was
  cancelled meanwhile is terminated at once);
- ``StopContainer``: await the container's ``terminate()``;
- ``RunRequest``: await ``container.request(...)`` in a task (user code may
  take its time, so it gets a task per request) and answer through the path
  the request came by: ``agent_reply`` / ``agent_error`` for the hub,
  ``EndpointSession.reply`` / ``error`` for a direct connection;
- ``ConnectContainer`` / ``DisconnectContainer``: call the container's
  ``connect(client_id, broadcast)`` / ``disconnect(client_id)``; ``broadcast``
  pushes through the same path, and is a no-op once the stream closed;
- ``SetServing``: logged (``AgentState`` already refuses requests to a
  standby); a container that stops being served ends its direct streams, as
  a terminated one does, so their clients reconnect to the new owner.  A
  *fenced* pause (a registration awaiting the hub's answer) keeps them.

With a state store (``state_store``), containers with state are restored
before they serve and checkpointed (``checkpoints.py``): ``_start`` restores
an ordinary container before it reports ``agent_started`` (a failure is the
start's failure); ``SetServing(True)`` of a stateless uuid not restored here
holds its requests (``_held``) until the restore ends; a container leaving
(``StopContainer``, ``SetServing(False)``, the agent closing) gets a last
checkpoint first, and a start of its uuid here waits for that write before
it claims (``_saving``); a drain holds, waits and writes before it asks the
hub to move anything, so a standby's claim comes after that write; a write
refused as stale stops the container here (``agent_stopped``: the hub is
told).

With an endpoint the agent opens its own WebSocket server; each
connection runs an ``EndpointSession`` (reader feeds it, a bounded outbox
writes its answers, a client that does not read is dropped).  Its answers
are paced (``pacing.RequestPacer``, ``ENDPOINT_UNSENT_BYTES``): a burst of
large answers waits for room instead of going over ``ENDPOINT_SEND_BYTES``,
and while answers wait nothing more the client sent is handled or read (at
most one read's frames wait), so a client that reads slowly cannot make the
agent hold more and more answers; a
client that takes none of our bytes for ``pacing.STALL_TIMEOUT`` is dropped.
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeAlias, assert_never, cast

import attrs
import trio

from hulytrio.core.agent import AgentState, LocalStatus
from hulytrio.core.checkpoints import StateRecord
from hulytrio.core.effects import (
    CancelRequest,
    CloseConnection,
    ConnectContainer,
    DeliverPush,
    DisconnectContainer,
    EndpointEffect,
    Reject,
    Resolve,
    RunRequest,
    Send,
    SetServing,
    StartContainer,
    StopContainer,
    StreamEnded,
)
from hulytrio.core.endpoint import EndpointSession, EndpointState
from hulytrio.core.errors import ErrorCode, LocalProtocolError
from hulytrio.core.messages import Message, Response
from hulytrio.core.session import ClientSession
from hulytrio.core.types import ContainerUuid, OfferedContainer
from hulytrio.state import StateStore

from ..wire.codec import (
    MAX_FRAME_BYTES,
    WireError,
    decode_frame_lenient,
    decode_payload,
    encode_payload,
)
from .checkpoints import Checkpoints, RestoreFailed
from .container import Container, Factory, StatelessContainer, has_state
from .http import agent_routes
from .limits import EndpointLimits, refusal
from .outbox import Outbox
from .pacing import REQUEST_OVERHEAD, STALL_TIMEOUT, RequestPacer, watch_progress
from .tls_relay import accept_tls
from .websocket import HandshakeError, HttpAnswered, WebSocket, WebSocketClosed, accept_websocket

__all__ = ["Agent", "AgentHost", "AgentRuntime", "HostedAgentEffect"]

#: The session effects addressed to an agent it hosts (``AgentRuntime.perform_hub_effect``).
HostedAgentEffect: TypeAlias = (
    StartContainer | StopContainer | SetServing | RunRequest | ConnectContainer
    | DisconnectContainer
)

#: Request workers an agent keeps parked; a burst of blocking requests starts
#: more, which end once they find nothing to do.
IDLE_REQUEST_WORKERS = 64

log = logging.getLogger("hulytrio.agent")

#: Messages queued for one direct-connection client in one round before it is dropped.
ENDPOINT_SEND_QUEUE = 10_000
#: Bytes kept for one direct-connection client that does not read before it is dropped.
ENDPOINT_SEND_BYTES = 2 * MAX_FRAME_BYTES
#: Bytes of answers let wait for one direct-connection client (not yet taken
#: by the kernel) before further answers wait for room (and its requests
#: for reading): a client's default ``max_unsent_request_bytes``.
ENDPOINT_UNSENT_BYTES = MAX_FRAME_BYTES // 2
#: Seconds a direct connection has to complete the WebSocket upgrade.
ENDPOINT_HANDSHAKE_TIMEOUT = 10.0
# (The endpoint's bounds on direct connections: ``limits.EndpointLimits``.)
#: Seconds a closing agent waits for running requests before its last checkpoint.
FINAL_CHECKPOINT_WAIT = 2.0
#: Seconds between tries of a drain's last checkpoint while the store fails
#: (the drain's grace bounds them).
LAST_CHECKPOINT_RETRY = 0.5
#: Seconds an ``aclose`` outside a drain (which has a grace of its own), or a
#: terminate the hub ordered, tries its last checkpoint again while the store
#: fails, before it gives up.
CLOSE_CHECKPOINT_RETRY_FOR = 5.0
#: A stateless uuid whose saved state did not import is offered again after
#: this many seconds, the wait doubling up to ``REOFFER_MAX`` while it fails.
REOFFER_FIRST = 1.0
REOFFER_MAX = 60.0


@attrs.frozen
class AgentHost:
    """What an agent runtime uses of the client that hosts it (the client builds it).

    Bound methods, so a call through the host costs what a call on the
    client would.
    """

    #: the client's session, where the agent's state lives
    session: ClientSession
    #: perform what the session emitted; called after every input fed to it
    drain: Callable[[], None]
    #: wait for a session call's outcome: returns its value or raises its error
    wait: Callable[[int], Awaitable[Any]]
    #: run ``fn(*args)`` in the client's nursery, shielded until the client closes
    spawn: Callable[..., None]
    #: ``nursery.start`` in the client's nursery: returns what the task reports started
    start: Callable[..., Awaitable[Any]]
    #: the agent with this id closed: the client forgets it
    forget: Callable[[str], None]


class _Route(Protocol):
    """Where the answer to a request goes: the hub, or one direct connection."""

    def reply(self, call_id: int, payload: bytes) -> None: ...

    def fail(self, call_id: int, code: str, message: str, type_name: str) -> None: ...


class Agent:
    """A running agent, as returned by ``client.serve_agent``."""

    def __init__(self, runtime: AgentRuntime) -> None:
        self._runtime = runtime

    @property
    def agent_id(self) -> str:
        """Return the agent's id."""
        return self._runtime.agent_id

    @property
    def endpoint(self) -> str | None:
        """Return the URL of the agent's own server (None without one)."""
        return self._runtime.state.endpoint

    @property
    def state(self) -> AgentState:
        """Return the agent's core state machine (for inspection, and tests that drive it)."""
        return self._runtime.state

    def containers(self) -> dict[str, Container]:
        """Return the containers running here (serving or standing by), by uuid."""
        return dict(self._runtime.containers)

    def serving(self) -> tuple[str, ...]:
        """Return the uuids this agent serves right now."""
        return self._runtime.state.serving()

    async def checkpoint(self) -> int:
        """Checkpoint every container whose state changed now; returns how many were written.

        Raises ``LocalProtocolError`` if the agent has no state store.
        """
        checkpoints = self._runtime.checkpoints
        if checkpoints is None:
            raise LocalProtocolError(f"agent {self.agent_id!r} has no state store")
        return await checkpoints.checkpoint()

    async def aclose(self) -> None:
        """Unregister the agent and terminate its containers (checkpointed first).

        With a state store, the last checkpoint is tried again every
        ``LAST_CHECKPOINT_RETRY`` seconds while the store fails, for up to
        ``CLOSE_CHECKPOINT_RETRY_FOR``; then the agent closes anyway, and the
        changes since its last checkpoint are lost, as after a crash.
        """
        await self._runtime.aclose()

    async def drain(self, grace: float) -> bool:
        """Shut down gracefully: the hub moves the containers first; returns whether in time.

        With a state store, first holds new requests to the containers with
        state, lets the running ones end (up to ``FINAL_CHECKPOINT_WAIT``) and
        writes their last checkpoint, tried again while the store fails.
        Then asks the hub to move this agent's containers (``Drain``: no new
        starts here, stateless ones handed to a standby, the others removed
        for their holders to re-acquire elsewhere), lets the requests
        running here finish, then terminates the containers and unregisters
        (``aclose``).  ``grace`` (seconds) bounds the wait for the hub and
        the requests; the agent closes when it passes, and the result is False.
        """
        return await self._runtime.drain(grace)


class _EndpointPeer:
    """One direct connection to the agent's endpoint; the route of its requests' answers."""

    __slots__ = ("calls", "cancelled_queued", "outbox", "pacer", "runtime", "scope", "session")

    def __init__(self, runtime: AgentRuntime, session: EndpointSession) -> None:
        self.runtime = runtime
        self.session = session
        #: its requests running now, by its call id (a ``Cancel`` stops the worker)
        self.calls: dict[int, _Worker] = {}
        #: its call ids cancelled while queued (each leaves when its turn comes)
        self.cancelled_queued: set[int] = set()
        self.outbox = Outbox(ENDPOINT_SEND_QUEUE, max_bytes=ENDPOINT_SEND_BYTES,
                             oversized=self._oversized)
        self.pacer = RequestPacer(self.outbox, ENDPOINT_UNSENT_BYTES)
        self.scope = trio.CancelScope()

    def drop(self, why: str) -> None:
        log.warning("agent %s endpoint: dropping %s, %s", self.runtime.agent_id,
                    self.session.peer_id, why)
        self.scope.cancel()

    async def write(self, ws: WebSocket) -> None:
        """Run the outbox's writer, the pacer and the stall watch until the connection ends."""

        def stalled(pending: int) -> None:
            self.drop(f"it took none of the {pending} bytes waiting for it in "
                      f"{STALL_TIMEOUT:g} s")

        self.pacer.ws = ws
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.pacer.run, ws, lambda: self.drop("it does not read"))
                nursery.start_soon(watch_progress, ws, STALL_TIMEOUT, stalled)
                await self.outbox.run_writer(ws)
                nursery.cancel_scope.cancel()
        finally:
            self.pacer.drop_held()  # the reader may wait for them (``wait_released``)

    def _oversized(self, message: Message, size: int) -> None:
        """A message is too large for any frame: see ``limits.refusal``."""
        refused = refusal(message, size, self.outbox.max_frame_bytes)
        log.warning("agent %s endpoint: %s; not sent to %s", self.runtime.agent_id,
                    refused.text, self.session.peer_id)
        if refused.send is not None:
            self.outbox.put_nowait(refused.send)
        if refused.answer is not None:
            self.runtime._endpoint_perform(self, self.session.receive(refused.answer))

    def reply(self, call_id: int, payload: bytes) -> None:
        self.runtime._endpoint_perform(self, self.session.reply(call_id, payload))

    def fail(self, call_id: int, code: str, message: str, type_name: str) -> None:
        self.runtime._endpoint_perform(self, self.session.error(call_id, code, message,
                                                                type_name))


class _Worker:
    """A request worker's cancel scope, and whether a ``Cancel`` cancelled it."""

    __slots__ = ("cancelled", "scope")

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.cancelled = False


class _HubRoute:
    """The route of answers to requests that came through the hub."""

    __slots__ = ("host",)

    def __init__(self, host: AgentHost) -> None:
        self.host = host

    def reply(self, call_id: int, payload: bytes) -> None:
        self.host.session.agent_reply(call_id, payload, now=trio.current_time())
        self.host.drain()

    def fail(self, call_id: int, code: str, message: str, type_name: str) -> None:
        self.host.session.agent_error(call_id, code, message, type_name,
                                      now=trio.current_time())
        self.host.drain()


class AgentRuntime:
    """Performs one agent's effects (see module docstring)."""

    def __init__(self, host: AgentHost, agent_id: str, factories: dict[str, Factory],
                 stateless: tuple[StatelessContainer, ...], *,
                 state_store: StateStore | None = None,
                 checkpoint_interval: float = 60.0) -> None:
        self.host = host
        self._hub_route = _HubRoute(host)
        self.agent_id = agent_id
        self.factories = factories
        self.state = AgentState(agent_id, tuple(factories))
        self.containers: dict[ContainerUuid, Container] = {s.uuid: s.container
                                                           for s in stateless}
        #: open event streams: (route, uuid, client id); route 0 is the hub
        self._streams: dict[tuple[int, str, str], None] = {}
        #: the open direct connections, by id(peer)
        self._endpoint_peers: dict[int, _EndpointPeer] = {}
        #: direct connections being served, upgrading ones included
        self._endpoint_connections = 0
        #: the endpoint's TLS settings (None: plain ``ws://``)
        self._endpoint_tls: ssl.SSLContext | None = None
        #: what direct connections may cost (``open_endpoint``)
        self._endpoint_limits = EndpointLimits()
        # Shielded like every client task: it closes with the agent, not before.
        self._endpoint_scope = trio.CancelScope(shield=True)
        self._tasks = 0
        self._idle = trio.Event()
        # Requests are queued for a few worker tasks instead of a task each:
        # spawning a task cost more than running an echo request, and one
        # worker runs a whole frame's worth of requests in one go when they
        # do not block (see docs/performance.md).  Whenever a worker starts
        # a request while more wait, another worker is woken (or started),
        # so a request that blocks never holds up the ones behind it.
        self._queue: collections.deque[tuple[Callable[..., Awaitable[None]], tuple[Any, ...]]] = (
            collections.deque())
        self._parked = trio.lowlevel.ParkingLot()
        self._runner_coming = False
        self._requests_closed = False
        #: requests from the hub running now: call id -> the worker running
        #: it; a ``Cancel`` cancels its scope
        self._hub_calls: dict[int, _Worker] = {}
        #: hub call ids cancelled while (perhaps) queued; cleared when the
        #: queue is empty
        self._cancelled_queued: set[int] = set()
        #: the worker that is starting a queued item (see ``_work``)
        self._current_worker = _Worker()
        self.closed = False
        #: checkpoints of containers with state (None: no state store)
        self.checkpoints = (None if state_store is None else
                            Checkpoints(state_store, checkpoint_interval, agent_id,
                                        self._stale))
        #: uuids whose requests wait for a restore (or the last checkpoint) to end
        self._held: dict[ContainerUuid, trio.Event] = {}
        #: requests running in containers (a closing agent lets them end)
        self._running = 0
        #: set when no request runs any more (while a closing agent waits for that)
        self._quiet: trio.Event | None = None
        #: requests running, by container (uuids with none are not kept)
        self._runs_in: dict[str, int] = {}
        #: set when the last request running in a uuid ends (a terminate
        #: waits for that before the uuid's last checkpoint)
        self._quiet_in: dict[str, trio.Event] = {}
        #: uuid -> set when its terminated instance wrote its last checkpoint
        #: (a new instance of it claims only then)
        self._saving: dict[str, trio.Event] = {}
        self._checkpoint_scope = trio.CancelScope()
        #: set by ``aclose``: ends the waits before a stateless uuid that
        #: failed to restore is offered again (``_stand_down``)
        self._closing = trio.Event()
        #: stateless uuid -> the wait before its next offer after a failed restore
        self._offer_delays: dict[ContainerUuid, float] = {}
        self.agent = Agent(self)

    def start_checkpoints(self) -> None:
        """Checkpoint every interval until the agent closes (no-op without a store)."""
        if self.checkpoints is not None:
            # Not one of the agent's counted tasks: a drain waits for those to
            # end, and this loop ends only when ``aclose`` cancels it.
            self.host.spawn(self._run_checkpoints, self.checkpoints)

    async def _run_checkpoints(self, checkpoints: Checkpoints) -> None:
        with self._checkpoint_scope:
            await checkpoints.run()

    # --- the endpoint server ------------------------------------------------------

    async def open_endpoint(self, spec: str, ssl_context: ssl.SSLContext | None = None,
                            limits: EndpointLimits | None = None) -> str:
        """Listen on ``spec`` (``"HOST:PORT"``); returns the URL to advertise.

        With ``ssl_context`` (``tls.server_ssl_context``) the endpoint speaks
        ``wss://`` only, and advertises a ``wss://`` URL.  ``limits`` bound
        what direct connections may cost (default: ``EndpointLimits()``).

        Raises:
            OSError: if the address cannot be bound.
            ValueError: if ``spec`` is not ``HOST:PORT``.
        """
        host, sep, port_text = spec.rpartition(":")
        if not sep or not port_text.isdigit():
            raise ValueError(f"endpoint must be HOST:PORT, got {spec!r}")
        host = host or "0.0.0.0"
        self._endpoint_tls = ssl_context
        if limits is not None:
            self._endpoint_limits = limits
        listener: Any = await self.host.start(self._serve_endpoint, host, int(port_text))
        advertised = host
        if host in ("0.0.0.0", "::"):
            advertised = os.environ.get("AGENT_HOST") or socket.gethostname()
        scheme = "ws" if ssl_context is None else "wss"
        url = f"{scheme}://{advertised}:{listener.socket.getsockname()[1]}"
        log.info("agent %s endpoint listening on %s", self.agent_id, url)
        return url

    async def _serve_endpoint(self, host: str, port: int, *,
                              task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
                              ) -> None:
        with self._endpoint_scope:
            listeners = await trio.open_tcp_listeners(port, host=host)
            self._http = agent_routes(self, trio.current_time())
            task_status.started(listeners[0])
            async with trio.open_nursery() as nursery:
                await trio.serve_listeners(self._handle_endpoint, listeners,
                                           handler_nursery=nursery)

    @property
    def container_count(self) -> int:
        """Containers running here (for the endpoint's ``/health``)."""
        return len(self.containers)

    @property
    def direct_client_count(self) -> int:
        """Clients connected to this agent's own endpoint (for ``/health``)."""
        return len(self._endpoint_peers)

    async def _handle_endpoint(self, stream: trio.SocketStream) -> None:
        """Serve one direct connection; nothing it raises reaches the others."""
        if self._endpoint_connections >= self._endpoint_limits.max_connections:
            log.warning("agent %s endpoint: refusing a connection: %d open already",
                        self.agent_id, self._endpoint_connections)
            await trio.aclose_forcefully(stream)
            return
        self._endpoint_connections += 1
        try:
            await self._handle_endpoint_stream(stream)
        finally:
            self._endpoint_connections -= 1

    async def _handle_endpoint_stream(self, stream: trio.SocketStream) -> None:
        if self._endpoint_tls is None:
            await self._handle_endpoint_ws(stream)
            return
        address = _peer_address(stream)
        where = f"agent {self.agent_id} endpoint, peer {address}"
        async with trio.open_nursery() as relays:
            plain = None
            with trio.move_on_after(ENDPOINT_HANDSHAKE_TIMEOUT) as handshake_scope:
                plain = await accept_tls(stream, self._endpoint_tls, where, relays.start_soon)
            if handshake_scope.cancelled_caught:
                log.info("TLS handshake with %s: none within %g s", where,
                         ENDPOINT_HANDSHAKE_TIMEOUT)
            if plain is not None:
                await self._handle_endpoint_ws(plain, address)

    async def _handle_endpoint_ws(self, stream: trio.SocketStream,
                                  address: str | None = None) -> None:
        """Serve one WebSocket; ``address`` names the peer of a relayed (TLS) stream."""
        try:
            with trio.fail_after(ENDPOINT_HANDSHAKE_TIMEOUT):
                ws = await accept_websocket(stream, max_message_size=MAX_FRAME_BYTES,
                                            http=self._http.answer)
        except (HandshakeError, OSError, trio.TooSlowError) as exc:
            if not isinstance(exc, HttpAnswered):
                log.info("agent %s endpoint: upgrade failed: %r", self.agent_id, exc)
            await trio.aclose_forcefully(stream)
            return
        if address is not None:
            ws.remote = address
        try:
            await self._serve_endpoint_peer(ws)
        except Exception as exc:
            # A bug meeting one client's input ends that connection only.
            log.error("agent %s endpoint: connection from %s failed: %r", self.agent_id,
                      ws.remote, exc)

    async def _serve_endpoint_peer(self, ws: WebSocket) -> None:
        peer = _EndpointPeer(self, EndpointSession(self.agent_id, self._serves, self._fenced))
        self._endpoint_peers[id(peer)] = peer
        full_size = ws.max_message_size
        ws.max_message_size = min(self._endpoint_limits.pre_hello_bytes, full_size)
        greeted = False
        try:
            with peer.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(peer.write, ws)
                    nursery.start_soon(self._hello_deadline, peer)
                    while True:
                        try:
                            frames = await ws.receive()
                        except WebSocketClosed:
                            break
                        if peer.pacer.held:
                            # Answers wait for the client to read: nothing
                            # more of its runs until they are out.
                            await peer.pacer.wait_released()
                        for data in frames:
                            self._endpoint_frame(peer, data)
                        if not greeted and peer.session.state is EndpointState.OPEN:
                            greeted = True
                            ws.max_message_size = full_size
                    nursery.cancel_scope.cancel()
        except Exception:
            ws.close_nowait(1011, "internal error")
            raise
        finally:
            ws.abort()
            del self._endpoint_peers[id(peer)]
            self._endpoint_perform(peer, peer.session.connection_lost())

    async def _hello_deadline(self, peer: _EndpointPeer) -> None:
        """Close ``peer`` if it has not said an accepted hello in time."""
        timeout = self._endpoint_limits.hello_timeout
        await trio.sleep(timeout)
        if peer.session.state is EndpointState.HELLO:
            log.info("agent %s endpoint: closing a connection without a hello in %g s "
                     "(limits.endpointHelloTimeout)", self.agent_id, timeout)
            peer.outbox.close_after_flush("no hello in time", 1008)

    def _endpoint_frame(self, peer: _EndpointPeer, data: bytes | str) -> None:
        es = peer.session
        if peer.outbox.closing:
            return  # closed (bad input, or the peer said close): nothing more is read
        if isinstance(data, str):
            self._endpoint_perform(peer, [es.protocol_error(0, "text frames are not spoken")])
            return
        limit = self._endpoint_limits.max_bad_messages_per_frame
        try:
            messages, errors = decode_frame_lenient(data, max_errors=limit)
        except WireError as exc:
            log.warning("agent %s endpoint: bad frame: %s", self.agent_id, exc)
            self._endpoint_perform(peer, [es.protocol_error(0, str(exc))])
            return
        too_many = len(errors) > limit
        if too_many:
            del errors[limit:]
            messages = []
        for err in errors:
            log.warning("agent %s endpoint: bad message: %s", self.agent_id, err)
            self._endpoint_perform(peer, [es.protocol_error(err.call_id or 0, str(err))])
        if too_many:
            reason = f"more than {limit} bad messages in one frame (limits.maxBadMessagesPerFrame)"
            log.warning("agent %s endpoint: closing %s: %s", self.agent_id, es.peer_id, reason)
            peer.outbox.close_after_flush(reason, 1008)
        for message in messages:
            self._endpoint_perform(peer, es.receive(message))

    def _serves(self, uuid: ContainerUuid) -> bool:
        return self.state.status(uuid) is LocalStatus.ACTIVE and uuid in self.containers

    def _fenced(self, uuid: ContainerUuid) -> bool:
        return self.state.is_fenced(uuid) and uuid in self.containers

    def _endpoint_perform(self, peer: _EndpointPeer, effects: Sequence[EndpointEffect]) -> None:
        for effect in effects:
            match effect:
                case Send():
                    message = effect.message
                    if type(message) is Response:  # answers wait for room
                        sent = peer.pacer.pace(message, len(message.payload)
                                               + REQUEST_OVERHEAD)
                    else:
                        sent = peer.outbox.put_nowait(message)
                    if not sent and not peer.outbox.closing:
                        peer.drop("it does not read")
                case CloseConnection():
                    peer.outbox.close_after_flush(effect.reason)
                case RunRequest():
                    self._submit(effect, peer)
                case ConnectContainer():
                    self._spawn(self._connect, id(peer), effect.uuid, effect.client_id,
                                functools.partial(self._endpoint_push, peer, effect.uuid))
                case DisconnectContainer():
                    self._spawn(self._disconnect, id(peer), effect.uuid, effect.client_id)
                case CancelRequest():
                    self._cancel(effect.call_id, peer.calls, peer.cancelled_queued)
                case Resolve() | Reject() | DeliverPush() | StreamEnded():
                    pass  # the calling side's effects (EndpointClient); a server emits none
                case _:
                    assert_never(effect)

    async def _endpoint_push(self, peer: _EndpointPeer, uuid: str, payload: bytes) -> None:
        self._endpoint_perform(peer, peer.session.push(uuid, payload))

    # --- hub effects -----------------------------------------------------------------

    def perform_hub_effect(self, effect: HostedAgentEffect) -> None:
        """Perform one agent effect the client session emitted."""
        match effect:
            case StartContainer():
                # A parked worker starts it (cheaper than a new task: a cold get
                # waits for this); once the agent closes, a task of its own.
                if self._requests_closed:
                    self._spawn(self._start, effect)
                else:
                    self._tasks += 1
                    self._queue.append((self._start, (effect,)))
                    self._call_runner()
            case StopContainer():
                container = self.containers.pop(effect.uuid, None)
                if container is not None:
                    self._spawn(self._terminate, effect.uuid, container, True, True)
                elif not self.closed:
                    self._tell_terminated(effect.uuid)
            case SetServing():
                self._set_serving(effect)
            case RunRequest():
                self._submit(effect, self._hub_route)
            case ConnectContainer():
                session, drain = self.host.session, self.host.drain
                uuid, client_id = effect.uuid, effect.client_id

                async def push(payload: bytes) -> None:
                    session.agent_push(uuid, client_id, payload)
                    drain()

                self._spawn(self._connect, 0, uuid, client_id, push)
            case DisconnectContainer():
                self._spawn(self._disconnect, 0, effect.uuid, effect.client_id)
            case _:
                assert_never(effect)

    def cancel_request(self, call_id: int) -> None:
        """The caller abandoned the hub's request ``call_id``: stop it if it is ours.

        Queued, it never runs; running, the container's handler is cancelled
        (trio cancellation at its next checkpoint); either way no answer is
        sent for it.  A no-op for an id this agent does not run.
        """
        self._cancel(call_id, self._hub_calls, self._cancelled_queued)

    def _cancel(self, call_id: int, running: dict[int, _Worker], queued: set[int]) -> None:
        """Stop request ``call_id`` of one route (its ``running`` workers, its ``queued`` set)."""
        worker = running.pop(call_id, None)
        if worker is not None:
            worker.cancelled = True
            worker.scope.cancel()
        elif self._queue:
            # Perhaps still queued: it is skipped when its turn comes.  (A hub
            # id answered already lands here too; the set empties with the queue.)
            queued.add(call_id)

    def _set_serving(self, effect: SetServing) -> None:
        if effect.fenced:
            # Paused until the hub answers our registration: streams stay.
            log.debug("agent %s: %s paused until the hub confirms it", self.agent_id,
                      effect.uuid)
            return
        log.info("agent %s: %s %s (epoch %d)", self.agent_id,
                 "serves" if effect.serving else "stands by for", effect.uuid, effect.epoch)
        checkpoints = self.checkpoints
        if not effect.serving:
            if checkpoints is not None:
                # Another agent serves it now: its last changes here go to
                # the store (refused, harmlessly, if the new owner claimed it).
                # Marked at once: a promotion back here claims only after it.
                tracked = checkpoints.forget(effect.uuid)
                if tracked is not None:
                    saving = self._saving[effect.uuid] = trio.Event()
                    self._spawn(self._write_last, checkpoints, effect.uuid, tracked, saving)
            for peer in list(self._endpoint_peers.values()):
                self._endpoint_perform(peer, peer.session.container_stopped(effect.uuid))
            return
        container = self.containers.get(effect.uuid)
        if checkpoints is None or container is None or not has_state(container):
            return
        if checkpoints.tracks(effect.uuid):
            checkpoints.resume(effect.uuid, effect.epoch)  # served here all along
        elif effect.uuid not in self._held:
            # Taking over: no request reaches it before its saved state is in.
            self._held[effect.uuid] = trio.Event()
            self._spawn(self._take_over, checkpoints, effect.uuid, container, effect.epoch)

    async def _write_last(self, checkpoints: Checkpoints, uuid: ContainerUuid,
                          tracked: tuple[StateRecord, Container], saving: trio.Event,
                          retry_for: float = 0.0) -> None:
        """Write ``uuid``'s last checkpoint here, then set ``saving`` (see ``_saving``).

        While the store fails it is tried again every ``LAST_CHECKPOINT_RETRY``
        seconds, for up to ``retry_for``.
        """
        try:
            saved = await checkpoints.final(uuid, tracked)
            if not saved and retry_for > 0:
                with trio.move_on_after(retry_for):
                    while not saved:
                        await trio.sleep(LAST_CHECKPOINT_RETRY)
                        saved = await checkpoints.final(uuid, tracked)
        finally:
            saving.set()
            if self._saving.get(uuid) is saving:
                del self._saving[uuid]

    async def _take_over(self, checkpoints: Checkpoints, uuid: ContainerUuid,
                         container: Container, epoch: int) -> None:
        try:
            saving = self._saving.get(uuid)
            if saving is not None:
                # Demoted here a moment ago and promoted back: its last write
                # goes first, or this claim would fence it and the restore
                # would go back to the checkpoint before.
                await saving.wait()
            await checkpoints.restore(uuid, container, epoch)
        except RestoreFailed as exc:
            self._stand_down(uuid, container, exc)
        else:
            self._offer_delays.pop(uuid, None)
            if self.state.status(uuid) is not LocalStatus.ACTIVE:
                checkpoints.forget(uuid)  # demoted meanwhile: it restores again if promoted
        finally:
            held = self._held.pop(uuid, None)
            if held is not None:
                held.set()

    def _stand_down(self, uuid: ContainerUuid, container: Container, exc: RestoreFailed
                    ) -> None:
        """A stateless uuid's saved state did not import: stop serving it, offer it later.

        The hub hears it stopped here (it promotes another standby, if any);
        the instance is kept, not terminated, and offered again after a
        backoff (``REOFFER_FIRST`` doubling to ``REOFFER_MAX``), so an
        operator's fix of the state (``hulytrio state import``) or a passing
        store failure heals without an agent restart (docs/state.md).
        """
        offer = self.state.offered(uuid)
        if offer is None or self.containers.get(uuid) is not container:
            log.error("agent %s: %s does not serve here: %s", self.agent_id, uuid, exc)
            self._stop_here(uuid, container)  # not an offer of ours (any more)
            return
        delay = self._offer_delays.get(uuid, REOFFER_FIRST)
        self._offer_delays[uuid] = min(delay * 2, REOFFER_MAX)
        log.error("agent %s: %s does not serve here: %s; offered again in %g s",
                  self.agent_id, uuid, exc, delay)
        self.host.session.agent_stopped(self.agent_id, uuid)
        self.host.drain()
        self.host.spawn(self._offer_again, offer, container, delay)

    async def _offer_again(self, offer: OfferedContainer, container: Container,
                           delay: float) -> None:
        with trio.move_on_after(delay):
            await self._closing.wait()
        if not self.closed and self.containers.get(offer.uuid) is container:
            self.host.session.agent_offer_again(self.agent_id, offer)
            self.host.drain()

    def _stale(self, uuid: ContainerUuid) -> None:
        """The store refused a write of ``uuid``: a newer owner exists, stop it here."""
        container = self.containers.get(uuid)
        if container is not None and self.state.status(uuid) is LocalStatus.ACTIVE:
            self._stop_here(uuid, container)

    def _tell_terminated(self, uuid: ContainerUuid) -> None:
        """Tell the hub that ``uuid``, which it terminated, has saved its last changes."""
        self.host.session.agent_terminated(self.agent_id, uuid)
        self.host.drain()

    def _stop_here(self, uuid: ContainerUuid, container: Container) -> None:
        """Stop serving ``uuid`` on our own: terminate it and tell the hub."""
        if self.containers.get(uuid) is container:
            del self.containers[uuid]
            self._spawn(self._terminate, uuid, container, False)
        self.host.session.agent_stopped(self.agent_id, uuid)
        self.host.drain()

    # --- user code -----------------------------------------------------------------------

    def _spawn(self, fn: Callable[..., Awaitable[None]], *args: Any) -> None:
        self._tasks += 1
        self.host.spawn(self._task, fn, args)

    async def _task(self, fn: Callable[..., Awaitable[None]], args: tuple[Any, ...]) -> None:
        try:
            await fn(*args)
        finally:
            self._task_done()

    def _task_done(self) -> None:
        self._tasks -= 1
        if self._tasks == 0:
            self._idle.set()

    def _submit(self, effect: RunRequest, route: _Route) -> None:
        """Queue a request for the workers; it counts as a task until answered."""
        if self._requests_closed:
            route.fail(effect.call_id, ErrorCode.NOT_FOUND.value,
                       f"agent {self.agent_id!r} is closing", "")
            return
        self._tasks += 1
        self._queue.append((self._run_request, (effect, route)))
        self._call_runner()

    def _call_runner(self) -> None:
        """Make sure a worker not stuck in user code is on its way to the queue."""
        if self._runner_coming:
            return
        self._runner_coming = True
        if not self._parked.unpark():
            self.host.spawn(self._request_worker)

    async def _request_worker(self) -> None:
        # A worker runs one request at a time inside a cancel scope of its
        # own, which a ``Cancel`` of that request cancels; the worker then
        # carries on under a fresh scope.  (One scope per request would cost
        # ~12 us each; this costs nothing until a cancel comes.)
        worker = _Worker()
        while True:
            worker.scope = trio.CancelScope()
            worker.cancelled = False
            finished = False
            with worker.scope:
                finished = await self._work(worker)
            if finished:
                return

    async def _work(self, worker: _Worker) -> bool:
        """Run queued work until told to stop (True) or ``worker`` was cancelled (False)."""
        queue = self._queue
        while True:
            self._runner_coming = False
            while queue:
                run, args = queue.popleft()
                if queue:
                    self._call_runner()  # in case this one blocks
                self._current_worker = worker  # read by _run_request before it awaits
                try:
                    await run(*args)
                finally:
                    self._task_done()
                if worker.cancelled:
                    return False  # the next request must not inherit the cancel
            if self._cancelled_queued:
                self._cancelled_queued.clear()  # nothing queued is left to skip
            if self._requests_closed or len(self._parked) >= IDLE_REQUEST_WORKERS:
                return True
            await self._parked.park()

    async def _start(self, effect: StartContainer) -> None:
        session, uuid = self.host.session, effect.uuid
        factory = self.factories.get(effect.kind)
        try:
            if factory is None:
                raise LookupError(f"no factory for kind {effect.kind!r}")
            container = await factory(effect.options)
        except Exception as exc:
            log.warning("agent %s: starting %s %s failed: %r", self.agent_id, effect.kind,
                        uuid, exc)
            session.agent_start_failed(self.agent_id, uuid, f"{type(exc).__name__}: {exc}")
            self.host.drain()
            return
        checkpoints = self.checkpoints
        if checkpoints is not None and has_state(container):
            saving = self._saving.get(uuid)
            if saving is not None:
                # Its last instance here is still writing its last changes:
                # claimed now, the uuid would fence that write, and this
                # instance would start without them.  (At most
                # FINAL_CHECKPOINT_WAIT and one write.)
                await saving.wait()
            try:
                # Its Start carries no epoch: the claim orders its owners.
                await checkpoints.restore(uuid, container, 0)
            except RestoreFailed as exc:
                log.warning("agent %s: starting %s %s failed: %s", self.agent_id,
                            effect.kind, uuid, exc)
                session.agent_start_failed(self.agent_id, uuid, str(exc))
                self.host.drain()
                await self._terminate(uuid, container, False)
                return
        if self.closed or self.state.status(uuid) is not LocalStatus.STARTING:
            # Terminated (or the agent closed) while the factory ran.
            await self._terminate(uuid, container, True)
            return
        self.containers[uuid] = container
        session.agent_started(self.agent_id, uuid)
        self.host.drain()

    async def _terminate(self, uuid: str, container: Container, save: bool,
                         ordered: bool = False) -> None:
        """End ``container``; ``save``: its last changes are checkpointed first.

        With ``save``, requests still running in it may end first (up to
        ``FINAL_CHECKPOINT_WAIT``), so their changes are in that checkpoint:
        they are answered, and what they changed must not be lost.  (New
        requests find it gone: it left ``containers`` before this runs.)
        ``ordered``: the hub ordered it; once the last checkpoint is written
        (or failed) the hub hears it stopped, and only then starts the uuid
        again, perhaps on another agent (``Registry._terminate``).
        """
        if self.checkpoints is not None:
            tracked = self.checkpoints.forget(uuid)
            if save and tracked is not None:
                saving = self._saving[uuid] = trio.Event()
                if uuid in self._runs_in:
                    quiet = self._quiet_in.setdefault(uuid, trio.Event())
                    with trio.move_on_after(FINAL_CHECKPOINT_WAIT):
                        await quiet.wait()
                    if self._quiet_in.get(uuid) is quiet:
                        del self._quiet_in[uuid]
                # Ordered by the hub, which waits for our word (up to its
                # stop timeout, 10 s by default): a store failure is waited out
                # for a while, as a close does.
                await self._write_last(self.checkpoints, uuid, tracked, saving,
                                       CLOSE_CHECKPOINT_RETRY_FOR if ordered else 0.0)
        if ordered and not self.closed:
            self._tell_terminated(uuid)
        for key in [k for k in self._streams if k[1] == uuid]:
            del self._streams[key]
        # Direct streams from it end now (the client may reconnect to
        # wherever the container lives next).
        for peer in list(self._endpoint_peers.values()):
            self._endpoint_perform(peer, peer.session.container_stopped(uuid))
        try:
            await container.terminate()
        except Exception:
            log.exception("agent %s: terminate() of %s raised", self.agent_id, uuid)

    async def _run_request(self, effect: RunRequest, route: _Route) -> None:
        call_id = effect.call_id
        worker: _Worker | None = None
        if route is self._hub_route:
            # From the hub: a ``Cancel`` reaches it through its worker's scope.
            if self._cancelled_queued and call_id in self._cancelled_queued:
                self._cancelled_queued.discard(call_id)
                return  # cancelled while queued
            worker = self._hub_calls[call_id] = self._current_worker
        elif isinstance(route, _EndpointPeer):
            # From a direct connection: the same, under that connection's ids.
            if route.cancelled_queued and call_id in route.cancelled_queued:
                route.cancelled_queued.discard(call_id)
                return
            worker = route.calls[call_id] = self._current_worker
        try:
            if self._held:
                held = self._held.get(effect.uuid)
                if held is not None:
                    # A restore (import_state) or a last checkpoint is running;
                    # after the last one, the container no longer serves here.
                    await held.wait()
                    if self.state.status(effect.uuid) is not LocalStatus.ACTIVE:
                        route.fail(call_id, ErrorCode.NOT_FOUND.value,
                                   f"container {effect.uuid!r} moved", "")
                        return
            container = self.containers.get(effect.uuid)
            if container is None:
                route.fail(call_id, ErrorCode.NOT_FOUND.value,
                           f"container {effect.uuid!r} is gone", "")
                return
            try:
                data = decode_payload(effect.payload)
            except WireError as exc:
                route.fail(call_id, ErrorCode.PROTOCOL.value,
                           f"undecodable request payload: {exc}", "")
                return
            uuid = effect.uuid
            runs_in = self._runs_in
            self._running += 1
            runs_in[uuid] = runs_in.get(uuid, 0) + 1
            try:
                result = await container.request(effect.operation, data, effect.client_id)
            except Exception as exc:
                route.fail(call_id, ErrorCode.REMOTE.value, str(exc), type(exc).__name__)
                return
            finally:
                self._running -= 1
                if self._quiet is not None and not self._running:
                    self._quiet.set()
                left = runs_in[uuid] - 1
                if left:
                    runs_in[uuid] = left
                else:
                    del runs_in[uuid]
                    if self._quiet_in:
                        quiet = self._quiet_in.pop(uuid, None)
                        if quiet is not None:
                            quiet.set()
            try:
                payload = encode_payload(result)
            except LocalProtocolError as exc:
                route.fail(call_id, ErrorCode.REMOTE.value,
                           f"result cannot be encoded: {exc}", "TypeError")
                return
            route.reply(call_id, payload)
        finally:
            if worker is not None:
                running = (self._hub_calls if route is self._hub_route
                           else cast(_EndpointPeer, route).calls)
                if running.get(call_id) is worker:
                    del running[call_id]

    async def _connect(self, route: int, uuid: str, client_id: str,
                       push: Callable[[bytes], Awaitable[None]]) -> None:
        held = self._held.get(uuid)
        if held is not None:
            await held.wait()
            if self.state.status(uuid) is not LocalStatus.ACTIVE:
                return  # moved while held (see ``_run_request``)
        container = self.containers.get(uuid)
        if container is None:
            return
        key = (route, uuid, client_id)
        self._streams[key] = None

        async def broadcast(event: Any) -> None:
            if key in self._streams:
                await push(encode_payload(event))

        try:
            await container.connect(client_id, broadcast)
        except Exception:
            log.exception("agent %s: connect() of %s raised", self.agent_id, uuid)

    async def _disconnect(self, route: int, uuid: str, client_id: str) -> None:
        if self._streams.pop((route, uuid, client_id), 0) is not None:
            return
        container = self.containers.get(uuid)
        if container is None:
            return
        try:
            await container.disconnect(client_id)
        except Exception:
            log.exception("agent %s: disconnect() of %s raised", self.agent_id, uuid)

    # --- shutdown --------------------------------------------------------------------------

    async def drain(self, grace: float) -> bool:
        """See ``Agent.drain``."""
        if self.closed:
            return True
        host = self.host
        in_time = False
        with trio.move_on_after(grace):
            holds: list[ContainerUuid] = []
            checkpoints = self.checkpoints
            if checkpoints is not None:
                # Before the hub hands any uuid over (a standby's claim would
                # fence this agent's last writes, and it would restore the
                # checkpoint before): hold their requests, let the running
                # ones end, write the last changes; while the store fails,
                # try again (the grace bounds it: then the drain goes on).
                holds = await self._last_checkpoint(checkpoints)
                await self._retry_checkpoint(checkpoints)
            try:
                handle = host.session.drain_agent(self.agent_id)
            except LocalProtocolError:  # draining already (a second call)
                handle = None
            log.info("agent %s draining: asking the hub to move its %d containers",
                     self.agent_id, len(self.containers))
            if handle is not None:
                try:
                    await host.wait(handle)
                except Exception as exc:  # the hub refused, or the client closed
                    log.warning("agent %s: the hub did not take the drain: %s", self.agent_id,
                                exc)
            # Moved: the held requests are answered ``not_found`` (their
            # containers no longer serve here) and re-route to the new owner.
            for uuid in holds:
                held = self._held.pop(uuid, None)
                if held is not None:
                    held.set()
            log.info("agent %s: containers moved; %d requests and tasks to finish",
                     self.agent_id, self._tasks)
            await self._wait_idle()
            in_time = True
        if not in_time:
            log.warning("agent %s: drain not finished after %g s (%d tasks left); stopping "
                        "anyway", self.agent_id, grace, self._tasks)
        await self.aclose(retry_for=0.0)  # the grace bounded the tries already
        log.info("agent %s drained and closed", self.agent_id)
        return in_time

    async def _wait_idle(self) -> None:
        """Wait until no request, start or other task of this agent runs."""
        while self._tasks:
            self._idle = trio.Event()
            await self._idle.wait()

    async def aclose(self, retry_for: float = CLOSE_CHECKPOINT_RETRY_FOR) -> None:
        """Unregister at the hub, terminate every container, close the endpoint.

        The last checkpoint comes first, tried again while the store fails
        for up to ``retry_for`` seconds (see ``Agent.aclose``).
        """
        if self.closed:
            return
        self.closed = True
        host = self.host
        self._checkpoint_scope.cancel()
        self._closing.set()
        checkpoints = self.checkpoints
        if checkpoints is not None:
            await self._last_checkpoint(checkpoints)
            with trio.move_on_after(retry_for):
                await self._retry_checkpoint(checkpoints)
            if checkpoints.dirty():
                log.warning("agent %s: closing with changes not saved (the state store "
                            "failed): they are lost", self.agent_id)
        handle = host.session.unregister_agent(self.agent_id)
        with trio.move_on_after(2):
            await host.wait(handle)
        # Containers the session did not know yet (stateless never registered).
        for uuid, container in list(self.containers.items()):
            del self.containers[uuid]
            self._spawn(self._terminate, uuid, container, True)
        for held in self._held.values():
            held.set()  # their requests find the container gone: the caller re-routes
        with trio.move_on_after(5):
            await self._wait_idle()
        self._requests_closed = True
        self._parked.unpark_all()
        self.cancel()
        host.forget(self.agent_id)

    async def _last_checkpoint(self, checkpoints: Checkpoints) -> list[ContainerUuid]:
        """Before the hub hears we go: hold new requests, let running ones end, save all.

        The containers' state is then in the store before a standby takes a
        stateless uuid over or a uuid restarts elsewhere: a clean stop loses
        nothing.  The held requests are answered ``not_found`` once the
        containers no longer serve here, and their callers re-route to the
        new owner.  Returns the uuids held now.
        """
        held = checkpoints.hold_all()
        for uuid in held:
            self._held.setdefault(uuid, trio.Event())
        if self._running:
            self._quiet = trio.Event()
            with trio.move_on_after(FINAL_CHECKPOINT_WAIT):
                await self._quiet.wait()
            self._quiet = None
        await checkpoints.checkpoint()
        return held

    @staticmethod
    async def _retry_checkpoint(checkpoints: Checkpoints) -> None:
        """Try the checkpoint again every ``LAST_CHECKPOINT_RETRY`` seconds until
        nothing is left to write (the caller's cancel scope bounds it)."""
        while checkpoints.dirty():
            await trio.sleep(LAST_CHECKPOINT_RETRY)
            await checkpoints.checkpoint()

    def cancel(self) -> None:
        """Close the endpoint server and its connections at once."""
        self._endpoint_scope.cancel()


def _peer_address(stream: trio.SocketStream) -> str:
    """Return ``HOST:PORT`` of the stream's peer, or ``"?"`` if the socket is gone."""
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "?"
    return f"{host}:{port}"
