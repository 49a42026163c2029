"""Hub takeover: an active hub and a standby on one lease, the active one stopped.

Each round starts two ``hulytrio serve --lease ...`` processes (a, then b:
a is active, b a standby), an agent offering the stateless "bench-ha"
container and a client that hold a reference to it, both given both hub
URLs.  Then it stops hub a and times until a request on the existing
reference succeeds through hub b (no user code in between).

- ``file-kill``: ``--lease file:...``, SIGKILL of a.  The kernel drops a's
  lock; b polls it every 10 ms.  Target <= 191 ms (the reference's own
  restart), aim < 100 ms.
- ``etcd-kill``: ``--lease etcd://...`` with a 2 s TTL, SIGKILL of a: b
  waits for etcd to expire a's lease.  Target: under TTL + 1 s (3 s).
  With the alive timeout given (``--alive``, 3 s: the default) the owner of
  the stateless uuid usually fences before b is active, and the uuid waits
  for b's recovery window (``hulytrio/lease/timing.py``).
- ``etcd-kill-fast``: the same with the alive timeout that
  ``lease.timing.stateless_takeover`` says wins that race for this TTL and
  a 1 s ping interval (4.5 s for a 2 s TTL): the owner is still serving
  when it re-registers with b, which keeps it the owner at once.
- ``file-term`` / ``etcd-term``: SIGTERM of a (a clean stop resigns the
  lease, so b takes over at once).  Target < 100 ms.
- ``file-kill-silent``: as ``file-kill``, but the peers' list is
  ``a,SILENT,b`` where SILENT is a dead hub host: a socket that listens and
  never accepts (the TCP handshake completes, the WebSocket upgrade is
  never answered, as with a frozen or cut-off host).  Round-robin after a
  dials SILENT first: this times how soon the peers give up on it.

The etcd rounds start a throwaway etcd (``hulytrio.testing.etcd``) and are
skipped, with a line saying so, when ``etcd`` is not installed.

Usage::

    .venv/bin/python -m benchmarks.ha_takeover                 # 5 rounds each
    .venv/bin/python -m benchmarks.ha_takeover --rounds 10 --scenario file-kill
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import trio

import hulytrio
from benchmarks.harness.failover import UUID, agent, spawn, stop, summary, wait_agent
from benchmarks.harness.procs import free_port
from hulytrio.lease.timing import stateless_takeover
from hulytrio.testing.etcd import EtcdMissing, run_etcd
from hulytrio.transport.http import fetch

SCENARIOS = ("file-kill", "file-term", "etcd-kill", "etcd-kill-fast", "etcd-term",
             "file-kill-silent")
LABELS = {
    "file-kill": "file lock: active SIGKILL -> ref usable",
    "file-term": "file lock: active SIGTERM -> ref usable",
    "etcd-kill": "etcd ttl {ttl:g}s, alive {alive:g}s: active SIGKILL -> ref usable",
    "etcd-kill-fast": "etcd ttl {ttl:g}s, alive {alive:g}s (relation holds): active SIGKILL "
                      "-> ref usable",
    "etcd-term": "etcd ttl {ttl:g}s: active SIGTERM -> ref usable",
    "file-kill-silent": "file lock, a silent hub next in the list: SIGKILL -> ref usable",
}


async def wait_role(port: int, wanted: str) -> None:
    while True:
        try:
            _, body = await fetch(f"ws://127.0.0.1:{port}", "/health")
            if json.loads(body).get("role") == wanted:
                return
        except (OSError, ValueError):
            pass
        await trio.sleep(0.01)


async def takeover_round(lease: str, sig: signal.Signals, ttl: float, alive: float,
                         silent: socket.socket | None = None) -> float:
    """One round; returns seconds from the signal to the first answer through hub b.

    ``silent``: a listening socket that never accepts, put between a and b
    in the peers' list.
    """
    port_a, port_b = free_port(), free_port()
    middle = "" if silent is None else f"ws://127.0.0.1:{silent.getsockname()[1]},"
    urls = f"ws://127.0.0.1:{port_a},{middle}ws://127.0.0.1:{port_b}"
    flags = ("--lease", lease, "--lease-ttl", str(ttl), "--alive-timeout", str(alive))
    procs: list[trio.Process] = []
    try:
        procs.append(await spawn("serve", "--host", "127.0.0.1", "--port", str(port_a), *flags))
        await wait_role(port_a, "active")
        procs.append(await spawn("serve", "--host", "127.0.0.1", "--port", str(port_b), *flags))
        await wait_role(port_b, "standby")
        procs.append(await agent(urls, "steady"))
        async with hulytrio.open_client(urls) as client:
            await wait_agent(client, "steady")
            ref = await client.get("ha", uuid=UUID)
            await ref.request("before")
            await trio.sleep(0.3)  # b has read who holds the lease
            term = client.session.term
            start = trio.current_time()
            procs[0].send_signal(sig)
            # A clean stop may still answer what reached a before the signal
            # did: the figure is the first answer in b's (newer) term.
            await ref.request("after")
            while client.session.term == term:
                await ref.request("after")
            elapsed = trio.current_time() - start
            if client.hub_url != f"ws://127.0.0.1:{port_b}":
                raise RuntimeError(f"the request went to {client.hub_url}, not the standby")
            return elapsed
    finally:
        for proc in procs:
            await stop(proc)


async def measure(rounds: int, scenarios: list[str], ttl: float, alive: float, *,
                  show: bool = True) -> list[dict[str, object]]:
    """Run ``scenarios`` ``rounds`` times each; returns one summary row per figure."""
    rows: list[dict[str, object]] = []
    if show:
        print(f"hulytrio hub takeover, {rounds} rounds, alive timeout {alive} s, "
              f"etcd lease ttl {ttl} s")
    with tempfile.TemporaryDirectory(prefix="ha-takeover-") as tmp:
        wants_etcd = any(s.startswith("etcd") for s in scenarios)
        with _maybe_etcd(Path(tmp), wants_etcd) as etcd_url:
            for scenario in scenarios:
                kind, how = scenario.split("-")[:2]
                if kind == "etcd" and etcd_url is None:
                    print(f"{scenario}: skipped (etcd is not installed)")
                    continue
                sig = signal.SIGKILL if how == "kill" else signal.SIGTERM
                used = alive
                if scenario.endswith("-fast"):
                    used = stateless_takeover(ttl, alive, 1.0, poll=min(ttl / 10, 0.05)
                                              ).alive_for_fast
                values = []
                for n in range(rounds):
                    lease = (f"file:{tmp}/{scenario}-{n}.lock" if kind == "file" else
                             f"{etcd_url}/bench/{scenario}-{n}".replace("http://", "etcd://"))
                    with trio.fail_after(ttl * 3 + 30), _silent_host(scenario) as silent:
                        values.append(await takeover_round(lease, sig, ttl, used, silent))
                rows.append(summary(f"ha_{scenario.replace('-', '_')}",
                                    LABELS[scenario].format(ttl=ttl, alive=used), values,
                                    show=show))
    return rows


@contextmanager
def _silent_host(scenario: str) -> Iterator[socket.socket | None]:
    """Yield a socket that listens and never accepts for a ``-silent`` scenario."""
    if not scenario.endswith("-silent"):
        yield None
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock


@contextmanager
def _maybe_etcd(directory: Path, wanted: bool) -> Iterator[str | None]:
    """Yield ``run_etcd``'s URL when wanted and installed; else None."""
    with ExitStack() as stack:
        url = None
        if wanted:
            with suppress(EtcdMissing):
                url = stack.enter_context(run_etcd(directory))
        yield url


def main(argv: list[str] | None = None) -> int:
    """The command line (also what ``python -m benchmarks`` runs, with defaults)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ttl", type=float, default=2.0, help="etcd lease ttl (s)")
    parser.add_argument("--alive", type=float, default=3.0, help="hub alive timeout (s)")
    parser.add_argument("--scenario", default=",".join(SCENARIOS))
    parser.add_argument("--json", help="append one JSON line per figure to this file")
    args = parser.parse_args(argv)
    scenarios = args.scenario.split(",")
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}")
    figures = trio.run(measure, args.rounds, scenarios, args.ttl, args.alive)
    if args.json:
        with open(args.json, "a") as out:
            for row in figures:
                out.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
