"""Latency histograms that merge across processes, and process samples from ``/proc``.

A load process records hundreds of thousands of latencies; sending them all
to the harness would cost more than measuring them.  ``Histogram`` keeps
counts in logarithmic buckets (2 % wide), so percentiles are exact to 2 %,
histograms of several processes add up, and the JSON form stays small.
"""

from __future__ import annotations

import math
import os
from typing import Any

import attrs

__all__ = ["Histogram", "ProcSample", "sample_process"]

#: Relative width of one bucket: a reported percentile is within this of the truth.
_GROWTH = 1.02
_LOG_GROWTH = math.log(_GROWTH)
#: Latencies are bucketed in microseconds; anything below 1 us is bucket 0.
_UNIT = 1e-6


class Histogram:
    """Counts of latencies (seconds) in logarithmic buckets, plus the exact max."""

    __slots__ = ("buckets", "count", "max", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        """Record one latency of ``seconds``."""
        units = seconds / _UNIT
        index = int(math.log(units) / _LOG_GROWTH) + 1 if units > 1.0 else 0
        buckets = self.buckets
        buckets[index] = buckets.get(index, 0) + 1
        self.count += 1
        self.total += seconds
        if seconds > self.max:
            self.max = seconds

    def merge(self, other: Histogram) -> None:
        """Add every count of ``other`` to this histogram."""
        for index, n in other.buckets.items():
            self.buckets[index] = self.buckets.get(index, 0) + n
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)

    def percentile(self, q: float) -> float:
        """Return the latency (seconds) below which a fraction ``q`` of samples fall.

        The value is the geometric middle of the bucket holding that rank
        (the exact max for ``q >= 1``); 0.0 for an empty histogram.
        """
        if self.count == 0:
            return 0.0
        if q >= 1.0:
            return self.max
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                if index == 0:
                    return _UNIT
                middle: float = _GROWTH ** (index - 0.5) * _UNIT
                return min(middle, self.max)
        return self.max

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-able form that ``from_json`` reads back."""
        return {"buckets": [[i, n] for i, n in sorted(self.buckets.items())],
                "count": self.count, "total": self.total, "max": self.max}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Histogram:
        """Return the histogram ``to_json`` described.

        Raises:
            KeyError, TypeError, ValueError: if ``data`` is not such a form.
        """
        h = cls()
        h.buckets = {int(i): int(n) for i, n in data["buckets"]}
        h.count = int(data["count"])
        h.total = float(data["total"])
        h.max = float(data["max"])
        return h


@attrs.frozen
class ProcSample:
    """One process at one moment: CPU seconds used so far, resident and peak memory."""

    cpu_s: float
    rss_bytes: int
    peak_rss_bytes: int


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def sample_process(pid: int) -> ProcSample | None:
    """Return ``pid``'s CPU time (user + system) and memory; None if it is gone.

    Reads ``/proc/<pid>/stat`` (utime, stime) and ``/proc/<pid>/status``
    (VmRSS, VmHWM), so it works for any process, not only our children.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            stat = f.read()
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            status = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    cpu = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    rss = peak = 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return ProcSample(cpu, rss, peak)
