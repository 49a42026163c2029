"""The configuration of ``hulytrio serve`` and ``hulytrio agent``: one attrs record.

Theory of operation
-------------------
Every setting is a ``Key`` in ``KEYS``: its path in the configuration file
(the seed's ``config/production.json`` shape, camelCase), its environment
variable, its flag, its default, and a parser that turns a file value, an
environment string or a flag string into the typed value or says what is
allowed.  ``load_config`` layers the sources, later ones winning:

    default  <  file (--config, JSON or TOML)  <  environment  <  flag

and structures the winners into ``Config`` with cattrs (the same converter
unstructures a ``Config`` back into the file's shape, so ``hulytrio config
--print --json`` writes a file that loads).  ``Config.sources`` says where
each value came from.

Bad input never gets past ``load_config``: a wrong type, range or enum value,
an unknown key in the file or a file that does not parse raises
``ConfigError``, whose message is one line naming the key or variable, the
value and what is allowed; the commands print it and exit with status 2.

This module imports neither trio nor the drivers: ``hulytrio serve`` reads
its configuration before it binds its port (see ``transport/listen.py``).
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from hulytrio.core.hubs import parse_hub_urls
from hulytrio.wire.codec import MAX_FRAME_BYTES

__all__ = [
    "KEYS",
    "AgentConfig",
    "Config",
    "ConfigError",
    "Key",
    "LimitsConfig",
    "LoggingConfig",
    "MonitoringConfig",
    "NetworkConfig",
    "SecurityConfig",
    "describe",
    "format_size",
    "load_config",
]


class ConfigError(ValueError):
    """A setting is wrong; the message is one line naming it, its value and what is allowed."""


# --- the record -------------------------------------------------------------------------


@attrs.frozen
class NetworkConfig:
    """The hub's address and timing (``network.*``); agents dial ``host:port``."""

    port: int = 3737
    bind_address: str = "0.0.0.0"
    host: str = "127.0.0.1"
    alive_timeout: float = 3.0
    ping_interval: float = 1.0
    container_timeout: float = 5.0
    stop_timeout: float = 10.0
    tick_rate: float | None = None
    shutdown_timeout: float = 30.0
    lease: str | None = None
    lease_ttl: float = 5.0
    advertise_url: str | None = None


@attrs.frozen
class AgentConfig:
    """An agent process's settings (``agent.*``)."""

    id: str | None = None
    url: str | None = None
    endpoint: str | None = None
    port: int | None = None
    max_containers: int | None = None
    memory_limit: int | None = None
    health_check_interval: float | None = None
    state_store: str | None = None
    checkpoint_interval: float = 60.0
    fence_lease: float | None = None


@attrs.frozen
class LoggingConfig:
    """Where and how the process logs (``logging.*``); see ``hulytrio.logs``."""

    level: str = "info"
    format: str = "text"
    destination: str = "stderr"


@attrs.frozen
class MonitoringConfig:
    """The metrics endpoint (``monitoring.*``)."""

    enabled: bool = False
    metrics_port: int = 9090
    tracing_enabled: bool = False


@attrs.frozen
class SecurityConfig:
    """Credentials and TLS (``security.*``; docs/security.md).

    ``tls_cert``/``tls_key`` are this process's server certificate (the
    hub's, or an agent endpoint's); ``tls_client_cert``/``tls_client_key``
    its certificate as a client, for a hub that requires mutual TLS.
    """

    auth: str | None = None
    token_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    ca_file: str | None = None
    tls_client_cert: str | None = None
    tls_client_key: str | None = None


@attrs.frozen
class LimitsConfig:
    """The hub's bounds on one peer (``limits.*``; docs/security.md has the table)."""

    max_in_flight: int = 1024
    max_in_flight_per_container: int = 512
    max_in_flight_bytes: int = 8 * 1024**2
    #: None: half of ``send_queue_bytes`` (``in_flight_bytes_per_agent``)
    max_in_flight_bytes_per_agent: int | None = None
    max_offers: int = 10_000
    send_queue_bytes: int = 32 * 1024**2
    max_alive_timeout: float = 300.0
    max_registrations: int = 64
    max_kinds: int = 1024
    max_bad_messages_per_frame: int = 32
    pre_hello_bytes: int = 64 * 1024
    endpoint_hello_timeout: float = 10.0
    endpoint_max_connections: int = 512

    @property
    def in_flight_bytes_per_agent(self) -> int:
        """Return ``max_in_flight_bytes_per_agent``, by default half of ``send_queue_bytes``."""
        if self.max_in_flight_bytes_per_agent is not None:
            return self.max_in_flight_bytes_per_agent
        return self.send_queue_bytes // 2


@attrs.frozen
class Config:
    """The effective configuration; ``sources`` maps each key's path to its origin.

    An origin is ``"default"``, ``"file PATH"``, ``"env NAME"`` or ``"flag --NAME"``.
    """

    network: NetworkConfig = attrs.Factory(NetworkConfig)
    agent: AgentConfig = attrs.Factory(AgentConfig)
    logging: LoggingConfig = attrs.Factory(LoggingConfig)
    monitoring: MonitoringConfig = attrs.Factory(MonitoringConfig)
    security: SecurityConfig = attrs.Factory(SecurityConfig)
    limits: LimitsConfig = attrs.Factory(LimitsConfig)
    sources: Mapping[str, str] = attrs.field(factory=dict, eq=False)

    @property
    def metrics_port(self) -> int | None:
        """Return the port of the metrics endpoint, or None when monitoring is off."""
        return self.monitoring.metrics_port if self.monitoring.enabled else None

    def hub_url(self) -> str:
        """Return the URL(s) an agent dials: ``agent.url``, else ``ws://network.host:port``.

        Several hubs (``NETWORK_HOST=a,b``) give a comma-separated list;
        ``wss://`` instead when a CA file is set (``security.caFile``).
        """
        if self.agent.url is not None:
            return self.agent.url
        scheme = "ws" if self.security.ca_file is None else "wss"
        return ",".join(f"{scheme}://{host}:{self.network.port}"
                        for host in self.network.host.split(","))

    def agent_endpoint(self) -> str | None:
        """Return the agent's own ``HOST:PORT``: ``agent.endpoint``, else from ``agent.port``."""
        if self.agent.endpoint is not None:
            return self.agent.endpoint
        if self.agent.port is not None:
            return f"0.0.0.0:{self.agent.port}"
        return None

    def source(self, path: str) -> str:
        """Return where the value at ``path`` (e.g. ``"network.port"``) came from."""
        return self.sources.get(path, "default")


# --- parsers: a file value, an env string or a flag string -> the typed value -------------
# Each raises ValueError whose message says what is allowed.


def _integer(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    raise ValueError


def _real(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError from None
    if not math.isfinite(number):
        raise ValueError
    return number


def _number(allowed: str, *, whole: bool, low: float, high: float = math.inf,
            above: bool = False) -> Callable[[object], Any]:
    """Return a parser of a number in ``[low, high]`` (``(low, high]`` when ``above``).

    ``whole``: an int (a string of digits in the environment); otherwise a
    finite float.  A value of another type or out of range raises
    ``ValueError(allowed)``.
    """

    def parse(value: object) -> float:
        try:
            number = _integer(value) if whole else _real(value)
        except ValueError:
            raise ValueError(allowed) from None
        if not ((number > low if above else number >= low) and number <= high):
            raise ValueError(allowed)
        return number

    return parse


_port = _number("a port number 0..65535", whole=True, low=0, high=65535)
_seconds = _number("a number of seconds > 0", whole=False, low=0, above=True)
_positive_number = _number("a number > 0", whole=False, low=0, above=True)
_count = _number("a whole number >= 1", whole=True, low=1)


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a non-empty string")
    return value.strip()


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("1", "true", "yes", "on"):
            return True
        if word in ("0", "false", "no", "off"):
            return False
    raise ValueError("true or false (env: 1/0, true/false, yes/no, on/off)")


def _choice(*allowed: str, aliases: Mapping[str, str] | None = None
            ) -> Callable[[object], str]:
    words = dict.fromkeys(allowed, "") | dict(aliases or {})

    def parse(value: object) -> str:
        word = value.strip().lower() if isinstance(value, str) else None
        if word not in words:
            raise ValueError("one of " + ", ".join(allowed))
        return words[word] or word

    return parse


_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b|i)?\s*", re.IGNORECASE)
_SIZE_ALLOWED = "a size in bytes like 512M, 1G, 256Mi or 1048576 (K/M/G/T are 1024-based)"


def _size(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(_SIZE_ALLOWED)
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise ValueError(_SIZE_ALLOWED)
        size = int(float(match[1]) * _SIZE_UNITS[match[2].lower()])
    if size < 1:
        raise ValueError(_SIZE_ALLOWED)
    return size


def format_size(size: int) -> str:
    """Return ``size`` bytes in the largest 1024-based unit that divides it (``512M``)."""
    for unit in "TGMK":
        scale = _SIZE_UNITS[unit.lower()]
        if size % scale == 0:
            return f"{size // scale}{unit}"
    return str(size)


def _address(value: object) -> str:
    host, sep, port = _text(value).rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("HOST:PORT with a port 0..65535 (port 0 picks a free one)")
    return f"{host}:{port}"


def _hosts(value: object) -> str:
    text = _text(value)
    hosts = [host.strip() for host in text.split(",")]
    if not all(hosts) or any(" " in h or "/" in h for h in hosts):
        raise ValueError("a host name or address, or a comma-separated list of them")
    return ",".join(hosts)


def _ws_urls(value: object) -> str:
    try:
        return ",".join(parse_hub_urls(_text(value)))
    except ValueError as exc:
        raise ValueError(f"a ws://HOST:PORT URL or a comma-separated list of them "
                         f"({exc})") from None


def _lease_url(value: object) -> str:
    # The full check (hulytrio.lease.parse_lease_url) runs in ``serve``:
    # this module stays below the lease in the import layers.
    url = _text(value)
    if not (url.startswith("file:") or url.split("://", 1)[0] in ("etcd", "etcd+http",
                                                                   "etcd+https")):
        raise ValueError("file:PATH or etcd://HOST:PORT/KEY")
    return url


def _state_url(value: object) -> str:
    from hulytrio.state.base import StateStoreError, parse_state_url

    url = _text(value)
    try:
        parse_state_url(url)
    except StateStoreError:
        raise ValueError("sqlite:PATH or postgresql://USER@HOST[:PORT]/DB") from None
    return url


def _ws_url(value: object) -> str:
    from urllib.parse import urlsplit

    allowed = "a ws://HOST:PORT URL (or wss://HOST:PORT for TLS)"
    url = _text(value)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError(allowed) from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname or port == 0:
        raise ValueError(allowed)
    return url


def _auth_spec(value: object) -> str:
    allowed = "tokens:FILE, jwt:SECRET_FILE or none"
    spec = _text(value) if isinstance(value, str) else ""
    kind, sep, path = spec.partition(":")
    if spec != "none" and (kind not in ("tokens", "jwt") or not sep or not path):
        raise ValueError(allowed)
    return spec


# --- the keys ----------------------------------------------------------------------------


@attrs.frozen
class Key:
    """One setting: where it lives in the file, its env variable and flag, and its parser.

    ``help`` says what the key does (the flag's help and docs/configuration.md);
    ``allowed`` says what values it takes, for the table.
    """

    path: str
    parse: Callable[[object], Any]
    allowed: str
    help: str
    env: str | None = None
    flag: str | None = None

    @property
    def section(self) -> str:
        """Return the file section (``network`` of ``network.port``)."""
        return self.path.partition(".")[0]

    @property
    def name(self) -> str:
        """Return the key's camelCase name within its section."""
        return self.path.partition(".")[2]


def _camel_to_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


_LEVELS = _choice("debug", "info", "warning", "error", "critical", aliases={"warn": "warning"})

#: Every setting, in the order ``config --print`` and the docs list them.
KEYS: tuple[Key, ...] = (
    Key("network.port", _port, "0..65535 (0: a free port)",
        "the port the hub listens on; the hub port an agent dials",
        env="NETWORK_PORT", flag="--port"),
    Key("network.bindAddress", _text, "an address or host name",
        "the address the hub listens on", env="NETWORK_BIND_ADDRESS", flag="--host"),
    Key("network.host", _hosts, "a host name or address, or a comma-separated list",
        "the hub's host an agent dials (when no agent.url); several: the hubs of a pair",
        env="NETWORK_HOST"),
    Key("network.aliveTimeout", _seconds, "seconds > 0",
        "hub: a peer silent this long is dead; agent: asks the hub for this timeout",
        env="ALIVE_TIMEOUT", flag="--alive-timeout"),
    Key("network.pingInterval", _seconds, "seconds > 0; when set, below aliveTimeout",
        "how often the hub tells its peers to ping it", env="PING_INTERVAL",
        flag="--ping-interval"),
    Key("network.containerTimeout", _seconds, "seconds > 0",
        "an unreferenced container is terminated after this long", env="CONTAINER_TIMEOUT",
        flag="--container-timeout"),
    Key("network.stopTimeout", _seconds, "seconds > 0",
        "a container the hub terminated starts again only once its agent says it stopped "
        "(its last state saved), or after this long", env="STOP_TIMEOUT",
        flag="--stop-timeout"),
    Key("network.tickRate", _positive_number, "a number > 0",
        "accepted for compatibility; no effect (the hub is deadline-driven)",
        env="TICK_RATE"),
    Key("network.shutdownTimeout", _seconds, "seconds > 0",
        "on SIGTERM, how long the requests in flight may take to finish before the hub "
        "(or agent) stops anyway", env="SHUTDOWN_TIMEOUT", flag="--shutdown-timeout"),
    Key("network.lease", _lease_url, "file:PATH or etcd://HOST:PORT/KEY (unset: no lease)",
        "campaign for this leader lease: active while held, else a standby that "
        "redirects peers", env="LEASE_URL", flag="--lease"),
    Key("network.leaseTtl", _seconds, "seconds > 0",
        "how long the lease outlives its holder's last keep-alive (etcd)",
        env="LEASE_TTL", flag="--lease-ttl"),
    Key("network.advertiseUrl", _ws_url, "ws://HOST:PORT (default: the bound host and port)",
        "the URL standbys redirect peers to while this hub is active",
        env="ADVERTISE_URL", flag="--advertise-url"),
    Key("agent.id", _text, "a non-empty string", "the agent's id (random when unset)",
        env="AGENT_ID", flag="--agent-id"),
    Key("agent.url", _ws_urls, "ws://HOST:PORT (wss:// for TLS), or a comma-separated list",
        "the hub URL(s) the agent dials (default ws://network.host:network.port)",
        flag="--url"),
    Key("agent.endpoint", _address, "HOST:PORT (port 0: a free one)",
        "where the agent's own server listens for direct connections", flag="--endpoint"),
    Key("agent.port", _port, "0..65535", "shorthand for agent.endpoint 0.0.0.0:PORT",
        env="AGENT_PORT"),
    Key("agent.maxContainers", _count, "a whole number >= 1 (unset: no limit)",
        "the most containers the agent runs at once; starts beyond it are refused",
        env="MAX_CONTAINERS", flag="--max-containers"),
    Key("agent.memoryLimit", _size, "a size: 512M, 1G, 256Mi, bytes",
        "caps the agent process's data memory (RLIMIT_DATA); not per container",
        env="CONTAINER_MEMORY_LIMIT", flag="--memory-limit"),
    Key("agent.healthCheckInterval", _seconds, "seconds > 0",
        "accepted for compatibility; no effect (liveness is the alive timeout)"),
    Key("agent.stateStore", _state_url, "sqlite:PATH or postgresql://USER@HOST[:PORT]/DB",
        "where containers' state is checkpointed and restored from (unset: not kept)",
        env="STATE_STORE", flag="--state"),
    Key("agent.checkpointInterval", _seconds, "seconds > 0",
        "how often the changed containers' state is checkpointed to agent.stateStore",
        env="CHECKPOINT_INTERVAL", flag="--checkpoint-interval"),
    Key("agent.fenceLease", _seconds, "seconds > 0 (unset: 0.9 x the hub's alive timeout)",
        "the longest hub silence stateless containers serve through; capped at 0.9 x the "
        "hub's alive timeout", env="FENCE_LEASE", flag="--fence-lease"),
    Key("logging.level", _LEVELS, "debug, info, warning (warn), error, critical",
        "the least severe level logged", env="LOG_LEVEL", flag="--log-level"),
    Key("logging.format", _choice("text", "json"), "text, json",
        "human text lines or JSON lines", env="LOG_FORMAT", flag="--log-format"),
    Key("logging.destination", _text, "stdout, stderr or a file path",
        "where log lines go (a file is appended to)", env="LOG_FILE", flag="--log-file"),
    Key("monitoring.enabled", _boolean, "true, false", "serve the metrics endpoint",
        env="MONITORING_ENABLED"),
    Key("monitoring.metricsPort", _port, "0..65535", "the metrics endpoint's port",
        env="METRICS_PORT", flag="--metrics-port"),
    Key("monitoring.tracingEnabled", _boolean, "true, false",
        "accepted for compatibility; hulytrio has no tracing (a warning if true)"),
    Key("security.auth", _auth_spec, "tokens:FILE, jwt:SECRET_FILE, none",
        "hub: the credentials peers must present (unset: none)", env="HULYTRIO_AUTH",
        flag="--auth"),
    Key("security.tokenFile", _text, "a file path",
        "agent and operator commands: the file holding this peer's token",
        env="HULYTRIO_TOKEN_FILE", flag="--token-file"),
    Key("security.tlsCert", _text, "a PEM file path",
        "serve wss://: the certificate chain of the hub (or the agent's endpoint)",
        env="HULYTRIO_TLS_CERT", flag="--tls-cert"),
    Key("security.tlsKey", _text, "a PEM file path (unset: in tlsCert)",
        "the private key of tlsCert", env="HULYTRIO_TLS_KEY", flag="--tls-key"),
    Key("security.tlsClientCa", _text, "a PEM file path",
        "mutual TLS: peers must present a certificate this CA bundle signed",
        env="HULYTRIO_TLS_CLIENT_CA", flag="--tls-client-ca"),
    Key("security.caFile", _text, "a PEM file path (unset: the system's CAs)",
        "the CA bundle a wss:// peer's certificate is checked against",
        env="HULYTRIO_CA_FILE", flag="--ca-file"),
    Key("security.tlsClientCert", _text, "a PEM file path",
        "this peer's certificate for a hub that requires mutual TLS",
        env="HULYTRIO_TLS_CLIENT_CERT", flag="--tls-client-cert"),
    Key("security.tlsClientKey", _text, "a PEM file path (unset: in tlsClientCert)",
        "the private key of tlsClientCert", env="HULYTRIO_TLS_CLIENT_KEY",
        flag="--tls-client-key"),
    Key("limits.maxInFlight", _count, "a whole number >= 1",
        "hub: container calls in flight per client; more are answered retry",
        env="HULYTRIO_MAX_IN_FLIGHT", flag="--max-in-flight"),
    Key("limits.maxInFlightPerContainer", _count, "a whole number >= 1",
        "hub: the same, per client and container", env="HULYTRIO_MAX_IN_FLIGHT_PER_CONTAINER",
        flag="--max-in-flight-per-container"),
    Key("limits.maxInFlightBytes", _size, "a size: 8M, 16Mi, bytes",
        "hub: request payload bytes in flight per client; more are answered retry",
        env="HULYTRIO_MAX_IN_FLIGHT_BYTES", flag="--max-in-flight-bytes"),
    Key("limits.maxInFlightBytesPerAgent", _size,
        "a size: 16M, 32Mi, bytes (unset: half of sendQueueBytes)",
        "hub: request payload bytes in flight to one agent from every client together; "
        "more are answered retry", env="HULYTRIO_MAX_IN_FLIGHT_BYTES_PER_AGENT",
        flag="--max-in-flight-bytes-per-agent"),
    Key("limits.maxOffers", _count, "a whole number >= 1",
        "hub: containers one agent registration may offer; more are refused",
        env="HULYTRIO_MAX_OFFERS", flag="--max-offers"),
    Key("limits.sendQueueBytes", _size, "a size: 32M, 64Mi, bytes",
        "hub: bytes kept for a peer that does not read; past it the peer is dropped",
        env="HULYTRIO_SEND_QUEUE_BYTES", flag="--send-queue-bytes"),
    Key("limits.maxAliveTimeout", _seconds, "seconds > 0",
        "hub: the longest alive timeout a hello may ask for (longer ones are clamped)",
        env="HULYTRIO_MAX_ALIVE_TIMEOUT", flag="--max-alive-timeout"),
    Key("limits.maxRegistrations", _count, "a whole number >= 1",
        "hub: agent ids one session may register; more are refused",
        env="HULYTRIO_MAX_REGISTRATIONS", flag="--max-registrations"),
    Key("limits.maxKinds", _count, "a whole number >= 1",
        "hub: kinds one agent registration may name; more are refused",
        env="HULYTRIO_MAX_KINDS", flag="--max-kinds"),
    Key("limits.maxBadMessagesPerFrame", _count, "a whole number >= 1",
        "hub and agent endpoint: bad messages answered in one frame; past it the "
        "connection is closed", env="HULYTRIO_MAX_BAD_MESSAGES_PER_FRAME",
        flag="--max-bad-messages-per-frame"),
    Key("limits.preHelloBytes", _size, "a size: 64K, 1M, bytes; at least 4K, at most 16M",
        "hub and agent endpoint: the largest message before an accepted hello",
        env="HULYTRIO_PRE_HELLO_BYTES", flag="--pre-hello-bytes"),
    Key("limits.endpointHelloTimeout", _seconds, "seconds > 0",
        "agent endpoint: a direct connection without an accepted hello this long is closed",
        env="HULYTRIO_ENDPOINT_HELLO_TIMEOUT", flag="--endpoint-hello-timeout"),
    Key("limits.endpointMaxConnections", _count, "a whole number >= 1",
        "agent endpoint: direct connections served at once; more are closed at once",
        env="HULYTRIO_ENDPOINT_MAX_CONNECTIONS", flag="--endpoint-max-connections"),
)

_BY_PATH = {key.path: key for key in KEYS}
_SECTIONS = {key.section: [k.name for k in KEYS if k.section == key.section] for key in KEYS}


def _make_converter() -> cattrs.Converter:
    """Return the converter between ``Config`` and the file's camelCase shape."""
    converter = cattrs.Converter(forbid_extra_keys=True)
    sections = {"network": NetworkConfig, "agent": AgentConfig, "logging": LoggingConfig,
                "monitoring": MonitoringConfig, "security": SecurityConfig,
                "limits": LimitsConfig}
    for section, cls in sections.items():
        renames: dict[str, Any] = {_camel_to_snake(name): override(rename=name)
                                   for name in _SECTIONS[section]}
        converter.register_structure_hook(
            cls, make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=True,
                                        **renames))
        converter.register_unstructure_hook(
            cls, make_dict_unstructure_fn(cls, converter, **renames))
    converter.register_unstructure_hook(
        Config, make_dict_unstructure_fn(Config, converter, sources=override(omit=True)))
    return converter


#: Structures the merged values into ``Config``; unstructures it to the file's shape.
converter = _make_converter()


# --- loading -----------------------------------------------------------------------------


def _read_file(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read it: {exc.strerror or exc}") from None
    try:
        data: object = (tomllib.loads(text.decode()) if path.endswith(".toml")
                        else json.loads(text))
    except (ValueError, UnicodeDecodeError) as exc:
        kind = "TOML" if path.endswith(".toml") else "JSON"
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"--config {path}: not valid {kind}: {detail}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: the top level must be an object with sections "
                          f"{', '.join(_SECTIONS)}")
    return data


def _file_values(path: str, data: dict[str, Any]) -> dict[str, tuple[object, str]]:
    """Return ``{key path: (raw value, origin)}`` for a parsed file; refuses unknown keys."""
    values: dict[str, tuple[object, str]] = {}
    for section, body in data.items():
        if section not in _SECTIONS:
            raise ConfigError(f"{path}: unknown key {section!r}; the sections are "
                              f"{', '.join(_SECTIONS)}")
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: {section} must be an object with keys "
                              f"{', '.join(_SECTIONS[section])}")
        for name, value in body.items():
            if name not in _SECTIONS[section]:
                raise ConfigError(f"{path}: unknown key {section}.{name}; {section} has "
                                  f"{', '.join(_SECTIONS[section])}")
            if value is not None:  # null: the default (``config --print --json`` writes it)
                values[f"{section}.{name}"] = (value, f"file {path}")
    return values


def load_config(*, config_file: str | None = None, env: Mapping[str, str] | None = None,
                flags: Mapping[str, str | None] | None = None) -> Config:
    """Return the effective ``Config``: defaults, then the file, then ``env``, then ``flags``.

    ``flags`` maps a flag (``"--port"``) to its string value (None: not
    given).  An empty environment variable counts as unset.

    Raises:
        ConfigError: a value has the wrong type or range, an enum value is
            unknown, the file has an unknown key or cannot be read or parsed;
            the one-line message names the key or variable, the value and
            what is allowed.
    """
    raw: dict[str, tuple[object, str]] = {}
    if config_file is not None:
        raw.update(_file_values(config_file, _read_file(config_file)))
    for key in KEYS:
        if key.env is not None and env is not None and env.get(key.env, "").strip():
            raw[key.path] = (env[key.env], f"env {key.env}")
    by_flag = {key.flag: key for key in KEYS if key.flag is not None}
    for flag, value in (flags or {}).items():
        if value is not None:
            raw[by_flag[flag].path] = (value, f"flag {flag}")

    nested: dict[str, dict[str, Any]] = {section: {} for section in _SECTIONS}
    for path, (raw_value, origin) in raw.items():
        key = _BY_PATH[path]
        try:
            nested[key.section][key.name] = key.parse(raw_value)
        except ValueError as exc:
            raise ConfigError(f"{_name(path, origin)}={_show(raw_value)} is not allowed: "
                              f"expected {exc}") from None
    config = converter.structure(nested, Config)
    config = attrs.evolve(config, sources={path: origin for path, (_, origin) in raw.items()})
    _check_together(config)
    return config


def _name(path: str, origin: str) -> str:
    """Return how the user wrote the setting: ``NETWORK_PORT``, ``--port``, ``file: a.b``."""
    kind, _, where = origin.partition(" ")
    if kind == "default":
        return path
    if kind == "file":
        return f"{where}: {path}"
    return where


def _show(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


#: The smallest ``limits.preHelloBytes``: a hello carrying a signed token fits.
_MIN_PRE_HELLO_BYTES = 4 * 1024


def _check_together(config: Config) -> None:
    """Refuse combinations that are each allowed alone but do not work together."""
    limits = config.limits
    if limits.send_queue_bytes < MAX_FRAME_BYTES:
        # below one frame, a peer reading normally is dropped on any large answer
        name = _name("limits.sendQueueBytes", config.source("limits.sendQueueBytes"))
        raise ConfigError(f"{name}={format_size(limits.send_queue_bytes)} is not allowed: "
                          f"expected at least one frame, {format_size(MAX_FRAME_BYTES)}")
    if not _MIN_PRE_HELLO_BYTES <= limits.pre_hello_bytes <= MAX_FRAME_BYTES:
        # below it a hello with a credential does not fit; above a frame it means nothing
        name = _name("limits.preHelloBytes", config.source("limits.preHelloBytes"))
        raise ConfigError(f"{name}={format_size(limits.pre_hello_bytes)} is not allowed: "
                          f"expected {format_size(_MIN_PRE_HELLO_BYTES)} to "
                          f"{format_size(MAX_FRAME_BYTES)} (a hello must fit, and no "
                          f"message is larger than a frame)")
    per_agent = limits.max_in_flight_bytes_per_agent
    if per_agent is not None and per_agent > limits.send_queue_bytes:
        # the bound exists so that callers together cannot fill the agent's queue
        name = _name("limits.maxInFlightBytesPerAgent",
                     config.source("limits.maxInFlightBytesPerAgent"))
        bound = _name("limits.sendQueueBytes", config.source("limits.sendQueueBytes"))
        raise ConfigError(f"{name}={format_size(per_agent)} is not allowed: expected at most "
                          f"{bound} ({format_size(limits.send_queue_bytes)}), or the callers "
                          f"together can fill an agent's send queue")
    # (the default per-container bound above a lower per-client one is
    # harmless: the per-client bound binds first)
    if (config.source("limits.maxInFlightPerContainer") != "default"
            and limits.max_in_flight_per_container > limits.max_in_flight):
        name = _name("limits.maxInFlightPerContainer",
                     config.source("limits.maxInFlightPerContainer"))
        bound = _name("limits.maxInFlight", config.source("limits.maxInFlight"))
        raise ConfigError(f"{name}={limits.max_in_flight_per_container} is not allowed: "
                          f"expected at most {bound} ({limits.max_in_flight})")
    network = config.network
    # Only a ping interval someone chose is checked: the default (1 s) with a
    # short alive timeout is how the hub always ran (tests and benchmarks use
    # alive timeouts of 1 s and less; peers' other traffic counts as life too).
    if (config.source("network.pingInterval") != "default"
            and network.ping_interval >= network.alive_timeout):
        ping = _name("network.pingInterval", config.source("network.pingInterval"))
        alive = _name("network.aliveTimeout", config.source("network.aliveTimeout"))
        raise ConfigError(f"{ping}={network.ping_interval:g} is not allowed: expected seconds "
                          f"below {alive} ({network.alive_timeout:g}), or every peer is "
                          f"declared dead between two pings")


#: The keys ``describe`` shows as sizes.
_SIZES = ("agent.memoryLimit", "limits.maxInFlightBytes", "limits.maxInFlightBytesPerAgent",
          "limits.sendQueueBytes", "limits.preHelloBytes")


def describe(config: Config) -> list[tuple[str, str, str]]:
    """Return ``(key path, effective value, origin)`` rows for every key, in ``KEYS`` order."""
    flat = converter.unstructure(config)
    rows = []
    for key in KEYS:
        value = flat[key.section][key.name]
        shown = "unset" if value is None else json.dumps(value)
        if key.path in _SIZES and value is not None:
            shown = f"{format_size(value)} ({value} bytes)"
        rows.append((key.path, shown, config.source(key.path)))
    return rows
