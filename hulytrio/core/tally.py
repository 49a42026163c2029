"""Cheap tallies of durations the hub measures (a histogram without a library).

The core must not import prometheus_client, and the routed-request path must
not pay for a metrics library's locks: ``Durations.observe`` is one C bisect
and two additions.  A driver turns the counts into a Prometheus histogram
when it is scraped (``transport/metrics.py``).
"""

from __future__ import annotations

from bisect import bisect_left

__all__ = ["DURATION_BUCKETS", "Durations"]

#: Upper bounds (seconds, inclusive) of the buckets: sub-millisecond forwards
#: on a loopback up to container starts that take tens of seconds.
DURATION_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0,
)


class Durations:
    """Observed durations in buckets: ``counts[i]`` of them are <= ``bounds[i]``
    and > ``bounds[i - 1]``; the last count is above every bound.
    """

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...] = DURATION_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        #: the sum of every observed duration (seconds)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        """Count one duration of ``seconds``."""
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    @property
    def count(self) -> int:
        """Return how many durations were observed."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """Return Prometheus buckets: ``(le, observations <= le)``, ending with ``+Inf``."""
        out: list[tuple[str, int]] = []
        running = 0
        for bound, n in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out
