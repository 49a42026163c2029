"""A real etcd on 127.0.0.1 with a throwaway data directory (the lease and HA tests)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hulytrio.testing.etcd import EtcdMissing, run_etcd


@pytest.fixture(scope="session")
def etcd_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Yield ``http://127.0.0.1:PORT`` of a fresh etcd; stop it after the session."""
    try:
        with run_etcd(tmp_path_factory.mktemp("etcd")) as url:
            yield url
    except EtcdMissing:
        pytest.skip("etcd is not installed (make test installs Debian's etcd-server; "
                    "it could not here)")
