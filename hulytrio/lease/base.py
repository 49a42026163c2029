"""The lease interface every backend implements, and the URL that picks one.

Theory of operation: a hub that wants to be active calls ``campaign(holder)``,
which returns once this process holds the lease, with the ``Leadership`` it
won (a term number that only grows across holders).  While active it runs
``hold()``, which keeps the lease alive and raises ``LeaseLost`` the moment
it can no longer be sure it holds it; the hub must then stop acting as the
active hub at once (its term is over: agents and clients will refuse its
orders once a newer term is announced).  A clean stop calls ``resign()`` so a
standby takes over without waiting for the lease to expire.  ``leader()``
tells a standby who is active now, to redirect peers there.

``valid_until`` is the holder's own answer to "may I still act?": the trio
time (monotonic) until which this process may act as the holder by its own
clock.  ``hold()`` notices a lost lease by running, which a process paused
past its lease (SIGSTOP, a VM freeze) cannot do before its other tasks read
what waited in their sockets; the hub therefore compares ``valid_until``
with the clock before it hands out anything (``transport/server.py``) and
steps down without answering once it is past.
"""

from __future__ import annotations

import abc
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import attrs

__all__ = ["Leadership", "Lease", "LeaseError", "LeaseLost", "open_lease", "parse_lease_url"]

#: The default time a lease outlives its last keep-alive (etcd only).
DEFAULT_TTL = 5.0


class LeaseError(Exception):
    """The lease URL or its store is unusable; the message says which and why."""


class LeaseLost(Exception):
    """This process no longer holds the lease (expired, revoked or replaced)."""


@attrs.frozen
class Leadership:
    """A won campaign: ``term`` numbers it (only grows); ``holder`` is who won."""

    term: int
    holder: str


@attrs.frozen
class LeaseUrl:
    """A parsed ``--lease`` value: ``kind`` is "file" or "etcd"."""

    kind: str
    #: file: the lock file's path; etcd: the leader key.
    path: str
    #: etcd only: ``http://host:port`` of the JSON gateway.
    endpoint: str = ""


def parse_lease_url(url: str) -> LeaseUrl:
    """Return the parsed form of a ``--lease`` URL.

    Accepted: ``file:/abs/path``, ``file:///abs/path``, ``file:relative/path``
    and ``etcd://host:port/key/path`` (``etcd+https://`` for TLS).
    Raises ``LeaseError`` naming the value and what is allowed.
    """
    allowed = "file:PATH or etcd://HOST:PORT/KEY"
    if url.startswith("file:"):
        rest = url[len("file:"):]
        if rest.startswith("//"):
            parts = urlsplit(url)
            if parts.netloc not in ("", "localhost"):
                raise LeaseError(f"lease {url!r}: a file lease is local (no host); use {allowed}")
            rest = parts.path
        if not rest:
            raise LeaseError(f"lease {url!r}: no lock file path; use {allowed}")
        return LeaseUrl("file", rest)
    parts = urlsplit(url)
    if parts.scheme in ("etcd", "etcd+http", "etcd+https"):
        scheme = "https" if parts.scheme == "etcd+https" else "http"
        try:
            port = parts.port
        except ValueError:
            raise LeaseError(f"lease {url!r}: the port is not a number in 0-65535") from None
        if not parts.hostname:
            raise LeaseError(f"lease {url!r}: no etcd host; use {allowed}")
        key = parts.path.rstrip("/")
        if not key:
            raise LeaseError(f"lease {url!r}: no leader key after the host; use {allowed}")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return LeaseUrl("etcd", key, f"{scheme}://{host}:{port or 2379}")
    raise LeaseError(f"lease {url!r}: unknown kind; use {allowed}")


class Lease(abc.ABC):
    """One backend's campaign for one leader key (see the module's theory)."""

    #: The trio time until which this process may act as the holder by its
    #: own clock: -inf while it does not hold the lease, +inf for a lease
    #: that cannot expire while its holder lives (a file lock).  A backend
    #: with a TTL sets it to (when its last successful renewal was *sent*)
    #: + ttl - a margin for clock drift.
    valid_until: float = -math.inf

    @abc.abstractmethod
    async def campaign(self, holder: str) -> Leadership:
        """Wait until this process holds the lease; return the term it won.

        ``holder`` (this hub's URL) is recorded for ``leader()``.  Cancel the
        call to give up waiting.  Raises ``LeaseError`` only for a store that
        cannot be used at all (a permission error, not an unreachable etcd,
        which is retried and logged).
        """

    @abc.abstractmethod
    async def hold(self) -> None:
        """Keep the lease until cancelled; raise ``LeaseLost`` when it is lost.

        Never returns normally.
        """

    @abc.abstractmethod
    async def leader(self) -> str | None:
        """Return the holder recorded by the current (or last) leader, or None."""

    @abc.abstractmethod
    async def resign(self) -> None:
        """Give the lease up now, if held (a clean stop); never raises for a lost one."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release every resource (resigning first when still held)."""


@asynccontextmanager
async def open_lease(url: str, *, ttl: float = DEFAULT_TTL,
                     poll_interval: float | None = None) -> AsyncIterator[Lease]:
    """Yield the backend for ``url``; resign and release it on exit.

    ``ttl``: how long the lease outlives its last keep-alive (etcd; a file
    lock ends with its holder's process).  ``poll_interval``: how often a
    standby looks for a free lease (default: 10 ms for a file, ttl/10 capped
    at 50 ms for etcd: one small range request 20 times a second per standby,
    for a takeover within 50 ms of the key's end).  Raises ``LeaseError``
    for a malformed URL or ttl.
    """
    if not ttl > 0:
        raise LeaseError(f"lease ttl {ttl!r}: must be a number of seconds > 0")
    parsed = parse_lease_url(url)
    lease: Lease
    if parsed.kind == "file":
        from .filelock import FileLease
        lease = FileLease(parsed.path, poll_interval=poll_interval or 0.01)
    else:
        from .etcd import EtcdLease
        lease = EtcdLease(parsed.endpoint, parsed.path, ttl=ttl,
                          poll_interval=poll_interval or min(ttl / 10, 0.05))
    try:
        yield lease
    finally:
        await lease.aclose()
