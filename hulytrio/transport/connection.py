"""``ref.connect()``: an event stream (and request path) to one container.

Two paths, chosen by the container's record (``ContainerReference.connect``
in ``client.py`` chooses):

- the record has an endpoint (its agent runs its own server): a WebSocket
  straight to the agent, driven by the core ``EndpointClient``; requests on
  the connection and the container's broadcasts bypass the hub (the
  reference's "routed" endpoint).  This module: ``open_endpoint`` and
  ``run_direct_connection``;
- no endpoint ("noconnect"): the hub relays the stream (``Connect`` /
  ``Push`` / ``Disconnect`` through the client session); requests go
  through the hub like ``ref.request``.  The client driver runs it and
  feeds the ``ContainerConnection`` through ``push_nowait`` / ``end_events``.

If the agent's endpoint cannot be reached, the hub path is used instead.

A direct connection paces its requests as the hub connection does
(``pacing.RequestPacer``): at most ``request_budget`` bytes of them wait for
the endpoint, the rest wait for room, so a burst of large requests is never
buffered whole; an endpoint that takes none of our bytes for
``pacing.STALL_TIMEOUT`` is dropped (its calls fail ``ConnectionClosed``),
and one that lets more than ``DIRECT_SEND_BYTES`` pile up is dropped too.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol, assert_never

import trio

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
    StreamEnded,
)
from hulytrio.core.endpoint import EndpointClient, EndpointState
from hulytrio.core.errors import ConnectionClosed
from hulytrio.core.messages import Cancel, Message, Request

from ..wire.codec import (
    MAX_FRAME_BYTES,
    WireError,
    decode_frame_lenient,
    decode_payload,
    encode_payload,
)
from .deadlines import DeadlineTask
from .errors import single_errors
from .limits import refusal
from .outbox import Outbox
from .pacing import STALL_TIMEOUT, RequestPacer, watch_progress
from .tls_relay import connect_wss
from .waiter import Waiter
from .websocket import HandshakeError, WebSocket, WebSocketClosed

__all__ = [
    "ConnectionTarget",
    "ContainerConnection",
    "ContainerEvents",
    "open_endpoint",
    "received_messages",
    "run_direct_connection",
]

log = logging.getLogger("hulytrio.client")

#: Container events buffered per connection; beyond it new events are dropped (logged).
EVENTS_BUFFER = 10_000
#: Messages one direct connection may queue in one round, and bytes it keeps
#: for an endpoint that does not read, before it counts as dead.  Its requests
#: never fill them (they wait for room: ``RequestPacer``).
DIRECT_SEND_QUEUE = 100_000
DIRECT_SEND_BYTES = 4 * MAX_FRAME_BYTES


def received_messages(data: bytes | str, source: str) -> list[Message]:
    """Return the messages of one frame a client received from ``source`` (for logs).

    What cannot be used is logged and dropped: a text frame, an undecodable
    frame, each undecodable message (the rest of its frame is kept).
    """
    if isinstance(data, str):
        log.warning("text frame from %s; ignored", source)
        return []
    try:
        messages, errors = decode_frame_lenient(data)
    except WireError as exc:
        log.warning("undecodable frame from %s: %s", source, exc)
        return []
    for err in errors:
        log.warning("undecodable message from %s: %s", source, err)
    return messages


class ConnectionTarget(Protocol):
    """The container a connection is to (a ``ContainerReference``)."""

    @property
    def uuid(self) -> str:
        """Return the container's uuid (it may change while the reference follows it)."""
        ...

    async def request(self, operation: str, data: Any = None) -> Any:
        """Call ``operation`` through the hub; returns the decoded result."""
        ...


class ContainerConnection:
    """An open connection to one container: ``request`` and ``events()``."""

    def __init__(self, ref: ConnectionTarget, direct: _Direct | None) -> None:
        self._ref = ref
        self._direct = direct
        self._tx, self._rx = trio.open_memory_channel[bytes](EVENTS_BUFFER)

    @property
    def uuid(self) -> str:
        """Return the uuid of the connected container."""
        return self._ref.uuid

    @property
    def direct(self) -> bool:
        """Return whether the connection goes straight to the agent's endpoint."""
        return self._direct is not None

    async def request(self, operation: str, data: Any = None) -> Any:
        """Call ``operation`` on the container; returns the decoded result.

        Raises:
            RemoteError: the container raised.
            ContainerNotFound: the container is gone from this agent.
            ConnectionClosed: the direct connection closed.
        """
        if self._direct is None:
            return await self._ref.request(operation, data)
        return await self._direct.request(self._ref.uuid, operation, data)

    def events(self) -> ContainerEvents:
        """Return an async iterator of the container's broadcasts to this client, decoded.

        It ends when the connection closes, and on a direct connection also
        when the container stops on (or stops being served by) that agent:
        connect again to follow it to wherever it runs next.
        """
        return ContainerEvents(self._rx)

    def push_nowait(self, payload: bytes) -> None:
        """Hand one pushed event (encoded) to ``events()``; dropped (logged) when not read."""
        try:
            self._tx.send_nowait(payload)
        except trio.WouldBlock:
            log.warning("events of %s are not being read; event dropped", self.uuid)
        except trio.ClosedResourceError:
            pass

    def end_events(self) -> None:
        """End ``events()`` (the stream closed); events pushed later are dropped."""
        self._tx.close()


class ContainerEvents:
    """Async iterator of one connection's container events (decoded payloads)."""

    def __init__(self, rx: trio.MemoryReceiveChannel[bytes]) -> None:
        self._rx = rx

    def __aiter__(self) -> ContainerEvents:
        return self

    async def __anext__(self) -> Any:
        try:
            payload = await self._rx.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None
        return decode_payload(payload)


class _Direct:
    """The driver of one ``EndpointClient`` over a WebSocket."""

    def __init__(self, ws: WebSocket, machine: EndpointClient, request_budget: int) -> None:
        self.ws = ws
        self.machine = machine
        self.outbox = Outbox(DIRECT_SEND_QUEUE, max_bytes=DIRECT_SEND_BYTES,
                             oversized=self._oversized)
        self.pacer = RequestPacer(self.outbox, request_budget)
        self.pacer.ws = ws
        self.writer_done = trio.Event()
        self.slots: dict[int, Waiter] = {}
        self.conn: ContainerConnection | None = None
        #: wakes the machine to resend calls the agent answered ``Retry``
        self.deadlines = DeadlineTask(machine.next_deadline, self._fire)

    def _fire(self, now: float) -> None:
        self.perform(self.machine.handle_timers(now))

    def _oversized(self, message: Message, size: int) -> None:
        """A message is too large for any frame: see ``limits.refusal``."""
        refused = refusal(message, size, self.outbox.max_frame_bytes)
        log.warning("%s; not sent to the agent endpoint", refused.text)
        if refused.send is not None:
            self.outbox.put_nowait(refused.send)
        if refused.answer is not None:
            self.perform(self.machine.receive(refused.answer, trio.current_time()))

    def perform(self, effects: Sequence[EndpointEffect]) -> None:
        for effect in effects:
            match effect:
                case Send():
                    message = effect.message
                    kind = type(message)
                    if kind is Request:
                        sent = self.pacer.send(message)  # type: ignore[arg-type]
                    elif kind is Cancel and self.pacer.forget(message.id):  # type: ignore[attr-defined]
                        sent = True  # the request was held: the endpoint never saw it
                    else:
                        sent = self.outbox.put_nowait(message)
                    if not sent and not self.outbox.closing:
                        self.give_up(f"more than {DIRECT_SEND_QUEUE} messages queued")
                case Resolve() | Reject():
                    waiter = self.slots.get(effect.handle)
                    if waiter is not None:
                        waiter.set(effect)
                case CloseConnection():
                    self.outbox.close_after_flush(effect.reason)
                case DeliverPush():
                    if self.conn is not None:
                        self.conn.push_nowait(effect.payload)
                case StreamEnded():
                    if self.conn is not None:
                        self.conn.end_events()
                case RunRequest() | ConnectContainer() | DisconnectContainer() | CancelRequest():
                    pass  # the serving side's effects (EndpointSession); a client emits none
                case _:
                    assert_never(effect)

    async def wait(self, handle: int) -> Any:
        waiter = self.slots[handle] = Waiter()
        try:
            return await waiter.wait()
        except trio.Cancelled:
            if waiter.outcome is None:
                # The caller gave up: the agent stops the request (``Cancel``)
                # and the machine forgets the call instead of holding it.
                self.perform(self.machine.cancel(handle))
            raise
        finally:
            del self.slots[handle]

    async def request(self, uuid: str, operation: str, data: Any) -> Any:
        if self.machine.state is not EndpointState.OPEN:
            raise ConnectionClosed("the connection to the agent's endpoint is closed")
        handle, effects = self.machine.request(uuid, operation, encode_payload(data))
        self.perform(effects)
        payload: bytes = await self.wait(handle)
        return decode_payload(payload)

    def give_up(self, why: str) -> None:
        """The endpoint does not take what we send: drop the connection (its calls fail)."""
        log.warning("dropping the direct connection to %s: %s", self.ws.remote, why)
        self.outbox.closing = True
        self.ws.abort()

    async def run_writer(self) -> None:
        try:
            await self.outbox.run_writer(self.ws)
        finally:
            self.pacer.drop_held()
            self.writer_done.set()

    async def run_pacer(self) -> None:
        """Release held requests as the endpoint takes our bytes; drop it if it takes none."""

        def stalled(pending: int) -> None:
            self.give_up(f"it took none of the {pending} bytes waiting for it in "
                         f"{STALL_TIMEOUT:g} s")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_progress, self.ws, STALL_TIMEOUT, stalled)
            await self.pacer.run(self.ws, lambda: self.give_up(
                f"more than {DIRECT_SEND_QUEUE} messages queued"))
            nursery.cancel_scope.cancel()

    async def run_reader(self) -> None:
        try:
            await self._read()
        except Exception as exc:
            # A bug meeting the endpoint's input ends this connection only:
            # its calls fail with ConnectionClosed below.
            log.error("direct connection to %s failed: %r", self.ws.remote, exc)
            self.ws.close_nowait(1011, "internal error")
            self.ws.abort()
        self.perform(self.machine.connection_lost())
        if self.conn is not None:
            self.conn.end_events()

    async def _read(self) -> None:
        while True:
            try:
                frames = await self.ws.receive()
            except WebSocketClosed:
                return
            now = trio.current_time()
            armings = self.machine.timers.armings
            for data in frames:
                for message in received_messages(data, "an agent endpoint"):
                    self.perform(self.machine.receive(message, now))
            if self.machine.timers.armings != armings:
                self.deadlines.poke()


@asynccontextmanager
async def run_direct_connection(ref: ConnectionTarget, ws: WebSocket, client_id: str,
                                request_budget: int) -> AsyncIterator[ContainerConnection]:
    """Run a direct connection to ``ref``'s container over ``ws`` (from ``open_endpoint``).

    Yields the ``ContainerConnection`` once the endpoint accepted the stream;
    on exit disconnects and closes ``ws``.  At most ``request_budget`` bytes
    of requests wait for the endpoint at a time (see the module docstring).

    Raises:
        ContainerNotFound: the container does not serve there (any more).
        ConnectionClosed: the connection closed before the endpoint answered.
    """
    with single_errors():
        async with trio.open_nursery() as nursery:
            try:
                async with _run_direct(ref, ws, client_id, request_budget, nursery) as conn:
                    yield conn
            finally:
                ws.abort()
                nursery.cancel_scope.cancel()


@asynccontextmanager
async def _run_direct(ref: ConnectionTarget, ws: WebSocket, client_id: str,
                      request_budget: int, nursery: trio.Nursery
                      ) -> AsyncIterator[ContainerConnection]:
    direct = _Direct(ws, EndpointClient(client_id), request_budget)
    nursery.start_soon(direct.run_writer)
    nursery.start_soon(direct.run_pacer)
    nursery.start_soon(direct.run_reader)
    nursery.start_soon(direct.deadlines.run)
    try:
        direct.perform(direct.machine.hello())
        await direct.wait(0)
        conn = ContainerConnection(ref, direct)
        direct.conn = conn
        handle, effects = direct.machine.connect(ref.uuid)
        direct.perform(effects)
        await direct.wait(handle)
        yield conn
    finally:
        with trio.CancelScope(shield=True):
            direct.perform(direct.machine.disconnect(ref.uuid))
            direct.outbox.close_after_flush("done")
            with trio.move_on_after(1):
                await direct.writer_done.wait()


async def open_endpoint(url: str, *, ssl_context: ssl.SSLContext | None,
                        spawn: Callable[..., Any]) -> WebSocket | None:
    """Open a WebSocket to an agent's endpoint; returns it, or None (logged) if unreachable.

    A ``wss://`` endpoint is dialled with ``ssl_context`` (the one the client
    uses for the hub: same CA bundle, same client certificate) and relayed
    through ``spawn`` (``tls_relay.relay``); a certificate that does not
    verify is "unreachable" too, and the caller uses the hub instead.
    """
    try:
        with trio.fail_after(5):
            return await connect_wss(url, max_message_size=MAX_FRAME_BYTES,
                                     ssl_context=ssl_context, spawn=spawn)
    except (OSError, ValueError, HandshakeError, trio.TooSlowError) as exc:
        log.warning("agent endpoint %s unreachable (%s); using the hub", url,
                    str(exc) or repr(exc))
        return None
