"""``hulytrio serve`` (the hub) and ``hulytrio agent`` (user containers as a process).

Settings come from flags, then the seed's environment variables, then the
defaults (flags win over the environment, the environment over defaults):

- serve: ``--host`` / ``NETWORK_BIND_ADDRESS`` (0.0.0.0), ``--port`` /
  ``NETWORK_PORT`` (3737), ``--alive-timeout`` / ``ALIVE_TIMEOUT`` (3 s),
  ``--container-timeout`` / ``CONTAINER_TIMEOUT`` (unused container timeout, 5 s);
- agent: ``--url`` or ``ws://NETWORK_HOST:NETWORK_PORT``, ``--agent-id`` /
  ``AGENT_ID``, ``--endpoint`` or ``0.0.0.0:AGENT_PORT``;
- serve: ``--supervise`` / ``HUB_SUPERVISE=1`` (off): a supervisor process
  restarts the hub within milliseconds if it dies (``supervisor.py``);
- both: ``--log-level`` / ``LOG_LEVEL`` (info).

SIGTERM and SIGINT stop either command cleanly: an agent unregisters and
terminates its containers, so the hub removes them at once.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from hulytrio.core.timeouts import Timeouts

from .listen import bind_listeners

if TYPE_CHECKING:
    from .container import Factory, StatelessContainer

# trio and the drivers are imported by the command that runs, not here: the
# hub binds its port first, so clients reconnecting to a restarted hub
# queue in its listen backlog while the rest of it is still being imported.

__all__ = ["agent_settings", "load_factories", "register", "serve_settings"]

log = logging.getLogger("hulytrio.cli")


def register(subparsers: Any) -> None:
    """Add the ``serve`` and ``agent`` sub-commands to ``subparsers``."""
    serve = subparsers.add_parser("serve", help="run the hub (the network server)")
    serve.add_argument("--host", help="bind address (env NETWORK_BIND_ADDRESS; 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port (env NETWORK_PORT; 3737)")
    serve.add_argument("--alive-timeout", type=float,
                       help="seconds a silent peer stays alive (env ALIVE_TIMEOUT; 3)")
    serve.add_argument("--container-timeout", type=float,
                       help="seconds an unreferenced container lives (env CONTAINER_TIMEOUT; 5)")
    serve.add_argument("--supervise", action=argparse.BooleanOptionalAction, default=None,
                       help="run the hub in a worker process that is restarted at once "
                            "if it dies (env HUB_SUPERVISE=1; off)")
    serve.add_argument("--log-level", help="log level (env LOG_LEVEL; info)")
    serve.add_argument("--metrics-port", type=int,
                       help="also serve /metrics on this port (docs/monitoring.md)")
    serve.set_defaults(func=_serve_command)

    agent = subparsers.add_parser("agent", help="run user containers as an agent process")
    agent.add_argument("--url", help="hub URL (default ws://NETWORK_HOST:NETWORK_PORT)")
    agent.add_argument("--factories", required=True,
                       help="package.module:FACTORIES, a dict kind -> async factory")
    agent.add_argument("--agent-id", help="agent id (env AGENT_ID; random)")
    agent.add_argument("--endpoint", help="HOST:PORT of the agent's own server "
                                          "(default 0.0.0.0:AGENT_PORT when set)")
    agent.add_argument("--log-level", help="log level (env LOG_LEVEL; info)")
    agent.set_defaults(func=_agent_command)


def _env_float(env: Mapping[str, str], name: str) -> float | None:
    value = env.get(name)
    return float(value) if value else None


def serve_settings(args: argparse.Namespace, env: Mapping[str, str]
                   ) -> tuple[str, int, Timeouts]:
    """Return ``(host, port, timeouts)`` for ``serve`` from flags, env and defaults.

    Raises:
        ValueError: if an environment value is not a number, or a timeout is not > 0.
    """
    host = args.host or env.get("NETWORK_BIND_ADDRESS") or "0.0.0.0"
    port = args.port if args.port is not None else int(env.get("NETWORK_PORT") or 3737)
    defaults = Timeouts()
    alive = args.alive_timeout or _env_float(env, "ALIVE_TIMEOUT") or defaults.alive
    unused = (args.container_timeout or _env_float(env, "CONTAINER_TIMEOUT")
              or defaults.unused_container)
    return host, port, Timeouts(alive=alive, unused_container=unused)


def agent_settings(args: argparse.Namespace, env: Mapping[str, str]
                   ) -> tuple[str, str | None, str | None]:
    """Return ``(url, agent_id, endpoint)`` for ``agent`` from flags, env and defaults."""
    url = args.url or (f"ws://{env.get('NETWORK_HOST') or '127.0.0.1'}:"
                       f"{env.get('NETWORK_PORT') or 3737}")
    agent_id = args.agent_id or env.get("AGENT_ID") or None
    endpoint = args.endpoint
    if endpoint is None and env.get("AGENT_PORT"):
        endpoint = f"0.0.0.0:{env['AGENT_PORT']}"
    return url, agent_id, endpoint


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


def _setup_logging(args: argparse.Namespace) -> None:
    level = (args.log_level or os.environ.get("LOG_LEVEL") or "info").upper()
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


async def _until_signal(body: Callable[[], Awaitable[None]]) -> None:
    """Run ``body`` until it returns or SIGTERM/SIGINT arrives (then cancel it cleanly)."""
    import trio

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                async for signum in signals:
                    log.info("got %s: shutting down", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(watch)
            await body()
            nursery.cancel_scope.cancel()


def _serve_command(args: argparse.Namespace) -> int:
    _setup_logging(args)
    try:
        host, port, timeouts = serve_settings(args, os.environ)
    except ValueError as exc:
        log.error("bad setting: %s", exc)
        return 2
    try:
        listeners = bind_listeners(host, port)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc)
        return 1

    import trio

    from .server import serve_network

    def run_hub(parent_gone: int | None) -> int:
        async def body() -> None:
            async with serve_network(host, port, timeouts=timeouts,
                                     listen_sockets=listeners,
                                     metrics_port=args.metrics_port) as server:
                log.info("serving on ws://%s:%d (alive timeout %.3g s, "
                         "container timeout %.3g s)",
                         host, server.port, timeouts.alive, timeouts.unused_container)
                if parent_gone is None:
                    await trio.sleep_forever()
                await trio.lowlevel.wait_readable(parent_gone)
                log.warning("the supervisor is gone; stopping")

        try:
            trio.run(_until_signal, body)
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", host, port, exc)
            return 1
        return 0

    supervised = args.supervise
    if supervised is None:
        supervised = os.environ.get("HUB_SUPERVISE", "").lower() in ("1", "true", "yes")
    if supervised:
        from .supervisor import supervise

        return supervise(run_hub)
    return run_hub(None)


def _agent_command(args: argparse.Namespace) -> int:
    _setup_logging(args)
    url, agent_id, endpoint = agent_settings(args, os.environ)
    try:
        factories, stateless = load_factories(args.factories)
    except (ValueError, ImportError, AttributeError) as exc:
        log.error("cannot load factories %s: %s", args.factories, exc)
        return 2

    import trio

    from .client import open_client

    async def body() -> None:
        async with open_client(url) as client:
            agent = await client.serve_agent(factories, agent_id=agent_id, stateless=stateless,
                                             endpoint=endpoint)
            log.info("agent %s serving %s via %s%s", agent.agent_id,
                     ", ".join(sorted(factories)), url,
                     f" (endpoint {agent.endpoint})" if agent.endpoint else "")
            await trio.sleep_forever()

    try:
        trio.run(_until_signal, body)
    except OSError as exc:
        log.error("cannot open the agent endpoint %s: %s", endpoint, exc)
        return 1
    return 0


if __name__ == "__main__":
    # ``python -m hulytrio.transport.commands serve ...``: these two commands
    # without the rest of the CLI (handy when another command cannot import).
    _parser = argparse.ArgumentParser(prog="hulytrio")
    register(_parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    _args = _parser.parse_args()
    sys.exit(_args.func(_args))
