"""The list of hubs a peer may dial: ``ws://a:3737,ws://b:3737``.

With standby hubs on a lease (docs/high-availability.md) a client or agent
is given every hub; the driver dials one, follows a standby's redirect to
the active one, and otherwise moves on to the next after a failure.  Pure
parsing, shared by ``open_client`` and the configuration.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["parse_hub_urls"]


def parse_hub_urls(text: str) -> tuple[str, ...]:
    """Return the hub URLs of a comma-separated list, in order, without repeats.

    Each element must be ``ws://HOST[:PORT][/path]`` (or ``wss://`` for TLS)
    with a port in 1..65535 (none: 80, or 443 for ``wss``); spaces around
    commas are ignored.

    Raises:
        ValueError: one line naming the first bad element, its position and
            what is expected (an empty list, an empty element, another
            scheme, no host, a bad port).
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("no hub URL given: expected ws://HOST:PORT[,ws://HOST:PORT...]")
    urls: list[str] = []
    elements = text.split(",")
    for position, raw in enumerate(elements, 1):
        url = raw.strip()
        where = f"hub URL {position} of {len(elements)}" if len(elements) > 1 else "hub URL"
        if not url:
            raise ValueError(f"{where} is empty in {text!r}: expected "
                             f"ws://HOST:PORT[,ws://HOST:PORT...]")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ValueError(f"{where} {url!r}: the port is not a number in 1..65535"
                             ) from None
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"{where} {url!r}: expected ws://HOST:PORT (or wss://)")
        if port == 0:
            raise ValueError(f"{where} {url!r}: the port is not a number in 1..65535")
        if url not in urls:
            urls.append(url)
    return tuple(urls)
