"""Operator commands: ``health``, ``agents``, ``list``, ``request``, ``watch``, ``top``,
and for admins ``clients`` and ``terminate``.

Each one connects to a hub with the public client API (``open_client``),
does one thing and exits: tables for people, ``--json`` for scripts.  The
URL comes from ``--url`` (``ws://`` or ``http://``; default
``ws://NETWORK_HOST:NETWORK_PORT``, ``wss://`` with a CA file).  A hub with
authentication and TLS is reached with ``--token-file`` and ``--ca-file``
(and ``--tls-client-cert``/``--tls-client-key`` for mutual TLS; each with
its ``HULYTRIO_*`` variable, docs/configuration.md); an unusable file, or a
token the hub refuses, is one line and exit code 2.  A hub that does not
answer within ``--timeout`` seconds gives one line on stderr and exit code
1, never a hang: the client would otherwise reconnect forever.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import attrs
import trio

import hulytrio

if TYPE_CHECKING:
    from rich.console import RenderableType

    from hulytrio.transport.client import Client

__all__ = ["Access", "Unreachable", "connected", "register", "ws_url"]

#: Seconds to wait for the hub by default.
DEFAULT_TIMEOUT = 5.0


class Unreachable(Exception):
    """The hub did not welcome the client within the allowed wait."""


@attrs.frozen
class Access:
    """How an operator command proves itself to the hub: a token, TLS settings."""

    #: the credential for the hello (``--token-file``); None: none
    token: str | None = None
    #: the TLS client context for a ``wss://`` hub (None: the system's CAs)
    ssl_context: ssl.SSLContext | None = None


#: no token, the system's CAs
NO_ACCESS = Access()


def ws_url(url: str) -> str:
    """Return ``url`` as the hub's WebSocket URL: ``ws://``, or ``wss://`` for TLS.

    ``http://`` is taken as ``ws://`` and ``https://`` as ``wss://``.

    Raises:
        ValueError: if ``url`` is not one of these schemes with a host.
    """
    parts = urlsplit(url if "://" in url else f"ws://{url}")
    schemes = {"ws": "ws", "http": "ws", "wss": "wss", "https": "wss"}
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"expected a ws://, wss://, http:// or https:// hub URL, got {url!r}")
    return urlunsplit((schemes[parts.scheme], parts.netloc, "", "", ""))


@asynccontextmanager
async def connected(url: str, patience: float, *, events: str = "all",
                    access: Access = NO_ACCESS) -> AsyncIterator[Client]:
    """Open a client to the hub at ``url``; yields it once the hub welcomed it.

    Raises:
        Unreachable: if the hub does not welcome the client within ``patience`` s.
        hulytrio.Unauthorized: if the hub refuses ``access.token``.
    """
    async with hulytrio.open_client(ws_url(url), events=events, token=access.token,
                                    ssl_context=access.ssl_context) as client:
        welcomed = False
        with trio.move_on_after(patience):
            await client.wait_connection()
            welcomed = True
        if not welcomed:
            raise Unreachable(f"cannot reach the hub at {ws_url(url)} within {patience:g} s")
        yield client


def _plain(value: Any) -> Any:
    """Return ``value`` (attrs records, enums, tuples) as JSON-ready data."""
    if attrs.has(type(value)):
        return {f.name: _plain(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "value") and hasattr(value, "name"):  # an Enum
        return value.value
    return value


def _dump(value: Any, out: TextIO) -> None:
    out.write(json.dumps(_plain(value), sort_keys=True) + "\n")


def _render(renderable: RenderableType, out: TextIO) -> None:
    from rich.console import Console

    Console(file=out, width=120, soft_wrap=False).print(renderable)


def _table(title: str, columns: list[str], rows: list[list[str]]) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


# --- the commands (async, writing to ``out``; tests call them directly) -------------------

async def health(url: str, patience: float, out: TextIO, *, access: Access = NO_ACCESS
                 ) -> None:
    """The seed's ``healthcheck.js``: connect, list, close; writes one line.

    Raises:
        Unreachable: if the hub does not answer in time.
    """
    with trio.fail_after(patience):
        async with connected(url, patience, events="own", access=access) as client:
            records = await client.list()
    out.write(f"Health check: OK ({len(records)} containers)\n")


async def agents(url: str, patience: float, out: TextIO, *, as_json: bool,
                 access: Access = NO_ACCESS) -> None:
    """Write the hub's agents, as a table or a JSON array.

    Raises:
        Unreachable: if the hub does not answer in time.
    """
    with trio.fail_after(patience):
        async with connected(url, patience, events="own", access=access) as client:
            infos = await client.agents()
    if as_json:
        _dump(infos, out)
        return
    _render(_table(f"{len(infos)} agents", ["agent", "kinds", "containers", "endpoint"],
                   [[a.agent_id, ", ".join(a.kinds), str(a.containers), a.endpoint or "-"]
                    for a in infos]), out)


async def list_containers(url: str, patience: float, out: TextIO, *, kind: str | None,
                          label: str | None, as_json: bool,
                          access: Access = NO_ACCESS) -> None:
    """Write the hub's containers (of ``kind``, carrying ``label``), as a table or JSON.

    Raises:
        Unreachable: if the hub does not answer in time.
    """
    with trio.fail_after(patience):
        async with connected(url, patience, events="own", access=access) as client:
            records = await client.list(kind)
    if label is not None:
        records = tuple(r for r in records if label in r.labels)
    if as_json:
        _dump(records, out)
        return
    _render(_table(f"{len(records)} containers",
                   ["uuid", "kind", "agent", "labels", "endpoint", "stateless"],
                   [[r.uuid, r.kind, r.agent_id, ", ".join(r.labels), r.endpoint or "-",
                     "yes" if r.stateless else "no"] for r in records]), out)


async def request(url: str, patience: float, out: TextIO, *, uuid: str, operation: str,
                  data: Any, access: Access = NO_ACCESS) -> None:
    """Call ``operation`` with ``data`` on container ``uuid``; writes the result as JSON.

    The container is looked up by uuid, referenced for the call and released.

    Raises:
        Unreachable: if the hub does not answer in time.
        hulytrio.ContainerNotFound: if the hub lists no container ``uuid``.
        hulytrio.RemoteError: if the container raised.
    """
    with trio.fail_after(patience):
        async with connected(url, patience, events="own", access=access) as client:
            record = next((r for r in await client.list() if r.uuid == uuid), None)
            if record is None:
                raise hulytrio.ContainerNotFound(f"no container {uuid!r} at the hub")
            ref = await client.get(record.kind, uuid=uuid)
            try:
                result = await ref.request(operation, data)
            finally:
                await ref.release()
    _dump(result, out)


def _event_lines(event: hulytrio.NetworkEvent) -> list[str]:
    lines = [f"#{event.seq} agent {e.change.value} {e.agent.agent_id} "
             f"kinds={','.join(e.agent.kinds)} containers={e.agent.containers}"
             for e in event.agents]
    lines += [f"#{event.seq} container {e.change.value} {e.container.uuid} "
              f"kind={e.container.kind} agent={e.container.agent_id}"
              for e in event.containers]
    return lines


async def watch(url: str, patience: float, out: TextIO, *, as_json: bool,
                count: int | None, ready: Callable[[], None] = lambda: None,
                access: Access = NO_ACCESS) -> None:
    """Write registry events as they come (a line each; JSON lines with ``as_json``).

    Stops after ``count`` events if given, else runs until cancelled.
    ``ready`` is called once listening (tests wait for it).

    Raises:
        Unreachable: if the hub does not answer in time.
        hulytrio.ConnectionClosed: if this listener fell too far behind.
    """
    async with connected(url, patience, access=access) as client:
        updates = client.updates()
        ready()
        seen = 0
        async for event in updates:
            if as_json:
                _dump(event, out)
            else:
                out.write("".join(line + "\n" for line in _event_lines(event)))
            out.flush()
            seen += 1
            if count is not None and seen >= count:
                return


@attrs.frozen
class Snapshot:
    """What ``top`` shows: the hub's agents, containers and request counter."""

    agents: tuple[hulytrio.AgentInfo, ...]
    containers: tuple[hulytrio.ContainerRecord, ...]
    #: container requests forwarded so far (from ``/metrics``), None if unknown
    requests: float | None
    at: float


async def clients(url: str, patience: float, out: TextIO, *, as_json: bool,
                  access: Access = NO_ACCESS) -> None:
    """Write every client session at the hub (the admin role), as a table or JSON.

    Raises:
        Unreachable: if the hub does not answer in time.
        hulytrio.Forbidden: if the credential is not an admin's.
    """
    with trio.fail_after(patience):
        async with connected(url, patience, events="own", access=access) as client:
            infos = await client.clients()
    if as_json:
        _dump(infos, out)
        return
    _render(_table(f"{len(infos)} clients", ["client", "subject", "holds", "agents"],
                   [[c.client_id, c.subject, ", ".join(c.holds) or "-",
                     ", ".join(c.agents) or "-"] for c in infos]), out)


async def terminate(url: str, patience: float, out: TextIO, *, uuid: str,
                    access: Access = NO_ACCESS) -> None:
    """Terminate container ``uuid`` whoever holds it (the admin role); writes one line.

    Raises:
        Unreachable: if the hub does not answer in time.
        hulytrio.Forbidden: if the credential is not an admin's.
        hulytrio.ContainerNotFound: if there is no such container.
    """
    with trio.fail_after(patience):
        async with connected(url, patience, events="own", access=access) as client:
            await client.terminate(uuid)
    out.write(f"terminated {uuid}\n")


async def _requests_forwarded(url: str, access: Access) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    from hulytrio.transport.http import fetch

    try:
        status, body = await fetch(ws_url(url), "/metrics", ssl_context=access.ssl_context)
    except (OSError, ValueError, trio.BrokenResourceError):
        return None
    if status != 200:
        return None
    for family in text_string_to_metric_families(body.decode()):
        if family.name == "huly_requests_forwarded":
            return sum(s.value for s in family.samples
                       if s.name == "huly_requests_forwarded_total")
    return None


async def snapshot(client: Client, url: str, access: Access = NO_ACCESS) -> Snapshot:
    """Return the hub's state now, as ``top`` shows it."""
    return Snapshot(await client.agents(), await client.list(),
                    await _requests_forwarded(url, access), trio.current_time())


def top_view(now: Snapshot, before: Snapshot | None) -> Any:
    """Return the ``rich`` renderable of one ``top`` frame (rates from ``before``)."""
    from rich.console import Group

    rate = "-"
    if (before is not None and now.requests is not None and before.requests is not None
            and now.at > before.at):
        rate = f"{(now.requests - before.requests) / (now.at - before.at):.1f}/s"
    total = "-" if now.requests is None else f"{now.requests:.0f}"
    header = _table("hub", ["agents", "containers", "requests forwarded", "request rate"],
                    [[str(len(now.agents)), str(len(now.containers)), total, rate]])
    kinds: dict[str, int] = {}
    for record in now.containers:
        kinds[record.kind] = kinds.get(record.kind, 0) + 1
    agent_rows = [[a.agent_id, ", ".join(a.kinds), str(a.containers), a.endpoint or "-"]
                  for a in sorted(now.agents, key=lambda a: a.agent_id)]
    return Group(header,
                 _table("agents", ["agent", "kinds", "containers", "endpoint"], agent_rows),
                 _table("containers per kind", ["kind", "containers"],
                        [[k, str(n)] for k, n in sorted(kinds.items())]))


async def top(url: str, patience: float, out: TextIO, *, once: bool, interval: float,
              as_json: bool = False, access: Access = NO_ACCESS) -> None:
    """Show agents, containers and the request rate; refreshes every ``interval`` s.

    ``once`` writes one frame and returns (for scripts and tests); ``as_json``
    writes one snapshot as JSON and returns.

    Raises:
        Unreachable: if the hub does not answer in time.
    """
    async with connected(url, patience, events="own", access=access) as client:
        with trio.fail_after(patience):
            current = await snapshot(client, url, access)
        if as_json:
            _dump(current, out)
            return
        if once:
            _render(top_view(current, None), out)
            return
        from rich.console import Console
        from rich.live import Live

        with Live(top_view(current, None), console=Console(file=out),
                  auto_refresh=False) as live:
            while True:
                await trio.sleep(interval)
                previous, current = current, await snapshot(client, url, access)
                live.update(top_view(current, previous), refresh=True)


# --- argument parsing -------------------------------------------------------------------

def _run(args: argparse.Namespace, main: Callable[[], Awaitable[None]]) -> int:
    # An operator command says what went wrong in one line of its own; the
    # client library's reconnect warnings would only repeat it.
    logging.getLogger("hulytrio").setLevel(logging.CRITICAL)
    try:
        trio.run(main)
    except Unreachable as exc:
        print(f"hulytrio {args.command}: {exc}", file=sys.stderr)
        return 1
    except trio.TooSlowError:
        print(f"hulytrio {args.command}: the hub at {args.url} did not answer within "
              f"{args.timeout:g} s", file=sys.stderr)
        return 1
    except hulytrio.Unauthorized as exc:
        # the token (or its absence, or its role) is the operator's input:
        # fix it, do not retry
        what = ("the credential" if isinstance(exc, hulytrio.AuthenticationError)
                else f"'{args.command}' for this credential")
        print(f"hulytrio {args.command}: the hub at {args.url} refused {what}: {exc}",
              file=sys.stderr)
        return 2
    except (hulytrio.HulyError, ValueError) as exc:
        print(f"hulytrio {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _access(args: argparse.Namespace) -> Access:
    """Return the token and TLS settings of the flags (else their ``HULYTRIO_*`` variables).

    Raises:
        ValueError: a file is unusable (the message names it).
    """
    from hulytrio.auth import AuthError, read_token
    from hulytrio.transport.tls import TlsError, client_ssl_context

    env = os.environ
    token_file = args.token_file or env.get("HULYTRIO_TOKEN_FILE") or None
    ca_file = args.ca_file or env.get("HULYTRIO_CA_FILE") or None
    cert = args.tls_client_cert or env.get("HULYTRIO_TLS_CLIENT_CERT") or None
    key = args.tls_client_key or env.get("HULYTRIO_TLS_CLIENT_KEY") or None
    try:
        token = None if token_file is None else read_token(token_file)
        context = None
        if ca_file or cert:
            context = client_ssl_context(ca_file, cert=cert, key=key)
    except (AuthError, TlsError) as exc:
        raise ValueError(str(exc)) from None
    return Access(token, context)


def _hub_url(args: argparse.Namespace, access: Access) -> str:
    """Return ``--url``, else ``NETWORK_HOST:NETWORK_PORT`` (``wss://`` with TLS settings)."""
    if args.url is not None:
        return str(args.url)
    env = os.environ
    scheme = "ws" if access.ssl_context is None else "wss"
    return f"{scheme}://{env.get('NETWORK_HOST') or '127.0.0.1'}:{env.get('NETWORK_PORT') or 3737}"


def _command(args: argparse.Namespace) -> int:
    out = sys.stdout
    try:
        access = _access(args)
    except ValueError as exc:
        print(f"hulytrio {args.command}: {exc}", file=sys.stderr)
        return 2
    url = args.url = _hub_url(args, access)
    patience = args.timeout
    command = args.command
    if command == "health":
        return _run(args, lambda: health(url, patience, out, access=access))
    if command == "agents":
        return _run(args, lambda: agents(url, patience, out, as_json=args.json, access=access))
    if command == "list":
        return _run(args, lambda: list_containers(url, patience, out, kind=args.kind,
                                                  label=args.label, as_json=args.json,
                                                  access=access))
    if command == "request":
        try:
            data = None if args.data is None else json.loads(args.data)
        except json.JSONDecodeError as exc:
            print(f"hulytrio request: JSON argument is not valid JSON: {exc}", file=sys.stderr)
            return 2
        return _run(args, lambda: request(url, patience, out, uuid=args.uuid,
                                          operation=args.operation, data=data, access=access))
    if command == "clients":
        return _run(args, lambda: clients(url, patience, out, as_json=args.json, access=access))
    if command == "terminate":
        return _run(args, lambda: terminate(url, patience, out, uuid=args.uuid, access=access))
    if command == "watch":
        return _run(args, lambda: watch(url, patience, out, as_json=args.json,
                                        count=args.count, access=access))
    return _run(args, lambda: top(url, patience, out, once=args.once, interval=args.interval,
                                  as_json=args.json, access=access))


def register(sub: Any) -> None:
    """Add the operator sub-commands to the ``hulytrio`` parser's ``sub``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=None,
                        help="hub URL, ws://, wss://, http:// or https:// (default "
                             "ws://NETWORK_HOST:NETWORK_PORT; wss:// with --ca-file)")
    common.add_argument("--token-file", metavar="FILE",
                        help="the file holding this command's token, for a hub with --auth "
                             "(env HULYTRIO_TOKEN_FILE)")
    common.add_argument("--ca-file", metavar="FILE",
                        help="the CAs a wss:// hub's certificate is checked against "
                             "(env HULYTRIO_CA_FILE; default the system's)")
    common.add_argument("--tls-client-cert", metavar="FILE",
                        help="this command's certificate, for a hub with mutual TLS "
                             "(env HULYTRIO_TLS_CLIENT_CERT)")
    common.add_argument("--tls-client-key", metavar="FILE",
                        help="the private key of --tls-client-cert "
                             "(env HULYTRIO_TLS_CLIENT_KEY; default in the certificate)")
    common.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds to wait for the hub (default {DEFAULT_TIMEOUT:g})")
    scripted = argparse.ArgumentParser(add_help=False, parents=[common])
    scripted.add_argument("--json", action="store_true", help="JSON output for scripts")

    parsers = {
        "health": sub.add_parser("health", parents=[common],
                                 help="exit 0 if the hub answers a list, 1 if not"),
        "agents": sub.add_parser("agents", parents=[scripted], help="list the agents"),
        "list": sub.add_parser("list", parents=[scripted], help="list the containers"),
        "request": sub.add_parser("request", parents=[scripted],
                                  help="call an operation on a container"),
        "watch": sub.add_parser("watch", parents=[scripted], help="print registry events"),
        "clients": sub.add_parser("clients", parents=[scripted],
                                  help="list every client session (needs the admin role)"),
        "terminate": sub.add_parser("terminate", parents=[common],
                                    help="terminate a container, whoever holds it "
                                         "(needs the admin role)"),
        "top": sub.add_parser("top", parents=[scripted],
                              help="live view of agents, containers and request rate"),
    }
    parsers["list"].add_argument("--kind", help="only containers of this kind")
    parsers["list"].add_argument("--label", help="only containers carrying this label")
    parsers["request"].add_argument("uuid", help="the container's uuid")
    parsers["request"].add_argument("operation", help="the operation name")
    parsers["request"].add_argument("data", nargs="?", help="the argument, as JSON")
    parsers["terminate"].add_argument("uuid", help="the container's uuid")
    parsers["watch"].add_argument("--count", type=int, help="stop after this many events")
    parsers["top"].add_argument("--once", action="store_true",
                                help="print one frame and exit (no live view)")
    parsers["top"].add_argument("--interval", type=float, default=2.0,
                                help="seconds between refreshes (default 2)")
    for parser in parsers.values():
        parser.set_defaults(func=_command)
