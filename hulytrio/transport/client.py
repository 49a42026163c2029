"""The client driver: ``open_client`` runs one ``ClientSession`` over a WebSocket.

Theory of operation
-------------------
Everything the client decides (reconnecting with backoff, the handshake,
re-registering agents and re-acquiring references after a hub restart,
resending unanswered requests, standby claims) happens in the core
``ClientSession``.  This driver only:

- opens a WebSocket when the session says ``OpenConnection`` and reports
  ``connection_made`` / ``connection_lost`` (one connection task at a time;
  with several hubs it dials them staggered, first answer wins: ``_dial``);
- feeds decoded frames to ``receive`` and deadlines to ``handle_timers``
  (one ``DeadlineTask``);
- after every input drains ``effects()``: ``Send`` goes to the connection's
  outbox (packed into frames by its writer), ``Resolve`` / ``Reject`` wake
  the task waiting on that handle, events and pushes go to their listeners,
  and agent effects go to the ``AgentRuntime`` that hosts the container.

User calls are ``handle = session.op(...)``, then wait on the handle's slot:
there is no task per call and no protocol logic here.  Payloads are encoded
and decoded at this edge only (``encode_payload`` / ``decode_payload``).
"""

from __future__ import annotations

import builtins
import logging
import random
import secrets
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar, assert_never

import trio

from hulytrio.core.agent import AgentState
from hulytrio.core.effects import (
    CancelRequest,
    CloseConnection,
    ConnectContainer,
    DeliverEvent,
    DeliverPush,
    DisconnectContainer,
    OpenConnection,
    ReferenceChanged,
    Reject,
    Resolve,
    RunRequest,
    Send,
    SessionEffect,
    SetServing,
    StartContainer,
    StopContainer,
)
from hulytrio.core.errors import (
    ConnectionClosed,
    HulyError,
    LocalProtocolError,
    error_from_code,
)
from hulytrio.core.events import NetworkEvent
from hulytrio.core.hubs import parse_hub_urls
from hulytrio.core.messages import Cancel, Error, Get, Message, Request, Response
from hulytrio.core.session import Backoff, ClientSession
from hulytrio.core.types import AgentInfo, ClientInfo, ContainerRecord, GetOptions, OfferedContainer

from ..wire.codec import (
    MAX_FRAME_BYTES,
    decode_payload,
    encode_payload,
)
from .agent import Agent, AgentHost, AgentRuntime
from .connection import (
    ContainerConnection,
    open_endpoint,
    received_messages,
    run_direct_connection,
)
from .container import Factory, StatelessContainer
from .deadlines import DeadlineTask
from .errors import single_errors
from .limits import EndpointLimits, refusal
from .outbox import Outbox, Oversized
from .pacing import REQUEST_OVERHEAD, RequestPacer, get_size, watch_progress
from .pacing import STALL_TIMEOUT as _STALL_TIMEOUT
from .retrylog import RetryLog
from .tls import client_ssl_context
from .tls_relay import connect_wss
from .waiter import Waiter
from .websocket import HandshakeError, WebSocket, WebSocketClosed

if TYPE_CHECKING:
    from hulytrio.state import StateStore

__all__ = ["Client", "ContainerReference", "Updates", "open_client"]

log = logging.getLogger("hulytrio.client")

T = TypeVar("T")

#: How long one connection attempt (TCP + WebSocket handshake) may take.
CONNECT_TIMEOUT = 5.0
#: With several hubs: how long an attempt has before the next hub of the
#: list is dialled beside it (RFC 8305's "happy eyeballs" delay).  A hub
#: host that never answers then costs this, not ``CONNECT_TIMEOUT``.
STAGGER_DELAY = 0.25
#: Reconnect backoff: 50 ms growing by half to 2 s, jittered.  Flatter than the
#: core's default so a restarted hub is found within ~0.6 s of listening
#: again once it has been down for a second (measured: docs/performance.md).
RECONNECT_BACKOFF = Backoff(initial=0.05, maximum=2.0, factor=1.5)
#: Messages queued for the hub before the connection counts as dead.  A safety
#: valve against unbounded memory, far above what a client keeps in flight
#: (after a reconnect every unanswered call is queued at once).
SEND_QUEUE = 100_000
#: Each client process (each ``open_client``) numbers its calls from a random
#: offset below 2**60, drawn at start and kept across reconnects: an agent's
#: answer memory is keyed by (caller's peer id, call id), and a restarted
#: process under a fixed ``client_id`` must never be answered from its
#: predecessor's (docs/high-availability.md, "At most once across failover").
#: Two processes' ids meet with a probability of about calls / 2**60.
CALL_ID_OFFSET_BITS = 60
#: Bytes kept for a hub that does not read before the connection counts as
#: dead.  The client's own requests and gets, and a hosted agent's answers,
#: never fill it: they wait for room in ``UNSENT_REQUEST_BYTES``
#: (``pacing.py``), so what can is the rest (pushes of a hosted agent's
#: containers, errors, pongs).
SEND_BYTES = 4 * MAX_FRAME_BYTES
#: Bytes of requests, gets and a hosted agent's answers a client lets wait
#: for the hub (not yet taken by the kernel) before further ones wait for
#: room: the hub's default in-flight bytes per client (``MAX_IN_FLIGHT_BYTES``),
#: since more requests sent ahead would only be answered ``retry``.
#: ``open_client(max_unsent_request_bytes=...)``; the same bound paces the
#: requests of the client's direct connections to agent endpoints.
UNSENT_REQUEST_BYTES = MAX_FRAME_BYTES // 2
#: Seconds a hub may take none of the bytes waiting for it before the
#: connection counts as dead: it is not reading (its pings and answers to
#: it would pile up for ever).  A hub that reads slowly makes progress.
STALL_TIMEOUT = _STALL_TIMEOUT
#: Registry events buffered per ``updates()`` listener before it is cut off.
UPDATES_BUFFER = 1024


class _Connection:
    __slots__ = ("done", "outbox", "pacer", "scope", "ws")

    def __init__(self, oversized: Oversized, request_budget: int) -> None:
        self.outbox = Outbox(SEND_QUEUE, max_bytes=SEND_BYTES, oversized=oversized)
        self.pacer = RequestPacer(self.outbox, request_budget)
        self.scope = trio.CancelScope()
        self.ws: WebSocket | None = None
        self.done = trio.Event()


class Updates:
    """An async iterator of registry events (``NetworkEvent``) for one listener.

    Created by ``client.updates()``; it receives every event from that moment
    on.  A listener that falls ``UPDATES_BUFFER`` events behind is cut off:
    its iteration raises ``ConnectionClosed``.  ``aclose()`` stops listening.
    """

    def __init__(self, client: Client) -> None:
        self._client = client
        self._tx, self._rx = trio.open_memory_channel[NetworkEvent](UPDATES_BUFFER)
        self.overflowed = False

    def __aiter__(self) -> Updates:
        return self

    async def __anext__(self) -> NetworkEvent:
        try:
            return await self._rx.receive()
        except trio.EndOfChannel:
            if self.overflowed:
                raise ConnectionClosed("updates listener fell too far behind") from None
            raise StopAsyncIteration from None

    def _deliver(self, event: NetworkEvent) -> bool:
        try:
            self._tx.send_nowait(event)
        except trio.WouldBlock:
            self.overflowed = True
            self._tx.close()
            return False
        except trio.ClosedResourceError:
            return False
        return True

    async def aclose(self) -> None:
        """Stop listening; a pending iteration ends."""
        self._tx.close()
        self._client._updates.pop(id(self), None)


class Client:
    """A connected client (see ``open_client``)."""

    def __init__(self, url: str, session: ClientSession, nursery: trio.Nursery,
                 ssl_context: ssl.SSLContext | None = None,
                 max_unsent_request_bytes: int = UNSENT_REQUEST_BYTES) -> None:
        self.url = url
        #: request bytes let wait for the hub before more requests wait for room
        self.max_unsent_request_bytes = max_unsent_request_bytes
        #: TLS settings for a ``wss://`` hub (None: the system's CAs)
        self.ssl_context = ssl_context
        #: every hub this client may dial (``url`` is a comma-separated list)
        self.urls = parse_hub_urls(url)
        #: the hub dialled last
        self.hub_url = self.urls[0]
        self._next_url = 0
        self.session = session
        self._nursery = nursery
        self._slots: dict[int, Waiter] = {}
        self._conn: _Connection | None = None
        self._updates: dict[int, Updates] = {}
        #: uuid -> push listeners of event streams opened through the hub
        self._push_listeners: dict[str, dict[int, ContainerConnection]] = {}
        self._agents: dict[str, AgentRuntime] = {}
        self._agent_host = AgentHost(session, self._drain, self._wait, self.spawn,
                                     nursery.start, self._forget_agent)
        self._refs: dict[int, ContainerReference] = {}
        self._welcomed = trio.Event()
        self._refusal: Error | None = None
        self._timer = DeadlineTask(session.next_deadline, self._fire)
        #: the shielded scopes of the background tasks (see ``spawn``)
        self._scopes: dict[int, trio.CancelScope] = {}
        #: set once the client closed: a task that starts after it is cancelled at once
        self._tasks_cancelled = False
        #: the ``async with open_client`` body's scope: cancelled when the hub
        #: refuses the credential for good (then open_client raises)
        self._body_scope = trio.CancelScope()
        #: says "cannot connect" once, then with backoff, not on every attempt
        self._connect_log = RetryLog(log, f"connect to the hub at {url}")

    @property
    def client_id(self) -> str:
        """Return this client's peer id."""
        return self.session.client_id

    # --- the public API ------------------------------------------------------------

    async def wait_connection(self) -> None:
        """Return once the hub has welcomed this client (at least once).

        Raises:
            AuthenticationError: the hub refused the client's credential
                (missing, unknown, expired): final, the client does not retry.
            Forbidden: the hub refused the peer id (another principal's);
                the client keeps retrying with backoff.
        """
        await self._welcomed.wait()
        if self.session.closed_by is not None:
            raise self.session.closed_by
        refused = self.session.refused
        if not self.session.welcomes and refused is not None:
            raise error_from_code(refused.code, refused.message)

    async def get(self, kind: str, *, uuid: str | None = None,
                  labels: Iterable[str] | None = None,
                  extra: dict[str, Any] | None = None) -> ContainerReference:
        """Acquire a container of ``kind``; returns its reference.

        Waits while no agent hosts the kind (bound it with ``trio.fail_after``).

        Raises:
            HulyError: a subclass for errors waiting cannot cure (bad kind,
                start failed), or ``ConnectionClosed`` if the client closes.
        """
        options = GetOptions(uuid, tuple(labels or ()), extra)
        handle = self.session.get(kind, options)
        record: ContainerRecord = await self._wait(handle)
        ref = ContainerReference(self, handle, kind, record)
        self._refs[handle] = ref
        return ref

    async def list(self, kind: str | None = None) -> tuple[ContainerRecord, ...]:
        """Return the hub's container records (of ``kind`` if given)."""
        result: tuple[ContainerRecord, ...] = await self._wait(self.session.query("list", kind))
        return result

    async def agents(self) -> tuple[AgentInfo, ...]:
        """Return the agents registered at the hub."""
        result: tuple[AgentInfo, ...] = await self._wait(self.session.query("agents"))
        return result

    async def kinds(self) -> tuple[str, ...]:
        """Return the sorted, de-duplicated kinds the registered agents host."""
        result: tuple[str, ...] = await self._wait(self.session.query("kinds"))
        return result

    async def clients(self) -> tuple[ClientInfo, ...]:
        """Return every client session at the hub, by client id (the ``admin`` role).

        Raises:
            Forbidden: this client's credential is not an admin's.
        """
        result: tuple[ClientInfo, ...] = await self._wait(self.session.query("clients"))
        return result

    async def terminate(self, uuid: str) -> None:
        """Terminate container ``uuid``, whoever hosts and holds it (the ``admin`` role).

        Its agent terminates it, and its holders' references re-acquire (a
        new container), as when an agent dies.

        Raises:
            Forbidden: this client's credential is not an admin's.
            ContainerNotFound: no such container, or it is still starting.
        """
        await self._wait(self.session.terminate_any(uuid))

    def updates(self) -> Updates:
        """Return an async iterator of the registry events from now on."""
        listener = Updates(self)
        self._updates[id(listener)] = listener
        return listener

    async def serve_agent(self, factories: dict[str, Factory], *, agent_id: str | None = None,
                          stateless: Sequence[StatelessContainer] = (),
                          endpoint: str | None = None,
                          endpoint_ssl_context: ssl.SSLContext | None = None,
                          max_containers: int | None = None,
                          state_store: StateStore | None = None,
                          checkpoint_interval: float = 60.0,
                          fence_lease: float | None = None,
                          endpoint_limits: EndpointLimits | None = None) -> Agent:
        """Host an agent in this client and register it; returns its ``Agent``.

        ``factories`` maps each kind to an async factory; ``stateless`` lists
        pre-existing HA instances; ``endpoint`` (``"HOST:PORT"``, port 0 for
        any) opens the agent's own WebSocket server for direct connections,
        ``wss://`` with ``endpoint_ssl_context`` (``tls.server_ssl_context``;
        clients dial it with the CA bundle they use for the hub);
        ``max_containers`` caps the containers it runs (the hub is told, and
        starts beyond it are refused with ``full``); ``state_store`` (from
        ``hulytrio.state.open_state_store``) restores containers with state
        and checkpoints them every ``checkpoint_interval`` seconds
        (docs/state.md); ``fence_lease`` (seconds) shortens the hub silence
        its stateless containers serve through (default and cap: 0.9 x the
        hub's alive timeout; docs/high-availability.md); ``endpoint_limits``
        bound what direct connections may cost the endpoint (docs/security.md).

        Raises:
            LocalProtocolError: if an agent with that id is already hosted here,
                or ``endpoint_ssl_context`` is given without an ``endpoint``.
            OSError: if the endpoint cannot be bound.
        """
        agent_id = agent_id if agent_id is not None else f"agent-{secrets.token_hex(4)}"
        if agent_id in self._agents:
            raise LocalProtocolError(f"agent {agent_id!r} is already hosted here")
        if endpoint_ssl_context is not None and endpoint is None:
            raise LocalProtocolError("endpoint_ssl_context needs an endpoint")
        if not checkpoint_interval > 0:
            raise LocalProtocolError(f"checkpoint_interval must be > 0, got {checkpoint_interval}")
        if fence_lease is not None and not fence_lease > 0:
            raise LocalProtocolError(f"fence_lease must be > 0, got {fence_lease}")
        runtime = AgentRuntime(self._agent_host, agent_id, dict(factories), tuple(stateless),
                               state_store=state_store, checkpoint_interval=checkpoint_interval)
        advertised = None
        if endpoint is not None:
            advertised = await runtime.open_endpoint(endpoint, endpoint_ssl_context,
                                                     endpoint_limits)
        offers = tuple(OfferedContainer(s.uuid, s.kind, tuple(s.labels), True) for s in stateless)
        runtime.state = AgentState(agent_id, tuple(factories), endpoint=advertised,
                                   stateless=offers, max_containers=max_containers,
                                   fence_lease=fence_lease)
        self._agents[agent_id] = runtime
        handle = self.session.register_agent(runtime.state)
        runtime.start_checkpoints()
        try:
            await self._wait(handle)
        except HulyError:
            # refused (``forbidden``): nothing of it stays hosted here
            self._agents.pop(agent_id, None)
            self.session.forget_agent(agent_id)
            self._drain()
            runtime.cancel()
            raise
        return runtime.agent

    # --- background tasks ------------------------------------------------------------

    def spawn(self, fn: Callable[..., Awaitable[object]], *args: Any) -> None:
        """Run ``fn(*args)`` in the client's nursery, shielded until the client closes.

        An outer cancellation (a signal handler cancelling ``main``, a
        timeout around the ``async with``) must not kill the connection and
        agent tasks while the client shuts down gracefully (unregister,
        terminate containers, say Close); ``_cancel_tasks`` ends them after.
        """
        self._nursery.start_soon(self._shielded, fn, args)

    async def _shielded(self, fn: Callable[..., Awaitable[object]], args: tuple[Any, ...]
                        ) -> None:
        scope = trio.CancelScope(shield=True)
        if self._tasks_cancelled:
            # spawned before the client closed but started only after
            # _cancel_tasks (a body that exits without a checkpoint): it
            # would otherwise run, shielded, for ever
            scope.cancel()
        self._scopes[id(scope)] = scope
        try:
            with scope:
                await fn(*args)
        finally:
            del self._scopes[id(scope)]

    def _cancel_tasks(self) -> None:
        self._tasks_cancelled = True
        for scope in list(self._scopes.values()):
            scope.cancel()

    # --- handles -----------------------------------------------------------------------

    async def _wait(self, handle: int) -> Any:
        """Wait for ``handle``'s outcome; returns its value or raises its error."""
        waiter = self._slots[handle] = Waiter()
        self._drain()
        try:
            return await waiter.wait()
        except trio.Cancelled:
            if waiter.outcome is None:
                # The caller gave up: a request's slot at the hub (and its
                # run at the agent) is freed instead of held until it ends.
                self.session.cancel(handle)
                self._drain()
            raise
        finally:
            self._slots.pop(handle, None)

    # --- effects -----------------------------------------------------------------------

    def _drain(self) -> None:
        session = self.session
        while True:
            effects = session.effects()
            if not effects:
                break
            for effect in effects:
                self._perform(effect)
        if session.welcomes and not self._welcomed.is_set():
            self._welcomed.set()
        if session.refused is not self._refusal:
            self._refused()
        self._timer.poke()

    def _refused(self) -> None:
        refused = self._refusal = self.session.refused
        if refused is not None:
            final = self.session.closed_by is not None
            log.error("the hub at %s refused this client (%s): %s%s", self.url, refused.code,
                      refused.message, "; not retrying" if final else "")
            self._welcomed.set()  # wait_connection raises the refusal
            if final:
                # the ``async with open_client`` body ends; open_client raises
                self._body_scope.cancel()

    def _perform(self, effect: SessionEffect) -> None:
        # Ordered by frequency: a routed request is a Send and a Resolve here.
        match effect:
            case Send():
                conn = self._conn
                if conn is not None and conn.ws is not None and not conn.outbox.closing:
                    message = effect.message
                    kind = type(message)
                    if kind is Request:
                        # Held for room if too many paced bytes wait already.
                        sent = conn.pacer.send(message)  # type: ignore[arg-type]
                    elif kind is Response:  # a hosted agent's answer: paced too
                        sent = conn.pacer.pace(message, len(message.payload)  # type: ignore[attr-defined]
                                               + REQUEST_OVERHEAD)
                    elif kind is Cancel and conn.pacer.forget(message.id):  # type: ignore[attr-defined]
                        sent = True  # the request was held: the hub never saw it
                    elif kind is Get:  # its ``extra`` may be large: paced too
                        sent = conn.pacer.pace(message, get_size(message))  # type: ignore[arg-type]
                    else:
                        sent = conn.outbox.put_nowait(message)
                    if not sent:
                        self._give_up(conn)
            case Resolve() | Reject():
                waiter = self._slots.get(effect.handle)
                if waiter is not None:
                    waiter.set(effect)
            case (RunRequest() | StartContainer() | StopContainer() | SetServing()
                  | ConnectContainer() | DisconnectContainer()):
                runtime = self._agents.get(effect.agent_id)
                if runtime is not None:
                    runtime.perform_hub_effect(effect)
            case CancelRequest():
                for runtime in self._agents.values():
                    runtime.cancel_request(effect.call_id)
            case DeliverEvent():
                for key, listener in list(self._updates.items()):
                    if not listener._deliver(effect.event):
                        log.warning("updates() listener fell behind; cut off")
                        self._updates.pop(key, None)
            case DeliverPush():
                for conn_ in list(self._push_listeners.get(effect.uuid, {}).values()):
                    conn_.push_nowait(effect.payload)
            case ReferenceChanged():
                ref = self._refs.get(effect.ref)
                if ref is not None and effect.record is not None:
                    ref._record = effect.record
            case OpenConnection():
                self.spawn(self._run_connection, self._dial_order(effect.url))
            case CloseConnection():
                self._close_connection(effect.reason)
            case _:
                assert_never(effect)

    def _give_up(self, conn: _Connection) -> None:
        """The hub has not drained this many messages: the connection is as good as
        dead.  Drop it; the session reconnects and resends what had no answer."""
        log.warning("hub connection send queue full (%d); reconnecting", SEND_QUEUE)
        conn.outbox.closing = True
        conn.scope.cancel()

    async def _watch_progress(self, conn: _Connection, ws: WebSocket) -> None:
        """Drop the connection if the hub takes none of our bytes for ``STALL_TIMEOUT``
        (``pacing.watch_progress``): its pings, pongs and answers would wait
        for ever (what is paced never fills ``SEND_BYTES``)."""

        def stalled(pending: int) -> None:
            log.warning("the hub took none of the %d bytes waiting for it in %g s; "
                        "reconnecting", pending, STALL_TIMEOUT)
            conn.outbox.closing = True
            conn.scope.cancel()

        await watch_progress(ws, STALL_TIMEOUT, stalled)

    def _close_connection(self, reason: str) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            log.info("closing hub connection: %s", reason)
            if conn.ws is None:
                conn.scope.cancel()
            else:
                conn.outbox.close_after_flush(reason)
            conn.scope.deadline = min(conn.scope.deadline, trio.current_time() + 2)

    def _forget_agent(self, agent_id: str) -> None:
        self._agents.pop(agent_id, None)

    # --- container connections ------------------------------------------------------

    @asynccontextmanager
    async def _connect(self, ref: ContainerReference) -> AsyncIterator[ContainerConnection]:
        """``ref.connect()``: straight to the agent's endpoint if it has one, else the hub."""
        endpoint = ref.record.endpoint
        if endpoint:
            ws = await open_endpoint(endpoint, ssl_context=self.ssl_context, spawn=self.spawn)
            if ws is not None:
                async with run_direct_connection(ref, ws, self.client_id,
                                                 self.max_unsent_request_bytes) as conn:
                    yield conn
                return
        async with self._open_via_hub(ref) as conn:
            yield conn

    @asynccontextmanager
    async def _open_via_hub(self, ref: ContainerReference
                            ) -> AsyncIterator[ContainerConnection]:
        conn = ContainerConnection(ref, None)
        uuid = ref.uuid
        listeners = self._push_listeners.setdefault(uuid, {})
        listeners[id(conn)] = conn
        try:
            await self._wait(self.session.connect_container(ref.ref_id))
            yield conn
        finally:
            listeners.pop(id(conn), None)
            if not listeners:
                self._push_listeners.pop(uuid, None)
            conn.end_events()
            self.session.disconnect_container(uuid)
            self._drain()

    def _fire(self, now: float) -> None:
        self.session.handle_timers(now)
        self._drain()

    def _oversized(self, message: Message, size: int) -> None:
        """A message for the hub is too large for any frame: see ``limits.refusal``."""
        refused = refusal(message, size, MAX_FRAME_BYTES)
        log.warning("%s; not sent to the hub", refused.text)
        conn = self._conn
        if refused.send is not None and conn is not None:
            conn.outbox.put_nowait(refused.send)
        if refused.answer is not None:
            self.session.receive(refused.answer, trio.current_time())
        self._drain()

    # --- the connection -------------------------------------------------------------

    def _dial_order(self, redirect: str | None) -> Sequence[str]:
        """Return the hubs to dial, first to last: a standby's redirect, else the
        next of the list, then the rest of the list from there.

        The list is walked round-robin, so after the active hub fails the
        next attempt starts with another hub.
        """
        urls = self.urls
        if redirect is not None:
            first = redirect
            if first in urls:
                self._next_url = urls.index(first) + 1
        else:
            first = urls[self._next_url % len(urls)]
            self._next_url += 1
        self.hub_url = first
        start = self._next_url % len(urls)
        return [first, *(u for u in urls[start:] + urls[:start] if u != first)]

    async def _run_connection(self, urls: Sequence[str]) -> None:
        conn = _Connection(self._oversized, self.max_unsent_request_bytes)
        self._conn = conn
        try:
            with conn.scope:
                ws = await self._dial(urls)
                if ws is None:
                    return
                conn.ws = conn.pacer.ws = ws
                if self._conn is not conn:
                    return
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(conn.outbox.run_writer, ws)
                    nursery.start_soon(conn.pacer.run, ws, lambda: self._give_up(conn))
                    nursery.start_soon(self._watch_progress, conn, ws)
                    self.session.connection_made(trio.current_time())
                    self._drain()
                    await self._read(ws)
                    nursery.cancel_scope.cancel()
        except Exception as exc:
            # A bug meeting the hub's input ends this connection only: the
            # session reconnects, and the client's other tasks carry on.
            log.error("hub connection failed: %r", exc)
            if conn.ws is not None:
                conn.ws.close_nowait(1011, "internal error")
        finally:
            if conn.ws is not None:
                conn.ws.abort()
            conn.done.set()
            if self._conn is conn:
                self._conn = None
                self.session.connection_lost(trio.current_time())
                self._drain()

    async def _dial(self, urls: Sequence[str]) -> WebSocket | None:
        """Connect to the first hub of ``urls`` that answers; returns its WebSocket.

        ``urls[0]`` is dialled first; each next one ``STAGGER_DELAY`` later,
        or at once when every attempt so far failed (happy eyeballs, as
        ``trio.open_tcp_stream`` does for addresses).  The first WebSocket
        open wins (``hub_url`` names it) and every other attempt is
        cancelled or closed.  Returns None when all failed (logged).
        """
        if len(urls) == 1:
            # One hub: no race to run (and no scheduling point between the
            # upgrade and the session's hello).
            result = await self._open_ws(urls[0])
            if isinstance(result, str):
                self._connect_log.failed(trio.current_time(), result)
                return None
            self.hub_url = urls[0]
            self._connect_log.succeeded(trio.current_time())
            return result
        failures: builtins.list[str] = []
        won: builtins.list[tuple[str, WebSocket]] = []
        try:
            async with trio.open_nursery() as nursery:
                for url in urls:
                    failed = trio.Event()
                    nursery.start_soon(self._attempt, url, won, failures, failed,
                                       nursery.cancel_scope)
                    with trio.move_on_after(STAGGER_DELAY):
                        await failed.wait()
        except BaseException:
            # Cancelled (the client closes) after a hub answered: nobody
            # else will close the winner's socket.
            for _, ws in won:
                ws.abort()
            raise
        if not won:
            self._connect_log.failed(trio.current_time(), "; ".join(failures))
            return None
        url, ws = won[0]
        self.hub_url = url
        if url in self.urls:
            self._next_url = self.urls.index(url) + 1
        self._connect_log.succeeded(trio.current_time())
        return ws

    async def _attempt(self, url: str, won: builtins.list[tuple[str, WebSocket]],
                       failures: builtins.list[str], failed: trio.Event,
                       race: trio.CancelScope) -> None:
        """One attempt of ``_dial``: the winner ends the race, a loser's socket is closed."""
        ws = await self._open_ws(url)
        if isinstance(ws, str):
            failures.append(ws)
            failed.set()
            return
        if won:
            ws.abort()  # another hub answered first
            return
        won.append((url, ws))
        race.cancel()

    async def _open_ws(self, url: str) -> WebSocket | str:
        """Open a WebSocket to ``url``; returns it, or why it failed (a log line)."""
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                return await connect_wss(url, max_message_size=MAX_FRAME_BYTES,
                                         ssl_context=self.ssl_context, spawn=self.spawn)
        except (OSError, HandshakeError, ValueError, trio.TooSlowError) as exc:
            # ValueError: a redirect to a URL this client cannot dial.
            reason = (f"no answer within {CONNECT_TIMEOUT:g} s"
                      if isinstance(exc, trio.TooSlowError) else str(exc) or repr(exc))
            if len(self.urls) > 1 or url != self.urls[0]:
                reason = f"{url}: {reason}"
            return reason

    async def _read(self, ws: WebSocket) -> None:
        session = self.session
        while True:
            try:
                frames = await ws.receive()
            except WebSocketClosed:
                return
            now = trio.current_time()
            for data in frames:
                for message in received_messages(data, "the hub"):
                    session.receive(message, now)
            self._drain()

    # --- shutdown -----------------------------------------------------------------------

    async def _shutdown(self) -> None:
        """Unregister hosted agents (terminating their containers), say Close, stop."""
        with trio.move_on_after(5):
            for runtime in list(self._agents.values()):
                await runtime.aclose()
        self.session.close(trio.current_time())
        conn = self._conn
        self._drain()
        if conn is not None:
            with trio.move_on_after(1):
                await conn.done.wait()
        for runtime in list(self._agents.values()):
            runtime.cancel()


class ContainerReference:
    """A held container (from ``client.get``); follows it across failover and reconnects."""

    def __init__(self, client: Client, ref_id: int, kind: str, record: ContainerRecord) -> None:
        self._client = client
        self.ref_id = ref_id
        self.kind = kind
        self._record = record

    @property
    def record(self) -> ContainerRecord:
        """Return the container's latest known record."""
        current = self._client.session.reference(self.ref_id)
        if current is not None:
            self._record = current
        return self._record

    @property
    def uuid(self) -> str:
        """Return the container's uuid (it changes if a no-uuid get re-keyed it)."""
        return self.record.uuid

    async def request(self, operation: str, data: Any = None) -> Any:
        """Call ``operation`` on the container through the hub; returns the decoded result.

        Survives reconnects and failover (at-least-once: a request without an
        answer is resent).

        Raises:
            RemoteError: the container raised (type name and message kept).
            ContainerNotFound: the reference was released meanwhile.
            ConnectionClosed: the client closed.
            LocalProtocolError: the reference is released.
        """
        handle = self._client.session.request(self.ref_id, operation, encode_payload(data))
        payload: bytes = await self._client._wait(handle)
        return decode_payload(payload)

    async def release(self) -> None:
        """Drop this reference; the container is orphaned once nobody holds it.

        Raises:
            LocalProtocolError: if already released.
        """
        self._client._refs.pop(self.ref_id, None)
        await self._client._wait(self._client.session.release(self.ref_id))

    def connect(self) -> AbstractAsyncContextManager[ContainerConnection]:
        """Return an async context manager yielding a ``ContainerConnection``.

        With an agent endpoint the connection goes straight to the agent (the
        reference's "routed" path); otherwise through the hub ("noconnect").
        """
        return self._client._connect(self)

    def cast(self, interface: type[T], *, qualified: bool = False) -> T:
        """Return a proxy whose method calls become requests named after the method.

        ``proxy.add(1, 2)`` is ``request("add", [1, 2])`` (``"Iface.add"`` with
        ``qualified=True``).  Dunder names are never proxied, so awaiting or
        printing the proxy does not send anything.
        """
        proxy: Any = _Proxy(self, f"{interface.__name__}." if qualified else "")
        return proxy  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<ContainerReference {self.kind} {self.uuid}>"


class _Proxy:
    __slots__ = ("_prefix", "_ref")

    def __init__(self, ref: ContainerReference, prefix: str) -> None:
        self._ref = ref
        self._prefix = prefix

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("__") or name.startswith("_"):
            raise AttributeError(name)
        ref, operation = self._ref, self._prefix + name

        async def call(*args: Any) -> Any:
            return await ref.request(operation, list(args))

        call.__name__ = name
        return call


@asynccontextmanager
async def open_client(url: str, *, client_id: str | None = None,
                      alive_timeout: float | None = None,
                      backoff: Backoff = RECONNECT_BACKOFF,
                      seed: int | None = None,
                      events: str = "all",
                      token: str | None = None,
                      ca: str | None = None,
                      ssl_context: ssl.SSLContext | None = None,
                      max_unsent_request_bytes: int = UNSENT_REQUEST_BYTES,
                      ) -> AsyncIterator[Client]:
    """Connect to the hub at ``url`` for the duration of the ``async with`` block.

    Returns at once (the connection is made in the background and remade
    forever with backoff); calls made before the hub answers wait for it.
    ``await client.wait_connection()`` waits for the first welcome.
    ``alive_timeout`` asks the hub for this client's own alive timeout;
    ``backoff`` paces reconnects; ``seed`` fixes the jitter.  ``events``
    chooses the registry events this client receives: ``"all"`` (default;
    ``updates()`` sees every change) or ``"own"`` (agent changes and changes
    to its own containers only: enough to follow its references, and cheap
    for the hub with many clients).  ``token`` is the credential presented
    in every hello, for a hub that requires one (``serve --auth``).  A refused
    credential is final: the client stops reconnecting, every call fails
    with ``AuthenticationError``, the ``async with`` body is cancelled and
    ``open_client`` raises ``AuthenticationError``.  A ``wss://``
    ``url`` is reached over TLS: its certificate is checked against ``ca``
    (a PEM bundle; default: the system's CAs), or ``ssl_context`` is used
    as it is (``tls.client_ssl_context(ca, cert=..., key=...)`` for a hub
    that requires a client certificate).  On exit,
    hosted agents are unregistered and their containers terminated, and the
    hub is told ``Close``.

    Requests never pile up for the hub: ``ref.request`` sends at once while
    fewer than ``max_unsent_request_bytes`` (8 MiB) of requests wait to be
    taken by the kernel; beyond it each further request waits, in order,
    for room (a request larger than the bound goes alone).  Resends after a
    reconnect wait the same way, and so do ``get`` calls (sized by their
    ``extra``), the answers of agents this client hosts (under the same
    bound) and requests on direct connections (``ref.connect()``, each
    under its own bound of this size).  The call returns when answered either
    way; a call cancelled while it waits is never sent.

    ``url`` may list several hubs, ``"ws://a:3737,ws://b:3737"`` (an active
    hub and its standbys, docs/high-availability.md): the client follows a
    standby's redirect at once and otherwise tries the next hub of the list
    on each reconnect.

    Raises:
        ValueError: ``url`` is not a ``ws://`` URL or a comma-separated list
            of them (the message names the bad element).
        AuthenticationError: the hub refused ``token`` (see above).
    """
    if ssl_context is None and ca is not None:
        ssl_context = client_ssl_context(ca)
    if not max_unsent_request_bytes > 0:
        raise ValueError(f"max_unsent_request_bytes must be > 0, got {max_unsent_request_bytes}")
    parse_hub_urls(url)
    session = ClientSession(client_id if client_id is not None
                            else f"client-{secrets.token_hex(4)}",
                            rng=random.Random(seed), alive_timeout=alive_timeout,
                            backoff=backoff, events=events, credentials=token,
                            first_call_id=secrets.randbits(CALL_ID_OFFSET_BITS))
    with single_errors():
        async with trio.open_nursery() as nursery:
            client = Client(url, session, nursery, ssl_context, max_unsent_request_bytes)
            client.spawn(client._timer.run)
            session.connect(trio.current_time())
            client._drain()
            try:
                with client._body_scope:
                    yield client
            finally:
                with trio.CancelScope(shield=True):
                    await client._shutdown()
                client._cancel_tasks()
                nursery.cancel_scope.cancel()
    if client._body_scope.cancelled_caught and session.closed_by is not None:
        raise session.closed_by

