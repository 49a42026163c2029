"""``hulytrio serve`` / ``hulytrio agent`` settings: flags win over env, env over defaults."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import textwrap

import pytest

from hulytrio.config import load_config
from hulytrio.transport.commands import (
    AGENT_FLAGS,
    SERVE_FLAGS,
    _flag_values,
    hub_timeouts,
    load_factories,
    register,
)
from hulytrio.transport.listen import bind_listeners


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_serve_settings_come_from_the_config():
    env = {"NETWORK_BIND_ADDRESS": "127.0.0.2", "NETWORK_PORT": "4000", "ALIVE_TIMEOUT": "7",
           "PING_INTERVAL": "2", "CONTAINER_TIMEOUT": "60"}
    args = parse("serve", "--port", "0", "--container-timeout", "0.5")
    config = load_config(env=env, flags=_flag_values(args, SERVE_FLAGS))
    assert (config.network.bind_address, config.network.port) == ("127.0.0.2", 0)
    timeouts = hub_timeouts(config)
    assert (timeouts.alive, timeouts.ping_interval, timeouts.unused_container) == (7.0, 2.0, 0.5)
    assert timeouts.stop == 10.0  # the default
    config = load_config(env={"STOP_TIMEOUT": "30"},
                         flags=_flag_values(parse("serve"), SERVE_FLAGS))
    assert hub_timeouts(config).stop == 30.0
    args = parse("serve", "--stop-timeout", "2.5")
    assert hub_timeouts(load_config(env={"STOP_TIMEOUT": "30"},
                                    flags=_flag_values(args, SERVE_FLAGS))).stop == 2.5


def test_agent_settings_follow_the_seed_environment():
    env = {"NETWORK_HOST": "network-server", "NETWORK_PORT": "3737", "AGENT_ID": "agent-1",
           "AGENT_PORT": "3738"}
    config = load_config(env=env, flags=_flag_values(parse("agent", "--factories", "m:F"),
                                                     AGENT_FLAGS))
    assert config.hub_url() == "ws://network-server:3737"
    assert config.agent.id == "agent-1"
    assert config.agent_endpoint() == "0.0.0.0:3738"
    args = parse("agent", "--factories", "m:F", "--url", "ws://h:1", "--agent-id", "x",
                 "--endpoint", "127.0.0.1:9")
    config = load_config(env=env, flags=_flag_values(args, AGENT_FLAGS))
    assert (config.hub_url(), config.agent.id, config.agent_endpoint()) == (
        "ws://h:1", "x", "127.0.0.1:9")


def test_load_factories(tmp_path, monkeypatch):
    (tmp_path / "my_factories_mod.py").write_text(textwrap.dedent("""
        async def make(options):
            return None
        FACTORIES = {"k": make}
        STATELESS = ["offer"]
        NOT_A_DICT = [1]
    """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    factories, stateless = load_factories("my_factories_mod:FACTORIES")
    assert list(factories) == ["k"]
    assert stateless == ["offer"]
    with pytest.raises(ValueError, match="not a dict"):
        load_factories("my_factories_mod:NOT_A_DICT")
    with pytest.raises(ValueError, match=r"package\.module:NAME"):
        load_factories("my_factories_mod")
    with pytest.raises(ImportError):
        load_factories("no_such_module_here:FACTORIES")


def test_serve_binds_its_port_before_it_imports_trio():
    # A restarted hub's clients queue in the listen backlog while it imports
    # the rest: the serve path must not pull in trio (or the simulator) before
    # binding.
    code = textwrap.dedent("""
        import sys
        import hulytrio.transport.listen as listen
        from hulytrio.cli import build_parser

        seen = []
        real_bind = listen.bind_listeners
        def spy(host, port):
            seen.append(("trio" in sys.modules, "hulytrio.sim.world" in sys.modules))
            raise OSError("stop here")
        import hulytrio.transport.commands as commands
        commands.bind_listeners = spy
        args = build_parser("serve").parse_args(["serve", "--port", "0"])
        assert args.func(args) == 2
        assert seen == [(False, False)], seen
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_bind_listeners_listens_and_reports_errors():
    socks = bind_listeners("127.0.0.1", 0)
    try:
        port = socks[0].getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # the kernel accepts before anyone calls accept()
        with pytest.raises(OSError, match="in use"):
            bind_listeners("127.0.0.1", port)  # taken
    finally:
        for s in socks:
            s.close()


def test_the_transport_needs_no_trio_websocket():
    # trio-websocket is a test dependency only (an independent peer, the
    # bench yardstick): serving, connecting and agents must work without it.
    code = textwrap.dedent("""
        import sys
        sys.modules["trio_websocket"] = None  # any import of it fails
        import hulytrio.transport.server, hulytrio.transport.client
        import hulytrio.transport.agent, hulytrio.transport.connection
        import hulytrio.transport.commands, hulytrio.cli
        hulytrio.cli.build_parser()
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
