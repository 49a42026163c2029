"""Event fan-out on loopback: a subscriber that never reads holds back only itself.

A hub floods registry events (registrations with large offers) while one
``events="all"`` peer never reads; a healthy client must keep getting its
events and answers, the silent peer must cost the hub at most its event
backlog, and once it reads again it must see the gap that makes it resync.
"""

from __future__ import annotations

import itertools
from typing import Any

import trio

import hulytrio
from hulytrio.core.messages import (
    PROTOCOL_VERSION,
    Event,
    Hello,
    RegisterAgent,
    Welcome,
)
from hulytrio.core.types import OfferedContainer
from hulytrio.transport.websocket import WebSocket, WebSocketClosed, connect_websocket
from hulytrio.wire.codec import MAX_FRAME_BYTES, decode_frame, encode_frame

#: small, so that the test needs a few megabytes of events, not hundreds
BACKLOG = 512 * 1024
#: registrations, offers each, and the label that makes each offer ~8 KiB
REGISTRATIONS = 120
OFFERS = 40
LABEL = "L" * 8000


class Echo(hulytrio.Container):
    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        return data


async def start_echo(options: hulytrio.GetOptions) -> hulytrio.Container:
    return Echo()


async def _welcomed(url: str, peer_id: str) -> tuple[WebSocket, Welcome]:
    ws = await connect_websocket(url, max_message_size=MAX_FRAME_BYTES)
    ws.send_nowait(encode_frame([Hello(PROTOCOL_VERSION, peer_id, 120.0)]))
    while True:
        for data in await ws.receive():
            assert isinstance(data, bytes)
            for message in decode_frame(data):
                if isinstance(message, Welcome):
                    return ws, message


async def _discard(ws: WebSocket) -> None:
    try:
        while True:
            await ws.receive()
    except WebSocketClosed:
        return


def _backlog(hub: hulytrio.NetworkServer) -> int:
    # The bytes the hub keeps for its end of the silent peer's connection
    # (the hub's peers are private: this is the number the bound is about).
    return max(peer.ws.pending for peer in hub._peers.values())


async def test_a_subscriber_that_never_reads_costs_its_backlog_and_stalls_nobody():
    with trio.fail_after(120):
        # (the registrar's 120 agent ids are over the 64 one session may
        # register by default: limits.maxRegistrations is raised for them)
        async with hulytrio.serve_network(port=0, event_backlog=BACKLOG,
                                          max_registrations=REGISTRATIONS) as hub, \
                hulytrio.open_client(hub.url) as host, \
                hulytrio.open_client(hub.url) as watcher, \
                trio.open_nursery() as nursery:
            await host.serve_agent({"echo": start_echo})
            ref = await watcher.get("echo")
            silent, _ = await _welcomed(hub.url, "silent")
            registrar, _ = await _welcomed(hub.url, "registrar")
            nursery.start_soon(_discard, registrar)
            worst = 0.0
            most = 0
            for i in range(REGISTRATIONS):
                # Offers that say they serve (so a new hub's recovery window
                # does not hold them back): each one is an added event.
                offers = tuple(OfferedContainer(f"flood-{i}-{j}", "flood", (LABEL,), True,
                                                serving=True)
                               for j in range(OFFERS))
                registrar.send_nowait(encode_frame(
                    [RegisterAgent(i + 1, f"flood-{i}", ("flood",), containers=offers)]))
                await registrar.wait_sent()  # (a raw peer has no writer task)
                # The healthy pair is answered promptly all along.
                started = trio.current_time()
                with trio.fail_after(2):
                    assert await ref.request("op", i) == i
                worst = max(worst, trio.current_time() - started)
                await trio.sleep(0.012)  # one event window per registration
                most = max(most, _backlog(hub))
            # ~38 MB of events went out; the silent peer was never dropped,
            # and the hub kept at most the backlog plus one window's events.
            stats = hub.statistics()
            assert stats.dropped_slow == 0
            assert stats.events_held > 0
            assert most <= BACKLOG + 2 * OFFERS * (len(LABEL) + 200), most
            assert worst < 1.0
            # The watcher got every change (one event per window).
            with trio.fail_after(10):
                while len(watcher.session.view.containers) < REGISTRATIONS * OFFERS + 1:  # noqa: ASYNC110
                    await trio.sleep(0.05)
            assert len(watcher.session.view.agents) == REGISTRATIONS + 1
            # The silent peer reads at last: the latest event was kept for it,
            # after a gap in the numbers that makes a client resync.
            last_seq = hub.hub.registry.events.seq
            seqs: list[int] = []
            with trio.fail_after(20):
                while not seqs or seqs[-1] < last_seq:
                    for data in await silent.receive():
                        assert isinstance(data, bytes)
                        seqs.extend(m.event.seq for m in decode_frame(data)
                                    if isinstance(m, Event))
            assert seqs[-1] == last_seq
            assert any(b - a > 1 for a, b in itertools.pairwise(seqs)), "a gap"
            assert seqs == sorted(seqs)
            nursery.cancel_scope.cancel()
            silent.abort()
            registrar.abort()
