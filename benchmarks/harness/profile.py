"""Sampling profiles of the scenario's processes with py-spy (no code change needed).

``python -m benchmarks.harness --profile DIR`` records every process of an echo scenario
during its measured window (``py-spy record --format raw``: one line per
distinct stack with its sample count) and prints where the time went: the
functions with the most samples on the CPU, inclusive and self.  py-spy is
an optional tool (``pip install py-spy``); without it ``--profile`` fails
with a clear message.
"""

from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence

from .procs import BenchError, Proc

__all__ = ["start_profilers", "summarize"]


def _py_spy() -> str:
    here = os.path.join(os.path.dirname(sys.executable), "py-spy")
    found = here if os.path.exists(here) else shutil.which("py-spy")
    if found is None:
        raise BenchError("--profile needs py-spy: pip install py-spy")
    return found


def start_profilers(procs: Sequence[Proc], seconds: float, directory: str, prefix: str
                    ) -> list[tuple[str, subprocess.Popen[bytes]]]:
    """Start one py-spy recorder per process for ``seconds``; returns (output path, recorder).

    Raises:
        BenchError: if py-spy is not installed.
    """
    exe = _py_spy()
    os.makedirs(directory, exist_ok=True)
    out = []
    for proc in procs:
        path = os.path.join(directory, f"{prefix}-{proc.name}.txt")
        recorder = subprocess.Popen(
            [exe, "record", "--pid", str(proc.pid), "--duration", str(max(1, round(seconds))),
             "--rate", "250", "--format", "raw", "--output", path, "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append((path, recorder))
    return out


def _frame(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)"
    name, _, where = frame.partition(" (")
    file = where.rsplit("/", 1)[-1].split(":", 1)[0]
    return f"{name} ({file})" if file else name


def summarize(path: str, top: int = 12) -> str:
    """Return the ``top`` functions by inclusive and by self samples in a raw py-spy file."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = [_frame(fr) for fr in stack.split(";")]
            own[frames[-1]] += n
            for name in dict.fromkeys(frames):
                inclusive[name] += n
    if total == 0:
        return f"{os.path.basename(path)}: no samples"
    skip = ("<module>", "_run_code", "_run_module_as_main", "main (", "run (_run.py)",
            "unrolled_run", "Thread.", "WorkerThread", "_bootstrap")
    lines = [f"{os.path.basename(path)}: {total} samples on the CPU"]
    lines.append("  inclusive:")
    shown = 0
    for name, n in inclusive.most_common():
        if any(name.startswith(s) for s in skip):
            continue
        lines.append(f"    {n / total * 100:5.1f}%  {name}")
        shown += 1
        if shown >= top:
            break
    lines.append("  self:")
    lines += [f"    {n / total * 100:5.1f}%  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines)
