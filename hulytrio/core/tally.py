"""Cheap tallies of durations the hub measures (a histogram without a library).

The core must not import prometheus_client, and the routed-request path must
not pay for a metrics library's locks: ``Durations.observe`` is one list
append; the durations are put in buckets in bulk, in C, when read or
folded.  A driver turns the counts into a Prometheus histogram
when it is scraped (``transport/metrics.py``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from functools import partial

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

    ``observe`` only appends to ``pending`` (a hot path may append to that
    list itself); the readers (``count``, ``total``, ``cumulative``) and
    ``fold`` sort the pending ones into the buckets, in C.  An owner calls
    ``fold`` now and then so the list stays short when nobody reads.
    """

    __slots__ = ("_total", "bounds", "counts", "pending")

    def __init__(self, bounds: tuple[float, ...] = DURATION_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        #: durations observed and not yet in ``counts`` (never rebound: appended to directly)
        self.pending: list[float] = []
        self._total = 0.0

    def observe(self, seconds: float) -> None:
        """Count one duration of ``seconds``."""
        self.pending.append(seconds)

    def fold(self) -> None:
        """Move the pending durations into the buckets."""
        pending = self.pending
        if not pending:
            return
        counts = self.counts
        for i, n in Counter(map(partial(bisect_left, self.bounds), pending)).items():
            counts[i] += n
        self._total += sum(pending)
        pending.clear()

    @property
    def total(self) -> float:
        """Return the sum of every observed duration (seconds)."""
        self.fold()
        return self._total

    @property
    def count(self) -> int:
        """Return how many durations were observed."""
        self.fold()
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """Return Prometheus buckets: ``(le, observations <= le)``, ending with ``+Inf``."""
        self.fold()
        out: list[tuple[str, int]] = []
        running = 0
        for bound, n in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out
