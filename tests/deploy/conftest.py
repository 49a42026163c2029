"""Shared loaders for the deployment-file tests: paths, parsed files, the CLI parser.

Every deployment file is checked twice: by a tool made for its format
(hadolint, kubernetes-validate, the compose-spec schema, systemd-analyze) and
against hulytrio itself (its argument parser, its defaults, its shipped
configuration), so a renamed flag or a moved port fails here, not in
production.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shlex
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from hulytrio.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CONFIG_FILE = DEPLOY / "config" / "production.json"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "k8s"
DOCKERFILES = {"hub": DEPLOY / "docker" / "hub.Dockerfile",
               "agent": DEPLOY / "docker" / "agent.Dockerfile"}
SYSTEMD = DEPLOY / "systemd"
PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
DOCS = ROOT / "docs"

#: the uid:gid the images run as (and Kubernetes' runAsUser checks)
IMAGE_UID = 10001


def tool(name: str) -> str:
    """Return the path of a console script installed beside this Python, or on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return found


def parse_cli(argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv`` (without the leading ``hulytrio``) with hulytrio's own parser.

    Fails the test with argparse's message if the parser rejects it.
    """
    parser = build_parser()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return parser.parse_args(list(argv))
    except SystemExit:
        pytest.fail(f"hulytrio {shlex.join(argv)} does not parse: {err.getvalue().strip()}")


def hulytrio_argv(command: Sequence[str]) -> list[str]:
    """Return ``command``'s arguments after the ``hulytrio`` program (any install path)."""
    assert command, "empty command"
    assert Path(command[0]).name == "hulytrio", f"{command!r} does not run hulytrio"
    return list(command[1:])


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    """Return the non-empty YAML documents of ``path``."""
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def load_config_file() -> dict[str, Any]:
    """Return deploy/config/production.json parsed."""
    data: dict[str, Any] = json.loads(CONFIG_FILE.read_text())
    return data


def pyproject_version() -> str:
    """Return the package version pyproject.toml declares (the image tags follow it)."""
    import tomllib

    version: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return version


@pytest.fixture(scope="session")
def config_file() -> dict[str, Any]:
    return load_config_file()


@pytest.fixture(scope="session")
def compose() -> dict[str, Any]:
    docs = load_yaml_documents(COMPOSE_FILE)
    assert len(docs) == 1
    return docs[0]


@pytest.fixture(scope="session")
def k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    """Every Kubernetes object under deploy/k8s by ``(kind, name)``."""
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in load_yaml_documents(path):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in objects, f"{key} defined twice"
            objects[key] = doc
    return objects
