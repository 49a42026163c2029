"""The benchmark harness itself: histograms, process cleanup, one short real run.

No timing is asserted here: speed lives in ``python -m benchmarks.harness``, not in tests.
"""

from __future__ import annotations

import json
import sys

import pytest

from benchmarks.harness import scenarios
from benchmarks.harness.procs import BenchError, Proc, Processes
from benchmarks.harness.report import format_results, json_line
from benchmarks.harness.stats import Histogram, sample_process


def test_histogram_percentiles_within_bucket_width():
    h = Histogram()
    for i in range(1, 1001):
        h.add(i * 1e-4)  # 0.1 ms .. 100 ms, uniform
    assert h.count == 1000
    assert h.max == pytest.approx(0.1)
    for q, exact in ((0.5, 0.05), (0.95, 0.095), (0.99, 0.099)):
        assert h.percentile(q) == pytest.approx(exact, rel=0.03)
    assert h.percentile(1.0) == h.max


def test_histograms_merge_and_survive_json():
    a, b = Histogram(), Histogram()
    for _ in range(90):
        a.add(0.001)
    for _ in range(10):
        b.add(0.010)
    merged = Histogram.from_json(json.loads(json.dumps(a.to_json())))
    merged.merge(Histogram.from_json(b.to_json()))
    assert merged.count == 100
    assert merged.percentile(0.5) == pytest.approx(0.001, rel=0.02)
    assert merged.percentile(0.95) == pytest.approx(0.010, rel=0.02)
    assert Histogram().percentile(0.5) == 0.0


def _start_then_fail(started: list[Proc]) -> None:
    with Processes() as ps:
        sleeper = ps.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
        started.append(sleeper)
        assert sample_process(sleeper.pid) is not None
        raise BenchError("boom")


def test_processes_are_killed_even_on_error():
    started: list[Proc] = []
    with pytest.raises(BenchError, match="boom"):
        _start_then_fail(started)
    assert started[0].popen.poll() is not None


def test_a_silent_process_fails_the_read_instead_of_hanging():
    with Processes() as ps:
        mute = ps.start("mute", [sys.executable, "-c", "import time; time.sleep(60)"],
                        pipe=True)
        with pytest.raises(BenchError, match="no answer"):
            mute.read(0.3)


@pytest.mark.e2e
@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["hub-1", "direct-16"])
def test_one_short_echo_run_gives_a_well_formed_result(name, monkeypatch):
    # The hub and agent sub-commands alone, whatever else the CLI holds.
    monkeypatch.setattr(scenarios, "CLI_MODULE", "hulytrio.transport.commands")
    result = scenarios.run(scenarios.SCENARIOS[name], warmup=0.2, duration=0.8)
    m = result.metrics
    assert m["requests"] > 0
    assert m["errors"] == 0
    assert m["wrong"] == 0
    assert m["req_per_s"] == pytest.approx(m["requests"] / 0.8, rel=0.01)
    assert 0 < m["p50_ms"] <= m["p99_ms"] <= m["max_ms"] * 1.02
    assert set(result.processes) == {"hub", "agent", "client"}
    for usage in result.processes.values():
        assert usage["cpu_s"] >= 0
        assert usage["peak_rss_mb"] > 0
    line = json.loads(json_line(result))
    assert line["scenario"] == name
    assert line["params"]["path"] == name.split("-")[0]
    assert name in format_results([result])
