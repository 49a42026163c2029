"""hulytrio: the Huly Virtual Network on Trio.

The public API (see docs/tutorial.md)::

    async with hulytrio.serve_network(host="127.0.0.1", port=0) as hub:
        async with hulytrio.open_client(hub.url) as client:
            await client.serve_agent({"echo": start_echo})
            ref = await client.get("echo")
            print(await ref.request("hello", {"n": 1}))
"""

from __future__ import annotations

from hulytrio.core.errors import (
    ConnectionClosed,
    ContainerNotFound,
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
from hulytrio.core.types import AgentInfo, ContainerRecord, GetOptions
from hulytrio.transport.agent import Agent
from hulytrio.transport.client import Client, ContainerReference, Updates, open_client
from hulytrio.transport.connection import ContainerConnection
from hulytrio.transport.container import Broadcast, Container, Factory, StatelessContainer
from hulytrio.transport.server import NetworkServer, serve_network

__all__ = [
    "Agent",
    "AgentInfo",
    "Broadcast",
    "Client",
    "ConnectionClosed",
    "Container",
    "ContainerConnection",
    "ContainerNotFound",
    "ContainerRecord",
    "ContainerReference",
    "Factory",
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
