"""Tables and JSON lines for benchmark results, with the reference's figures beside ours."""

from __future__ import annotations

import json
from collections.abc import Sequence

from .reference import REFERENCE
from .scenarios import Result

__all__ = ["format_results", "json_line"]


def json_line(result: Result) -> str:
    """Return the result as one line of JSON (no newline)."""
    return json.dumps(result.to_json(), sort_keys=True)


def _ratio(ours: float, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "-"


def _usage(result: Result, key: str, fmt: str) -> str:
    procs = result.processes
    clients = [v[key] for name, v in procs.items()
               if name not in ("hub", "server", "agent")]
    hub = "hub" if "hub" in procs else "server"
    parts = [fmt.format(procs[name][key]) if name in procs else "-" for name in (hub, "agent")]
    if clients:
        parts.append(fmt.format(sum(clients) if key == "cpu_s" else max(clients)))
    return "/".join(parts)


def _cpu_us(metrics: dict[str, float | int | str]) -> str:
    hub = metrics.get("hub_cpu_us_per_req", metrics.get("server_cpu_us_per_req"))
    parts = [hub, metrics.get("agent_cpu_us_per_req"), metrics.get("clients_cpu_us_per_req")]
    return "/".join("-" if p is None else f"{float(p):.0f}" for p in parts)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(c).rjust(w) for c, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True))
              for row in rows]
    return lines


def format_results(results: Sequence[Result]) -> str:
    """Return the human-readable report: one table for echo runs, lines for the rest.

    Ratios are ours / the reference's (req/s: higher is better; p50 and p99
    in ms: lower is better).  CPU seconds (in the measured window) and peak
    RSS are given as hub/agent/clients (clients summed for CPU, max for RSS;
    the raw-ws yardstick's server counts as the hub); "load" is the
    machine's 1-minute load average when the scenario started.
    """
    lines: list[str] = []
    echo = [r for r in results if r.scenario.kind in ("echo", "rawws")]
    if echo:
        rows = []
        for r in echo:
            m, ref = r.metrics, REFERENCE.get(r.scenario.name)
            rps = float(m["req_per_s"])
            rows.append([
                r.scenario.name, f"{rps:,.0f}",
                f"{ref.req_per_s:,.0f}" if ref and ref.req_per_s else "-",
                _ratio(rps, ref.req_per_s if ref else None),
                f"{m['p50_ms']}", f"{ref.p50_ms}" if ref else "-", f"{m['p95_ms']}",
                f"{m['p99_ms']}", f"{ref.p99_ms}" if ref and ref.p99_ms else "-",
                f"{m['max_ms']}", f"{m['errors']}",
                _usage(r, "cpu_s", "{:.1f}"), _cpu_us(m), _usage(r, "peak_rss_mb", "{:.0f}"),
                f"{m.get('load_1m_before', '-')}",
            ])
        lines += _table(["scenario", "req/s", "ref req/s", "ratio", "p50 ms", "ref p50",
                         "p95 ms", "p99 ms", "ref p99", "max ms", "errors",
                         "CPU s h/a/c", "CPU us/req h/a/c", "peak MB h/a/c", "load"], rows)
    for r in results:
        if r.scenario.kind in ("echo", "rawws"):
            continue
        ref = REFERENCE.get(r.scenario.name)
        metrics = "  ".join(f"{k}={v}" for k, v in r.metrics.items())
        if ref is not None and "p50_ms" in r.metrics:
            metrics += (f"  (reference p50 {ref.p50_ms} ms: "
                        f"{_ratio(float(r.metrics['p50_ms']), ref.p50_ms)})")
        usage = ", ".join(f"{name} {v['cpu_s']:.1f} s/{v['peak_rss_mb']:.0f} MB"
                          for name, v in r.processes.items())
        lines.append("")
        lines.append(f"{r.scenario.name}: {r.scenario.description}")
        lines.append(f"  {metrics}")
        if usage:
            lines.append(f"  CPU/peak RSS: {usage}")
    return "\n".join(lines)
