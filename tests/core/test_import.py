"""The core is sans-IO: importing it must not pull in trio, sockets or asyncio."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import hulytrio.core

CORE_MODULES = sorted(
    f"hulytrio.core.{m.name}" for m in pkgutil.iter_modules(hulytrio.core.__path__)
)

# What the interpreter imports on its own before running ``-c``; anything the
# core adds on top of this baseline was imported by the core.
_PROBE = """
import sys
before = set(sys.modules)
import hulytrio.core
{imports}
after = set(sys.modules)
print(",".join(sorted(after - before)))
"""


def _new_modules(imports: list[str]) -> set[str]:
    code = _PROBE.format(imports="\n".join(f"import {m}" for m in imports))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(out.stdout.strip().split(","))


def test_core_submodules_are_found() -> None:
    # Guards the test below against passing vacuously on an empty list.
    assert {"hulytrio.core.hub", "hulytrio.core.registry", "hulytrio.core.session"} <= set(
        CORE_MODULES
    )


def test_importing_core_pulls_in_no_io() -> None:
    new = _new_modules(CORE_MODULES)
    assert set(CORE_MODULES) <= new
    for forbidden in ("trio", "socket", "asyncio", "selectors", "ssl", "hulytrio.transport"):
        assert forbidden not in new, f"importing hulytrio.core imported {forbidden}"
    assert not any(m.startswith(("trio", "trio_websocket", "wsproto")) for m in new)


def test_probe_detects_an_io_import() -> None:
    # The probe itself works: importing socket after core shows up as new.
    assert "socket" in _new_modules(["socket"])
