"""The wss:// tests' certificates, made once per run (tests/pki.py)."""

from __future__ import annotations

import pytest
from pki import make_pki


@pytest.fixture(scope="package")
def pki(tmp_path_factory):
    """Return PEM file paths by name (see ``pki.make_pki``)."""
    return make_pki(tmp_path_factory.mktemp("pki"))
