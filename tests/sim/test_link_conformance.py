"""The simulator's links behave like the WebSocket transport (tests/transport/test_conformance.py).

The same three properties, checked against the real hub through
``hulytrio/sim/links.py`` connections with a latency *range* (each message
draws its own delay), by a raw peer that pushes messages straight onto its
connection and records what its side receives:

- each direction is FIFO and nothing is duplicated, whatever the delays;
- a close is seen after the messages already in flight (both ways);
- a connection that breaks without a close handshake is seen as closed by
  the hub at once (after the link's latency, not after an alive timeout).
"""

from __future__ import annotations

from typing import Any

from hulytrio.core.messages import Close, KindsReply, Query
from hulytrio.sim.links import CLOSE
from hulytrio.sim.scenario import FaultSpec, parse_scenario
from hulytrio.sim.world import Process, Simulation

SCENARIO = '''
name = "links"
duration = "30s"
[hub]
alive = "3s"
[links]
latency = "1ms..40ms"
[[clients]]
name = "c"
kind = "echo"
'''


def _connected(seed: int) -> tuple[Simulation, Process, list[Any]]:
    """A simulation whose client "c" is connected; returns it, the client, and what it gets."""
    sim = Simulation(parse_scenario(SCENARIO, "links.toml"), seed=seed)
    sim.run_until(1.0)
    proc = sim.procs["c"]
    assert proc.conn is not None
    assert proc.conn.client_open
    received: list[Any] = []
    session = proc.session
    assert session is not None
    real_receive, real_lost = session.receive, session.connection_lost

    def receive(message: Any, now: float) -> None:
        received.append(message)
        real_receive(message, now)

    def lost(now: float) -> None:
        received.append(CLOSE)
        real_lost(now)

    session.receive = receive  # type: ignore[method-assign]
    session.connection_lost = lost  # type: ignore[method-assign]
    return sim, proc, received


def _replies(received: list[Any]) -> list[int]:
    return [m.id for m in received if isinstance(m, KindsReply)]


def test_fifo_without_duplicates_under_random_delays() -> None:
    for seed in range(5):
        sim, proc, received = _connected(seed)
        conn = proc.conn
        assert conn is not None
        ids = list(range(10_001, 10_601))
        for i in ids:
            sim._push(conn, conn.up, Query(i, "kinds"))
        sim.run_until(sim.now + 2.0)
        assert _replies(received) == ids, f"seed {seed}"


def test_a_close_is_seen_after_the_messages_in_flight() -> None:
    sim, proc, received = _connected(1)
    conn = proc.conn
    assert conn is not None
    sim._push(conn, conn.up, Query(20_001, "kinds"))
    sim._push(conn, conn.up, Query(20_002, "kinds"))
    sim._push(conn, conn.up, Close("done"))
    sim.run_until(sim.now + 1.0)
    assert not conn.hub_open, "the hub closed after the peer's Close"
    replies = [i for i, m in enumerate(received) if isinstance(m, KindsReply) and m.id > 20_000]
    closes = [i for i, m in enumerate(received) if m is CLOSE]
    assert len(replies) == 2
    assert closes, "the client saw the close"
    assert max(replies) < closes[0], "the answers came before the close"


def test_a_broken_connection_is_seen_at_once() -> None:
    sim, proc, _ = _connected(2)
    conn = proc.conn
    assert conn is not None
    assert conn.hub_open
    start = sim.now
    sim.inject(FaultSpec(at=start, action="drop-connection", target="c"))
    lost_at = None
    while sim.now < start + 1.0:
        sim.run_until(sim.now + 0.005)
        if not conn.hub_open:
            lost_at = sim.now
            break
    assert lost_at is not None, "the hub saw the drop"
    assert lost_at - start <= 0.040 + 0.005, "within the link's latency, no timeout needed"
