"""hulytrio: the Huly Virtual Network on Trio.

The public API (see docs/tutorial.md)::

    async with hulytrio.serve_network(host="127.0.0.1", port=0) as hub:
        async with hulytrio.open_client(hub.url) as client:
            await client.serve_agent({"echo": start_echo})
            ref = await client.get("echo")
            print(await ref.request("hello", {"n": 1}))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hulytrio.core.errors import (
    AuthenticationError,
    ConnectionClosed,
    ContainerNotFound,
    Forbidden,
    HulyError,
    LocalProtocolError,
    NoAgentForKind,
    ProtocolError,
    RemoteError,
    RemoteProtocolError,
    Unauthorized,
)
from hulytrio.core.events import NetworkEvent
from hulytrio.core.timeouts import Timeouts
from hulytrio.core.types import AgentInfo, ClientInfo, ContainerRecord, GetOptions

if TYPE_CHECKING:
    from hulytrio.transport.agent import Agent
    from hulytrio.transport.client import Client, ContainerReference, Updates, open_client
    from hulytrio.transport.connection import ContainerConnection
    from hulytrio.transport.container import Broadcast, Container, Factory, StatelessContainer
    from hulytrio.transport.server import NetworkServer, serve_network

# The drivers import trio; ``import hulytrio.core`` (which runs this file)
# must not, so the driver names are resolved on first use (PEP 562).
_LAZY = {
    "Agent": "hulytrio.transport.agent",
    "Client": "hulytrio.transport.client",
    "ContainerReference": "hulytrio.transport.client",
    "Updates": "hulytrio.transport.client",
    "open_client": "hulytrio.transport.client",
    "ContainerConnection": "hulytrio.transport.connection",
    "Broadcast": "hulytrio.transport.container",
    "Container": "hulytrio.transport.container",
    "Factory": "hulytrio.transport.container",
    "StatelessContainer": "hulytrio.transport.container",
    "NetworkServer": "hulytrio.transport.server",
    "serve_network": "hulytrio.transport.server",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hulytrio' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "Agent",
    "AgentInfo",
    "AuthenticationError",
    "Broadcast",
    "Client",
    "ClientInfo",
    "ConnectionClosed",
    "Container",
    "ContainerConnection",
    "ContainerNotFound",
    "ContainerRecord",
    "ContainerReference",
    "Factory",
    "Forbidden",
    "GetOptions",
    "HulyError",
    "LocalProtocolError",
    "NetworkEvent",
    "NetworkServer",
    "NoAgentForKind",
    "ProtocolError",
    "RemoteError",
    "RemoteProtocolError",
    "StatelessContainer",
    "Timeouts",
    "Unauthorized",
    "Updates",
    "open_client",
    "serve_network",
]
