"""A hub driven by its lease (``transport/leadership.py``), in process on loopback.

The lease here is a stand-in the test controls (when the campaign is won,
when the lease is lost), so each role change happens at a known moment; the
real backends meet real hub processes in tests/e2e/test_ha.py.
"""

from __future__ import annotations

import json
import math

import pytest
import trio
import trio_websocket

import hulytrio
from hulytrio.core.hubs import parse_hub_urls
from hulytrio.core.messages import PROTOCOL_VERSION, Hello, Ping, Pong, Welcome
from hulytrio.lease import Leadership, Lease, LeaseLost
from hulytrio.transport.http import fetch
from hulytrio.transport.leadership import LEADER_POLL, lead, wait_successor
from hulytrio.wire.codec import decode_frame, encode_frame
from tests.wsclient import dial


class Switch(Lease):
    """A lease the test hands out (``win``) and takes away (``lose``)."""

    def __init__(self, holder: str | None = None) -> None:
        self.holder = holder
        self.won = trio.Event()
        self.lost = trio.Event()
        self.term = 0
        self.campaigns = 0

    def win(self, term: int) -> None:
        self.term = term
        self.won.set()

    def lose(self) -> None:
        self.lost.set()

    async def campaign(self, holder: str) -> Leadership:
        self.campaigns += 1
        await self.won.wait()
        self.won = trio.Event()
        self.holder = holder
        self.valid_until = math.inf  # held until the test says otherwise
        return Leadership(self.term, holder)

    async def hold(self) -> None:
        await self.lost.wait()
        self.lost = trio.Event()
        self.valid_until = -math.inf
        raise LeaseLost("taken away by the test")

    async def leader(self) -> str | None:
        return self.holder

    async def resign(self) -> None:
        self.holder = None

    async def aclose(self) -> None:
        await self.resign()


async def until(predicate) -> None:
    """Poll ``predicate`` until it is true (the test's ``fail_after`` bounds it)."""
    while True:
        if predicate():
            return
        await trio.sleep(0.01)


async def role(hub: hulytrio.NetworkServer) -> tuple[int, str]:
    status, body = await fetch(hub.url, "/ready")
    return status, json.loads(body)["role"]


async def test_a_hub_on_its_lease_redirects_until_it_wins_and_steps_down_when_it_loses():
    with trio.fail_after(20):
        async with hulytrio.serve_network(port=0, standby=True) as hub, \
                trio.open_nursery() as nursery:
            lease = Switch(holder="ws://elsewhere:1")
            nursery.start_soon(lead, hub, lease, hub.url)
            assert await role(hub) == (503, "standby")
            await trio.sleep(LEADER_POLL / 5)
            assert hub.hub.redirect == "ws://elsewhere:1"

            lease.win(term=4)
            await until(lambda: hub.role == "active")
            assert await role(hub) == (200, "active")
            async with hulytrio.open_client(hub.url) as c:
                await c.wait_connection()
                assert (c.session.term, c.session.hub_id) == (4, hub.hub.hub_id)
                first_hub = hub.hub.hub_id

                lease.lose()
                # Stepped down at once: the session is closed, the client is
                # redirected from now on (nobody else holds the lease).
                await until(lambda: hub.role == "standby")
                assert await role(hub) == (503, "standby")
                assert hub.hub.hub_id != first_hub
                await until(lambda: c.session.state.value != "ready")
                assert lease.campaigns == 2

                lease.win(term=5)
                await until(lambda: c.session.state.value == "ready")
                assert c.session.term == 5
            nursery.cancel_scope.cancel()


async def test_a_standby_does_not_redirect_to_itself():
    with trio.fail_after(10):
        async with hulytrio.serve_network(port=0, standby=True) as hub, \
                trio.open_nursery() as nursery:
            nursery.start_soon(lead, hub, Switch(holder=None), hub.url)
            await trio.sleep(LEADER_POLL / 5)
            assert hub.hub.redirect == ""
            lease = Switch(holder=hub.url)  # our own record from an earlier term
            nursery.start_soon(lead, hub, lease, hub.url)
            await trio.sleep(LEADER_POLL / 5)
            assert hub.hub.redirect == ""
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize(("text", "message"), [
    ("", "no hub URL given"),
    ("ws://a:1,", "hub URL 2 of 2 is empty"),
    ("ws://a:1,http://b:2", "hub URL 2 of 2 'http://b:2': expected ws://HOST:PORT"),
    ("ws://a:99999", "hub URL 'ws://a:99999': the port is not a number"),
    ("ws://:1", "hub URL 'ws://:1': expected ws://HOST:PORT"),
])
def test_a_malformed_hub_list_names_the_bad_element(text, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        parse_hub_urls(text)


def test_a_hub_list_keeps_its_order_without_repeats():
    assert parse_hub_urls(" ws://b:2 , ws://a:1,ws://b:2") == ("ws://b:2", "ws://a:1")


async def test_open_client_refuses_a_malformed_list_before_connecting():
    with pytest.raises(ValueError, match="hub URL 2 of 2 is empty"):
        async with hulytrio.open_client("ws://127.0.0.1:1,"):
            pass  # pragma: no cover


async def test_a_client_given_two_hubs_moves_to_the_live_one():
    with trio.fail_after(10):
        async with hulytrio.serve_network(port=0) as hub:
            dead = "ws://127.0.0.1:1"  # nothing listens on port 1
            async with hulytrio.open_client(f"{dead},{hub.url}") as c:
                await c.wait_connection()
                assert c.hub_url == hub.url


async def test_a_resigning_hub_waits_for_its_successor_to_be_active():
    with trio.fail_after(10):
        async with hulytrio.serve_network(port=0, standby=True) as successor:
            lease = Switch(holder="ws://me:1")  # our own record, as after a resign
            got: list[str] = []

            async def wait() -> None:
                got.append(await wait_successor(lease, "ws://me:1",
                                                trio.current_time() + 5))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait)
                await trio.sleep(0.05)
                lease.holder = successor.url  # it won the lease, not yet active
                await trio.sleep(0.1)
                assert got == []  # a peer sent there now would be sent back
                successor.activate(2)
            assert got == [successor.url]


async def test_a_resigning_hub_gives_up_on_a_successor_at_its_deadline():
    with trio.fail_after(5):
        lease = Switch(holder="ws://me:1")
        start = trio.current_time()
        assert await wait_successor(lease, "ws://me:1", start + 0.2) == ""
        # A TLS successor is not probed: the lease's word is taken.
        lease.holder = "wss://next:1"
        assert await wait_successor(lease, "ws://me:1", start + 5) == "wss://next:1"


class Clock:
    """A lease clock the test moves (``Lease.valid_until``)."""

    def __init__(self, valid_until: float) -> None:
        self.valid_until = valid_until


async def test_a_hub_past_its_lease_steps_down_before_answering_a_ping():
    # A hub woken from a pause past its lease: its lease task has not run
    # yet (``hold`` still holds), but a ping waits in a socket.  It must step
    # down unanswered: a pong would renew the agent's fence lease past the
    # new hub's first session (docs/high-availability.md).
    with trio.fail_after(20):
        async with hulytrio.serve_network(port=0, standby=True) as hub, \
                trio.open_nursery() as nursery:
            clock = Clock(trio.current_time() + 60)
            hub.activate(7, clock)
            ws, stream = await dial(nursery, hub.url)
            await ws.send_message(encode_frame([Hello(PROTOCOL_VERSION, "agent-x")]))
            welcome = decode_frame(await ws.get_message())[0]  # type: ignore[arg-type]
            assert isinstance(welcome, Welcome)
            assert welcome.term == 7
            await ws.send_message(encode_frame([Ping()]))
            assert decode_frame(await ws.get_message()) == [Pong()]  # type: ignore[arg-type]
            first = hub.hub.hub_id

            clock.valid_until = trio.current_time() - 0.001  # the lease ran out meanwhile
            await ws.send_message(encode_frame([Ping()]))
            got = []
            with trio.move_on_after(2):
                while True:
                    try:
                        data = await ws.get_message()
                    except trio_websocket.ConnectionClosed:
                        break
                    got.extend(decode_frame(data))  # type: ignore[arg-type]
            assert Pong() not in got, "a hub past its lease answered a ping"
            assert hub.role == "standby"
            assert hub.hub.hub_id != first
            assert await role(hub) == (503, "standby")
            await stream.aclose()
            nursery.cancel_scope.cancel()


async def test_a_hub_past_its_lease_fires_no_timer():
    # The same gate guards the timers (an alive check could hand a
    # stateless uuid to another agent): the hub steps down instead.
    with trio.fail_after(20):
        async with hulytrio.serve_network(port=0, standby=True) as hub:
            clock = Clock(trio.current_time() + 60)
            hub.activate(3, clock)
            clock.valid_until = trio.current_time()
            hub._fire(trio.current_time())
            assert hub.role == "standby"


async def test_a_hub_that_resigned_to_drain_is_not_stepped_down_by_its_gate():
    # A clean stop resigns first (the lease's valid_until ends), then hands
    # its peers over and answers what is in flight: that is on purpose, and
    # the gate must not close those sessions as if the lease had run out.
    with trio.fail_after(20):
        async with hulytrio.serve_network(port=0, standby=True) as hub:
            clock = Clock(trio.current_time() + 60)
            hub.activate(2, clock)

            async def resign(deadline: float) -> str:
                clock.valid_until = -math.inf  # what Lease.resign does
                return ""

            hub.resign = resign
            async with hulytrio.open_client(hub.url) as client:
                await client.wait_connection()
                machine = hub.hub
                await hub.drain(1.0)
            assert hub.hub is machine
            assert hub.role == "draining"


async def test_a_gate_step_down_ends_the_hold_and_gives_the_lease_up():
    # The gate fired (the hub woke past its lease) while ``hold`` would
    # still succeed (a keep-alive answered a moment later): the hub must not
    # stay a standby that holds the lease, which no other hub could win.
    with trio.fail_after(20):
        async with hulytrio.serve_network(port=0, standby=True) as hub, \
                trio.open_nursery() as nursery:
            lease = Switch(holder=None)
            resigned = []

            async def resign() -> None:
                resigned.append(trio.current_time())
                lease.holder = None

            lease.resign = resign  # type: ignore[method-assign]
            nursery.start_soon(lead, hub, lease, hub.url)
            lease.win(term=3)
            await until(lambda: hub.role == "active")
            async with hulytrio.open_client(hub.url) as client:
                await client.wait_connection()
                lease.valid_until = trio.current_time()  # hold() itself never raises
                await until(lambda: hub.role == "standby")
                await until(lambda: lease.campaigns == 2)
                assert len(resigned) == 1
                lease.win(term=4)
                await until(lambda: client.session.term == 4)
            nursery.cancel_scope.cancel()
