"""The reference's figures (issue 5), measured on the same kind of machine.

Node 22 + ZeroMQ, 2 cores, loopback, 114-byte JSON echo, hub + agent + client
as three processes, 2 s warm-up + 10 s measured (median of clean runs).
"""

from __future__ import annotations

import attrs

__all__ = ["REFERENCE", "Figures"]


@attrs.frozen
class Figures:
    """The reference's throughput (req/s) and latency (ms) for one scenario."""

    req_per_s: float | None
    p50_ms: float
    p99_ms: float | None


#: scenario name -> the reference's figures for it
REFERENCE: dict[str, Figures] = {
    "hub-1": Figures(1886, 0.51, 0.94),
    "hub-16": Figures(9105, 1.6, 5.9),
    "hub-64": Figures(10367, 2.2, 7.5),
    "direct-1": Figures(3650, 0.26, 0.54),
    "direct-16": Figures(23236, 0.60, 2.5),
    "direct-64": Figures(29503, 2.0, 5.7),
    "cold-get": Figures(None, 0.78, None),
}
