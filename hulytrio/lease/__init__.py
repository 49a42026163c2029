"""Leader leases: which of several hubs is the active one, and in which term.

A hub started with ``--lease URL`` campaigns for the lease before it serves
as the active hub; a hub that does not hold it is a standby.  Two backends sit
behind one small interface (``base.Lease``):

- ``file:/var/lib/hulytrio/hub.lock``: an exclusive ``flock`` on one host.
  The kernel releases it when the holder dies, so a waiting standby takes
  over within one poll interval.  The term is a counter kept in the lock
  file itself, read and rewritten only while the lock is held.
- ``etcd://127.0.0.1:2379/hulytrio/leader``: a lease with keep-alive and a
  compare-and-set on the leader key, through etcd's v3 JSON gateway.  The
  term is the revision at which the key was created, so it only grows.

``open_lease(url, ...)`` parses the URL and returns the backend.
"""

from __future__ import annotations

from .base import Leadership, Lease, LeaseError, LeaseLost, open_lease, parse_lease_url

__all__ = ["Leadership", "Lease", "LeaseError", "LeaseLost", "open_lease", "parse_lease_url"]
