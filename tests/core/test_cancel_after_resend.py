"""A cancelled call stops at the agent even when it was resent after a reconnect.

Issue 13 (hostile peers): under load the caller of 1,030 abandoned calls
reconnected during the attack and resent its unanswered requests; the hub
kept the old session's forwards (a resend joins their runs at the agent:
at most once), so the caller's ``Cancel`` reached the agent for the new
forward only, the old one still waited for the run, and the run never
stopped.  The hub and the agent host are driven message by message here.
"""

from __future__ import annotations

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
    Start,
    Started,
)
from hulytrio.core.probes import Probes
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
