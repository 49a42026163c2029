"""A plain ``pip install hulytrio`` imports every module it ships.

The test and dev extras (pytest, hypothesis, trio-websocket, mypy, ...) are
installed here, so a shipped module that imports one of them would pass every
other test and still fail on a user's machine.  This test imports each module
under ``hulytrio/`` in a fresh interpreter whose import system refuses every
third-party package that is not hulytrio's own runtime dependency (or one of
theirs), as a ``pip install .`` without extras would leave it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from importlib import metadata

from packaging.requirements import Requirement

#: Runs in the fresh interpreter: argv[1] is the JSON list of importable
#: top-level names besides the standard library.  It prints one line per
#: module that failed to import, and exits 1 if any did.
CHILD = textwrap.dedent("""
    import importlib, importlib.abc, json, pkgutil, sys, traceback

    allowed = set(json.loads(sys.argv[1])) | set(sys.stdlib_module_names)

    class NotInstalled(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.partition(".")[0]
            if top in allowed or top in sys.modules:
                return None
            raise ModuleNotFoundError(f"No module named {top!r} (not installed by a plain "
                                      "`pip install hulytrio`)", name=top)

    sys.meta_path.insert(0, NotInstalled())
    import hulytrio

    failed = 0
    for module in pkgutil.walk_packages(hulytrio.__path__, "hulytrio."):
        try:
            importlib.import_module(module.name)
        except Exception:
            failed += 1
            error = traceback.format_exc(limit=0).strip().splitlines()[-1]
            print(f"{module.name}: {error}")
    sys.exit(1 if failed else 0)
""")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _runtime_distributions(name: str) -> set[str]:
    """Return ``name`` and every distribution its plain install pulls in, normalised."""
    visited: set[tuple[str, frozenset[str]]] = set()
    todo = [Requirement(name)]
    while todo:
        req = todo.pop()
        extras = frozenset(req.extras)
        if (_normal(req.name), extras) in visited:
            continue
        visited.add((_normal(req.name), extras))
        for line in metadata.requires(req.name) or ():
            dependency = Requirement(line)
            environments = [{"extra": e} for e in ("", *sorted(extras))]
            if dependency.marker is None or any(dependency.marker.evaluate(env)
                                                for env in environments):
                todo.append(dependency)
    return {dist for dist, _ in visited}


def _top_level_names(distributions: set[str]) -> set[str]:
    """Return the top-level import names the installed ``distributions`` provide."""
    names: set[str] = set()
    for top, dists in metadata.packages_distributions().items():
        if any(_normal(d) in distributions for d in dists):
            names.add(top)
    return names


def test_every_shipped_module_imports_with_the_runtime_dependencies_only():
    allowed = _top_level_names(_runtime_distributions("hulytrio"))
    assert {"trio", "wsproto", "attrs", "msgpack"} <= allowed
    assert not {"pytest", "hypothesis", "trio_websocket", "mypy"} & allowed
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(sorted(allowed))],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_check_names_a_module_that_needs_more():
    # The same child with trio taken off the runtime list (the way a test
    # extra is left off) must name the modules that import it: the check can fail.
    allowed = _top_level_names(_runtime_distributions("hulytrio")) - {"trio"}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(sorted(allowed))],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "hulytrio.transport.server: ModuleNotFoundError: No module named 'trio'" in done.stdout
