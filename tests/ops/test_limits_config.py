"""The hub's per-peer limits as configuration keys (limits.*): file, env, flags; checked."""

from __future__ import annotations

import functools

import pytest
import trio

import hulytrio
from hulytrio.config import ConfigError, load_config


def test_limits_defaults_match_the_hub() -> None:
    limits = load_config().limits
    assert (limits.max_in_flight, limits.max_in_flight_per_container,
            limits.send_queue_bytes, limits.max_alive_timeout) == (1024, 512, 32 * 1024**2, 300.0)


def test_limits_from_a_file_env_and_flags(tmp_path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text("[limits]\nmaxInFlight = 100\nsendQueueBytes = \"64M\"\n")
    config = load_config(config_file=str(path),
                         env={"HULYTRIO_MAX_IN_FLIGHT_PER_CONTAINER": "10"},
                         flags={"--max-alive-timeout": "30"})
    limits = config.limits
    assert limits.max_in_flight == 100
    assert limits.send_queue_bytes == 64 * 1024**2
    assert limits.max_in_flight_per_container == 10
    assert limits.max_alive_timeout == 30.0
    assert config.source("limits.maxAliveTimeout") == "flag --max-alive-timeout"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"env": {"HULYTRIO_MAX_IN_FLIGHT": "0"}},
     "HULYTRIO_MAX_IN_FLIGHT=0 is not allowed: expected a whole number >= 1"),
    ({"flags": {"--send-queue-bytes": "lots"}},
     "--send-queue-bytes=lots is not allowed: expected a size"),
    ({"flags": {"--send-queue-bytes": "1M"}},
     "--send-queue-bytes=1M is not allowed: expected at least one frame, 16M"),
    ({"flags": {"--max-alive-timeout": "-1"}},
     "--max-alive-timeout=-1 is not allowed: expected a number of seconds > 0"),
    ({"flags": {"--max-in-flight": "10", "--max-in-flight-per-container": "20"}},
     "--max-in-flight-per-container=20 is not allowed: expected at most --max-in-flight (10)"),
])
def test_a_wrong_limit_is_one_line_naming_it(kwargs, message) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(**kwargs)
    assert str(caught.value).startswith(message), caught.value
    assert "\n" not in str(caught.value)


async def test_serve_applies_the_alive_timeout_clamp(tmp_path) -> None:
    # the flag reaches the hub: a hello asking for 100 s is granted 2 s
    import socket
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            proc = await nursery.start(functools.partial(
                trio.run_process,
                [sys.executable, "-m", "hulytrio", "serve", "--host", "127.0.0.1", "--port",
                 str(port), "--max-alive-timeout", "2"], check=False))
            try:
                async with hulytrio.open_client(f"ws://127.0.0.1:{port}",
                                                alive_timeout=100) as client:
                    await client.wait_connection()
                    assert client.session._hub_alive == 2.0
            finally:
                proc.terminate()


def test_the_in_flight_bytes_limit_is_a_size_key() -> None:
    from hulytrio.core.hub import MAX_IN_FLIGHT_BYTES

    assert load_config().limits.max_in_flight_bytes == MAX_IN_FLIGHT_BYTES == 8 * 1024**2
    assert load_config(env={"HULYTRIO_MAX_IN_FLIGHT_BYTES": "2M"}).limits.max_in_flight_bytes \
        == 2 * 1024**2
    config = load_config(flags={"--max-in-flight-bytes": "1Mi"})
    assert config.limits.max_in_flight_bytes == 1024**2
    assert config.source("limits.maxInFlightBytes") == "flag --max-in-flight-bytes"
    with pytest.raises(ConfigError) as caught:
        load_config(flags={"--max-in-flight-bytes": "0"})
    assert str(caught.value).startswith("--max-in-flight-bytes=0 is not allowed: expected a size")


def test_serve_takes_the_in_flight_bytes_flag() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "hulytrio", "serve", "--help"],
                         capture_output=True, text=True, check=True).stdout
    assert "--max-in-flight-bytes" in out
    assert "--max-offers" in out


def test_the_offers_limit_is_a_count_key() -> None:
    from hulytrio.core.hub import MAX_OFFERS

    assert load_config().limits.max_offers == MAX_OFFERS == 10_000
    config = load_config(env={"HULYTRIO_MAX_OFFERS": "500"})
    assert config.limits.max_offers == 500
    assert config.source("limits.maxOffers") == "env HULYTRIO_MAX_OFFERS"
    with pytest.raises(ConfigError) as caught:
        load_config(flags={"--max-offers": "-3"})
    assert str(caught.value).startswith(
        "--max-offers=-3 is not allowed: expected a whole number >= 1")


# --- the constants that became keys (issue 13, "Not done yet") --------------------------

#: key path -> (its env variable, its flag, the module default, a good string, its value)
_NEW_KEYS = {
    "maxInFlightBytesPerAgent": ("HULYTRIO_MAX_IN_FLIGHT_BYTES_PER_AGENT",
                                 "--max-in-flight-bytes-per-agent", None, "4M", 4 * 1024**2),
    "maxRegistrations": ("HULYTRIO_MAX_REGISTRATIONS", "--max-registrations", 64, "3", 3),
    "maxKinds": ("HULYTRIO_MAX_KINDS", "--max-kinds", 1024, "8", 8),
    "maxBadMessagesPerFrame": ("HULYTRIO_MAX_BAD_MESSAGES_PER_FRAME",
                               "--max-bad-messages-per-frame", 32, "5", 5),
    "preHelloBytes": ("HULYTRIO_PRE_HELLO_BYTES", "--pre-hello-bytes", 64 * 1024, "8K", 8192),
    "endpointHelloTimeout": ("HULYTRIO_ENDPOINT_HELLO_TIMEOUT", "--endpoint-hello-timeout",
                             10.0, "2.5", 2.5),
    "endpointMaxConnections": ("HULYTRIO_ENDPOINT_MAX_CONNECTIONS",
                               "--endpoint-max-connections", 512, "7", 7),
}


def _field(name: str) -> str:
    import re

    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@pytest.mark.parametrize("name", sorted(_NEW_KEYS))
def test_each_former_constant_is_a_key_from_file_env_and_flag(name, tmp_path) -> None:
    env, flag, default, text, value = _NEW_KEYS[name]
    assert getattr(load_config().limits, _field(name)) == default
    path = tmp_path / "hub.toml"
    path.write_text(f'[limits]\n{name} = "{text}"\n')
    assert getattr(load_config(config_file=str(path)).limits, _field(name)) == value
    config = load_config(env={env: text})
    assert getattr(config.limits, _field(name)) == value
    assert config.source(f"limits.{name}") == f"env {env}"
    config = load_config(env={env: "junk"}, flags={flag: text})  # the flag wins
    assert getattr(config.limits, _field(name)) == value
    with pytest.raises(ConfigError) as caught:
        load_config(flags={flag: "0"})
    assert str(caught.value).startswith(f"{flag}=0 is not allowed: expected "), caught.value
    assert "\n" not in str(caught.value)


def test_the_module_defaults_are_the_config_defaults() -> None:
    from hulytrio.core.hub import MAX_IN_FLIGHT_BYTES_PER_AGENT, MAX_KINDS, MAX_REGISTRATIONS
    from hulytrio.transport.limits import EndpointLimits

    limits = load_config().limits
    assert limits.in_flight_bytes_per_agent == MAX_IN_FLIGHT_BYTES_PER_AGENT
    assert (limits.max_registrations, limits.max_kinds) == (MAX_REGISTRATIONS, MAX_KINDS)
    endpoint = EndpointLimits()
    assert (limits.max_bad_messages_per_frame, limits.pre_hello_bytes,
            limits.endpoint_hello_timeout, limits.endpoint_max_connections) == (
        endpoint.max_bad_messages_per_frame, endpoint.pre_hello_bytes,
        endpoint.hello_timeout, endpoint.max_connections)
    # the per-agent bound follows the send queue unless set
    assert load_config(flags={"--send-queue-bytes": "64M"}).limits.in_flight_bytes_per_agent \
        == 32 * 1024**2


@pytest.mark.parametrize(("flags", "message"), [
    ({"--max-in-flight-bytes-per-agent": "64M"},
     "--max-in-flight-bytes-per-agent=64M is not allowed: expected at most "
     "limits.sendQueueBytes (32M)"),
    ({"--pre-hello-bytes": "1K"},
     "--pre-hello-bytes=1K is not allowed: expected 4K to 16M"),
    ({"--pre-hello-bytes": "32M"},
     "--pre-hello-bytes=32M is not allowed: expected 4K to 16M"),
    ({"--endpoint-hello-timeout": "-2"},
     "--endpoint-hello-timeout=-2 is not allowed: expected a number of seconds > 0"),
    ({"--max-registrations": "many"},
     "--max-registrations=many is not allowed: expected a whole number >= 1"),
])
def test_a_wrong_new_limit_is_one_line_naming_it(flags, message) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(flags=flags)
    assert str(caught.value).startswith(message), caught.value
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("command", "flag"), [
    ("serve", "--max-bad-messages-per-frame"), ("serve", "--pre-hello-bytes"),
    ("serve", "--max-registrations"), ("serve", "--max-kinds"),
    ("serve", "--max-in-flight-bytes-per-agent"),
    ("agent", "--max-bad-messages-per-frame"), ("agent", "--pre-hello-bytes"),
    ("agent", "--endpoint-hello-timeout"), ("agent", "--endpoint-max-connections"),
])
def test_a_bad_new_limit_flag_exits_2_with_one_line(command, flag) -> None:
    import subprocess
    import sys

    extra = ["--factories", "nowhere:X"] if command == "agent" else []
    done = subprocess.run([sys.executable, "-m", "hulytrio", command, *extra, flag, "0"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"{flag}=0 is not allowed" in done.stderr


def test_hub_limits_carries_every_hub_key_to_serve_network() -> None:
    import inspect

    from hulytrio.transport.commands import hub_limits
    from hulytrio.transport.server import serve_network

    config = load_config(flags={"--max-registrations": "3", "--pre-hello-bytes": "8K",
                                "--max-bad-messages-per-frame": "5", "--max-kinds": "9",
                                "--max-in-flight-bytes-per-agent": "4M"})
    bounds = hub_limits(config.limits)
    assert set(bounds) <= set(inspect.signature(serve_network).parameters)
    assert (bounds["max_registrations"], bounds["pre_hello_bytes"],
            bounds["max_bad_messages_per_frame"], bounds["max_kinds"],
            bounds["max_in_flight_bytes_per_agent"]) == (3, 8192, 5, 9, 4 * 1024**2)
