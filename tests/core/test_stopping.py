"""A uuid the hub terminated starts again only after its agent says it stopped.

The agent's last checkpoint of the container is written before it says so;
a start elsewhere before that would claim the uuid in the state store first
and fence the write (docs/state.md, "What is lost when").
"""

from __future__ import annotations

from hulytrio.core.agent import AgentState
from hulytrio.core.effects import Effect, Fact, Notice, Send
from hulytrio.core.messages import (
    PROTOCOL_VERSION,
    Activate,
    Claim,
    ContainerStopped,
    Get,
    GetReply,
    Hello,
    Message,
    Ok,
    RegisterAgent,
    RegisterReply,
    Release,
    Retry,
    Start,
    Started,
    Terminate,
    TerminateAny,
    UnregisterAgent,
)
from hulytrio.core.principals import Principal, Role
from hulytrio.core.timeouts import Timeouts
from hulytrio.core.types import GetOptions, OfferedContainer

from .conftest import RawHub

TIMEOUTS = Timeouts(alive=100.0, unused_container=5.0, stop=10.0)
UUID = "c-1"
DB = OfferedContainer("db-1", "db", ("primary",), stateless=True)


def starts(messages: list[Message]) -> list[Start]:
    return [m for m in messages if isinstance(m, Start)]


def unused_on_a0() -> RawHub:
    """Agents a0 (session h0) and a1 (h1) host "echo"; ``UUID`` ran on a0 for "u",
    which released it: the hub has just terminated it for the unused timeout (at 6.0)."""
    raw = RawHub(TIMEOUTS)
    for i in range(2):
        raw.hello(f"h{i}", alive=100.0)
        raw.send(f"h{i}", RegisterAgent(1, f"a{i}", ("echo",)))
    raw.hello("u", alive=100.0)
    raw.send("u", Get(1, "echo", GetOptions(UUID)))
    (start,) = starts(raw.take("h0"))
    raw.send("h0", Started(start.id, UUID))
    assert isinstance(raw.take("u")[-1], GetReply)
    assert raw.send("u", Release(2, UUID), 1.0) == [Ok(2)]
    raw.take("h0")
    raw.advance(6.0)
    assert [m for m in raw.take("h0") if isinstance(m, Terminate)] == [Terminate("a0", UUID)]
    assert raw.hub.registry.container(UUID) is None
    return raw


def test_a_get_waits_until_the_agent_says_the_container_stopped() -> None:
    raw = unused_on_a0()
    # Still saving: asked again, the caller is told to retry; nothing starts.
    assert raw.send("u", Get(3, "echo", GetOptions(UUID)), 6.1) == [Retry(3, 0.05)]
    assert starts(raw.take("h1")) == []
    assert raw.hub.registry.check() == []
    raw.send("h0", ContainerStopped("a0", UUID), 6.5)
    raw.send("u", Get(4, "echo", GetOptions(UUID)), 6.6)
    # The agents take starts in turn: a1 this time, which is the case that lost data.
    (start,) = starts(raw.take("h1"))
    assert start.uuid == UUID
    assert raw.hub.registry.check() == []


def test_an_agent_that_never_says_is_waited_for_at_most_the_stop_timeout() -> None:
    raw = unused_on_a0()
    raw.advance(6.0 + TIMEOUTS.stop - 0.01)
    assert raw.send("u", Get(3, "echo", GetOptions(UUID)), 15.99) == [Retry(3, 0.05)]
    notices: list[Notice] = []
    effects = raw.hub.effects

    def keep() -> list[Effect]:
        out = effects()
        notices.extend(e for e in out if isinstance(e, Notice))
        return out

    raw.hub.effects = keep  # type: ignore[method-assign]
    raw.advance(6.0 + TIMEOUTS.stop)  # (an agent of an older release never says)
    # The operator hears of it: the last changes may be lost.
    assert [n for n in notices if n.fact is Fact.CONTAINER_STOP_LATE] == [
        Notice(Fact.CONTAINER_STOP_LATE, "a0", UUID, None, None,
               "no answer in 10 s: its last changes may be lost", 10.0)]
    raw.send("u", Get(4, "echo", GetOptions(UUID)), 16.0)
    (start,) = starts(raw.take("h1"))
    assert start.uuid == UUID
    raw.send("h1", Started(start.id, UUID), 16.1)
    # Its word, late, changes nothing: the uuid lives on a1 now.
    raw.send("h0", ContainerStopped("a0", UUID), 16.2)
    rec = raw.hub.registry.container(UUID)
    assert rec is not None
    assert rec.agent_id == "a1"
    assert raw.hub.registry.check() == []


def test_an_agent_gone_is_not_waited_for() -> None:
    raw = unused_on_a0()
    assert raw.send("h0", UnregisterAgent(9, "a0"), 7.0) == [Ok(9)]
    raw.send("u", Get(3, "echo", GetOptions(UUID)), 7.1)
    assert [s.uuid for s in starts(raw.take("h1"))] == [UUID]
    assert raw.hub.registry.check() == []


def test_another_agents_word_does_not_end_the_wait() -> None:
    raw = unused_on_a0()
    raw.send("h1", ContainerStopped("a1", UUID), 6.5)
    assert raw.send("u", Get(3, "echo", GetOptions(UUID)), 6.6) == [Retry(3, 0.05)]
    assert raw.hub.registry.check() == []


def admin_hello(raw: RawHub, conn: str) -> None:
    raw.hub.connection_made(conn, 0.0)
    raw.hub.receive_hello(conn, Hello(PROTOCOL_VERSION, conn, 100.0),
                          Principal(conn, frozenset({Role.ADMIN})), 0.0)
    raw.drain()
    raw.take(conn)


def test_a_standby_serves_a_terminated_stateless_uuid_only_after_its_last_write() -> None:
    raw = RawHub(TIMEOUTS).recovered()
    for i in range(2):
        admin_hello(raw, f"h{i}")
        raw.send(f"h{i}", RegisterAgent(1, f"a{i}", ("db",), containers=(DB,)))
    admin_hello(raw, "ops")
    assert raw.hub.registry.standbys(DB.uuid) == ("a1",)
    raw.take("h1")
    assert raw.send("ops", TerminateAny(5, DB.uuid), 1.0) == [Ok(5)]
    assert [m for m in raw.take("h0") if isinstance(m, Terminate)] == [
        Terminate("a0", DB.uuid)]
    # Activated now, a1 would claim the uuid before a0's last checkpoint.
    assert [m for m in raw.take("h1") if isinstance(m, Activate)] == []
    # Its own claim (it saw the owner go) is answered "stand by", not "yours".
    assert raw.send("h1", Claim(2, "a1", DB), 1.1) == [RegisterReply(2, (DB.uuid,), ())]
    assert raw.hub.registry.container(DB.uuid) is None
    raw.send("h0", ContainerStopped("a0", DB.uuid), 1.4)
    (activate,) = [m for m in raw.take("h1") if isinstance(m, Activate)]
    assert activate.uuid == DB.uuid
    rec = raw.hub.registry.container(DB.uuid)
    assert rec is not None
    assert rec.agent_id == "a1"
    assert raw.hub.registry.check() == []


def test_the_agent_says_it_stopped_unless_the_uuid_runs_there_again() -> None:
    agent = AgentState("a0", ("echo",))
    agent.on_start(Start(1, "a0", "echo", UUID))
    agent.started(UUID)
    assert agent.on_terminate(Terminate("a0", UUID))
    assert agent.terminated(UUID) == [Send(None, ContainerStopped("a0", UUID))]
    agent.on_start(Start(2, "a0", "echo", UUID))  # started anew: the hub waits no more
    assert agent.terminated(UUID) == []
