"""deploy/systemd: units systemd itself accepts, hardened, running commands hulytrio parses."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import SYSTEMD, hulytrio_argv, parse_cli

UNITS = {"hub": SYSTEMD / "hulytrio-hub.service", "agent": SYSTEMD / "hulytrio-agent@.service",
         "hub-pair": SYSTEMD / "hulytrio-hub@.service"}
#: the instance name each template unit is checked with
INSTANCES = {"agent": "agent-1", "hub-pair": "a"}
#: where the units expect the install (docs/operations.md, "systemd")
INSTALLED = "/opt/hulytrio/bin/hulytrio"
#: systemd-analyze security's exposure score (0 safe .. 10 exposed) each unit stays below
MAX_EXPOSURE = 2.0

systemd_analyze = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(
    systemd_analyze is None, reason="systemd-analyze is not installed on this machine")


def service_section(path: Path) -> dict[str, list[str]]:
    # systemd allows a key several times (configparser does not): keep every value
    values: dict[str, list[str]] = {}
    section = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service":
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def installed_copy(tmp_path: Path, unit: Path, instance: str | None = None) -> Path:
    # systemd-analyze verify checks that ExecStart's program exists: point the
    # install prefix at this environment's hulytrio, nothing else changes
    here = str(Path(sys.executable).parent / "hulytrio")
    name = unit.name.replace("@.", f"@{instance}.") if instance else unit.name
    copy = tmp_path / name
    copy.write_text(unit.read_text().replace(INSTALLED, here))
    return copy


@needs_systemd
@pytest.mark.parametrize("name", sorted(UNITS))
def test_systemd_analyze_verify_is_silent(name, tmp_path):
    unit = installed_copy(tmp_path, UNITS[name], INSTANCES.get(name))
    result = subprocess.run([systemd_analyze, "verify", str(unit)],
                            capture_output=True, text=True, timeout=60)
    # verify exits 0 even for unknown keys: its warnings must be absent too
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
    assert result.stdout.strip() == ""


@needs_systemd
def test_verify_catches_a_misspelt_key(tmp_path):
    unit = installed_copy(tmp_path, UNITS["hub"])
    unit.write_text(unit.read_text().replace("NoNewPrivileges=", "NoNewPrivilege="))
    result = subprocess.run([systemd_analyze, "verify", str(unit)],
                            capture_output=True, text=True, timeout=60)
    assert "Unknown key" in result.stderr


@needs_systemd
@pytest.mark.parametrize("name", sorted(UNITS))
def test_units_are_hardened(name, tmp_path):
    unit = installed_copy(tmp_path, UNITS[name], INSTANCES.get(name))
    result = subprocess.run([systemd_analyze, "security", "--offline=true", str(unit)],
                            capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match[1]) <= MAX_EXPOSURE, result.stdout


@pytest.mark.parametrize("name", sorted(UNITS))
def test_hardening_options_are_set(name):
    service = service_section(UNITS[name])
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices",
                "ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups",
                "RestrictNamespaces", "LockPersonality", "RestrictSUIDSGID"):
        assert service[key] == ["yes"], key
    assert service["ProtectSystem"] == ["strict"]
    assert service["CapabilityBoundingSet"] == [""]
    assert service["User"] == ["hulytrio"]
    assert service["Restart"] == ["always"]
    assert service["KillSignal"] == ["SIGTERM"]


def test_hub_unit_runs_serve_with_the_config_file():
    service = service_section(UNITS["hub"])
    (exec_start,) = service["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[0] == INSTALLED
    args = parse_cli(hulytrio_argv(argv))
    assert args.command == "serve"
    assert args.config == "/etc/huly/production.json"
    assert args.supervise is True
    assert service["ConfigurationDirectory"] == ["huly"]
    assert service["LogsDirectory"] == ["huly"]  # /var/log/huly, the seed's LOG_FILE directory


def test_pair_unit_runs_serve_on_a_file_lease_in_its_state_directory():
    service = service_section(UNITS["hub-pair"])
    (exec_start,) = service["ExecStart"]
    args = parse_cli(hulytrio_argv(shlex.split(exec_start)))
    assert args.command == "serve"
    assert args.config == "/etc/huly/production.json"
    assert args.lease == "file:/var/lib/hulytrio/hub.lock"
    assert service["StateDirectory"] == ["hulytrio"]  # writable under ProtectSystem=strict
    assert "/etc/huly/hub-%i.env" in service["EnvironmentFile"]


def test_agent_unit_runs_agent_named_by_its_instance():
    service = service_section(UNITS["agent"])
    (exec_start,) = service["ExecStart"]
    environment = dict(v.split("=", 1) for v in service["Environment"])
    assert environment["AGENT_ID"] == "%i"
    argv = shlex.split(exec_start.replace("${FACTORIES}", environment["FACTORIES"]))
    args = parse_cli(hulytrio_argv(argv))
    assert args.command == "agent"
    assert args.factories == "hulytrio.testing.echo:FACTORIES"
