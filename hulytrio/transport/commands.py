"""``hulytrio serve`` (the hub), ``hulytrio agent`` and ``hulytrio config``.

Settings come from ``hulytrio.config``: defaults, then ``--config FILE``
(JSON or TOML, the seed's ``config/production.json`` shape), then the seed's
environment variables, then flags (docs/configuration.md has the table).  A
wrong setting is one line on stderr naming it, and exit status 2.

- serve: ``--supervise`` / ``HUB_SUPERVISE=1`` (off): a supervisor process
  restarts the hub within milliseconds if it dies (``supervisor.py``);
- ``hulytrio config [--config F] --print [--json]`` shows the effective
  configuration and where each value came from.

SIGTERM and SIGINT drain either command (docs/operations.md, "Stopping and
draining"), bounded by ``network.shutdownTimeout`` / ``SHUTDOWN_TIMEOUT`` /
``--shutdown-timeout`` (30 s): the hub stops taking calls, lets the forwarded
ones finish and tells every peer to reconnect (close 1001); an agent asks the
hub to move its containers, lets its requests finish, terminates its
containers and unregisters.  Both then exit 0; a second signal stops at once.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, TypeVar

from hulytrio.config import (
    KEYS,
    Config,
    ConfigError,
    LimitsConfig,
    describe,
    format_size,
    load_config,
)
from hulytrio.core.timeouts import Timeouts

from .listen import bind_listeners

if TYPE_CHECKING:
    from .container import Factory, StatelessContainer
    from .server import NetworkServer

# trio and the drivers are imported by the command that runs, not here: the
# hub binds its port first, so clients reconnecting to a restarted hub
# queue in its listen backlog while the rest of it is still being imported.

__all__ = ["hub_limits", "hub_timeouts", "load_factories", "register"]

log = logging.getLogger("hulytrio.cli")

T = TypeVar("T")

#: The flags of each command that set a ``hulytrio.config`` key.
SERVE_FLAGS = ("--host", "--port", "--alive-timeout", "--ping-interval",
               "--container-timeout", "--stop-timeout", "--metrics-port", "--shutdown-timeout",
               "--auth", "--tls-cert", "--tls-key", "--tls-client-ca", "--lease", "--lease-ttl",
               "--advertise-url", "--max-in-flight", "--max-in-flight-per-container",
               "--max-in-flight-bytes", "--max-in-flight-bytes-per-agent", "--max-offers",
               "--send-queue-bytes", "--max-alive-timeout",
               "--max-registrations", "--max-kinds", "--max-bad-messages-per-frame",
               "--pre-hello-bytes")
AGENT_FLAGS = ("--url", "--agent-id", "--endpoint", "--max-containers", "--memory-limit",
               "--alive-timeout", "--shutdown-timeout", "--token-file", "--ca-file",
               "--tls-client-cert", "--tls-client-key", "--tls-cert", "--tls-key",
               "--tls-client-ca", "--state", "--checkpoint-interval", "--fence-lease",
               "--max-bad-messages-per-frame", "--pre-hello-bytes", "--endpoint-hello-timeout",
               "--endpoint-max-connections")
LOG_FLAGS = ("--log-level", "--log-format", "--log-file")
#: An agent's data limit below this would fail Python itself, not its containers.
MIN_MEMORY_LIMIT = 32 * 1024**2


def _add_key_flags(parser: argparse.ArgumentParser, flags: tuple[str, ...]) -> None:
    # Every value is taken as a string and parsed by hulytrio.config, so a
    # wrong one gets the same one-line message as a wrong env variable.
    by_flag = {key.flag: key for key in KEYS}
    parser.add_argument("--config", metavar="FILE",
                        help="a JSON or TOML configuration file (docs/configuration.md)")
    for flag in flags:
        key = by_flag[flag]
        env = f"env {key.env}; " if key.env else ""
        parser.add_argument(flag, metavar=flag.strip("-").split("-")[-1].upper(),
                            help=f"{key.help} ({env}{key.path}: {key.allowed})")


def _flag_values(args: argparse.Namespace, flags: tuple[str, ...]) -> dict[str, str | None]:
    return {flag: getattr(args, flag.lstrip("-").replace("-", "_")) for flag in flags}


def register(subparsers: Any) -> None:
    """Add the ``serve``, ``agent`` and ``config`` sub-commands to ``subparsers``."""
    serve = subparsers.add_parser("serve", help="run the hub (the network server)")
    _add_key_flags(serve, SERVE_FLAGS + LOG_FLAGS)
    serve.add_argument("--supervise", action=argparse.BooleanOptionalAction, default=None,
                       help="run the hub in a worker process that is restarted at once "
                            "if it dies (env HUB_SUPERVISE=1; off)")
    serve.set_defaults(func=_serve_command)

    agent = subparsers.add_parser("agent", help="run user containers as an agent process")
    agent.add_argument("--factories", required=True,
                       help="package.module:FACTORIES, a dict kind -> async factory")
    _add_key_flags(agent, AGENT_FLAGS + LOG_FLAGS)
    agent.set_defaults(func=_agent_command)

    config = subparsers.add_parser(
        "config", help="check the configuration; --print shows it and where each value "
                       "came from")
    config.add_argument("--config", metavar="FILE", help="a JSON or TOML configuration file")
    config.add_argument("--print", action="store_true", dest="print_",
                        help="print every key's value and origin (default/file/env/flag)")
    config.add_argument("--json", action="store_true",
                        help="with --print: print the configuration as a JSON file instead")
    config.set_defaults(func=_config_command)


def _refuse(command: str, exc: Exception) -> int:
    """Print one line naming the problem; returns exit status 2."""
    print(f"hulytrio {command}: error: {exc}", file=sys.stderr)
    return 2


def hub_limits(limits: LimitsConfig) -> dict[str, Any]:
    """Return the ``serve_network`` keyword arguments that ``limits`` (``limits.*``) set."""
    return {"max_in_flight": limits.max_in_flight,
            "max_in_flight_per_container": limits.max_in_flight_per_container,
            "max_in_flight_bytes": limits.max_in_flight_bytes,
            "max_in_flight_bytes_per_agent": limits.in_flight_bytes_per_agent,
            "max_offers": limits.max_offers,
            "max_kinds": limits.max_kinds,
            "max_registrations": limits.max_registrations,
            "max_bad_messages_per_frame": limits.max_bad_messages_per_frame,
            "pre_hello_bytes": limits.pre_hello_bytes,
            "send_bytes": limits.send_queue_bytes,
            "max_alive_timeout": limits.max_alive_timeout}


def hub_timeouts(config: Config) -> Timeouts:
    """Return the hub's ``Timeouts`` from ``config.network``."""
    network = config.network
    return Timeouts(alive=network.alive_timeout, unused_container=network.container_timeout,
                    ping_interval=network.ping_interval, stop=network.stop_timeout)


def _warn_inert(config: Config, service: str) -> None:
    """One warning line for each set key that hulytrio accepts but cannot act on."""
    if service == "hub" and config.network.tick_rate is not None:
        log.warning("%s=%g has no effect: the hub is deadline-driven (it sleeps until its "
                    "next timer), so there is no tick to rate",
                    _origin_name(config, "network.tickRate"), config.network.tick_rate)
    if service == "hub" and config.monitoring.tracing_enabled:
        log.warning("monitoring.tracingEnabled has no effect: hulytrio has no tracing; "
                    "use the JSON logs")
    if service == "agent" and config.agent.health_check_interval is not None:
        log.warning("agent.healthCheckInterval has no effect: the hub finds a dead agent "
                    "by its alive timeout (network.aliveTimeout), pinged every "
                    "network.pingInterval")


def _origin_name(config: Config, path: str) -> str:
    kind, _, where = config.source(path).partition(" ")
    return path if kind in ("default", "file") else where


def load_factories(spec: str) -> tuple[dict[str, Factory], list[StatelessContainer]]:
    """Import ``package.module:NAME``; returns its factories and its ``STATELESS`` list.

    The current directory is importable, as with uvicorn.

    Raises:
        ValueError: if ``spec`` has no ``:NAME`` or ``NAME`` is not a dict.
        ImportError: if the module cannot be imported.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not attr:
        raise ValueError(f"--factories must be package.module:NAME, got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    factories = getattr(module, attr)
    if not isinstance(factories, dict):
        raise ValueError(f"{spec} is a {type(factories).__name__}, not a dict")
    stateless = list(getattr(module, "STATELESS", []))
    return factories, stateless


async def _until_signal(body: Callable[[Any], Awaitable[None]]) -> None:
    """Run ``body(stop)`` until it returns; SIGTERM/SIGINT set ``stop``, a second one cancels.

    ``stop`` is a ``trio.Event``: on the first signal ``body`` drains and
    returns (the hub's or agent's graceful shutdown); a second signal ends
    it at once.
    """
    import trio

    stop = trio.Event()
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if not stop.is_set():
                        log.info("got %s: draining (a second SIGTERM or SIGINT stops at once)",
                                 name)
                        stop.set()
                        continue
                    log.warning("got %s again: stopping now", name)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(watch)
            await body(stop)
            nursery.cancel_scope.cancel()


def _load(args: argparse.Namespace, flags: tuple[str, ...], service: str) -> Config:
    """Return the effective configuration, logging set up as it says.

    Raises:
        ConfigError: a setting is wrong, or the log file cannot be opened.
    """
    from hulytrio.logs import setup_logging

    config = load_config(config_file=args.config, env=os.environ,
                         flags=_flag_values(args, flags + LOG_FLAGS))
    setup_logging(config.logging, service)
    return config


def _serve_command(args: argparse.Namespace) -> int:
    try:
        config = _load(args, SERVE_FLAGS, "hub")
        supervised = args.supervise
        if supervised is None:
            supervised = _env_flag("HUB_SUPERVISE")
        lease_url = _checked_lease(config)
    except ConfigError as exc:
        return _refuse("serve", exc)
    _warn_inert(config, "hub")
    from hulytrio.auth import AuthError, load_authenticator

    from .tls import TlsError

    try:
        authenticator = load_authenticator(config.security.auth)
        ssl_context = _server_tls(config)
    except (AuthError, TlsError) as exc:
        return _refuse("serve", exc)
    host, port = config.network.bind_address, config.network.port
    timeouts = hub_timeouts(config)
    limits = config.limits
    # /metrics on its own port too, when monitoring is on (None: off; it is
    # always on the network port).
    metrics_port = config.metrics_port
    try:
        listeners = bind_listeners(host, port)
    except OSError as exc:
        return _refuse("serve", ConfigError(
            f"cannot listen on {host}:{port} ({_origin_name(config, 'network.port')}): "
            f"{exc.strerror or exc}"))

    import trio

    from .server import serve_network

    shutdown_timeout = config.network.shutdown_timeout

    def run_hub(parent_gone: int | None) -> int:
        def serve() -> AbstractAsyncContextManager[NetworkServer]:
            bounds = hub_limits(limits)
            if lease_url is None:
                return serve_network(host, port, timeouts=timeouts, listen_sockets=listeners,
                                     metrics_port=metrics_port, authenticator=authenticator,
                                     ssl_context=ssl_context, **bounds)
            from .leadership import serve_on_lease

            return serve_on_lease(lease_url, lease_ttl=config.network.lease_ttl,
                                  advertise_url=config.network.advertise_url, host=host,
                                  port=port, timeouts=timeouts, listen_sockets=listeners,
                                  metrics_port=metrics_port, authenticator=authenticator,
                                  ssl_context=ssl_context, **bounds)

        async def body(stop: trio.Event) -> None:
            async with serve() as server:
                log.info("serving on %s://%s:%d (alive timeout %.3g s, ping interval %.3g s, "
                         "container timeout %.3g s)", "ws" if ssl_context is None else "wss", host,
                         server.port, timeouts.alive,
                         timeouts.ping_interval, timeouts.unused_container)
                if server.metrics_port is not None:
                    log.info("metrics on %s://%s:%d/metrics (and on the network port)",
                             "http" if ssl_context is None else "https", host,
                             server.metrics_port)
                if await _stop_or_parent_gone(stop, parent_gone):
                    await server.drain(shutdown_timeout)

        from hulytrio.lease import LeaseError

        from .errors import single_errors

        try:
            with single_errors():  # a lease error, not a group around it
                trio.run(_until_signal, body)
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", host, port, exc)
            return 1
        except LeaseError as exc:
            return _refuse("serve", ConfigError(str(exc)))
        return 0

    if supervised:
        from .supervisor import supervise

        return supervise(run_hub)
    return run_hub(None)


async def _unless_stopped(stop: Any, fn: Callable[[], Awaitable[T]]) -> T | None:
    """Return what ``fn()`` returns, or None when ``stop`` is set first (``fn`` is cancelled)."""
    import trio

    result: T | None = None
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            nonlocal result
            result = await fn()
            nursery.cancel_scope.cancel()

        nursery.start_soon(run)
        await stop.wait()
        nursery.cancel_scope.cancel()
    return result


async def _stop_or_parent_gone(stop: Any, parent_gone: int | None) -> bool:
    """Wait for ``stop`` (returns True) or, when supervised, the supervisor's end (False)."""
    import trio

    gone = False
    async with trio.open_nursery() as nursery:

        async def parent() -> None:
            nonlocal gone
            assert parent_gone is not None
            await trio.lowlevel.wait_readable(parent_gone)
            log.warning("the supervisor is gone; stopping")
            gone = True
            nursery.cancel_scope.cancel()

        if parent_gone is not None:
            nursery.start_soon(parent)
        await stop.wait()
        nursery.cancel_scope.cancel()
    return not gone
def _checked_lease(config: Config) -> str | None:
    """Return ``network.lease`` (None: no lease) once ``hulytrio.lease`` accepts it.

    Raises:
        ConfigError: naming the setting and what is wrong with the URL.
    """
    url = config.network.lease
    if url is None:
        return None
    from hulytrio.lease import LeaseError, parse_lease_url

    try:
        parse_lease_url(url)
    except LeaseError as exc:
        raise ConfigError(f"{_origin_name(config, 'network.lease')}: {exc}") from None
    return url


def _env_flag(name: str) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name}={os.environ[name]} is not allowed: expected 1/0, true/false, "
                      f"yes/no or on/off")


def _limit_memory(config: Config) -> None:
    """Cap the agent process's data memory at ``agent.memoryLimit`` (RLIMIT_DATA).

    Raises:
        ConfigError: if the limit is below what Python needs, or above the hard limit.
    """
    import resource

    limit = config.agent.memory_limit
    if limit is None:
        return
    name = _origin_name(config, "agent.memoryLimit")
    if limit < MIN_MEMORY_LIMIT:
        raise ConfigError(f"{name}={format_size(limit)} is not allowed: expected at least "
                          f"{format_size(MIN_MEMORY_LIMIT)} (the agent process itself needs it)")
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY and limit > hard:
        raise ConfigError(f"{name}={format_size(limit)} is not allowed: expected at most "
                          f"the process's hard limit {format_size(hard)}")
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def _agent_command(args: argparse.Namespace) -> int:
    try:
        config = _load(args, AGENT_FLAGS, "agent")
        url = config.hub_url()
        if config.agent.url is None and config.network.port == 0:
            raise ConfigError(f"{_origin_name(config, 'network.port')}=0 is not allowed for "
                              f"an agent: expected the hub's port 1..65535")
        _limit_memory(config)
        token, ssl_context = _peer_security(config)
        endpoint = config.agent_endpoint()
        endpoint_tls = _endpoint_tls(config, endpoint)
        factories, stateless = load_factories(args.factories)
    except ConfigError as exc:
        return _refuse("agent", exc)
    except (ValueError, ImportError, AttributeError) as exc:
        return _refuse("agent", ConfigError(f"--factories {args.factories}: {exc}"))
    _warn_inert(config, "agent")
    # The agent asks the hub for its own alive timeout only when one was set.
    alive = (config.network.alive_timeout
             if config.source("network.aliveTimeout") != "default" else None)

    import contextlib

    import trio

    from hulytrio.state import StateStore, StateStoreError, open_state_store

    from .client import open_client
    from .limits import EndpointLimits

    shutdown_timeout = config.network.shutdown_timeout
    state_url = config.agent.state_store

    async def body(stop: trio.Event) -> None:
        async with contextlib.AsyncExitStack() as stack:
            store: StateStore | None = None
            if state_url is not None:
                # In a child process: requests do not wait while a checkpoint
                # is written (docs/state.md, "Where the store runs").
                store = await stack.enter_async_context(
                    open_state_store(state_url, worker=True))
            client = await stack.enter_async_context(
                open_client(url, alive_timeout=alive, token=token, ssl_context=ssl_context))
            agent = await _unless_stopped(stop, functools.partial(
                client.serve_agent, factories, agent_id=config.agent.id, stateless=stateless,
                endpoint=endpoint, endpoint_ssl_context=endpoint_tls,
                max_containers=config.agent.max_containers,
                state_store=store, checkpoint_interval=config.agent.checkpoint_interval,
                fence_lease=config.agent.fence_lease,
                endpoint_limits=EndpointLimits(
                    max_bad_messages_per_frame=config.limits.max_bad_messages_per_frame,
                    pre_hello_bytes=config.limits.pre_hello_bytes,
                    hello_timeout=config.limits.endpoint_hello_timeout,
                    max_connections=config.limits.endpoint_max_connections)))
            if agent is None:
                return  # stopped before the hub answered: nothing to drain
            log.info("agent %s serving %s via %s%s%s%s", agent.agent_id,
                     ", ".join(sorted(factories)), url,
                     f" (endpoint {agent.endpoint})" if agent.endpoint else "",
                     f", at most {config.agent.max_containers} containers"
                     if config.agent.max_containers else "",
                     f", state in {state_url.split(':')[0]} every "
                     f"{config.agent.checkpoint_interval:g} s" if state_url else "")
            await stop.wait()
            await agent.drain(shutdown_timeout)

    from hulytrio.core.errors import AuthenticationError, Unauthorized

    from .errors import single_errors

    try:
        with single_errors():  # the endpoint's bind error, not a group around it
            trio.run(_until_signal, body)
    except OSError as exc:
        return _refuse("agent", ConfigError(
            f"cannot listen on the agent endpoint {endpoint}: {exc.strerror or exc}"))
    except StateStoreError as exc:
        return _refuse("agent", ConfigError(
            f"{_origin_name(config, 'agent.stateStore')}: {exc}"))
    except Unauthorized as exc:
        # a refused credential (final), or a registration the roles do not
        # allow: retrying cannot cure either
        kind = "credential" if isinstance(exc, AuthenticationError) else "registration"
        return _refuse("agent", ConfigError(f"the hub at {url} refused this agent's {kind}: "
                                            f"{exc}"))
    return 0


def _server_tls(config: Config) -> Any:
    """Return the server TLS context of ``--tls-cert``/``--tls-key``/``--tls-client-ca``.

    None without ``--tls-cert``.  Raises ``TlsError`` (one line) if a file is
    unusable or a key or client CA is given without a certificate.
    """
    from .tls import TlsError, server_ssl_context

    security = config.security
    if security.tls_cert is None:
        if security.tls_key or security.tls_client_ca:
            raise TlsError("--tls-key and --tls-client-ca need --tls-cert")
        return None
    return server_ssl_context(security.tls_cert, security.tls_key,
                              client_ca=security.tls_client_ca)


def _endpoint_tls(config: Config, endpoint: str | None) -> Any:
    """Return the agent endpoint's TLS context (None: plain ``ws://``).

    Raises:
        ConfigError: a TLS file is unusable, or TLS is asked without an endpoint.
    """
    from .tls import TlsError

    try:
        context = _server_tls(config)
    except TlsError as exc:
        raise ConfigError(str(exc)) from None
    if context is not None and endpoint is None:
        raise ConfigError(f"{_origin_name(config, 'security.tlsCert')} is for the agent's "
                          f"endpoint: set --endpoint (agent.endpoint) too")
    return context


def _peer_security(config: Config) -> tuple[str | None, Any]:
    """Return this peer's token (``--token-file``) and TLS client context (None: defaults).

    Raises:
        ConfigError: the token file or a TLS file is unusable (one line naming it).
    """
    from hulytrio.auth import AuthError, read_token

    from .tls import TlsError, client_ssl_context

    security = config.security
    try:
        token = None if security.token_file is None else read_token(security.token_file)
        ssl_context = None
        if security.ca_file or security.tls_client_cert:
            ssl_context = client_ssl_context(security.ca_file, cert=security.tls_client_cert,
                                             key=security.tls_client_key)
    except (AuthError, TlsError) as exc:
        raise ConfigError(str(exc)) from None
    return token, ssl_context


def _config_command(args: argparse.Namespace) -> int:
    try:
        config = load_config(config_file=args.config, env=os.environ)
    except ConfigError as exc:
        return _refuse("config", exc)
    if args.json:
        from hulytrio.config import converter

        print(json.dumps(converter.unstructure(config), indent=2))
    elif args.print_:
        rows = describe(config)
        width = max(len(path) for path, _, _ in rows)
        value_width = max(len(value) for _, value, _ in rows)
        for path, value, origin in rows:
            print(f"{path:<{width}}  {value:<{value_width}}  {origin}")
    else:
        print("configuration OK")
    return 0


if __name__ == "__main__":
    # ``python -m hulytrio.transport.commands serve ...``: these two commands
    # without the rest of the CLI (handy when another command cannot import).
    _parser = argparse.ArgumentParser(prog="hulytrio")
    register(_parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    _args = _parser.parse_args()
    sys.exit(_args.func(_args))
