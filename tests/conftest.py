"""Suite-wide Hypothesis profile.

In CI (``CI`` set, as the CI runner does) every property test draws the same
examples on every run, so a red run is reproducible and a green one cannot
turn red by luck on an unrelated change.  Locally the examples are random,
so each run hunts a little further; ``make chaos`` runs the long campaigns.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hypothesis import settings

# Shared test helpers (``wsclient``) import as top-level modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))

settings.register_profile("hulytrio-ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("hulytrio-ci")
