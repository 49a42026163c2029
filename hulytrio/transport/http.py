"""Plain HTTP on the WebSocket ports: health, readiness and metrics.

Theory of operation
-------------------
Operators probe a hub with ``curl -f http://host:3737/health`` (the seed's
compose healthcheck) on the same port clients open WebSockets on.  The
WebSocket driver reads the HTTP head of every new connection itself
(``websocket._read_handshake``); before handing it to wsproto it offers the
head to an ``HttpRoutes`` (the ``http=`` hook of ``accept_websocket``).  A
request that asks for a WebSocket upgrade is left alone (``answer`` returns
None); any other request gets a complete HTTP/1.1 response with
``Content-Length`` and ``Connection: close``, and the connection is closed.

The same routes serve a separate metrics port (``serve_http``, the seed's
``monitoring.metricsPort``), where no WebSocket is accepted; over TLS
(``https://``) when the hub serves ``wss://``, with the same context.

Routes are plain callables returning ``(status, content type, body)``; they
run in the connection's task and must not block (they read counters).
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import urlsplit

import h11
import trio

__all__ = [
    "HttpRoutes",
    "Reply",
    "agent_routes",
    "fetch",
    "json_reply",
    "serve_http",
]

log = logging.getLogger("hulytrio.http")

#: ``(status, content type, body)`` of one answer.
Reply = tuple[int, str, bytes]
#: Largest request head read on the metrics port.
MAX_HEAD_BYTES = 16 * 1024
#: Seconds a metrics-port client has to send its request.
HEAD_TIMEOUT = 10.0


def json_reply(status: int, body: Mapping[str, Any]) -> Reply:
    """Return a ``Reply`` carrying ``body`` as compact JSON."""
    return status, "application/json", json.dumps(body, separators=(",", ":")).encode()


def _response(status: int, content_type: str, body: bytes, *,
              extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    reason = HTTPStatus(status).phrase
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body))),
               ("Connection", "close"), *extra]
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return f"HTTP/1.1 {status} {reason}\r\n{lines}\r\n".encode("ascii") + body


class HttpRoutes:
    """GET routes answered on a WebSocket or metrics port (see module docstring)."""

    def __init__(self, routes: Mapping[str, Callable[[], Reply]]) -> None:
        self.routes = dict(routes)

    def answer(self, head: bytes) -> bytes | None:
        """Return the complete HTTP response to the request ``head``, or None.

        None means the request asks for a WebSocket upgrade: the caller
        carries on with the handshake.  A head h11 cannot parse gets 400; an
        unknown path 404; a method other than GET on a known path 405.
        Never raises on bad input.
        """
        conn = h11.Connection(h11.SERVER)
        try:
            conn.receive_data(head)
            request = conn.next_event()
        except h11.RemoteProtocolError as exc:
            return _response(400, "text/plain", f"bad request: {exc}\n".encode())
        if not isinstance(request, h11.Request):
            return _response(400, "text/plain", b"bad request: incomplete head\n")
        if any(name == b"upgrade" for name, _ in request.headers):
            return None
        path = urlsplit(request.target.decode("ascii", "replace")).path
        route = self.routes.get(path)
        if route is None:
            return _response(404, "text/plain", b"not found\n")
        if request.method != b"GET":
            return _response(405, "text/plain", b"method not allowed\n",
                             extra=(("Allow", "GET"),))
        try:
            status, content_type, body = route()
        except Exception:
            # A route reads counters; a bug there must cost one probe, not the hub.
            log.exception("HTTP route %s failed", path)
            return _response(500, "text/plain", b"internal error\n")
        return _response(status, content_type, body)


class AgentFacts(Protocol):
    """What an agent endpoint's ``/health`` reports (``AgentRuntime`` provides it)."""

    agent_id: str

    @property
    def container_count(self) -> int:
        """Containers running on the agent."""

    @property
    def direct_client_count(self) -> int:
        """Clients connected to the agent's own endpoint."""


def agent_routes(runtime: AgentFacts, started: float) -> HttpRoutes:
    """Return an agent endpoint's routes: ``/health`` and ``/ready``.

    ``started`` is the ``trio.current_time()`` the endpoint opened at.  The
    endpoint is ready while it serves: it answers requests for the
    containers it hosts whether or not its hub is reachable.
    """

    def health() -> Reply:
        return json_reply(200, {
            "status": "ok",
            "role": "agent",
            "agent_id": runtime.agent_id,
            "uptime": round(trio.current_time() - started, 3),
            "containers": runtime.container_count,
            "clients": runtime.direct_client_count,
        })

    def ready() -> Reply:
        return json_reply(200, {"ready": True, "role": "agent"})

    return HttpRoutes({"/health": health, "/ready": ready})


async def _read_head(stream: trio.abc.Stream) -> bytes:
    received = b""
    while b"\r\n\r\n" not in received:
        if len(received) > MAX_HEAD_BYTES:
            raise ValueError("request head too large")
        data = await stream.receive_some(MAX_HEAD_BYTES)
        if not data:
            raise ValueError("the peer closed before the end of its request")
        received += data
    return received[:received.index(b"\r\n\r\n") + 4]


async def _serve_one(routes: HttpRoutes, stream: trio.abc.Stream) -> None:
    try:
        with trio.fail_after(HEAD_TIMEOUT):
            if isinstance(stream, trio.SSLStream):
                await stream.do_handshake()
            head = await _read_head(stream)
            answer = routes.answer(head)
            if answer is None:
                answer = _response(400, "text/plain", b"no WebSocket on this port\n")
            await stream.send_all(answer)
    except (ValueError, OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
        # (a failed TLS handshake is a BrokenResourceError: a plain http://
        # client, a certificate the context refuses)
        log.info("HTTP request failed: %r", exc)
    finally:
        await trio.aclose_forcefully(stream)


async def serve_http(routes: HttpRoutes, host: str, port: int, *,
                     ssl_context: ssl.SSLContext | None = None,
                     task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``routes`` over HTTP on ``host:port`` until cancelled.

    With ``ssl_context`` (``tls.server_ssl_context``) over TLS only
    (``https://``; a plain request fails its handshake and is closed).
    Reports the bound port through ``task_status`` (use ``nursery.start``).

    Raises:
        OSError: if the address cannot be bound.
    """
    listeners = await trio.open_tcp_listeners(port, host=host or None)
    task_status.started(listeners[0].socket.getsockname()[1])

    async def handle(stream: trio.SocketStream) -> None:
        if ssl_context is None:
            await _serve_one(routes, stream)
        else:
            await _serve_one(routes, trio.SSLStream(stream, ssl_context, server_side=True))

    await trio.serve_listeners(handle, listeners)


async def fetch(url: str, path: str, *, ssl_context: ssl.SSLContext | None = None
                ) -> tuple[int, bytes]:
    """GET ``path`` from the host and port of ``url`` (``http://`` or ``ws://``).

    ``https://`` and ``wss://`` are fetched over TLS, the certificate checked
    with ``ssl_context`` (None: the system's CAs).  Returns the status code
    and the body.  Bound the wait with a trio timeout.

    Raises:
        ValueError: if ``url`` has no host, or the answer is not HTTP.
        OSError: if the connection fails.
        trio.BrokenResourceError: if the TLS handshake fails.
    """
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"expected an http:// or ws:// URL with a host, got {url!r}")
    secure = parts.scheme in ("https", "wss")
    port = parts.port or (443 if secure else 80)
    conn = h11.Connection(h11.CLIENT)
    stream: trio.abc.Stream = await trio.open_tcp_stream(parts.hostname, port)
    if secure:
        stream = trio.SSLStream(stream, ssl_context or ssl.create_default_context(),
                                server_hostname=parts.hostname)
    async with stream:
        await stream.send_all(conn.send(h11.Request(
            method="GET", target=path,
            headers=[("Host", f"{parts.hostname}:{port}"), ("Connection", "close")])))
        await stream.send_all(conn.send(h11.EndOfMessage()))
        status = 0
        body = b""
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise ValueError(f"not an HTTP answer from {url}: {exc}") from exc
            if event is h11.NEED_DATA:
                conn.receive_data(bytes(await stream.receive_some(64 * 1024)))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return status, body
