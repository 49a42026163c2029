"""``References``: the table of a session's references and what an event concerns."""

from __future__ import annotations

from hulytrio.core.events import AgentEvent, ChangeKind, ContainerEvent, NetworkEvent
from hulytrio.core.references import References
from hulytrio.core.types import AgentInfo, ContainerRecord, GetOptions


def record(uuid: str) -> ContainerRecord:
    return ContainerRecord(uuid, "echo", "ag", None)


AGENT_CHANGED = NetworkEvent(1, (AgentEvent(ChangeKind.UPDATED, AgentInfo("ag", ("echo",))),), ())


def test_an_agent_change_concerns_exactly_the_acquiring_references_oldest_first() -> None:
    refs = References()
    r1, r2, r3, r4 = (refs.add(i, "echo", GetOptions()) for i in (1, 2, 3, 4))
    assert refs.affected_by(AGENT_CHANGED) == [1, 2, 3, 4]
    refs.acquired(r1, record("a"))
    refs.acquired(r3, record("c"))
    refs.released(r4)
    assert refs.affected_by(AGENT_CHANGED) == [2]
    refs.lost(r3)  # READY -> ACQUIRING again
    refs.acquired(r2, record("b"))
    assert refs.affected_by(AGENT_CHANGED) == [3]
    refs.drop(r3)
    refs.lost(r1)
    assert refs.affected_by(AGENT_CHANGED) == [1]
    # A container event names the references pointing at it, plus the acquiring ones.
    both = NetworkEvent(2, AGENT_CHANGED.agents,
                        (ContainerEvent(ChangeKind.UPDATED, record("b")),))
    assert refs.affected_by(both) == [1, 2]
    assert refs.affected_by(NetworkEvent(3, (), both.containers)) == [2]
