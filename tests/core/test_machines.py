"""Every client-side lifecycle refuses a move its transition table does not list.

The machines guard their public methods, so an illegal move cannot be
reached by ordinary input; these tests feed one to each machine's single
``_transition`` (or the reference table's public moves) and check that it
fails loudly with ``LocalProtocolError`` and leaves the state as it was.
"""

from __future__ import annotations

import random

import pytest

from hulytrio.core.agent import LOCAL_TRANSITIONS, AgentState, LocalStatus
from hulytrio.core.endpoint import (
    ENDPOINT_TRANSITIONS,
    EndpointClient,
    EndpointSession,
    EndpointState,
)
from hulytrio.core.errors import LocalProtocolError
from hulytrio.core.messages import Start
from hulytrio.core.references import REF_TRANSITIONS, References, RefStatus
from hulytrio.core.session import SESSION_TRANSITIONS, ClientSession, SessionState
from hulytrio.core.types import ContainerRecord, GetOptions


def test_session_refuses_ready_before_a_handshake() -> None:
    s = ClientSession("me", rng=random.Random(1))
    s.connect(0.0)
    assert s.state is SessionState.CONNECTING
    with pytest.raises(LocalProtocolError, match="illegal session transition CONNECTING -> READY"):
        s._transition(SessionState.READY)
    assert s.state is SessionState.CONNECTING
    s.close(0.0)
    with pytest.raises(LocalProtocolError, match="CLOSED -> CONNECTING"):
        s._transition(SessionState.CONNECTING)
    assert not SESSION_TRANSITIONS.allows(SessionState.IDLE, SessionState.READY)


def test_reference_refuses_a_second_release_and_a_late_acquire() -> None:
    refs = References()
    ref = refs.add(1, "echo", GetOptions())
    record = ContainerRecord("c1", "echo", "ag")
    refs.acquired(ref, record)
    assert ref.status is RefStatus.READY
    with pytest.raises(LocalProtocolError, match="illegal reference transition READY -> READY"):
        refs.acquired(ref, record)
    refs.released(ref)
    with pytest.raises(LocalProtocolError, match="RELEASED -> RELEASED"):
        refs.released(ref)
    with pytest.raises(LocalProtocolError, match="RELEASED -> READY"):
        refs.acquired(ref, record)
    assert ref.status is RefStatus.RELEASED
    assert not REF_TRANSITIONS.allows(RefStatus.RELEASED, RefStatus.ACQUIRING)


def test_session_release_twice_is_refused_by_its_guard() -> None:
    s = ClientSession("me", rng=random.Random(1))
    ref_id = s.get("echo")
    s.release(ref_id)
    with pytest.raises(LocalProtocolError, match=f"reference {ref_id} is not held"):
        s.release(ref_id)


def test_local_container_refuses_standby_while_starting() -> None:
    agent = AgentState("ag", ("echo",))
    agent.on_start(Start(1, "ag", "echo", "c1"))
    assert agent.status("c1") is LocalStatus.STARTING
    with pytest.raises(LocalProtocolError,
                       match="illegal local container transition STARTING -> STANDBY"):
        LOCAL_TRANSITIONS.check(LocalStatus.STARTING, LocalStatus.STANDBY)
    local = agent._containers["c1"]
    with pytest.raises(LocalProtocolError, match="STARTING -> STANDBY"):
        local._transition(LocalStatus.STANDBY)
    assert agent.status("c1") is LocalStatus.STARTING
    agent.started("c1")
    with pytest.raises(LocalProtocolError, match="ACTIVE -> ACTIVE"):
        local._transition(LocalStatus.ACTIVE)
    assert agent.status("c1") is LocalStatus.ACTIVE


@pytest.mark.parametrize("side", ["agent", "client"])
def test_endpoint_connection_refuses_to_reopen_once_closed(side: str) -> None:
    machine: EndpointSession | EndpointClient = (
        EndpointSession("ag", lambda uuid: True) if side == "agent" else EndpointClient("me"))
    machine.connection_lost()
    assert machine.state is EndpointState.CLOSED
    with pytest.raises(LocalProtocolError,
                       match="illegal endpoint connection transition CLOSED -> OPEN"):
        machine._transition(EndpointState.OPEN)
    assert machine.state is EndpointState.CLOSED
    assert not ENDPOINT_TRANSITIONS.allows(EndpointState.OPEN, EndpointState.HELLO)
