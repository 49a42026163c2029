"""``hulytrio.config``: layering, one-line refusals, the file's shape; ``RetryLog``; logs."""

from __future__ import annotations

import json
import logging
import re

import pytest

from hulytrio.config import ConfigError, converter, describe, load_config
from hulytrio.logs import setup_logging
from hulytrio.transport.retrylog import RetryLog

#: The seed's config/production.json, verbatim.
SEED = {
    "network": {"port": 3737, "bindAddress": "0.0.0.0", "aliveTimeout": 3, "pingInterval": 1,
                "containerTimeout": 60},
    "agent": {"maxContainers": 100, "memoryLimit": "512M", "healthCheckInterval": 30},
    "logging": {"level": "info", "format": "json", "destination": "stdout"},
    "monitoring": {"enabled": True, "metricsPort": 9090, "tracingEnabled": True},
}


@pytest.fixture
def seed_file(tmp_path):
    path = tmp_path / "production.json"
    path.write_text(json.dumps(SEED))
    return str(path)


def test_defaults():
    config = load_config()
    assert config.network.port == 3737
    assert config.network.alive_timeout == 3.0
    assert config.agent.max_containers is None
    assert config.metrics_port is None
    assert config.hub_url() == "ws://127.0.0.1:3737"
    assert config.agent_endpoint() is None
    assert {origin for _, _, origin in describe(config)} == {"default"}


def test_the_seed_file_loads_as_is(seed_file):
    config = load_config(config_file=seed_file)
    assert config.network.container_timeout == 60.0
    assert config.agent.max_containers == 100
    assert config.agent.memory_limit == 512 * 1024**2
    assert config.logging.format == "json"
    assert config.metrics_port == 9090
    assert config.source("agent.maxContainers") == f"file {seed_file}"
    assert config.source("network.host") == "default"


def test_env_wins_over_the_file_and_flags_over_env(seed_file):
    env = {"NETWORK_PORT": "4000", "ALIVE_TIMEOUT": "7", "MAX_CONTAINERS": "1",
           "CONTAINER_MEMORY_LIMIT": "1G", "LOG_LEVEL": "WARN", "AGENT_PORT": "3738",
           "NETWORK_HOST": "network-server", "LOG_FILE": "/tmp/x.log", "PING_INTERVAL": ""}
    config = load_config(config_file=seed_file, env=env,
                         flags={"--port": "0", "--max-containers": "2", "--url": None})
    assert config.network.port == 0
    assert config.source("network.port") == "flag --port"
    assert config.network.alive_timeout == 7.0
    assert config.source("network.aliveTimeout") == "env ALIVE_TIMEOUT"
    assert config.agent.max_containers == 2
    assert config.agent.memory_limit == 1024**3
    assert config.logging.level == "warning"
    assert config.logging.destination == "/tmp/x.log"
    assert config.agent_endpoint() == "0.0.0.0:3738"
    assert config.hub_url() == "ws://network-server:0"
    # an empty variable counts as unset
    assert config.source("network.pingInterval") == f"file {seed_file}"


def test_toml_file(tmp_path):
    path = tmp_path / "hub.toml"
    path.write_text('[network]\nport = 4100\npingInterval = 0.5\n[logging]\nformat = "text"\n')
    config = load_config(config_file=str(path))
    assert (config.network.port, config.network.ping_interval) == (4100, 0.5)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"flags": {"--port": "99999"}},
     "--port=99999 is not allowed: expected a port number 0..65535"),
    ({"flags": {"--alive-timeout": "0"}},
     "--alive-timeout=0 is not allowed: expected a number of seconds > 0"),
    ({"env": {"ALIVE_TIMEOUT": "abc"}},
     "ALIVE_TIMEOUT=abc is not allowed: expected a number of seconds > 0"),
    ({"env": {"LOG_LEVEL": "verbose"}},
     "LOG_LEVEL=verbose is not allowed: expected one of debug, info, warning, error, critical"),
    ({"env": {"LOG_FORMAT": "xml"}}, "LOG_FORMAT=xml is not allowed: expected one of text, json"),
    ({"env": {"AGENT_PORT": "abc"}}, "AGENT_PORT=abc is not allowed: expected a port number"),
    ({"flags": {"--endpoint": "localhost:abc"}},
     "--endpoint=localhost:abc is not allowed: expected HOST:PORT"),
    ({"flags": {"--url": "notaurl"}},
     "--url=notaurl is not allowed: expected a ws://HOST:PORT URL"),
    ({"env": {"MAX_CONTAINERS": "0"}},
     "MAX_CONTAINERS=0 is not allowed: expected a whole number >= 1"),
    ({"env": {"CONTAINER_MEMORY_LIMIT": "lots"}},
     "CONTAINER_MEMORY_LIMIT=lots is not allowed: expected a size"),
    ({"env": {"TICK_RATE": "-1"}}, "TICK_RATE=-1 is not allowed: expected a number > 0"),
    ({"env": {"PING_INTERVAL": "5"}},
     "PING_INTERVAL=5 is not allowed: expected seconds below network.aliveTimeout (3)"),
])
def test_a_wrong_value_is_one_line_naming_it(kwargs, message):
    with pytest.raises(ConfigError) as caught:
        load_config(**kwargs)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("data", "message"), [
    ({"network": {"prot": 1}}, "unknown key network.prot; network has port, bindAddress"),
    ({"netwrok": {}}, "unknown key 'netwrok'; the sections are network, agent"),
    ({"network": {"port": "http"}}, "network.port=http is not allowed: expected a port number"),
    ({"network": {"aliveTimeout": True}}, "network.aliveTimeout=true is not allowed"),
    ({"monitoring": {"enabled": "maybe"}}, "monitoring.enabled=maybe is not allowed"),
    ({"agent": 3}, "agent must be an object"),
    ([], "the top level must be an object"),
])
def test_a_wrong_file_names_the_key(tmp_path, data, message):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="^(--config )?" + re.escape(str(path))) as caught:
        load_config(config_file=str(path))
    assert message in str(caught.value)


def test_an_unreadable_or_unparsable_file(tmp_path):
    with pytest.raises(ConfigError, match=r"--config .*missing.json: cannot read it"):
        load_config(config_file=str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{network: }")
    with pytest.raises(ConfigError, match=r"bad.json: not valid JSON: "):
        load_config(config_file=str(bad))


def test_the_printed_json_loads_back(tmp_path, seed_file):
    config = load_config(config_file=seed_file, env={"MAX_CONTAINERS": "7"})
    path = tmp_path / "printed.json"
    path.write_text(json.dumps(converter.unstructure(config)))
    again = load_config(config_file=str(path))
    assert again == config
    assert again.agent.max_containers == 7


def test_retry_log_reports_once_then_with_backoff(caplog):
    caplog.set_level(logging.INFO)
    retry = RetryLog(logging.getLogger("t"), "connect to the hub", first_repeat=5, maximum=20)
    logged = [retry.failed(t / 10, "refused") for t in range(0, 600)]  # every 0.1 s, 60 s
    times = [i / 10 for i, said in enumerate(logged) if said]
    assert times == [0.0, 5.0, 15.0, 35.0, 55.0]
    assert "cannot connect to the hub: refused; retrying" in caplog.records[0].getMessage()
    assert "after 51 attempts over 5 s" in caplog.records[1].getMessage()
    assert retry.succeeded(61.0)
    assert "again after 600 failed attempts over 61.0 s" in caplog.records[-1].getMessage()
    assert not retry.succeeded(62.0)
    assert retry.failed(70.0, "refused")  # a new outage is said at once


def test_json_logs_carry_the_service_and_the_seed_fields(tmp_path):
    from hulytrio.config import LoggingConfig

    path = tmp_path / "hub.log"
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        setup_logging(LoggingConfig("info", "json", str(path)), "hub")
        logging.getLogger("hulytrio.hub").info("network started")
        logging.getLogger("hulytrio.hub").debug("not this")
    finally:
        for h in root.handlers:
            h.close()
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["service"] == "hub"
    assert record["level"] == "INFO"
    assert record["message"] == "network started"
    assert record["logger"] == "hulytrio.hub"
    assert "timestamp" in record


def test_a_log_file_that_cannot_be_opened_is_refused(tmp_path):
    from hulytrio.config import LoggingConfig

    with pytest.raises(ConfigError, match=r"logging\.destination=.*cannot be opened"):
        setup_logging(LoggingConfig("info", "text", str(tmp_path / "no" / "dir.log")), "agent")


def test_the_docs_table_lists_every_key_variable_and_flag():
    from pathlib import Path

    from hulytrio.config import KEYS

    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    for key in KEYS:
        assert f"| `{key.path}` |" in doc, key.path
        if key.env:
            assert f"`{key.env}`" in doc, key.env
        if key.flag:
            assert f"{key.flag}`" in doc, key.flag


def test_only_a_chosen_ping_interval_must_be_below_the_alive_timeout():
    # the default ping interval with a short alive timeout: as the hub always ran
    assert load_config(flags={"--alive-timeout": "0.5"}).network.ping_interval == 1.0
    with pytest.raises(ConfigError, match=r"^--ping-interval=0\.5 is not allowed: .*"
                                          r"below --alive-timeout \(0\.5\)"):
        load_config(flags={"--alive-timeout": "0.5", "--ping-interval": "0.5"})
