"""deploy/config/production.json: the seed's shape, loadable by hulytrio's config layer."""

from __future__ import annotations

from .conftest import CONFIG_FILE

#: the keys of the seed's config/production.json, section by section
SEED_SHAPE = {
    "network": {"port", "bindAddress", "aliveTimeout", "pingInterval", "containerTimeout"},
    "agent": {"maxContainers", "memoryLimit", "healthCheckInterval"},
    "logging": {"level", "format", "destination"},
    "monitoring": {"enabled", "metricsPort", "tracingEnabled"},
}


def test_the_file_has_the_seeds_shape(config_file):
    assert {section: set(values) for section, values in config_file.items()} == SEED_SHAPE
    assert config_file["network"]["port"] == 3737
    assert config_file["monitoring"]["metricsPort"] == 9090
    assert config_file["logging"] == {"level": "info", "format": "json", "destination": "stdout"}


def test_hulytrio_loads_the_file(config_file):
    from hulytrio.config import load_config

    config = load_config(config_file=str(CONFIG_FILE), env={})
    assert config.network.port == config_file["network"]["port"]
    assert config.network.container_timeout == config_file["network"]["containerTimeout"]
    assert config.metrics_port == config_file["monitoring"]["metricsPort"]
    assert config.logging.format == "json"
    # the seed's environment variables win over the file
    config = load_config(config_file=str(CONFIG_FILE), env={"NETWORK_PORT": "4000"})
    assert config.network.port == 4000
