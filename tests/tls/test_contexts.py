"""TLS contexts over real loopback sockets, with a throwaway CA made by trustme."""

from __future__ import annotations

import functools
import ssl

import pytest
import trio
import trustme

from hulytrio.transport.tls import TlsError, client_ssl_context, server_ssl_context


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def files(ca, tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("client@example")
    other_ca = trustme.CA()
    paths = {
        "ca": d / "ca.pem", "cert": d / "server.pem", "key": d / "server.key",
        "client": d / "client.pem", "other_ca": d / "other.pem",
        "other_client": d / "other-client.pem",
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    server.private_key_pem.write_to_path(str(paths["key"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(paths["client"]))
    other_ca.cert_pem.write_to_path(str(paths["other_ca"]))
    other_ca.issue_cert("intruder").private_key_and_cert_chain_pem.write_to_path(
        str(paths["other_client"]))
    return {k: str(v) for k, v in paths.items()}


async def exchange(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> bytes:
    """Return what the client read back from an echo over TLS on 127.0.0.1."""
    async def echo(stream: trio.SSLStream[trio.SocketStream]) -> None:
        try:
            await stream.send_all(await stream.receive_some())
        except trio.BrokenResourceError:
            pass
        finally:
            await trio.aclose_forcefully(stream)

    failure: Exception | None = None
    got = b""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_ssl_over_tcp, host="127.0.0.1"), echo, 0, server_ctx)
        port = listeners[0].transport_listener.socket.getsockname()[1]
        try:
            stream = await trio.open_ssl_over_tcp_stream("127.0.0.1", port,
                                                         ssl_context=client_ctx)
            async with stream:
                await stream.send_all(b"ping")
                got = await stream.receive_some()
        except trio.BrokenResourceError as exc:
            failure = exc
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return got


async def test_a_client_trusting_the_ca_talks_to_the_server(files):
    with trio.fail_after(10):
        got = await exchange(server_ssl_context(files["cert"], files["key"]),
                             client_ssl_context(files["ca"]))
    assert got == b"ping"


async def test_a_client_not_trusting_the_ca_is_refused(files):
    with trio.fail_after(10), pytest.raises(trio.BrokenResourceError) as info:
        await exchange(server_ssl_context(files["cert"], files["key"]),
                       client_ssl_context(files["other_ca"]))
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)


async def test_mutual_tls_accepts_a_client_certificate_from_the_ca(files):
    with trio.fail_after(10):
        got = await exchange(
            server_ssl_context(files["cert"], files["key"], client_ca=files["ca"]),
            client_ssl_context(files["ca"], cert=files["client"]))
    assert got == b"ping"


@pytest.mark.parametrize("client_cert", [None, "other_client"])
async def test_mutual_tls_refuses_a_client_without_a_good_certificate(files, client_cert):
    server = server_ssl_context(files["cert"], files["key"], client_ca=files["ca"])
    client = client_ssl_context(files["ca"],
                                cert=files[client_cert] if client_cert else None)
    with trio.fail_after(10):
        try:
            got = await exchange(server, client)
        except trio.BrokenResourceError:
            return  # refused during the handshake
    # TLS 1.3 may finish the client's side of the handshake before the server
    # refuses: then the connection ends instead of the echo.
    assert got == b""


@pytest.mark.parametrize(("args", "says"), [
    (("missing.pem", "missing.key"), "--tls-cert missing.pem: no such file"),
    (("{ca}", "{key}"), "not a certificate and its private key"),
])
def test_unusable_server_files_are_named(files, args, says):
    cert, key = (a.format(**files) for a in args)
    with pytest.raises(TlsError, match=says):
        server_ssl_context(cert, key)


def test_unusable_ca_files_are_named(files, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(TlsError, match=r"--tls-client-ca .*bad\.pem: not a PEM"):
        server_ssl_context(files["cert"], files["key"], client_ca=str(bad))
    with pytest.raises(TlsError, match=r"--tls-ca /no/such\.pem: no such file"):
        client_ssl_context("/no/such.pem")
