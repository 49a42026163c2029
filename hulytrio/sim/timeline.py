"""A picture of a run: processes, stateless owners and faults over virtual time (plain SVG).

One row per agent process (green up, orange paused, yellow partitioned,
grey down) with the containers it runs at the end, one row per stateless
uuid coloured by its owner, the number of containers the hub lists over
time, and a red line at every fault.
Large runs show the first ``max_rows`` agents.
"""

from __future__ import annotations

from html import escape

from .world import Simulation

__all__ = ["render_timeline"]

_STATE_COLOURS = {"up": "#4caf50", "paused": "#ff9800", "partitioned": "#ffd54f",
                  "down": "#bdbdbd"}
_OWNER_COLOURS = ("#1e88e5", "#8e24aa", "#00897b", "#f4511e", "#6d4c41", "#3949ab",
                  "#c0ca33", "#d81b60")


def render_timeline(sim: Simulation, *, width: int = 1100, max_rows: int = 40) -> str:
    """Return an SVG document drawing ``sim``'s run."""
    end = max(sim.now, 1e-9)
    left, right, row_h, top = 170, 20, 18, 40
    agents = [p for p in sim.procs.values() if p.is_agent][:max_rows]
    uuids = list(sim.invariants.offering)
    rows = len(agents) + len(uuids)
    height = top + rows * row_h + 60 + 60
    span = width - left - right

    def x(t: float) -> float:
        return left + span * min(max(t, 0.0), end) / end

    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="18" font-size="14">{escape(sim.scenario.name)} (seed {sim.seed}): '
        f'{end:.1f}s virtual</text>',
    ]
    y = top
    history: dict[str, list[tuple[float, str]]] = {}
    for t, pid, state in sim.history:
        history.setdefault(pid, []).append((t, state))
    for proc in agents:
        out.append(f'<text x="10" y="{y + 12}">{escape(proc.pid)} '
                   f'({len(proc.running)} running)</text>')
        changes = history.get(proc.pid, [])
        for i, (t, state) in enumerate(changes):
            t2 = changes[i + 1][0] if i + 1 < len(changes) else end
            out.append(f'<rect x="{x(t):.1f}" y="{y + 2}" width="{max(x(t2) - x(t), 0.5):.1f}" '
                       f'height="{row_h - 4}" fill="{_STATE_COLOURS.get(state, "#000")}">'
                       f'<title>{escape(proc.pid)} {state} from {t:.3f}s</title></rect>')
        y += row_h
    owners: dict[str, str] = {}
    for uuid in uuids:
        out.append(f'<text x="10" y="{y + 12}">owner of {escape(uuid)}</text>')
        changes2 = [(t, o) for t, u, o in sim.ownership if u == uuid]
        for i, (t, owner) in enumerate(changes2):
            t2 = changes2[i + 1][0] if i + 1 < len(changes2) else end
            if not owner:
                continue
            colour = owners.setdefault(owner, _OWNER_COLOURS[len(owners) % len(_OWNER_COLOURS)])
            out.append(f'<rect x="{x(t):.1f}" y="{y + 2}" width="{max(x(t2) - x(t), 0.5):.1f}" '
                       f'height="{row_h - 4}" fill="{colour}"><title>{escape(owner)} owns '
                       f'{escape(uuid)} from {t:.3f}s</title></rect>')
            if x(t2) - x(t) > 40:
                out.append(f'<text x="{x(t) + 3:.1f}" y="{y + 12}" fill="white">'
                           f'{escape(owner)}</text>')
        y += row_h
    # containers the hub lists, over time (a line in its own band)
    band = 60
    samples = sim.container_samples
    if samples:
        peak = max(n for _, n in samples) or 1
        out.append(f'<text x="10" y="{y + 14}">containers (max {peak})</text>')
        points = " ".join(f"{x(t):.1f},{y + band - 4 - (band - 8) * n / peak:.1f}"
                          for t, n in samples)
        out.append(f'<polyline points="{points}" fill="none" stroke="#1e88e5" '
                   f'stroke-width="1.5"/>')
        y += band
    for entry in sim.timeline:
        if entry.kind not in ("fault", "violation"):
            continue
        colour = "#e53935" if entry.kind == "fault" else "#000"
        out.append(f'<line x1="{x(entry.time):.1f}" y1="{top - 4}" x2="{x(entry.time):.1f}" '
                   f'y2="{y}" stroke="{colour}" stroke-width="1" stroke-dasharray="3,2">'
                   f'<title>{entry.time:.3f}s {escape(entry.text)}</title></line>')
    if sim.fault_phase_end < end:
        out.append(f'<line x1="{x(sim.fault_phase_end):.1f}" y1="{top - 4}" '
                   f'x2="{x(sim.fault_phase_end):.1f}" y2="{y}" stroke="#555"/>')
    # time axis
    out.append(f'<line x1="{left}" y1="{y + 4}" x2="{width - right}" y2="{y + 4}" '
               f'stroke="#333"/>')
    ticks = 10
    for i in range(ticks + 1):
        t = end * i / ticks
        out.append(f'<text x="{x(t) - 10:.1f}" y="{y + 18}">{t:.0f}s</text>')
    legend = "  ".join(f"{k}" for k in _STATE_COLOURS)
    out.append(f'<text x="10" y="{y + 40}">rows: {legend} (green, orange, yellow, grey); '
               f'red dashed: faults; black dashed: violations; grey line: faults stop</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
