"""The stateless takeover relation (``lease/timing.py``), and serve's warning about it."""

from __future__ import annotations

import logging

import pytest
import trio

from hulytrio.core.timeouts import Timeouts
from hulytrio.lease.timing import ETCD_MIN_TTL, stateless_takeover
from hulytrio.transport.leadership import serve_on_lease


def test_the_defaults_with_a_2s_ttl_lose_the_race():
    # A = 3 s, P = 1 s: the owner fences 1.7 s after the kill at the
    # earliest; the standby is active up to 2 + 0.5 + 0.05 s after it.
    t = stateless_takeover(2, 3, 1, poll=0.05)
    assert not t.fast
    assert t.fences == pytest.approx(1.7)
    assert t.takeover == pytest.approx(2.8)
    assert t.alive_for_fast == 4.5
    assert t.ttl_for_fast == 0  # etcd's 2 s minimum is already too long


def test_the_suggested_alive_timeout_wins_the_race():
    t = stateless_takeover(2, 4.5, 1, poll=0.05)
    assert t.fast
    assert t.fences == pytest.approx(3.05)
    assert stateless_takeover(2, 4.0, 1, poll=0.05).fast is False
    # A shorter ping interval leaves the owner more of its fence lease.
    assert stateless_takeover(2, 4.0, 0.5, poll=0.05).fast


def test_a_ttl_below_etcds_minimum_counts_as_the_minimum():
    assert stateless_takeover(1, 3, 1, poll=0.05).ttl == ETCD_MIN_TTL
    assert stateless_takeover(2.2, 6, 1, poll=0.05).ttl == 3  # whole seconds, rounded up


def test_the_largest_fast_ttl_is_strictly_inside_the_fence():
    t = stateless_takeover(5, 6, 1, poll=0.05)  # fences at 4.4 s: 4.4 - 0.8 = 3.6
    assert not t.fast
    assert t.ttl_for_fast == 3
    assert stateless_takeover(3, 6, 1, poll=0.05).fast


@pytest.mark.e2e
async def test_serve_on_etcd_warns_once_when_stateless_takeover_is_slow(etcd_url, caplog):
    caplog.set_level(logging.WARNING)
    url = etcd_url.replace("http://", "etcd://") + "/hulytrio/test-timing/leader"
    with trio.fail_after(20):
        async with serve_on_lease(url, lease_ttl=2, port=0, timeouts=Timeouts(alive=3)):
            pass
        slow = [r.getMessage() for r in caplog.records if "stateless uuid" in r.getMessage()]
        assert len(slow) == 1
        assert "--alive-timeout 4.5 or more" in slow[0]
        caplog.clear()
        async with serve_on_lease(url, lease_ttl=2, port=0, timeouts=Timeouts(alive=4.5)):
            pass
        assert not [r for r in caplog.records if "stateless uuid" in r.getMessage()]


@pytest.mark.e2e
async def test_a_ttl_raised_by_etcd_is_logged(etcd_url, caplog):
    from hulytrio.lease import open_lease

    caplog.set_level(logging.WARNING, "hulytrio.lease")
    url = etcd_url.replace("http://", "etcd://") + "/hulytrio/test-timing/raised"
    with trio.fail_after(20):
        async with open_lease(url, ttl=1) as lease:
            await lease.campaign("ws://a:1")
            assert lease.valid_until == pytest.approx(trio.current_time() + 0.8, abs=0.5)
    assert any("granted a lease ttl of 2s for the 1s asked" in r.getMessage()
               for r in caplog.records)
