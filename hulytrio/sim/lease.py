"""The leader lease of several simulated hubs: a store that grants terms.

Theory of operation
-------------------
The real hubs (``transport/leadership.py``) campaign for one lease in a
store, etcd or the kernel's file lock (``hulytrio/lease``).  Here the store
is a process of its own with the two semantics the hub supports:

- ``"ttl"`` (etcd): a grant lasts ``ttl`` after the last keep-alive the
  store answered; a holder that cannot renew loses it then, and the next
  campaign after the expiry wins the next term.  The store is checked
  lazily, at each request, as etcd's lessor revokes at expiry.
- ``"file"`` (an exclusive file lock): the lock is held until the holder
  process dies, and released at that instant (the kernel closes its file
  descriptor); a paused holder keeps it.  There are no keep-alives.

A grant's **term** is the previous term + 1 (etcd's revision, the counter
beside the lock file): terms only grow.  A campaign from the holder's own
campaign (same host, same campaign generation) is answered with the term it
already holds (a request repeated before the answer came back); from the
same host after it stepped down (a new generation) it is a campaign like any
other, as etcd's compare-and-set with a new lease id is.

The store can be **paused** (``lease-pause``): requests wait in its socket
buffers and are answered, in order, when it runs again, against the time
then (a revoked lease stays revoked).  Whether a request reaches the store
at all (a hub cut off from it) is the caller's business (``sim/hubs.py``).
"""

from __future__ import annotations

from typing import Literal

import attrs

__all__ = ["Grant", "LeaseStore"]


@attrs.frozen
class Grant:
    """The store's answer to a campaign or a keep-alive."""

    #: the term the asker holds now (0: it does not hold the lease)
    term: int
    #: the URL of whoever holds the lease now ("" if nobody)
    holder_url: str


class LeaseStore:
    """The lease store's state (see module docstring); the driver moves the messages."""

    def __init__(self, mode: Literal["ttl", "file"], ttl: float) -> None:
        self.mode = mode
        self.ttl = ttl
        #: the host holding the lease, and the campaign generation it won with
        self.holder: tuple[str, int] | None = None
        self.holder_url = ""
        #: the last term granted (0: none yet)
        self.term = 0
        #: ttl mode: the lease is free from this time on
        self.expires = 0.0
        self.paused = False
        #: every grant made: (time, host, term), in order (for the invariants and the trace)
        self.grants: list[tuple[float, str, int]] = []

    def _expire(self, now: float) -> None:
        if self.mode == "ttl" and self.holder is not None and now >= self.expires:
            self.holder = None
            self.holder_url = ""

    def campaign(self, host: str, generation: int, url: str, now: float) -> Grant:
        """Return the answer to ``host``'s campaign (generation ``generation``) at ``now``.

        The lease is granted with the next term when it is free; its holder's
        own repeated campaign gets the term it holds; anyone else learns the
        holder's URL.
        """
        self._expire(now)
        if self.holder is None:
            self.term += 1
            self.holder = (host, generation)
            self.holder_url = url
            self.expires = now + self.ttl
            self.grants.append((now, host, self.term))
            return Grant(self.term, url)
        if self.holder == (host, generation):
            return Grant(self.term, self.holder_url)
        return Grant(0, self.holder_url)

    def keep_alive(self, host: str, generation: int, now: float) -> bool:
        """Return whether ``host`` (generation ``generation``) still holds the lease; renew it."""
        self._expire(now)
        if self.holder != (host, generation):
            return False
        self.expires = now + self.ttl
        return True

    def holder_died(self, host: str) -> None:
        """``host``'s process is gone: a file lock is released at once (a TTL lease expires)."""
        if self.mode == "file" and self.holder is not None and self.holder[0] == host:
            self.holder = None
            self.holder_url = ""
