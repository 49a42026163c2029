"""The several-host lease: an etcd lease and a compare-and-set on the leader key.

Through etcd's v3 JSON gateway (``/v3/...``, keys and values base64), with
httpx, which runs on trio.  A campaign:

1. grants a lease of ``ttl`` seconds;
2. in one transaction, puts ``key = holder`` attached to that lease *if the
   key does not exist* (its create revision is 0);
3. won: the term is the revision of that put.  etcd's revision only grows,
   so every later leader's term is larger, whoever it is.  Lost: revoke the
   lease and poll the key until it is gone (its holder resigned, or its lease
   expired ``ttl`` after that holder's last keep-alive), then try again.

Holding means a keep-alive every ``ttl / 3``.  The holder counts the lease as
lost when etcd says it expired, or when no keep-alive has succeeded for
``ttl`` minus a margin measured on its own clock: etcd may already have
expired it, and acting on after that is how split brain starts.  The same
deadline is published as ``valid_until`` (counted from when the grant or
the last successful keep-alive was *sent*: etcd renews at its arrival,
later), so the hub can check it before every read, also in the instant a
paused process wakes, before ``hold`` has had a chance to run.
"""

from __future__ import annotations

import base64
import logging
import math
from typing import Any

import httpx
import trio

from .base import Leadership, Lease, LeaseError, LeaseLost

__all__ = ["EtcdLease"]

log = logging.getLogger("hulytrio.lease")

#: The share of the ttl a holder keeps as a margin for clock drift and the
#: time a keep-alive takes: it steps down after ttl * (1 - margin) of silence.
_SAFETY_MARGIN = 0.2


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class EtcdLease(Lease):
    """A campaign for ``key`` on the etcd at ``endpoint`` (``http://host:port``)."""

    def __init__(self, endpoint: str, key: str, *, ttl: float, poll_interval: float) -> None:
        self.endpoint = endpoint
        self.key = key
        self.ttl = ttl
        self.poll_interval = poll_interval
        self._client = httpx.AsyncClient(base_url=endpoint, timeout=max(ttl / 3, 0.5))
        self._lease_id: str | None = None
        self._last_ok = 0.0
        self.valid_until = -math.inf
        self._raised_warned = False

    @property
    def lease_id(self) -> str | None:
        """The etcd lease id while held (for operators: ``etcdctl lease timetolive``)."""
        return self._lease_id

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = await self._client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise LeaseError(f"etcd at {self.endpoint}: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise LeaseError(f"etcd at {self.endpoint}: {path} answered "
                             f"{response.status_code}: {response.text[:200]}")
        answer: dict[str, Any] = response.json()
        return answer

    async def _grant(self) -> str:
        # etcd's TTL is whole seconds; round up so the lease never expires
        # before the holder's own, shorter count.
        seconds = max(1, int(-(-self.ttl // 1)))
        answer = await self._post("/v3/lease/grant", {"TTL": seconds})
        lease_id = answer.get("ID")
        if not lease_id:
            raise LeaseError(f"etcd at {self.endpoint}: lease grant refused: {answer}")
        granted = answer.get("TTL")
        if granted is not None and str(granted).isdigit() and int(granted) > seconds \
                and not self._raised_warned:
            # etcd raises a ttl below its minimum (3/2 of its election
            # timeout, 2 s by default): a takeover then waits that long.
            self._raised_warned = True
            log.warning("etcd at %s granted a lease ttl of %ss for the %gs asked (its minimum); "
                        "a standby takes over up to %ss after a holder dies", self.endpoint,
                        granted, self.ttl, granted)
        return str(lease_id)

    async def _revoke(self, lease_id: str) -> None:
        try:
            await self._post("/v3/lease/revoke", {"ID": lease_id})
        except LeaseError as exc:
            log.info("could not revoke etcd lease %s (it expires by itself): %s", lease_id, exc)

    async def campaign(self, holder: str) -> Leadership:
        key = _b64(self.key)
        warned = False
        while True:
            try:
                # etcd counts the ttl from the grant's arrival: count ours
                # from before the request left.
                started = trio.current_time()
                lease_id = await self._grant()
                answer = await self._post("/v3/kv/txn", {
                    "compare": [{"key": key, "result": "EQUAL", "target": "CREATE",
                                 "create_revision": "0"}],
                    "success": [{"request_put": {"key": key, "value": _b64(holder),
                                                 "lease": lease_id}}],
                    "failure": [{"request_range": {"key": key}}],
                })
            except LeaseError as exc:
                if not warned:
                    log.warning("lease: %s; retrying every %.2fs", exc, self.poll_interval * 4)
                    warned = True
                await trio.sleep(self.poll_interval * 4)
                continue
            if answer.get("succeeded"):
                self._lease_id = lease_id
                self._last_ok = started
                self.valid_until = started + self.ttl * (1 - _SAFETY_MARGIN)
                return Leadership(int(answer["header"]["revision"]), holder)
            await self._revoke(lease_id)
            await self._wait_vacant(key)

    async def _wait_vacant(self, key: str) -> None:
        while True:
            await trio.sleep(self.poll_interval)
            try:
                answer = await self._post("/v3/kv/range", {"key": key})
            except LeaseError:
                continue
            if not answer.get("kvs"):
                return

    async def hold(self) -> None:
        if self._lease_id is None:
            raise LeaseLost(f"etcd lease on {self.key}: not held")
        lease_id = self._lease_id
        deadline_share = self.ttl * (1 - _SAFETY_MARGIN)
        # A third of the ttl after the grant was asked for: a slow campaign
        # (a loaded machine, a slow etcd) has used some of it already.
        next_at = self._last_ok + self.ttl / 3
        while True:
            # The keep-alive must land before the holder's own deadline;
            # stop waiting for one at that deadline.
            with trio.move_on_at(self._last_ok + deadline_share) as scope:
                await trio.sleep_until(next_at)
                sent = trio.current_time()
                next_at = sent + self.ttl / 3
                try:
                    answer = await self._post("/v3/lease/keepalive", {"ID": lease_id})
                except LeaseError as exc:
                    log.warning("lease keep-alive failed: %s", exc)
                    continue
                ttl = (answer.get("result") or {}).get("TTL")
                if not ttl or int(ttl) <= 0:
                    self._lost()
                    raise LeaseLost(f"etcd lease on {self.key}: expired or revoked")
                self._last_ok = sent
                self.valid_until = sent + deadline_share
            if scope.cancelled_caught:
                self._lost()
                raise LeaseLost(f"etcd lease on {self.key}: no keep-alive answered for "
                                f"{deadline_share:.2f}s (ttl {self.ttl}s)")

    def _lost(self) -> None:
        self._lease_id = None
        self.valid_until = -math.inf

    async def leader(self) -> str | None:
        try:
            answer = await self._post("/v3/kv/range", {"key": _b64(self.key)})
        except LeaseError:
            return None
        kvs = answer.get("kvs") or []
        if not kvs:
            return None
        return base64.b64decode(kvs[0].get("value", "")).decode(errors="replace")

    async def resign(self) -> None:
        lease_id, self._lease_id = self._lease_id, None
        self.valid_until = -math.inf
        if lease_id is not None:
            await self._revoke(lease_id)

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(self.ttl):
            await self.resign()
            await self._client.aclose()
