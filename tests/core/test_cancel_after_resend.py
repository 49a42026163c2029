"""A cancelled call stops at the agent even when it was resent after a reconnect.

Issue 13 (hostile peers): under load the caller of 1,030 abandoned calls
reconnected during the attack and resent its unanswered requests; the hub
kept the old session's forwards (a resend joins their runs at the agent:
at most once), so the caller's ``Cancel`` reached the agent for the new
forward only, the old one still waited for the run, and the run never
stopped.  The hub and the agent host are driven message by message here.
"""

from __future__ import annotations

import random

from hulytrio.core.agent import AgentState
from hulytrio.core.answers import Answer
from hulytrio.core.effects import CancelRequest, RunRequest, Send
from hulytrio.core.hosting import Hosting
from hulytrio.core.messages import (
    Cancel,
    Get,
    GetReply,
    Message,
    RegisterAgent,
    Request,
    Response,
    Retry,
    Start,
)
from hulytrio.core.probes import Probes
from hulytrio.core.session import ClientSession
from hulytrio.core.types import GetOptions

from .conftest import RawHub


class _Pair:
    """A ``RawHub`` with host "h" (agent "ag", hosted by a core ``Hosting``) and caller "c"."""

    def __init__(self) -> None:
        self.raw = raw = RawHub()
        self.host = Hosting(Probes())
        self.host.add(AgentState("ag", ("echo",)))
        raw.hello("h")
        raw.hello("c")
        raw.send("h", RegisterAgent(1, "ag", ("echo",)))
        raw.send("c", Get(1, "echo"))
        self.to_host()
        (reply,) = [m for m in raw.take("c") if isinstance(m, GetReply)]
        self.uuid = reply.container.uuid

    def to_host(self, now: float = 0.0) -> list[object]:
        """Feed the host what the hub sent it; return the driver's effects, send the replies."""
        driver: list[object] = []
        for message in self.raw.take("h"):
            for effect in self._host_receive(message, now):
                if isinstance(effect, Send):
                    self.raw.send("h", effect.message, now)
                else:
                    driver.append(effect)
        return driver

    def _host_receive(self, message: Message, now: float) -> list[object]:
        host = self.host
        if isinstance(message, Start):
            out: list[object] = list(host.on_start(message))
            return [*out[1:], *host.started(message.agent_id, message.uuid, None)]
        if isinstance(message, Request):
            return list(host.on_request(message, now))
        if isinstance(message, Cancel):
            return list(host.cancel(message.id))
        return []

    def reconnect_caller(self, conn: str, now: float) -> None:
        """The caller's connection drops; it comes back on ``conn`` and re-acquires."""
        self.raw.lost("c", now)
        self.raw.hello(conn, now, peer="c")
        self.raw.send(conn, Get(2, "echo", GetOptions(self.uuid)), now)
        self.to_host(now)
        assert any(isinstance(m, GetReply) for m in self.raw.take(conn))


def test_a_call_resent_after_a_reconnect_and_then_cancelled_stops_at_the_agent() -> None:
    pair = _Pair()
    raw = pair.raw
    raw.send("c", Request(7, pair.uuid, "hang", b"", None), 1.0)
    (run,) = pair.to_host(1.0)
    assert isinstance(run, RunRequest)
    pair.reconnect_caller("c2", 2.0)
    # The resend joins the run (at most once): nothing new runs.
    raw.send("c2", Request(7, pair.uuid, "hang", b"", None), 3.0)
    assert pair.to_host(3.0) == []
    assert pair.host.running() == 1
    # The caller abandons the call: the run stops.
    raw.send("c2", Cancel(7), 4.0)
    assert pair.to_host(4.0) == [CancelRequest(run.call_id)]
    assert pair.host.running() == 0
    assert raw.hub.forwards_in_flight() == 0


def test_a_stale_forward_whose_resend_was_answered_retry_is_cancelled_by_the_cancel() -> None:
    pair = _Pair()
    raw = pair.raw
    raw.hub.max_in_flight_per_container = 1
    raw.send("c", Request(7, pair.uuid, "hang", b"", None), 1.0)
    (run,) = pair.to_host(1.0)
    pair.reconnect_caller("c2", 2.0)
    # The new session fills its one slot first: the resend is answered Retry.
    raw.send("c2", Request(8, pair.uuid, "hang", b"", None), 3.0)
    (other,) = pair.to_host(3.0)
    assert isinstance(other, RunRequest)
    (retry,) = raw.send("c2", Request(7, pair.uuid, "hang", b"", None), 3.0)
    assert isinstance(retry, Retry)
    assert pair.to_host(3.0) == []
    raw.send("c2", Cancel(7), 4.0)
    assert pair.to_host(4.0) == [CancelRequest(run.call_id)]
    assert pair.host.running() == 1  # call 8 runs on
    raw.send("c2", Cancel(8), 4.0)
    assert pair.to_host(4.0) == [CancelRequest(other.call_id)]
    assert raw.hub.forwards_in_flight() == 0


def test_a_resend_still_joins_the_run_and_gets_its_one_answer() -> None:
    pair = _Pair()
    raw = pair.raw
    raw.send("c", Request(7, pair.uuid, "op", b"x", None), 1.0)
    (run,) = pair.to_host(1.0)
    pair.reconnect_caller("c2", 2.0)
    raw.send("c2", Request(7, pair.uuid, "op", b"x", None), 3.0)
    assert pair.to_host(3.0) == []  # joined, not run again
    # The old forward's wait was dropped, the run goes on for the resend.
    assert pair.host.running() == 1
    for effect in pair.host.reply(run.call_id, Answer(b"once"), 4.0):
        assert isinstance(effect, Send)
        raw.send("h", effect.message, 4.0)
    assert raw.take("c2") == [Response(7, b"once")]
    assert raw.hub.forwards_in_flight() == 0


# --- with the caller's session -------------------------------------------------------


class _Caller:
    """A core ``ClientSession`` for peer "c", wired to the pair's hub by hand."""

    def __init__(self, pair: _Pair) -> None:
        self.pair = pair
        self.session = ClientSession("c", rng=random.Random(1))
        self.conn = ""
        self.connections = 0

    def connect(self, now: float) -> list[object]:
        """Open a connection to the hub and carry messages until quiet (its Welcome, ...)."""
        self.connections += 1
        self.conn = f"c#{self.connections}"
        if self.connections == 1:
            self.session.connect(now)
        else:
            self.session.handle_timers(self.session.next_deadline() or now)
        self.pair.raw.hub.connection_made(self.conn, now)
        self.session.connection_made(now)
        return self.pump(now)

    def pump(self, now: float) -> list[object]:
        """Carry messages both ways until quiet; returns the host's driver effects."""
        raw, session, host = self.pair.raw, self.session, []
        while True:
            moved = False
            for effect in session.effects():
                if isinstance(effect, Send):
                    moved = True
                    raw.hub.receive(self.conn, effect.message, now)
                    raw.drain()
            host.extend(self.pair.to_host(now))
            for message in raw.take(self.conn):
                moved = True
                session.receive(message, now)
            if not moved:
                return host

    def drop(self, now: float) -> None:
        """The connection breaks; both sides see it."""
        self.pair.raw.lost(self.conn, now)
        self.session.connection_lost(now)
        self.session.effects()


def _hanging_call(caller: _Caller) -> tuple[int, RunRequest]:
    """The caller acquires the container and makes a call that hangs there."""
    caller.connect(0.0)
    ref = caller.session.get("echo", GetOptions(caller.pair.uuid))
    caller.pump(0.5)
    handle = caller.session.request(ref, "hang", b"")
    (run,) = caller.pump(1.0)
    assert isinstance(run, RunRequest)
    return handle, run


def test_the_callers_session_resends_after_a_reconnect_and_its_cancel_stops_the_run() -> None:
    pair = _Pair()
    caller = _Caller(pair)
    handle, run = _hanging_call(caller)
    caller.drop(2.0)
    assert caller.connect(2.5) == []  # re-acquired and resent: the resend joined the run
    assert pair.raw.hub.stats.forwarded == 2
    assert pair.host.running() == 1
    caller.session.cancel(handle)
    assert caller.pump(3.0) == [CancelRequest(run.call_id)]
    assert pair.raw.hub.forwards_in_flight() == 0


def test_a_call_cancelled_while_the_caller_is_away_stops_once_it_is_back() -> None:
    pair = _Pair()
    caller = _Caller(pair)
    handle, run = _hanging_call(caller)
    caller.drop(2.0)
    caller.session.cancel(handle)  # no connection: its Cancel waits for the next Welcome
    assert caller.session.effects() == []
    assert caller.connect(2.5) == [CancelRequest(run.call_id)]
    assert pair.host.running() == 0
    assert pair.raw.hub.forwards_in_flight() == 0


def test_forwards_of_callers_that_never_return_are_bounded() -> None:
    """A caller that leaves its calls running and never comes back, again and again
    under new peer ids, cannot pin forwards at the hub and runs at the agent without
    end: beyond ``max_stale_forwards`` the oldest is cancelled."""
    pair = _Pair()
    raw = pair.raw
    raw.hub.max_stale_forwards = 3
    runs: list[RunRequest] = []
    for i in range(5):
        peer = f"gone-{i}"
        raw.hello(peer, float(i))
        raw.send(peer, Get(1, "echo", GetOptions(pair.uuid)), float(i))
        raw.send(peer, Request(1, pair.uuid, "hang", b"", None), float(i))
        (run,) = [e for e in pair.to_host(float(i)) if isinstance(e, RunRequest)]
        runs.append(run)
        raw.lost(peer, float(i))
        pair.to_host(float(i))
    # The first two gone callers' runs were cancelled at the agent, the
    # newest three go on (a caller that returns may still join them).
    assert pair.host.running() == 3
    assert raw.hub.forwards_in_flight() == 3
    assert raw.hub.stats.request_cancelled == 2
    assert raw.hub.probes.counts["stale forwards over their bound"] == 2
