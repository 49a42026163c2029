"""Listening TCP sockets made with the standard library only (no trio import).

``hulytrio serve`` binds its port before it imports trio and the hub: once
the port listens, the kernel completes the TCP handshake of every client
that reconnects, and their upgrade requests wait in the backlog until the
hub reads them, instead of being refused and retried after a backoff.
"""

from __future__ import annotations

import socket

__all__ = ["bind_listeners"]

#: Connections the kernel may hold before the hub accepts them (capped by somaxconn).
BACKLOG = 4096


def bind_listeners(host: str, port: int) -> list[socket.socket]:
    """Bind and listen on every address of ``host`` at ``port``; returns the sockets.

    ``host`` "" or "0.0.0.0" means every IPv4 interface; a name binds each of
    its addresses (as ``trio.open_tcp_listeners`` does).  ``port`` 0 picks a
    free port (the same one for every address is not guaranteed).

    Raises:
        OSError: if an address cannot be resolved or bound.
    """
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets
