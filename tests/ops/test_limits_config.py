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
