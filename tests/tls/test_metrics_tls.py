"""The separate metrics port (monitoring.metricsPort) over TLS when the hub serves wss://."""

from __future__ import annotations

import pytest
import trio

import hulytrio
from hulytrio.ops.commands import Access, _requests_forwarded
from hulytrio.transport.http import fetch
from hulytrio.transport.tls import client_ssl_context, server_ssl_context


async def test_the_metrics_port_speaks_https_with_the_hub_certificate(pki):
    with trio.fail_after(20):
        context = server_ssl_context(pki["cert"], pki["key"])
        async with hulytrio.serve_network(port=0, ssl_context=context, metrics_port=0) as hub:
            assert hub.metrics_port is not None
            url = f"https://127.0.0.1:{hub.metrics_port}"
            trusted = client_ssl_context(pki["ca"])
            status, body = await fetch(url, "/metrics", ssl_context=trusted)
            assert status == 200
            assert b"huly_requests_forwarded_total" in body
            status, _ = await fetch(url, "/health", ssl_context=trusted)
            assert status == 200
            # What ``hulytrio top`` reads, given the metrics port and the CA.
            assert await _requests_forwarded(url, Access(ssl_context=trusted)) == 0.0
            # Plain HTTP gets no answer; a client trusting another CA is refused.
            with pytest.raises((ValueError, OSError, trio.BrokenResourceError)):
                await fetch(f"http://127.0.0.1:{hub.metrics_port}", "/metrics")
            with pytest.raises(trio.BrokenResourceError):
                await fetch(url, "/metrics", ssl_context=client_ssl_context(pki["other_ca"]))
            # The network port is unchanged, and the hub still serves.
            status, _ = await fetch(hub.url, "/health", ssl_context=trusted)
            assert status == 200


async def test_without_tls_the_metrics_port_stays_plain_http():
    with trio.fail_after(20):
        async with hulytrio.serve_network(port=0, metrics_port=0) as hub:
            status, _ = await fetch(f"http://127.0.0.1:{hub.metrics_port}", "/metrics")
            assert status == 200
