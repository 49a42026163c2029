"""Hypothesis profiles for the chaos tests.

``ci`` (the default) keeps CI's share to a couple of hundred short runs;
``chaos`` (``HYPOTHESIS_PROFILE=chaos``, used by ``make chaos``) runs a long
campaign.  The profile is handed to the chaos tests by the ``chaos_settings``
fixture rather than loaded globally, so other suites keep their own.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=120,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
settings.register_profile(
    "chaos",
    max_examples=3000,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture
def chaos_settings() -> settings:
    """The Hypothesis settings chosen by ``HYPOTHESIS_PROFILE`` (default ``ci``)."""
    name = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    return settings.get_profile(name if name in ("ci", "chaos") else "ci")
