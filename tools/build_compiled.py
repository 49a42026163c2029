"""Build the simulator's hot modules with mypyc, into a tree of their own.

Usage: python tools/build_compiled.py [DEST]        (DEST: build/compiled)

Copies the ``hulytrio`` package to ``DEST/hulytrio`` and compiles the modules
in ``COMPILED`` there, in place, with mypyc (the compiler that comes with
mypy; it needs a C compiler and the Python headers).  Run anything against
the compiled build by putting DEST first on the import path::

    PYTHONPATH=build/compiled .venv/bin/hulytrio simulate scenarios/churn.toml

The working tree is never touched: a compiled module next to its source
would shadow every later edit of it.  ``DEST/hulytrio/COMPILED_FROM`` lists
the SHA-256 of each source the build was made from, so a stale build can be
told (``stale_sources``).  The compiled code runs the same decisions: traces
are byte-identical to the pure-Python ones (tests/sim/test_compiled.py).

Why these modules: they are where a simulation spends its time (the
simulator's driver, links, workload and invariant checks; the core's
session with its calls, references, registry view and hosted agents, hub,
registry with its entries, placement, starts, standby and check units, agent
state and timers).
The fault layer is not hot, but its events subclass the compiled clock's
``Event``, and an interpreted class cannot inherit from a compiled one.
The message, effect and
event classes stay pure Python: mypyc cannot compile attrs subclasses of a
compiled base class, and the wire codec reads the event classes' field
types, which a compiled module no longer gives it in the same form.  So the
same build also runs a real hub and agents (``PYTHONPATH=build/compiled
hulytrio serve``); tests/sim/test_compiled.py makes one request through it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Modules compiled, as paths relative to the repository root.
COMPILED = (
    "hulytrio/core/agent.py",
    "hulytrio/core/calls.py",
    "hulytrio/core/check.py",
    "hulytrio/core/entries.py",
    "hulytrio/core/hosting.py",
    "hulytrio/core/hub.py",
    "hulytrio/core/placement.py",
    "hulytrio/core/probes.py",
    "hulytrio/core/references.py",
    "hulytrio/core/registry.py",
    "hulytrio/core/standby.py",
    "hulytrio/core/starts.py",
    "hulytrio/core/session.py",
    "hulytrio/core/timers.py",
    "hulytrio/core/view.py",
    "hulytrio/sim/clock.py",
    "hulytrio/sim/faults.py",
    # (the multi-hub world subclasses the world, the checker and the fault
    # layer: an interpreted class cannot inherit from a compiled one)
    "hulytrio/sim/hubchecks.py",
    "hulytrio/sim/hubfaults.py",
    "hulytrio/sim/hubs.py",
    "hulytrio/sim/invariants.py",
    "hulytrio/sim/lease.py",
    "hulytrio/sim/links.py",
    "hulytrio/sim/process.py",
    # (their events subclass the compiled clock's Event, as the fault layer's)
    "hulytrio/sim/state.py",
    "hulytrio/sim/store.py",
    "hulytrio/sim/trace.py",
    "hulytrio/sim/workload.py",
    "hulytrio/sim/world.py",
)

STAMP = "COMPILED_FROM"


def source_hashes(root: Path) -> dict[str, str]:
    """Return the SHA-256 of every ``.py`` file of the package under ``root``, by path."""
    out: dict[str, str] = {}
    for path in sorted((root / "hulytrio").rglob("*.py")):
        out[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def stale_sources(dest: Path, root: Path = ROOT) -> list[str]:
    """Return the package sources that changed since the build in ``dest`` was made.

    Raises:
        FileNotFoundError: there is no finished build in ``dest``.
    """
    built: dict[str, str] = {}
    for line in (dest / "hulytrio" / STAMP).read_text().splitlines():
        digest, _, path = line.partition("  ")
        built[path] = digest
    now = source_hashes(root)
    return sorted(p for p in set(built) | set(now) if built.get(p) != now.get(p))


def build(dest: Path) -> None:
    """Copy the package into ``dest`` and compile ``COMPILED`` there.

    Raises:
        SystemExit: mypyc or the C compiler failed (their output says why).
    """
    from mypyc.build import mypycify  # imported here: only a build needs mypy
    from setuptools import setup

    dest = dest.resolve()
    package = dest / "hulytrio"
    if package.exists():
        shutil.rmtree(package)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "hulytrio", package,
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd"))
    cwd = Path.cwd()
    os.chdir(dest)  # mypyc writes its C sources and objects under the current directory
    try:
        setup(
            name="hulytrio-compiled",
            packages=[],
            ext_modules=mypycify(["--config-file", str(ROOT / "pyproject.toml"), *COMPILED],
                                 opt_level="3", separate=True),
            script_args=["--quiet", "build_ext", "--inplace", "--parallel",
                         str(os.cpu_count() or 1)],
        )
    finally:
        os.chdir(cwd)
    hashes = source_hashes(ROOT)
    (package / STAMP).write_text("".join(f"{d}  {p}\n" for p, d in hashes.items()))


def main() -> int:
    dest = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "build" / "compiled"
    build(dest)
    print(f"compiled {len(COMPILED)} modules into {dest / 'hulytrio'}; "
          f"run with PYTHONPATH={dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
