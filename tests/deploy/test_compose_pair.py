"""deploy/docker-compose.pair.yml: valid compose; two hubs on one lease, agents given both."""

from __future__ import annotations

import yaml

from hulytrio.config import load_config
from hulytrio.lease import parse_lease_url

from .conftest import DEPLOY, hulytrio_argv, parse_cli
from .test_compose import check_compose_schema

PAIR = DEPLOY / "docker-compose.pair.yml"


def test_the_pair_file_matches_the_compose_spec():
    result = check_compose_schema(PAIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_two_hubs_on_one_lease_and_agents_given_both():
    services = yaml.safe_load(PAIR.read_text())["services"]
    leases, advertised = set(), []
    for name in ("hub-a", "hub-b"):
        hub = services[name]
        assert parse_cli(hub["command"]).command == "serve"
        config = load_config(env=hub["environment"])
        assert parse_lease_url(config.network.lease).kind == "etcd"
        leases.add(config.network.lease)
        advertised.append(config.network.advertise_url)
        health = hulytrio_argv(["hulytrio", *hub["healthcheck"]["test"][2:]])
        assert health[-1].endswith("/health")  # not /ready: the standby must stay healthy
    assert len(leases) == 1
    assert advertised == ["ws://hub-a:3737", "ws://hub-b:3737"]
    for name in ("agent-1", "agent-2"):
        config = load_config(env=services[name]["environment"])
        assert config.hub_url() == "ws://hub-a:3737,ws://hub-b:3737"
