"""Container state stores: where checkpoints of container state live.

One small interface (``base.StateStore``) and two backends:

- ``sqlite:/var/lib/hulytrio/state.db``: one file in WAL mode, for agents on
  one host (the embedded default);
- ``postgresql://user@host/db``: a shared server, for agents on several hosts.

Every write carries the writer's ownership epoch, and a store refuses a write
whose epoch is older than the one it holds (``StaleEpoch``): a paused old
owner that wakes up cannot overwrite its successor's state, and a new
owner's ``claim`` raises the epoch above every earlier owner's, whether
they ever wrote or not.  ``open_state_store(url)`` parses the URL and opens
the backend, on a worker thread of this process, or with ``worker=True`` in a
child process (an agent's requests then never wait for Python's lock while a
checkpoint is written: ``worker.py``).
"""

from __future__ import annotations

from .base import (
    Claim,
    StaleEpoch,
    StateStore,
    StateStoreError,
    StoredState,
    open_state_store,
    parse_state_url,
)

__all__ = [
    "Claim",
    "StaleEpoch",
    "StateStore",
    "StateStoreError",
    "StoredState",
    "open_state_store",
    "parse_state_url",
]
