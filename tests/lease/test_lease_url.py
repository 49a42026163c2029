"""``--lease`` values: what is accepted, and the one-line error for the rest."""

from __future__ import annotations

import pytest

from hulytrio.lease import LeaseError, parse_lease_url
from hulytrio.lease.base import LeaseUrl


@pytest.mark.parametrize(("url", "parsed"), [
    ("file:/var/lib/hulytrio/hub.lock", LeaseUrl("file", "/var/lib/hulytrio/hub.lock")),
    ("file:///var/lib/hub.lock", LeaseUrl("file", "/var/lib/hub.lock")),
    ("file:hub.lock", LeaseUrl("file", "hub.lock")),
    ("etcd://127.0.0.1:2379/hulytrio/leader",
     LeaseUrl("etcd", "/hulytrio/leader", "http://127.0.0.1:2379")),
    ("etcd://etcd/hulytrio/leader/", LeaseUrl("etcd", "/hulytrio/leader", "http://etcd:2379")),
    ("etcd+https://[::1]:2379/k", LeaseUrl("etcd", "/k", "https://[::1]:2379")),
])
def test_accepted(url, parsed):
    assert parse_lease_url(url) == parsed


@pytest.mark.parametrize(("url", "says"), [
    ("", "unknown kind"),
    ("consul://x/y", "unknown kind"),
    ("file:", "no lock file path"),
    ("file://otherhost/x", "a file lease is local"),
    ("etcd://127.0.0.1:2379", "no leader key"),
    ("etcd://127.0.0.1:abc/k", "port is not a number"),
    ("etcd:///k", "no etcd host"),
])
def test_refused_with_a_reason(url, says):
    with pytest.raises(LeaseError, match=says) as info:
        parse_lease_url(url)
    assert repr(url) in str(info.value)
