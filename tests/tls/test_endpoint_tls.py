"""wss:// on an agent's own endpoint: direct connections over TLS, and who is refused.

A client dials a ``wss://`` endpoint with the CA bundle (and client
certificate) it uses for the hub; a connection the TLS handshake refuses is
"unreachable", and ``ref.connect()`` goes through the hub instead.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio

import hulytrio
from hulytrio.core.errors import LocalProtocolError
from hulytrio.transport.tls import client_ssl_context, server_ssl_context
from hulytrio.transport.websocket import HandshakeError, connect_websocket


class Echo(hulytrio.Container):
    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        return {"data": data, "client": client_id}


async def start_echo(options: hulytrio.GetOptions) -> hulytrio.Container:
    return Echo()


async def direct(client: hulytrio.Client) -> tuple[bool, Any]:
    """Return whether ``ref.connect()`` went straight to the agent, and one answer."""
    ref = await client.get("echo")
    async with ref.connect() as conn:
        return conn.direct, await conn.request("op", [1, b"x" * 100_000])


async def test_a_tls_endpoint_serves_direct_connections(pki):
    with trio.fail_after(20):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as agent_side, \
                hulytrio.open_client(hub.url, ca=pki["ca"]) as client:
            agent = await agent_side.serve_agent(
                {"echo": start_echo}, agent_id="a-1", endpoint="127.0.0.1:0",
                endpoint_ssl_context=server_ssl_context(pki["cert"], pki["key"]))
            assert agent.endpoint is not None
            assert agent.endpoint.startswith("wss://127.0.0.1:")
            assert await direct(client) == (True, {"data": [1, b"x" * 100_000],
                                                   "client": client.client_id})


async def test_a_client_trusting_another_ca_is_refused_and_uses_the_hub(pki, caplog):
    caplog.set_level(logging.INFO)
    with trio.fail_after(20):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as agent_side, \
                hulytrio.open_client(hub.url, ca=pki["other_ca"]) as client:
            await agent_side.serve_agent(
                {"echo": start_echo}, agent_id="a-1", endpoint="127.0.0.1:0",
                endpoint_ssl_context=server_ssl_context(pki["cert"], pki["key"]))
            through_hub, answer = await direct(client)
            assert not through_hub
            assert answer["data"][0] == 1
    assert any("CERTIFICATE_VERIFY_FAILED" in r.getMessage() and "unreachable" in
               r.getMessage() for r in caplog.records), caplog.text


async def test_a_wrongly_certified_endpoint_is_refused(pki):
    # the endpoint presents a certificate another CA signed: a client
    # trusting the hub's CA does not talk to it
    with trio.fail_after(20):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as agent_side, \
                hulytrio.open_client(hub.url, ca=pki["ca"]) as client:
            await agent_side.serve_agent(
                {"echo": start_echo}, agent_id="a-1", endpoint="127.0.0.1:0",
                endpoint_ssl_context=server_ssl_context(pki["other_cert"], pki["other_key"]))
            assert (await direct(client))[0] is False


async def test_a_plain_peer_is_refused_by_a_tls_endpoint(pki, caplog):
    caplog.set_level(logging.INFO)
    with trio.fail_after(20):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as agent_side:
            agent = await agent_side.serve_agent(
                {"echo": start_echo}, agent_id="a-1", endpoint="127.0.0.1:0",
                endpoint_ssl_context=server_ssl_context(pki["cert"], pki["key"]))
            assert agent.endpoint is not None
            plain_url = "ws://" + agent.endpoint.removeprefix("wss://")
            with pytest.raises((HandshakeError, OSError)):
                await connect_websocket(plain_url, max_message_size=1 << 20)
    assert any("TLS handshake with agent a-1 endpoint" in r.getMessage()
               for r in caplog.records), caplog.text


async def test_mutual_tls_on_the_endpoint_refuses_a_client_without_a_certificate(pki):
    with trio.fail_after(20):
        context = server_ssl_context(pki["cert"], pki["key"], client_ca=pki["ca"])
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as agent_side:
            await agent_side.serve_agent({"echo": start_echo}, agent_id="a-1",
                                         endpoint="127.0.0.1:0", endpoint_ssl_context=context)
            async with hulytrio.open_client(hub.url, ca=pki["ca"]) as anonymous:
                assert (await direct(anonymous))[0] is False
            async with hulytrio.open_client(hub.url, ca=pki["ca"]) as intruder:
                intruder.ssl_context = client_ssl_context(pki["ca"], cert=pki["other_client"])
                assert (await direct(intruder))[0] is False
            with_cert = client_ssl_context(pki["ca"], cert=pki["client"])
            async with hulytrio.open_client(hub.url, ssl_context=with_cert) as client:
                assert (await direct(client))[0] is True


async def test_endpoint_tls_needs_an_endpoint(pki):
    with trio.fail_after(10):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url) as agent_side:
            with pytest.raises(LocalProtocolError, match="needs an endpoint"):
                await agent_side.serve_agent(
                    {"echo": start_echo}, agent_id="a-1",
                    endpoint_ssl_context=server_ssl_context(pki["cert"], pki["key"]))


def test_agent_tls_flags_without_an_endpoint_are_one_line_and_exit_2(pki, capsys):
    from hulytrio.cli import main

    assert main(["agent", "--factories", "x:Y", "--tls-cert", pki["cert"],
                 "--tls-key", pki["key"]]) == 2
    err = capsys.readouterr().err
    assert "--tls-cert is for the agent's endpoint: set --endpoint" in err, err
    assert err.count("\n") == 1, err
