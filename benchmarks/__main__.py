"""Run every benchmark module in this package that defines ``main()``.

Usage: python -m benchmarks [NAME ...]   (NAME: a module name, e.g. registry_bench;
default: all of them, in name order).  Each ``main()`` runs with an empty
argument list; its return value, if an int, is its exit status.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> int:
    wanted = sys.argv[1:]
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                   if not m.name.startswith("_"))
    failed: list[str] = []
    for name in names:
        if wanted and name not in wanted:
            continue
        module = importlib.import_module(f"benchmarks.{name}")
        run = getattr(module, "main", None)
        if not callable(run):
            continue
        print(f"=== benchmarks.{name}", flush=True)
        saved = sys.argv
        sys.argv = [f"benchmarks.{name}"]
        try:
            status = run()
        except Exception as exc:  # one broken benchmark must not hide the others
            print(f"benchmarks.{name} failed: {exc!r}", file=sys.stderr)
            status = 1
        finally:
            sys.argv = saved
        if isinstance(status, int) and status != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
