"""The client's safety valve: a hub that stops reading is dropped and reconnected to.

A fake hub (hulytrio's own WebSocket server code, a hand-written handshake
answer) welcomes the client and then never reads again.  The client's calls
fill its bounded send queue; once that is full the client gives up on the
connection and opens a new one, instead of queueing without limit.  (Calls
that carry large payloads, requests and gets, wait for room instead and
never fill it: a hub that takes none of them is dropped after
``STALL_TIMEOUT``, tests/transport/test_client_send_budget.py and
test_paced_payloads.py.)
"""

from __future__ import annotations

import trio

import hulytrio
from hulytrio.core.messages import PROTOCOL_VERSION, Hello, Welcome
from hulytrio.transport import client as client_module
from hulytrio.transport.websocket import WebSocket, accept_websocket
from hulytrio.wire.codec import decode_frame, encode_frame


async def test_a_hub_that_stops_reading_is_dropped_and_reconnected(monkeypatch, caplog):
    monkeypatch.setattr(client_module, "SEND_QUEUE", 4)
    connections: list[WebSocket] = []
    second = trio.Event()

    async def fake_hub(stream: trio.SocketStream) -> None:
        ws = await accept_websocket(stream, max_message_size=1 << 24)
        connections.append(ws)
        if len(connections) > 1:
            second.set()
        hello = decode_frame((await ws.receive())[0])[0]  # type: ignore[arg-type]
        assert isinstance(hello, Hello)
        ws.send_nowait(encode_frame([Welcome(PROTOCOL_VERSION, "fake-hub", 3.0, 1.0)]))
        await trio.sleep_forever()  # and never read again

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = listeners[0].socket.getsockname()[1]
            nursery.start_soon(trio.serve_listeners, fake_hub, listeners)
            async with hulytrio.open_client(f"ws://127.0.0.1:{port}") as client:
                await client.wait_connection()

                async def query(i: int) -> None:
                    # never answered: resent on the next connection, cancelled below
                    await client.list(f"k{i}")

                async with trio.open_nursery() as calls:
                    for i in range(40):  # far more than the queue's 4 messages
                        calls.start_soon(query, i)
                    await second.wait()  # the client gave up and reconnected
                    calls.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
    assert "send queue full" in caplog.text
    for ws in connections:
        ws.abort()
