"""wss:// end to end over loopback: hub, agent and client; refused peers make no session."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trustme

import hulytrio
from hulytrio.transport.tls import client_ssl_context, server_ssl_context


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    ca = trustme.CA()
    d = tmp_path_factory.mktemp("wss")
    server = ca.issue_cert("127.0.0.1", "localhost")
    paths = {"ca": d / "ca.pem", "cert": d / "server.pem", "key": d / "server.key",
             "client": d / "client.pem", "other_ca": d / "other.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    server.private_key_pem.write_to_path(str(paths["key"]))
    ca.issue_cert("client@example").private_key_and_cert_chain_pem.write_to_path(
        str(paths["client"]))
    trustme.CA().cert_pem.write_to_path(str(paths["other_ca"]))
    return {k: str(v) for k, v in paths.items()}


class Echo(hulytrio.Container):
    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        return data


async def start_echo(options: hulytrio.GetOptions) -> hulytrio.Container:
    return Echo()


async def test_wss_end_to_end(files):
    with trio.fail_after(20):
        context = server_ssl_context(files["cert"], files["key"])
        async with hulytrio.serve_network(port=0, ssl_context=context) as hub:
            assert hub.url.startswith("wss://")
            async with hulytrio.open_client(hub.url, ca=files["ca"]) as agent, \
                    hulytrio.open_client(hub.url, ca=files["ca"]) as client:
                await agent.serve_agent({"echo": start_echo}, agent_id="a-1")
                ref = await client.get("echo")
                big = b"x" * 300_000  # more than one TLS record and one relay read
                for i in range(5):
                    assert await ref.request("echo", [i, big]) == [i, big]


async def test_a_client_trusting_another_ca_is_refused(files):
    with trio.fail_after(20):
        context = server_ssl_context(files["cert"], files["key"])
        async with hulytrio.serve_network(port=0, ssl_context=context) as hub:  # noqa: SIM117
            async with hulytrio.open_client(hub.url, ca=files["other_ca"]) as client:
                with trio.move_on_after(1.5):
                    await client.wait_connection()
                assert client.session.welcomes == 0
                assert hub.hub.registry.clients() == ()


async def test_mutual_tls_refuses_a_client_without_a_certificate(files):
    with trio.fail_after(20):
        context = server_ssl_context(files["cert"], files["key"], client_ca=files["ca"])
        async with hulytrio.serve_network(port=0, ssl_context=context) as hub:
            async with hulytrio.open_client(hub.url, ca=files["ca"]) as anonymous:
                with trio.move_on_after(1.5):
                    await anonymous.wait_connection()
                assert anonymous.session.welcomes == 0
            with_cert = client_ssl_context(files["ca"], cert=files["client"])
            async with hulytrio.open_client(hub.url, ssl_context=with_cert) as client:
                await client.wait_connection()
                assert await client.list() == ()
