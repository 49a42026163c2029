"""The several-host lease against a real etcd (started by conftest on 127.0.0.1)."""

from __future__ import annotations

import itertools
import logging

import httpx
import pytest
import trio

from hulytrio.lease import LeaseLost, open_lease

pytestmark = pytest.mark.e2e

_keys = itertools.count()


@pytest.fixture
def lease_url(etcd_url):
    host = etcd_url.removeprefix("http://")
    return f"etcd://{host}/hulytrio/test-{next(_keys)}/leader"


async def test_one_holder_at_a_time_and_the_term_grows(lease_url):
    with trio.fail_after(20):
        async with open_lease(lease_url, ttl=2) as a, open_lease(lease_url, ttl=2) as b:
            first = await a.campaign("ws://a:3737")
            assert await b.leader() == "ws://a:3737"
            with trio.move_on_after(0.5) as waited:
                await b.campaign("ws://b:3737")
            assert waited.cancelled_caught, "b won while a held the key"
            await a.resign()
            second = await b.campaign("ws://b:3737")
            assert second.term > first.term
            assert await a.leader() == "ws://b:3737"


async def test_a_holder_that_stops_keeping_alive_is_replaced_after_the_ttl(lease_url):
    with trio.fail_after(20):
        async with open_lease(lease_url, ttl=1) as a, open_lease(lease_url, ttl=1) as b:
            first = await a.campaign("ws://a:3737")
            async with trio.open_nursery() as nursery:
                # a keeps the lease alive for 2.5 s (beyond its ttl), then goes silent
                # (as a paused or killed hub would): b must wait, then take over.
                async def hold_a_while() -> None:
                    with trio.move_on_after(2.5):
                        await a.hold()
                nursery.start_soon(hold_a_while)
                started = trio.current_time()
                second = await b.campaign("ws://b:3737")
                waited = trio.current_time() - started
            assert second.term > first.term
            assert waited > 2.5, "b took over while a still kept the lease alive"


async def test_a_revoked_lease_is_lost_by_its_holder(lease_url, etcd_url):
    with trio.fail_after(20):
        async with open_lease(lease_url, ttl=1) as a:
            await a.campaign("ws://a:3737")
            lease_id = a.lease_id  # the test plays an operator revoking it by hand
            async with httpx.AsyncClient(base_url=etcd_url) as http:
                r = await http.post("/v3/lease/revoke", json={"ID": lease_id})
                assert r.status_code == 200
            with pytest.raises(LeaseLost, match="expired or revoked"):
                await a.hold()


async def test_an_unreachable_etcd_is_retried_and_logged_once(caplog):
    caplog.set_level(logging.WARNING, "hulytrio.lease")
    with trio.fail_after(20):
        async with open_lease("etcd://127.0.0.1:1/k", ttl=1, poll_interval=0.01) as lease:
            with trio.move_on_after(0.5):
                await lease.campaign("ws://a:3737")
            assert await lease.leader() is None
    warnings = [r for r in caplog.records if "lease" in r.getMessage()]
    assert len(warnings) == 1
    assert "127.0.0.1:1" in warnings[0].getMessage()
