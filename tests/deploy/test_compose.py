"""deploy/docker-compose.yml: valid compose, the seed's layout, and hulytrio's ports.

The schema is the compose-spec JSON schema vendored in check-jsonschema
(``--builtin-schema vendor.compose-spec``): no network at test time.
"""

from __future__ import annotations

import subprocess

from .conftest import (
    COMPOSE_FILE,
    DEPLOY,
    DOCKERFILES,
    GRAFANA,
    PROMETHEUS,
    ROOT,
    hulytrio_argv,
    parse_cli,
    pyproject_version,
    tool,
)

SEED_AGENT_ENV = {"AGENT_ID", "NETWORK_HOST", "NETWORK_PORT", "AGENT_PORT"}


def check_compose_schema(path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True, timeout=120)


def test_compose_file_matches_the_compose_spec():
    result = check_compose_schema(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_schema_check_rejects_a_broken_file(tmp_path):
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("healthcheck:", "healthchek:", 1))
    result = check_compose_schema(broken)
    assert result.returncode != 0
    assert "healthchek" in result.stdout + result.stderr


def test_the_seed_layout(compose, config_file):
    services = compose["services"]
    hub = services["network-server"]
    assert hub["container_name"] == "huly-network"
    assert hub["restart"] == "unless-stopped"
    port = config_file["network"]["port"]
    metrics = config_file["monitoring"]["metricsPort"]
    assert f"{port}:{port}" in hub["ports"]
    assert f"{metrics}:{metrics}" in hub["ports"]
    assert hub["environment"]["NETWORK_PORT"] == str(port)
    assert "./logs:/app/logs" in hub["volumes"]
    assert "./config:/app/config:ro" in hub["volumes"]
    # one hub only: nothing in the file may scale it
    assert "deploy" not in hub
    assert "scale" not in hub
    agents = {name: s for name, s in services.items() if name.startswith("agent-")}
    assert sorted(agents) == ["agent-1", "agent-2"]
    agent_ports = []
    for name, agent in agents.items():
        env = agent["environment"]
        assert set(env) >= SEED_AGENT_ENV
        assert env["AGENT_ID"] == name
        assert agent["container_name"] == f"huly-{name}"
        # the hub the agents dial is the hub service, on its port
        assert env["NETWORK_HOST"] == "network-server"
        assert env["NETWORK_PORT"] == str(port)
        # other containers reach the agent's endpoint by its service name
        assert env["AGENT_HOST"] == name
        agent_ports.append(int(env["AGENT_PORT"]))
        assert f"{env['AGENT_PORT']}:{env['AGENT_PORT']}" in agent["ports"]
        assert agent["depends_on"]["network-server"]["condition"] == "service_healthy"
    assert sorted(agent_ports) == [3738, 3739]
    for service in [hub, *agents.values()]:
        assert service["networks"] == ["huly-network"]


def test_commands_and_healthchecks_parse_with_the_cli(compose, config_file):
    services = compose["services"]
    hub = services["network-server"]
    args = parse_cli(hub["command"])
    assert args.command == "serve"
    assert args.config == "/app/config/production.json"
    assert "./config:/app/config:ro" in hub["volumes"]
    for name in ("network-server", "agent-1", "agent-2"):
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD"
        health = parse_cli(hulytrio_argv(test[1:]))
        assert health.command == "health"
        host = "127.0.0.1" if name == "network-server" else "network-server"
        assert health.url == f"http://{host}:{config_file['network']['port']}/health"
    for name in ("agent-1", "agent-2"):
        args = parse_cli(services[name]["command"])
        assert args.command == "agent"
        assert args.factories == "hulytrio.testing.echo:FACTORIES"


def test_images_builds_and_mounts_point_at_files_that_exist(compose):
    services = compose["services"]
    version = pyproject_version()
    assert services["network-server"]["image"] == f"hulytrio-hub:{version}"
    for name in ("agent-1", "agent-2"):
        assert services[name]["image"] == f"hulytrio-agent:{version}"
    for name, service in services.items():
        if "build" in service:
            context = (COMPOSE_FILE.parent / service["build"]["context"]).resolve()
            assert context == ROOT, name
            dockerfile = context / service["build"]["dockerfile"]
            assert dockerfile in DOCKERFILES.values(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source == "./logs":
                continue  # created by docker on first start
            assert (DEPLOY / source).exists(), f"{name}: {source} is missing"
    # the monitoring profile mounts the files the other tests check
    assert any(v.startswith("./prometheus/prometheus.yml:")
               for v in services["prometheus"]["volumes"])
    assert (PROMETHEUS / "prometheus.yml").exists()
    assert (GRAFANA / "dashboards" / "hulytrio.json").exists()
    assert services["prometheus"]["profiles"] == ["monitoring"]
    assert services["grafana"]["profiles"] == ["monitoring"]
