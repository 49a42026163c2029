"""``Hosting``: the agents one session hosts, and where the hub's orders go."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from hulytrio.core.agent import AgentState
from hulytrio.core.effects import (
    ConnectContainer,
    DisconnectContainer,
    RunRequest,
    Send,
    SetServing,
    StartContainer,
    StopContainer,
)
from hulytrio.core.errors import ErrorCode, LocalProtocolError
from hulytrio.core.hosting import Hosting
from hulytrio.core.messages import (
    Activate,
    Connect,
    ContainerStopped,
    Disconnect,
    Error,
    Ok,
    RegisterReply,
    Request,
    Start,
    Started,
    Terminate,
)
from hulytrio.core.probes import Probes
from hulytrio.core.types import GetOptions, OfferedContainer

HA = OfferedContainer("db-1", "db", (), stateless=True)


def hosting() -> Hosting:
    h = Hosting(Probes())
    h.add(AgentState("a", ("echo",)))
    h.add(AgentState("b", ("db",), stateless=(HA,)))
    h.add(AgentState("c", ("db",), stateless=(HA,)))
    return h


def error_code(effects: Sequence[object]) -> str:
    (effect,) = effects
    assert isinstance(effect, Send)
    assert isinstance(effect.message, Error)
    return effect.message.code


def test_an_agent_id_is_hosted_once() -> None:
    h = hosting()
    with pytest.raises(LocalProtocolError, match="'a' is already registered"):
        h.add(AgentState("a", ("other",)))
    assert list(h.agents) == ["a", "b", "c"]


def test_orders_go_to_the_agent_named_or_running_the_uuid() -> None:
    h = hosting()
    assert h.on_start(Start(7, "a", "echo", "e-1")) == [
        StartContainer("a", "e-1", "echo", GetOptions("e-1"))]
    assert h.started("a", "e-1", None) == [Send(None, Started(7, "e-1", None))]
    assert h.on_request(Request(8, "e-1", "op", b"x", "caller"), 0.0) == [
        RunRequest("a", "e-1", 8, "op", b"x", "caller")]
    assert h.on_connect(Connect(9, "e-1", "caller")) == [
        ConnectContainer("a", "e-1", "caller"), Send(None, Ok(9))]
    assert h.on_disconnect(Disconnect("e-1", "caller")) == [
        DisconnectContainer("a", "e-1", "caller")]
    assert h.stopped("a", "e-1") == [Send(None, ContainerStopped("a", "e-1"))]


def test_orders_for_what_is_not_here_are_not_found_or_ignored() -> None:
    h = hosting()
    assert error_code(h.on_start(Start(1, "zz", "echo", "e-1"))) == ErrorCode.NOT_FOUND.value
    assert error_code(h.on_request(Request(2, "nope", "op", b""), 0.0)) == ErrorCode.NOT_FOUND.value
    assert error_code(h.on_connect(Connect(3, "nope", "caller"))) == ErrorCode.NOT_FOUND.value
    assert h.on_disconnect(Disconnect("nope", "caller")) == []
    assert h.on_terminate(Terminate("zz", "e-1")) == []
    assert h.on_activate(Activate("zz", "db-1", 1)) == []
    assert h.started("zz", "e-1", None) == []
    assert h.start_failed("zz", "e-1", "boom") == []
    assert h.stopped("zz", "e-1") == []
    assert h.registered("zz", RegisterReply(4)) == []
    assert h.claimed("zz", "db-1", RegisterReply(5)) == []
    assert h.claim_offer("zz", "db-1") is None
    assert h.remove("zz") == []


def test_standbys_claims_and_activation() -> None:
    h = hosting()
    # Both stateless offers stand by until the hub answers their registration.
    assert h.standing_by("db-1") == ["b", "c"]
    h.registered("b", RegisterReply(1))  # b owns it
    h.registered("c", RegisterReply(2, standby=("db-1",)))  # c stands by
    assert h.standing_by("db-1") == ["c"]
    assert h.claim_offer("c", "db-1") == HA
    assert h.on_activate(Activate("c", "db-1", 1)) == [SetServing("c", "db-1", True, 1)]
    assert h.probes.counts["standby activated"] == 1
    assert h.standing_by("db-1") == []


def test_removing_an_agent_stops_what_it_ran() -> None:
    h = hosting()
    h.on_start(Start(7, "a", "echo", "e-1"))
    h.started("a", "e-1", None)
    assert h.remove("a") == [StopContainer("a", "e-1")]
    assert h.get("a") is None
    assert error_code(h.on_request(Request(8, "e-1", "op", b""), 0.0)) == ErrorCode.NOT_FOUND.value
