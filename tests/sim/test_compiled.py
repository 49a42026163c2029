"""The mypyc build of the hot modules (tools/build_compiled.py) runs the same decisions.

The build is made once for the module (about a minute on 2 cores), into a
temporary folder; every run here is a separate process whose import path
puts that folder first, started from outside the repository so that the
working tree's pure modules cannot be picked up instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from build_compiled import COMPILED, stale_sources  # noqa: E402

pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None,
    reason="the compiled build needs a C compiler",
)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("compiled")
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "build_compiled.py"), str(dest)],
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return dest


def python(args: list[str], cwd: Path, pythonpath: Path | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


def simulate(args: list[str], cwd: Path, pythonpath: Path | None
             ) -> subprocess.CompletedProcess[str]:
    return python(["-c", "import sys; from hulytrio.cli import main; sys.exit(main())",
                   "simulate", "--no-progress", *args], cwd, pythonpath)


def test_the_build_is_compiled_and_current(compiled: Path, tmp_path: Path) -> None:
    modules = [p.removesuffix(".py").replace("/", ".") for p in COMPILED]
    done = python(["-c", "import importlib\n"
                   f"for m in {modules!r}: print(importlib.import_module(m).__file__)"],
                  tmp_path, compiled)
    assert done.returncode == 0, done.stderr
    files = done.stdout.split()
    assert len(files) == len(COMPILED)
    for file in files:
        assert file.startswith(str(compiled)), file
        assert file.endswith(".so"), f"{file} is not an extension module"
    assert stale_sources(compiled) == []


def test_a_changed_source_makes_the_build_stale(compiled: Path, tmp_path: Path) -> None:
    root = tmp_path / "tree"
    shutil.copytree(ROOT / "hulytrio", root / "hulytrio",
                    ignore=shutil.ignore_patterns("__pycache__"))
    assert stale_sources(compiled, root) == []
    session = root / "hulytrio" / "core" / "session.py"
    session.write_text(session.read_text() + "\n# edited\n")
    assert stale_sources(compiled, root) == ["hulytrio/core/session.py"]


@pytest.mark.parametrize("scenario", ["failover", "reconnect", "partition", "churn",
                                      "stateful-failover"])
def test_compiled_and_pure_runs_write_the_same_trace(compiled: Path, tmp_path: Path,
                                                     scenario: str) -> None:
    path = str(ROOT / "scenarios" / f"{scenario}.toml")
    pure = simulate([path, "--seed", "3", "--trace", str(tmp_path / "pure.jsonl")],
                    tmp_path, None)
    fast = simulate([path, "--seed", "3", "--trace", str(tmp_path / "fast.jsonl")],
                    tmp_path, compiled)
    assert pure.returncode == 0, pure.stdout + pure.stderr
    assert fast.returncode == 0, fast.stdout + fast.stderr
    assert (tmp_path / "pure.jsonl").read_bytes() == (tmp_path / "fast.jsonl").read_bytes()
    assert without_wall_time(pure.stdout) == without_wall_time(fast.stdout)


def without_wall_time(summary: str) -> list[str]:
    """Return the summary's lines but the one that reports wall time (it differs)."""
    return [line for line in summary.splitlines() if " wall " not in line]


def test_the_compiled_build_catches_a_seeded_bug(compiled: Path, tmp_path: Path) -> None:
    text = (ROOT / "scenarios" / "failover.toml").read_text().replace(
        "[hub]\n", '[hub]\nseeded_bugs = ["stateless-double-owner"]\n')
    buggy = tmp_path / "buggy.toml"
    buggy.write_text(text)
    done = simulate([str(buggy), "--seed", "5"], tmp_path, compiled)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "exclusive-serving" in done.stdout


SMOKE = """
import trio, hulytrio
from hulytrio.core import session

class Echo(hulytrio.Container):
    async def request(self, operation, data=None, client_id=None):
        return {"op": operation, "data": data}

async def start(options):
    return Echo()

async def main():
    async with hulytrio.serve_network(host="127.0.0.1", port=0) as hub:
        async with hulytrio.open_client(hub.url) as client:
            await client.serve_agent({"echo": start})
            ref = await client.get("echo")
            print(await ref.request("hello", 1), session.__file__.endswith(".so"))

trio.run(main)
"""


def test_a_real_hub_and_agent_run_on_the_compiled_core(compiled: Path, tmp_path: Path) -> None:
    done = python(["-c", SMOKE], tmp_path, compiled)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "{'op': 'hello', 'data': 1} True"
