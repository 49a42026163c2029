"""Coverage probes: named points in the core, counted per run.

The simulator reads them to report which decisions a campaign reached; the
cost in production is one dict update at rare points (never per request).
"""

from __future__ import annotations

__all__ = ["Probes"]


class Probes:
    """Counts hits of named decision points."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def hit(self, name: str) -> None:
        """Count one hit of ``name``."""
        self.counts[name] = self.counts.get(name, 0) + 1
