"""A hub on a lease: standby until it wins, active while it holds, standby again.

Theory of operation
-------------------
``hulytrio serve --lease URL`` runs ``lead`` beside the server.  The hub
starts as a standby (``NetworkServer.stand_by``): ``/health`` says
"standby", ``/ready`` answers 503, and every hello gets a ``Welcome`` whose
``redirect`` is the active hub's URL, which the active hub publishes as the
lease's holder (``--advertise-url``).  Meanwhile it campaigns; a standby
re-reads the holder every ``LEADER_POLL`` seconds so its redirect follows a
takeover.

When the campaign is won the hub becomes active with the lease's term
(``NetworkServer.activate``): the connections that were waiting for their
redirect are closed and come back to be welcomed; clients and agents that
were on the old active hub arrive, re-register and re-acquire (soft state,
exactly as after a restart).  While active it holds the lease; when the
lease is lost (etcd: no keep-alive answered for ttl x 0.8; a file: the lock
file was removed or replaced) it steps down at once: every session is closed (their
peers reconnect to the new active hub) and it campaigns again as a standby.
The server also compares the lease's ``valid_until`` with its clock before
it reads or fires anything (``NetworkServer._lease_expired``): a hub woken
from a pause past its lease steps down there, unanswered, before ``hold``
has run.
A clean stop (SIGTERM: ``NetworkServer.drain``) resigns **first**
(``server.resign``, set by ``serve_on_lease``): the campaign stops, the
lease is given up, and the hub waits (at most ``HANDOVER_WAIT``) until the
lease names the standby that took it.  Then it hands over: every peer with
no call in flight is sent a redirect to that hub at once, the others as
soon as their calls are answered, so no peer waits for the drain to end.
Leaving the ``async with`` of ``open_lease`` resigns too (a no-op by then).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from hulytrio.lease import Lease, LeaseLost, open_lease, parse_lease_url
from hulytrio.lease.timing import stateless_takeover

from .http import fetch
from .server import NetworkServer, serve_network

__all__ = ["HANDOVER_WAIT", "LEADER_POLL", "default_advertise_url", "lead", "serve_on_lease",
           "wait_successor"]

log = logging.getLogger("hulytrio.hub")

#: How often a standby re-reads who holds the lease (for its redirects).
LEADER_POLL = 0.1
#: How long a hub that resigned waits for a standby to take the lease
#: before it drains without a successor to send its peers to.
HANDOVER_WAIT = 1.0
#: How often it looks for that successor meanwhile (a short window: at
#: most ``HANDOVER_WAIT`` once per clean stop).
SUCCESSOR_POLL = 0.005
#: How long one ``/ready`` probe of that successor may take.
READY_TIMEOUT = 0.2


async def lead(server: NetworkServer, lease: Lease, advertise_url: str) -> None:
    """Campaign for ``lease`` and switch ``server``'s role with it, forever.

    ``advertise_url`` is recorded as the holder while this hub is active (the
    URL standbys redirect to).  Returns only by cancellation.

    Raises:
        LeaseError: the lease store cannot be used at all (a lock file that
            cannot be opened, a corrupt term file).
    """
    if server.role != "standby":
        server.stand_by("", "standby: campaigning for the lease")
    while True:
        log.info("standby: campaigning for the lease as %s", advertise_url)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_follow_leader, server, lease, advertise_url)
            leadership = await lease.campaign(advertise_url)
            nursery.cancel_scope.cancel()
        # The server checks lease.valid_until before every read and timer:
        # a hub that wakes from a pause past it steps down before ``hold``
        # has run (server._lease_expired), and stops the hold here: a
        # keep-alive answered a moment later must not keep the lease for a
        # hub that no longer acts on it.
        holding = trio.CancelScope()
        server.activate(leadership.term, lease, on_expired=holding.cancel)
        log.info("active: won the lease, term %d (hub %s)", leadership.term,
                 server.hub.hub_id)
        try:
            with holding:
                await lease.hold()
        except LeaseLost as exc:
            log.error("lost the lease (%s): stepping down to standby, closing every "
                      "session", exc)
            server.stand_by("", f"lost the lease: {exc}")
        if holding.cancelled_caught:
            # Given up, in case etcd still counts it ours: a standby wins
            # now rather than at its expiry; this hub campaigns again.
            await lease.resign()


async def _follow_leader(server: NetworkServer, lease: Lease, advertise_url: str) -> None:
    """Keep the standby's redirect on the current holder of the lease."""
    while True:
        holder = await lease.leader()
        # Our own URL is a stale record of a term we held: not a redirect.
        server.set_redirect(holder if holder and holder != advertise_url else "")
        await trio.sleep(LEADER_POLL)


def default_advertise_url(bind_host: str, port: int) -> str:
    """Return ``ws://HOST:PORT`` for a hub bound to ``bind_host``.

    A wildcard bind (``0.0.0.0``, ``::``, empty) advertises the host name;
    set ``--advertise-url`` where peers reach the hub by another name.
    """
    host = socket.gethostname() if bind_host in ("", "0.0.0.0", "::") else bind_host
    if ":" in host:
        host = f"[{host}]"
    return f"ws://{host}:{port}"


@asynccontextmanager
async def serve_on_lease(lease_url: str, *, lease_ttl: float, advertise_url: str | None = None,
                         host: str = "127.0.0.1", port: int = 3737,
                         **server_options: Any) -> AsyncIterator[NetworkServer]:
    """Run a hub that is active only while it holds the lease at ``lease_url``.

    Yields the ``NetworkServer`` (a standby until it wins; ``server.role``).
    ``advertise_url`` defaults to ``default_advertise_url(host, port)``;
    ``server_options`` go to ``serve_network``.  On exit the lease is
    resigned, so a standby takes over at once.

    Raises:
        LeaseError: a malformed lease URL or ttl, or an unusable lease store.
        OSError: if the address cannot be bound.
    """
    # The lease inside the server: on the way out it is resigned before the
    # server's own exit, so the standby is taking over while peers reconnect.
    async with serve_network(host, port, standby=True, **server_options) as server, \
            open_lease(lease_url, ttl=lease_ttl) as lease:
        url = advertise_url or default_advertise_url(host, server.port)
        if parse_lease_url(lease_url).kind == "etcd":
            _warn_slow_stateless_takeover(lease_ttl, server.hub.timeouts.alive,
                                          server.hub.timeouts.ping_interval)
        # Its own scope: the resign must stop the campaign, not the caller's
        # drain (which runs inside this nursery's scope).
        lead_scope = trio.CancelScope()
        lead_done = trio.Event()

        async def run_lead() -> None:
            try:
                with lead_scope:
                    await lead(server, lease, url)
            finally:
                lead_done.set()

        async def resign(deadline: float) -> str:
            lead_scope.cancel()
            await lead_done.wait()
            if server.hub.redirect is not None:
                return ""  # a standby: it held nothing
            await lease.resign()
            log.info("resigned the lease; waiting for a standby to take it over")
            return await wait_successor(lease, url, min(deadline, trio.current_time()
                                                        + HANDOVER_WAIT))

        server.resign = resign
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_lead)
            try:
                yield server
            finally:
                nursery.cancel_scope.cancel()


def _warn_slow_stateless_takeover(ttl: float, alive: float, ping: float) -> None:
    """Warn (one line) when a killed hub's stateless uuids would wait for a recovery window.

    ``lease/timing.py`` has the relation; the standby polls every
    min(ttl / 10, 50 ms) (``open_lease``).
    """
    timing = stateless_takeover(ttl, alive, ping, poll=min(ttl / 10, 0.05))
    if timing.fast:
        return
    instead = f"--alive-timeout {timing.alive_for_fast:g} or more"
    if timing.ttl_for_fast:
        instead += f", or --lease-ttl {timing.ttl_for_fast:g}"
    log.warning("lease: with an etcd ttl of %gs (etcd applies %gs), alive timeout %gs and ping "
                "interval %gs, the owner of a stateless uuid fences %.2fs after this hub dies "
                "at the earliest, before a standby can take over (%.2fs at the worst), so its "
                "uuid waits one alive timeout more after a kill -9 (ordinary containers do "
                "not); for a fast takeover set %s", ttl, timing.ttl, alive, ping,
                timing.fences, timing.takeover, instead)


async def wait_successor(lease: Lease, own_url: str, deadline: float) -> str:
    """Return the URL of the hub that now holds ``lease`` (not ``own_url``).

    Waits, too, until a ``ws://`` successor answers ``/ready``: the lease
    names it a moment before it switches from standby to active, and a peer
    sent to it in that moment would be redirected back here and lose a
    reconnect backoff.  Returns ``""`` when none has taken the lease by
    ``deadline`` (trio time); the holder when it is not ready by then.
    """
    holder = ""
    with trio.move_on_at(deadline):
        while not holder:
            found = await lease.leader()
            if found and found != own_url:
                holder = found
            else:
                await trio.sleep(SUCCESSOR_POLL)
        # /ready is not fetched over TLS: a wss:// successor is not waited for.
        ready = not holder.startswith("ws://")
        while not ready:
            ready = await _ready(holder)
            if not ready:
                await trio.sleep(SUCCESSOR_POLL)
    return holder


async def _ready(url: str) -> bool:
    """Return whether the hub at ``url`` answers ``/ready`` with 200 (an active hub)."""
    try:
        with trio.move_on_after(READY_TIMEOUT):
            status, _ = await fetch(url, "/ready")
            return status == 200
    except (OSError, ValueError):
        pass
    return False
