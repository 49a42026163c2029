"""deploy/docker/*.Dockerfile: hadolint-clean, non-root, health-checked, and runnable.

The Dockerfiles are parsed with ``dockerfile`` (BuildKit's own parser) and
linted with hadolint; their commands are parsed with hulytrio's argument
parser, and the files they copy are shown to build the package.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import dockerfile
import pytest
import trio

from hulytrio.transport.commands import load_factories

from .conftest import (
    CONFIG_FILE,
    DOCKERFILES,
    IMAGE_UID,
    ROOT,
    load_config_file,
    parse_cli,
    tool,
)


def instructions(path: Path) -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(path)))


def final_stage(path: Path) -> list[dockerfile.Command]:
    commands = instructions(path)
    last_from = max(i for i, c in enumerate(commands) if c.cmd == "FROM")
    return commands[last_from:]


def only(commands: list[dockerfile.Command], cmd: str) -> dockerfile.Command:
    found = [c for c in commands if c.cmd == cmd]
    assert len(found) == 1, f"expected one {cmd}, found {len(found)}"
    return found[0]


def env_of(commands: list[dockerfile.Command]) -> dict[str, str]:
    env: dict[str, str] = {}
    for c in commands:
        if c.cmd == "ENV":
            env.update(zip(c.value[::2], c.value[1::2], strict=True))
    return env


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint_finds_nothing(name):
    result = subprocess.run([tool("hadolint"), "--no-color", str(DOCKERFILES[name])],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_a_working_linter(tmp_path):
    # the PyPI wheel ships a real binary: it must flag an unpinned base image
    # and a root user, or the test above proves nothing
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nUSER root\nRUN pip install trio\n")
    result = subprocess.run([tool("hadolint"), "--no-color", str(bad)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag
    assert "DL3002" in result.stdout  # last USER is root


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_images_are_python_311_slim_and_run_as_a_fixed_non_root_user(name):
    commands = instructions(DOCKERFILES[name])
    bases = [c.value[0] for c in commands if c.cmd == "FROM"]
    assert bases
    assert all(base == "python:3.11-slim" for base in bases), bases
    user = only(final_stage(DOCKERFILES[name]), "USER").value[0]
    assert user == f"{IMAGE_UID}:{IMAGE_UID}"
    # the user exists in the image with that uid
    creates = " ".join(c.value[0] for c in final_stage(DOCKERFILES[name]) if c.cmd == "RUN")
    assert f"useradd --system --uid {IMAGE_UID}" in creates
    # hulytrio is on PATH for the ENTRYPOINT and the HEALTHCHECK
    assert env_of(final_stage(DOCKERFILES[name]))["PATH"].startswith("/opt/hulytrio/bin:")


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_the_healthcheck_probes_health_with_hulytrio(name):
    commands = final_stage(DOCKERFILES[name])
    check = only(commands, "HEALTHCHECK")
    assert check.json
    assert check.value[:3] == ("CMD", "sh", "-c")
    script = check.value[3]
    assert script.startswith("exec ")
    env = env_of(commands)
    # ${VAR} expands as the container's shell would, from the image's ENV
    expanded = re.sub(r"\$\{(\w+)\}", lambda m: env[m[1]], script)
    argv = expanded.split()[1:]
    assert argv[0] == "hulytrio"
    args = parse_cli(argv[1:])
    assert args.command == "health"
    assert args.url.endswith(f":{load_config_file()['network']['port']}/health")
    if name == "hub":
        assert args.url.startswith("http://127.0.0.1:")
    else:
        # the seed's agent health check: the hub this agent uses answers
        assert args.url.startswith(f"http://{env['NETWORK_HOST']}:")
    flags = dict(flag.lstrip("-").split("=", 1) for flag in check.flags)
    assert set(flags) == {"interval", "timeout", "start-period", "retries"}


def test_hub_image_serves_the_shipped_config_on_its_ports():
    commands = final_stage(DOCKERFILES["hub"])
    entrypoint = only(commands, "ENTRYPOINT")
    cmd = only(commands, "CMD")
    assert entrypoint.json
    assert cmd.json
    assert entrypoint.value == ("hulytrio",)
    args = parse_cli(cmd.value)
    assert args.command == "serve"
    assert args.config == "/app/config/production.json"
    copied = {c.value[-1]: c.value[0] for c in commands if c.cmd == "COPY" and not c.flags}
    assert ROOT / copied[args.config] == CONFIG_FILE
    config = load_config_file()
    exposed = {int(p) for p in only(commands, "EXPOSE").value}
    assert exposed == {config["network"]["port"], config["monitoring"]["metricsPort"]}
    assert env_of(commands)["NETWORK_PORT"] == str(config["network"]["port"])


def test_agent_image_runs_a_shipped_factories_module():
    commands = final_stage(DOCKERFILES["agent"])
    assert only(commands, "ENTRYPOINT").value == ("hulytrio",)
    args = parse_cli(only(commands, "CMD").value)
    assert args.command == "agent"
    factories, stateless = load_factories(args.factories)
    assert set(factories) == {"echo"}
    assert stateless == []

    async def ask() -> object:
        container = await factories["echo"](None)  # type: ignore[arg-type]
        return await container.request("ping", {"n": 1})

    assert trio.run(ask) == {"n": 1}
    # the agent image expects the hub where the compose file puts it
    assert env_of(commands)["NETWORK_PORT"] == str(load_config_file()["network"]["port"])


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_the_files_the_build_stage_copies_build_the_package(name, tmp_path):
    # Without a Docker engine: copy exactly what the build stage's COPY lines
    # name into an empty directory and build a wheel there, as `pip install .`
    # in the image would (offline, with this environment's setuptools).
    build = instructions(DOCKERFILES[name])
    build = build[:next(i for i, c in enumerate(build) if i and c.cmd == "FROM")]
    context = tmp_path / "src"
    context.mkdir()
    for copy in (c for c in build if c.cmd == "COPY"):
        assert not copy.flags
        *sources, dest = copy.value
        for source in sources:
            target = context / (dest if not dest.endswith("/") else dest + source)
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target,
                                ignore=shutil.ignore_patterns("__pycache__", "*.so"))
            else:
                shutil.copy(ROOT / source, target)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--wheel-dir", str(tmp_path / "dist"), str(context)],
        capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    wheels = list((tmp_path / "dist").glob("hulytrio-*.whl"))
    assert len(wheels) == 1
    import zipfile

    names = set(zipfile.ZipFile(wheels[0]).namelist())
    assert "hulytrio/cli.py" in names
    assert "hulytrio/testing/echo.py" in names
    assert "hulytrio/py.typed" in names
