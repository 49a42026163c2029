"""The TLS relay closes every socket it owns, however it ends (tls_relay.py)."""

from __future__ import annotations

import functools
import ssl

import trio
import trustme

from hulytrio.transport.tls_relay import handshake, relay


async def test_a_cancelled_relay_closes_its_tls_socket() -> None:
    # The client ends its relays by cancelling them; before the fix the
    # cleanup's first checkpoint re-raised Cancelled and the TCP socket under
    # the TLS stream stayed open (a ResourceWarning at the next gc).
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    async def hold(stream: trio.SSLStream[trio.SocketStream]) -> None:
        async with stream:
            while await stream.receive_some():
                pass

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(trio.serve_ssl_over_tcp, host="127.0.0.1"), hold, 0,
                server_context)
            port = listeners[0].transport_listener.socket.getsockname()[1]
            tcp = await trio.open_tcp_stream("127.0.0.1", port)
            tls = trio.SSLStream(tcp, client_context, server_hostname="127.0.0.1")
            await handshake(tls, f"127.0.0.1:{port}")
            async with trio.open_nursery() as relays:
                plain = relay(relays.start_soon, tls)
                await plain.send_all(b"hello")
                await trio.sleep(0.05)
                relays.cancel_scope.cancel()
            assert tcp.socket.fileno() == -1, "the TLS socket was left open"
            await plain.aclose()
            nursery.cancel_scope.cancel()
