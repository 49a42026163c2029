"""Many seeds of one scenario, in parallel processes.

Each worker loads the scenario file itself and sends back a ``RunResult``
(small and picklable).  The campaign reports the failing seeds, the probes
never reached by any seed, and fails if a probe the scenario requires was
never hit by any seed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import attrs

from .. import core
from .report import RunResult, run_scenario
from .scenario import load_scenario

__all__ = ["KNOWN_PROBES", "CampaignResult", "run_campaign"]

def _core_probes() -> tuple[str, ...]:
    """Return every probe name the core can hit, read from its source (sorted)."""
    names: set[str] = set()
    for path in sorted(Path(core.__file__).parent.glob("*.py")):
        names.update(_PROBE_CALL.findall(path.read_text(encoding="utf-8")))
    return tuple(sorted(names))


_PROBE_CALL = re.compile(r"""probes\.hit\(\s*["']([^"']+)["']""")

#: every probe name in the core, so a campaign can say which were never hit
KNOWN_PROBES = _core_probes()


@attrs.frozen
class CampaignResult:
    """The outcome of a campaign."""

    results: tuple[RunResult, ...]
    failing: tuple[int, ...]
    probes: dict[str, int]
    never_hit: tuple[str, ...]
    required_missing: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Return whether every seed passed and every required probe was hit."""
        return not self.failing and not self.required_missing


def _one(path: str, seed: int) -> RunResult:
    result, _ = run_scenario(load_scenario(path), seed)
    return attrs.evolve(result, summary="")


def run_campaign(path: str, seeds: Sequence[int], *, jobs: int | None = None,
                 on_result: Callable[[RunResult], None] | None = None) -> CampaignResult:
    """Run scenario file ``path`` once per seed in ``jobs`` processes; returns the outcome.

    Raises:
        ScenarioError: if the scenario file is malformed (checked before forking).
    """
    scenario = load_scenario(path)
    jobs = jobs or os.cpu_count() or 1
    results: list[RunResult] = []
    if jobs == 1 or len(seeds) == 1:
        for seed in seeds:
            r = _one(path, seed)
            results.append(r)
            if on_result is not None:
                on_result(r)
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for r in pool.map(_one, [path] * len(seeds), seeds, chunksize=1):
                results.append(r)
                if on_result is not None:
                    on_result(r)
    probes: dict[str, int] = {}
    for r in results:
        for name, n in r.probes.items():
            probes[name] = probes.get(name, 0) + n
    never = tuple(p for p in KNOWN_PROBES if p not in probes)
    missing = tuple(p for p in scenario.expect.required_probes if p not in probes)
    return CampaignResult(
        results=tuple(results),
        failing=tuple(r.seed for r in results if not r.ok),
        probes=dict(sorted(probes.items())),
        never_hit=never,
        required_missing=missing,
    )
