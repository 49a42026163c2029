"""Whether a stateless uuid survives an etcd takeover at once, or waits a window.

Theory of operation
-------------------
When the active hub dies (``kill -9``, a crashed host), two clocks race.
The agent that serves a stateless uuid fences itself *F* (0.9 x the alive
timeout *A*) after the last ping the dead hub answered, which is up to one
agent ping interval *P* (min(ping interval, *A*/3)) old when the hub dies:
it stops serving ``F - P`` after the death at the earliest.  The standby
takes over once etcd expires the dead hub's lease: up to the ttl after the
last keep-alive, + etcd's expiry check (every 0.5 s), + the standby's poll;
then the agent needs a reconnect and its welcome.  If the agent is still
serving when it re-registers, the new hub keeps it the owner at once; if it
fenced first, the uuid waits for the new hub's recovery window (one *A*
after its first session, docs/high-availability.md).  So the takeover of a
stateless uuid is fast when::

    ttl_etcd + EXPIRY_CHECK + poll + RECONNECT  <  0.9 A - P

``ttl_etcd`` is the ttl etcd really applies: whole seconds, and at least
its minimum (``ETCD_MIN_TTL``: 3/2 of its election timeout, rounded up; 2 s
with etcd's defaults).  Ordinary (not stateless) containers do not wait
either way.  A file lock frees at the holder's death (the standby polls every
10 ms): the relation always holds there.
"""

from __future__ import annotations

import math

import attrs

__all__ = ["ETCD_MIN_TTL", "EXPIRY_CHECK", "RECONNECT", "TakeoverTiming", "stateless_takeover"]

#: How often etcd's lessor revokes expired leases (its ``revokeExpiredLeases`` tick).
EXPIRY_CHECK = 0.5
#: etcd's smallest lease ttl with its default election timeout (1 s): 1.5 s,
#: granted as 2 (measured with Debian's etcd 3.4: a grant of 1 s answers
#: ``grantedTTL: 2``).
ETCD_MIN_TTL = 2.0
#: The agent's reconnect to the new active hub and its welcome: the capped
#: reconnect delay (113 ms) + a handshake and a round trip, on a LAN.
RECONNECT = 0.25
#: The agent's fence lease as a share of the alive timeout (``core/session.py``).
FENCE_SHARE = 0.9


@attrs.frozen
class TakeoverTiming:
    """The race of ``stateless_takeover``; ``fast`` says who wins."""

    #: the lease ttl etcd applies (whole seconds, at least its minimum)
    ttl: float
    #: seconds from the holder's death until the standby is active and the
    #: owner has reconnected to it, at the worst
    takeover: float
    #: seconds from the holder's death until the owner fences, at the earliest
    fences: float
    #: the smallest alive timeout (a multiple of 0.5 s) that makes it fast
    #: with this ttl and ping interval
    alive_for_fast: float
    #: the largest ttl (whole seconds) that makes it fast with this alive
    #: timeout, or 0 if none does (etcd's minimum is too long)
    ttl_for_fast: float

    @property
    def fast(self) -> bool:
        """Return whether the owner re-registers with the new hub before it fences."""
        return self.takeover < self.fences


def _agent_ping(alive: float, ping: float) -> float:
    return min(ping, alive / 3)


def stateless_takeover(ttl: float, alive: float, ping: float, poll: float) -> TakeoverTiming:
    """Return the race for a hub on an etcd lease of ``ttl`` (the other arguments: seconds).

    ``alive``: the hub's alive timeout; ``ping``: its ping interval;
    ``poll``: how often a standby looks for a free lease.
    """
    etcd_ttl = max(float(math.ceil(ttl)), ETCD_MIN_TTL)
    overhead = EXPIRY_CHECK + poll + RECONNECT
    takeover = etcd_ttl + overhead
    fences = FENCE_SHARE * alive - _agent_ping(alive, ping)
    alive_for_fast = math.ceil(alive * 2) / 2
    while FENCE_SHARE * alive_for_fast - _agent_ping(alive_for_fast, ping) <= takeover:
        alive_for_fast += 0.5
    ttl_for_fast = float(math.ceil(fences - overhead) - 1)
    if ttl_for_fast < ETCD_MIN_TTL:
        ttl_for_fast = 0.0
    return TakeoverTiming(etcd_ttl, takeover, fences, alive_for_fast, ttl_for_fast)
