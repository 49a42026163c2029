"""A hub on loopback with a healthy pair: a client hosting an agent, and a caller.

The transport tests that run an attack or abandon calls beside a pair that
must keep working (tests/transport/test_peer_limits.py, test_cancel_calls.py)
start from here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import pytest
import trio

import hulytrio
from hulytrio.transport.limits import EndpointLimits
from hulytrio.transport.websocket import WebSocket


class Stuck(hulytrio.Container):
    """Answers ``op`` at once; ``hang`` never returns (until cancelled)."""

    def __init__(self) -> None:
        self.running = 0
        self.cancelled = 0

    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        if operation != "hang":
            return data
        self.running += 1
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1


class HubPair(NamedTuple):
    """What ``open_hub_pair`` yields."""

    hub: hulytrio.NetworkServer
    #: serves ``agent``
    host: hulytrio.Client
    caller: hulytrio.Client
    agent: hulytrio.Agent


@asynccontextmanager
async def open_hub_pair(factories: dict[str, hulytrio.Factory], *,
                        endpoint: str | None = None,
                        timeouts: hulytrio.Timeouts | None = None,
                        endpoint_limits: EndpointLimits | None = None
                        ) -> AsyncIterator[HubPair]:
    """Yield a hub on a free loopback port (with ``timeouts``) and two clients of it.

    ``host`` serves an agent of ``factories`` (with a direct endpoint at
    ``endpoint`` if given, under ``endpoint_limits``); ``caller`` has not called yet.  All of it is
    closed on exit.
    """
    async with hulytrio.serve_network(port=0, timeouts=timeouts) as hub, \
            hulytrio.open_client(hub.url) as host, hulytrio.open_client(hub.url) as caller:
        agent = await host.serve_agent(factories, endpoint=endpoint,
                                       endpoint_limits=endpoint_limits)
        yield HubPair(hub, host, caller, agent)


def count_overflows(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every connection dropped for the bytes it kept (``WebSocket._overflow``).

    Returns the list the dropped connections' remote addresses are appended to.
    """
    dropped: list[str] = []
    overflow = WebSocket._overflow

    def counting(ws: WebSocket) -> None:
        dropped.append(ws.remote)
        overflow(ws)

    monkeypatch.setattr(WebSocket, "_overflow", counting)
    return dropped
