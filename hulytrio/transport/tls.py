"""TLS settings for ``wss://``: the hub's and an agent endpoint's server side, a peer's client side.

Built on the standard library's ``ssl`` (trio wraps sockets in
``trio.SSLStream`` with these contexts).  Defaults are the library's secure
ones (``create_default_context``: TLS 1.2 or later, certificate and host name
checks); mutual TLS is on when the server is given a client CA: a peer
without a certificate signed by it is refused during the handshake.
"""

from __future__ import annotations

import os
import ssl

__all__ = ["TlsError", "client_ssl_context", "server_ssl_context"]


class TlsError(Exception):
    """A TLS setting is unusable; the message names the file and why."""


def server_ssl_context(cert: str, key: str | None = None, *,
                       client_ca: str | None = None) -> ssl.SSLContext:
    """Return a server context with ``cert`` (PEM chain) and ``key`` (PEM; None: in ``cert``).

    ``client_ca``: a PEM bundle; peers must then present a certificate it
    signed (mutual TLS).  Raises ``TlsError`` naming the file that is
    missing, unreadable or does not match.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for option, path in (("--tls-cert", cert), ("--tls-key", key)):
        # ssl's own error does not name the file
        if path is not None and not os.path.isfile(path):
            raise TlsError(f"{option} {path}: no such file")
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise TlsError(f"--tls-cert {cert} / --tls-key {key or cert}: not a certificate "
                       f"and its private key ({exc.reason})") from None
    except OSError as exc:
        raise TlsError(f"--tls-cert/--tls-key: {exc.filename}: {exc.strerror}") from None
    if client_ca is not None:
        _load_ca(context, client_ca, "--tls-client-ca")
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_ssl_context(ca: str | None = None, *, cert: str | None = None,
                       key: str | None = None) -> ssl.SSLContext:
    """Return a client context trusting ``ca`` (PEM bundle; None: the system's CAs).

    ``cert``/``key``: this peer's own certificate, for a hub that requires
    mutual TLS.  Raises ``TlsError`` naming an unusable file.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca is not None:
        _load_ca(context, ca, "--tls-ca")
    if cert is not None:
        if not os.path.isfile(cert):
            raise TlsError(f"client certificate {cert}: no such file")
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise TlsError(f"client certificate {cert}: {exc}") from None
    return context


def _load_ca(context: ssl.SSLContext, path: str, option: str) -> None:
    try:
        context.load_verify_locations(cafile=path)
    except FileNotFoundError:
        raise TlsError(f"{option} {path}: no such file") from None
    except ssl.SSLError as exc:
        raise TlsError(f"{option} {path}: not a PEM certificate bundle ({exc.reason})") from None
    except OSError as exc:
        raise TlsError(f"{option} {path}: {exc.strerror}") from None
