"""The direct-connection machines (``core/endpoint.py``), wired to each other in memory."""

from __future__ import annotations

import pytest

from hulytrio.core.agent import AgentState, LocalStatus
from hulytrio.core.effects import (
    CloseConnection,
    ConnectContainer,
    DeliverPush,
    DisconnectContainer,
    Effect,
    Reject,
    Resolve,
    RunRequest,
    Send,
    StreamEnded,
)
from hulytrio.core.endpoint import (
    FENCED_RETRY_AFTER,
    RETRY_MAX,
    EndpointClient,
    EndpointSession,
    EndpointState,
)
from hulytrio.core.errors import (
    ConnectionClosed,
    ContainerNotFound,
    LocalProtocolError,
    ProtocolError,
    RemoteError,
)
from hulytrio.core.messages import (
    PROTOCOL_VERSION,
    Close,
    Connect,
    Error,
    Get,
    Hello,
    Ping,
    Pong,
    RegisterReply,
    Request,
    Response,
    Retry,
    Start,
    Welcome,
)
from hulytrio.core.types import OfferedContainer


class Pair:
    """A client machine and an agent endpoint machine, pumped by hand."""

    def __init__(self, serving: set[str] | None = None) -> None:
        self.serving = serving if serving is not None else {"c1"}
        self.fenced: set[str] = set()
        self.now = 0.0
        self.agent = EndpointSession("a1", lambda uuid: uuid in self.serving,
                                     lambda uuid: uuid in self.fenced)
        self.client = EndpointClient("client-1")
        self.agent_effects: list[Effect] = []
        self.client_effects: list[Effect] = []
        self.to_agent(self.client.hello())

    def to_agent(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                self.to_client(self.agent.receive(effect.message))
            else:
                self.client_effects.append(effect)

    def to_client(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Send):
                self.to_agent(self.client.receive(effect.message, self.now))
            else:
                self.agent_effects.append(effect)


def test_handshake_opens_both_sides():
    pair = Pair()
    assert pair.agent.state is EndpointState.OPEN
    assert pair.client.state is EndpointState.OPEN
    assert pair.agent.peer_id == "client-1"
    assert isinstance(pair.client_effects[0], Resolve)
    assert isinstance(pair.client_effects[0].value, Welcome)


def test_request_runs_on_the_agent_and_the_reply_resolves():
    pair = Pair()
    handle, effects = pair.client.request("c1", "echo", b"\x01")
    pair.to_agent(effects)
    run = pair.agent_effects[-1]
    assert run == RunRequest("a1", "c1", handle, "echo", b"\x01", "client-1")
    pair.to_client(pair.agent.reply(handle, b"\x02"))
    assert pair.client_effects[-1] == Resolve(handle, b"\x02")
    # answered once: a second reply is dropped
    assert pair.agent.reply(handle, b"\x03") == []


def test_errors_travel_with_type_name():
    pair = Pair()
    handle, effects = pair.client.request("c1", "boom", b"")
    pair.to_agent(effects)
    pair.to_client(pair.agent.error(handle, "remote", "bad value", "ValueError"))
    reject = pair.client_effects[-1]
    assert isinstance(reject, Reject)
    assert isinstance(reject.error, RemoteError)
    assert reject.error.remote_type == "ValueError"


def test_a_container_not_served_here_is_not_found():
    pair = Pair(serving=set())
    _, effects = pair.client.request("c1", "op", b"")
    pair.to_agent(effects)
    reject = pair.client_effects[-1]
    assert isinstance(reject, Reject)
    assert isinstance(reject.error, ContainerNotFound)
    _, effects = pair.client.connect("c1")
    pair.to_agent(effects)
    assert isinstance(pair.client_effects[-1].error, ContainerNotFound)
    assert not any(isinstance(e, ConnectContainer) for e in pair.agent_effects)


def test_standby_containers_are_refused_through_agent_state():
    state = AgentState("a1", ("ha",), stateless=(OfferedContainer("h1", "ha", (), True),))
    session = EndpointSession("a1", lambda u: state.status(u) is LocalStatus.ACTIVE)
    session.receive(Hello(PROTOCOL_VERSION, "c"))

    def refused(call_id: int) -> bool:
        answer = session.receive(Request(call_id, "h1", "op"))[0]
        return (isinstance(answer, Send) and isinstance(answer.message, Error)
                and answer.message.code == "not_found")

    assert refused(1)  # an offer serves only once the hub has answered its registration
    state.on_registered(RegisterReply(1))
    assert isinstance(session.receive(Request(2, "h1", "op"))[0], RunRequest)
    state.fence()  # re-registering: paused until answered
    assert refused(3)
    state.on_registered(RegisterReply(2, standby=("h1",)))
    assert refused(4)


def test_a_fenced_owner_asks_callers_to_retry_and_serves_them_once_answered():
    state = AgentState("a1", ("ha",), stateless=(OfferedContainer("h1", "ha", (), True),))
    pair = Pair()
    pair.agent.serves = lambda u: state.status(u) is LocalStatus.ACTIVE
    pair.agent.fenced = state.is_fenced
    state.on_registered(RegisterReply(1))
    assert not state.is_fenced("h1")
    state.fence()  # the agent reconnected and re-registers
    assert state.is_fenced("h1")

    handle, effects = pair.client.request("h1", "op", b"x")
    pair.to_agent(effects)
    assert pair.agent_effects == [], "a fenced offer runs nothing"
    assert pair.client_effects[1:] == [], "the caller is not answered yet: it will resend"
    assert pair.client.next_deadline() == FENCED_RETRY_AFTER
    assert pair.client.handle_timers(FENCED_RETRY_AFTER / 2) == []

    state.on_registered(RegisterReply(2))  # the hub confirms the owner
    pair.now = FENCED_RETRY_AFTER
    pair.to_agent(pair.client.handle_timers(pair.now))
    assert pair.agent_effects == [RunRequest("a1", "h1", handle, "op", b"x", "client-1")]
    pair.to_client(pair.agent.reply(handle, b"done"))
    assert pair.client_effects[-1] == Resolve(handle, b"done")
    assert pair.client.next_deadline() is None


def test_a_call_retried_again_and_again_backs_off_up_to_a_cap():
    pair = Pair(serving=set())
    pair.fenced.add("c1")  # the hub never answers: fenced for good
    _, effects = pair.client.request("c1", "op", b"")
    pair.to_agent(effects)
    waits = []
    for _ in range(9):
        due = pair.client.next_deadline()
        assert due is not None
        waits.append(round(due - pair.now, 6))
        pair.now = due
        pair.to_agent(pair.client.handle_timers(due))
    assert waits[:3] == [FENCED_RETRY_AFTER, 2 * FENCED_RETRY_AFTER, 4 * FENCED_RETRY_AFTER]
    assert waits[-1] == RETRY_MAX
    assert max(waits) == RETRY_MAX
    assert pair.client_effects[1:] == [], "still waiting, never failed"
    # The agent is demoted (another agent owns the uuid now): the resend fails for good.
    pair.fenced.clear()
    pair.now = pair.client.next_deadline()
    pair.to_agent(pair.client.handle_timers(pair.now))
    assert isinstance(pair.client_effects[-1].error, ContainerNotFound)
    assert pair.client.next_deadline() is None


def test_a_stream_to_a_fenced_owner_opens_once_it_serves():
    pair = Pair(serving=set())
    pair.fenced.add("c1")
    handle, effects = pair.client.connect("c1")
    pair.to_agent(effects)
    assert not any(isinstance(e, ConnectContainer) for e in pair.agent_effects)
    pair.fenced.clear()
    pair.serving.add("c1")
    pair.now = pair.client.next_deadline()
    pair.to_agent(pair.client.handle_timers(pair.now))
    assert pair.agent_effects == [ConnectContainer("a1", "c1", "client-1")]
    assert pair.client_effects[-1] == Resolve(handle, None)


def test_a_retry_waiting_call_fails_when_the_connection_closes_and_is_not_resent():
    pair = Pair(serving=set())
    pair.fenced.add("c1")
    handle, effects = pair.client.request("c1", "op", b"")
    pair.to_agent(effects)
    out = pair.client.connection_lost()
    assert len(out) == 1
    assert out[0].handle == handle
    assert isinstance(out[0].error, ConnectionClosed)
    assert pair.client.next_deadline() is None
    assert pair.client.handle_timers(10.0) == []


def test_a_retry_for_a_call_not_in_flight_is_ignored():
    pair = Pair()
    assert pair.client.receive(Retry(42, 0.5), 0.0) == []
    assert pair.client.next_deadline() is None
    handle, effects = pair.client.request("c1", "op", b"")
    pair.to_agent(effects)
    pair.to_client(pair.agent.reply(handle, b"ok"))
    assert pair.client.receive(Retry(handle, 0.5), 0.0) == [], "answered already"
    assert pair.client.next_deadline() is None


def test_connect_push_disconnect():
    pair = Pair()
    handle, effects = pair.client.connect("c1")
    pair.to_agent(effects)
    assert ConnectContainer("a1", "c1", "client-1") in pair.agent_effects
    assert pair.client_effects[-1] == Resolve(handle, None)
    pair.to_client(pair.agent.push("c1", b"ev"))
    assert pair.client_effects[-1] == DeliverPush("c1", b"ev")
    # nothing is pushed for a container the peer is not connected to
    assert pair.agent.push("other", b"x") == []
    # connecting twice calls the container's hook once
    _, effects = pair.client.connect("c1")
    pair.to_agent(effects)
    assert sum(isinstance(e, ConnectContainer) for e in pair.agent_effects) == 1
    pair.to_agent(pair.client.disconnect("c1"))
    assert DisconnectContainer("a1", "c1", "client-1") in pair.agent_effects
    assert pair.agent.state is EndpointState.CLOSED
    assert pair.client.state is EndpointState.CLOSED


def test_connection_lost_disconnects_streams_and_fails_calls():
    pair = Pair()
    _, effects = pair.client.connect("c1")
    pair.to_agent(effects)
    handle, _ = pair.client.request("c1", "never sent", b"")
    assert pair.agent.connection_lost() == [DisconnectContainer("a1", "c1", "client-1")]
    assert pair.agent.connection_lost() == []
    lost = pair.client.connection_lost()
    assert lost == [Reject(handle, lost[0].error)]
    assert isinstance(lost[0].error, ConnectionClosed)
    with pytest.raises(LocalProtocolError):
        pair.client.request("c1", "op", b"")


def test_duplicate_request_id_in_flight_runs_once():
    session = EndpointSession("a1", lambda u: True)
    session.receive(Hello(PROTOCOL_VERSION, "c"))
    assert len(session.receive(Request(7, "c1", "op"))) == 1
    assert session.receive(Request(7, "c1", "op")) == []
    session.reply(7, b"")
    assert len(session.receive(Request(7, "c1", "op"))) == 1


def test_hello_is_required_and_versioned():
    session = EndpointSession("a1", lambda u: True)
    out = session.receive(Request(1, "c1", "op"))
    assert isinstance(out[0], Send)
    assert isinstance(out[0].message, Error)
    assert isinstance(out[1], CloseConnection)
    assert session.state is EndpointState.CLOSED
    assert session.receive(Hello(PROTOCOL_VERSION, "c")) == []
    old = EndpointSession("a1", lambda u: True)
    out = old.receive(Hello(PROTOCOL_VERSION + 1, "c"))
    assert out[0].message.code == "protocol"
    assert old.state is EndpointState.CLOSED


def test_hub_only_messages_are_protocol_errors_and_ping_pongs():
    session = EndpointSession("a1", lambda u: True)
    session.receive(Hello(PROTOCOL_VERSION, "c"))
    out = session.receive(Get(4, "echo"))
    assert out[0].message == Error(4, "protocol", out[0].message.message)
    assert session.receive(Start(5, "a1", "echo", "u")) != []
    assert session.receive(Ping()) == [Send(None, Pong())]
    assert session.receive(Pong()) == []
    out = session.receive(Close("bye"))
    assert isinstance(out[-1], CloseConnection)
    assert session.receive(Ping()) == []


def test_client_rejects_the_hello_on_an_error_and_ignores_noise():
    client = EndpointClient("c")
    client.hello()
    assert client.receive(Response(1, b""), 0.0) == []  # nothing before the welcome
    out = client.receive(Error(0, "protocol", "go away"), 0.0)
    assert isinstance(out[0], Reject)
    assert isinstance(out[0].error, ProtocolError)
    assert client.state is EndpointState.CLOSED
    assert client.receive(Welcome(PROTOCOL_VERSION, "a", 3.0, 1.0), 0.0) == []
    open_client = EndpointClient("c")
    open_client.receive(Welcome(PROTOCOL_VERSION, "a", 3.0, 1.0), 0.0)
    assert open_client.receive(Response(99, b""), 0.0) == []  # not a call of ours
    assert open_client.receive(Ping(), 0.0) == [Send(None, Pong())]
    assert open_client.receive(Connect(1, "x"), 0.0) == []
    assert open_client.receive(Close("bye"), 0.0) == []
    assert open_client.state is EndpointState.CLOSED


def test_a_stopped_container_ends_the_peers_stream():
    pair = Pair()
    _, effects = pair.client.connect("c1")
    pair.to_agent(effects)
    pair.agent_effects.clear()
    pair.serving.discard("c1")
    pair.to_client(pair.agent.container_stopped("c1"))
    assert pair.client_effects[-1] == StreamEnded("c1")
    assert pair.agent_effects == [], "nobody to tell: the container is gone"
    assert pair.agent.push("c1", b"late") == []
    # once only, and nothing for a container the peer had no stream from
    assert pair.agent.container_stopped("c1") == []
    assert pair.agent.container_stopped("other") == []
    # the connection stays open for its other uses
    _, effects = pair.client.request("c1", "op", b"")
    pair.to_agent(effects)
    assert isinstance(pair.client_effects[-1].error, ContainerNotFound)
