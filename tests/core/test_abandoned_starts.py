"""A start the hub has given up on does not go on running on its agent.

The hub fails a pending start when it times out, or when the agent's
session ends (the agent reconnects, or the hub restarts).  Either way the
agent may still be starting the container; nothing may be left running that
the hub does not list (found by the simulator: such a container ran for
ever, unlisted, and took a place under the agent's ``max_containers``).
"""

from __future__ import annotations

from hulytrio.core.agent import AgentState
from hulytrio.core.effects import Reject, StopContainer
from hulytrio.core.messages import Get, RegisterAgent, Start, Terminate
from hulytrio.core.types import GetOptions
from hulytrio.testing import Cluster


def _start_held() -> tuple[Cluster, int, str]:
    """Agent ``w`` (session ``h``) is asked to start a container for ``u``; it is still starting."""
    c = Cluster()
    c.add_client("h")
    c.add_agent("h", AgentState("w", ("kv",)))
    c.add_client("u")
    c.auto_start = False
    g = c.sessions["u"].get("kv")
    c.pump()
    ((host, start),) = c.held_starts
    assert host == "h"
    c.auto_start = True
    return c, g, start.uuid


def test_a_start_that_times_out_is_terminated_on_its_agent(raw) -> None:
    raw.hello("h", alive=100.0)
    raw.send("h", RegisterAgent(1, "w", ("kv",), None, ()))
    raw.hello("u", alive=100.0)
    raw.send("u", Get(2, "kv", GetOptions()))
    (start,) = [m for m in raw.take("h") if isinstance(m, Start)]
    raw.advance(raw.hub.timeouts.start + 0.1)
    assert raw.hub.probes.counts["start timed out"] == 1
    assert Terminate("w", start.uuid) in raw.take("h")


def test_a_start_finishing_after_its_timeout_leaves_nothing_running() -> None:
    c, g, uuid = _start_held()
    c.advance(c.now + c.timeouts.start + 0.1)
    assert isinstance(c.result("u", g), Reject)
    agent = c.sessions["h"].agent("w")
    assert agent is not None
    assert agent.status(uuid) is None  # the Terminate cancelled the start
    # The driver's start completes late: nothing is announced or kept.
    c.sessions["h"].agent_started("w", uuid)
    c.pump()
    assert agent.status(uuid) is None
    assert c.hub.registry.container(uuid) is None
    assert c.hub.registry.check() == []


def test_a_start_of_an_ended_session_is_cancelled_when_the_agent_registers_again() -> None:
    c, _, uuid = _start_held()
    h = c.sessions["h"]
    c.disconnect("h")  # the hub fails the start: "pending start lost with agent"
    assert c.hub.probes.counts["pending start lost with agent"] == 1
    c.advance(c.now + 1.0)  # h reconnects and registers again
    assert c.connected["h"]
    agent = h.agent("w")
    assert agent is not None
    assert agent.status(uuid) is None
    # The driver's start completes late: it is not announced or kept (the
    # client's get retried meanwhile and was given another container).
    h.agent_started("w", uuid)
    c.pump()
    assert agent.status(uuid) is None
    assert uuid not in c.running["w"]
    assert c.hub.registry.container(uuid) is None
    assert c.hub.registry.check() == []


def test_a_registration_cancels_starts_still_running() -> None:
    agent = AgentState("w", ("kv",))
    assert [type(e).__name__ for e in agent.on_start(Start(3, "w", "kv", "kv-1"))] == [
        "StartContainer"]
    assert agent.fence() == [StopContainer("w", "kv-1")]
    assert agent.status("kv-1") is None
    assert agent.started("kv-1") == []
