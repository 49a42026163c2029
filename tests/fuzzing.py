"""How many examples a fuzz test draws: a bounded number in ``make test``, more in ``make fuzz``.

``make fuzz`` sets ``HULYTRIO_FUZZ=long``; each fuzz test then draws
``LONG_FACTOR`` times its CI count, with random (not derandomized) examples
so every long run searches further.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

#: How many times more examples a long run (``make fuzz``) draws.
LONG_FACTOR = 10


def long_run() -> bool:
    """Return True under ``make fuzz`` (``HULYTRIO_FUZZ=long``)."""
    return os.environ.get("HULYTRIO_FUZZ") == "long"


def fuzz_settings(examples: int) -> settings:
    """Return Hypothesis settings drawing ``examples`` (times ``LONG_FACTOR`` in a long run)."""
    if long_run():
        return settings(max_examples=examples * LONG_FACTOR, deadline=None, derandomize=False,
                        database=None, suppress_health_check=list(HealthCheck))
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
