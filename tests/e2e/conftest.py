"""e2e fixtures; the helpers live in ``e2e_support`` (importable from the tests)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# tests run with --import-mode=importlib: make the helper modules importable
# (and the containers module, for the agent processes too).
sys.path.insert(0, str(HERE))

from e2e_support import Processes  # noqa: E402
from etcd_server import etcd_url  # noqa: E402, F401 - the fixture, for the HA tests


def pytest_collection_modifyitems(items):
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)



@pytest.fixture
async def procs(tmp_path):
    p = Processes(tmp_path)
    try:
        yield p
    finally:
        await p.cleanup()
