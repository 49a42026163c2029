"""A hello refused for its credential is final; a forbidden peer id keeps retrying."""

from __future__ import annotations

import random

from hulytrio.core.agent import AgentState
from hulytrio.core.effects import CloseConnection, OpenConnection, Reject
from hulytrio.core.errors import AuthenticationError, ConnectionClosed, ErrorCode
from hulytrio.core.messages import PROTOCOL_VERSION, Error, Welcome
from hulytrio.core.session import ClientSession, SessionState


def refused_session(code: str) -> tuple[ClientSession, list[object], int, int]:
    """Return a session whose hello was answered ``Error(0, code)``, its effects, two calls."""
    s = ClientSession("me", rng=random.Random(1), credentials="bad-token")
    s.connect(0.0)
    s.connection_made(0.0)
    list(s.effects())
    get = s.get("echo")
    register = s.register_agent(AgentState("a-1", ("echo",)))
    s.receive(Error(0, code, "unknown token"), 0.1)
    return s, list(s.effects()), get, register


def test_an_unauthorized_hello_closes_the_session_and_fails_every_call() -> None:
    s, effects, get, register = refused_session(ErrorCode.UNAUTHORIZED.value)
    assert s.state is SessionState.CLOSED
    assert isinstance(s.closed_by, AuthenticationError)
    assert any(isinstance(e, CloseConnection) for e in effects)
    rejected = {e.handle: e.error for e in effects if isinstance(e, Reject)}
    assert set(rejected) == {get, register}
    assert all(isinstance(err, AuthenticationError) and "unknown token" in str(err)
               for err in rejected.values())
    # the connection's loss does not reconnect, and no timer is left
    s.connection_lost(0.2)
    assert s.state is SessionState.CLOSED
    assert s.next_deadline() is None
    assert not any(isinstance(e, OpenConnection) for e in s.effects())
    # a call made later fails at once, with the same error
    later = s.query("list")
    (reject,) = [e for e in s.effects() if isinstance(e, Reject)]
    assert reject.handle == later
    assert reject.error is s.closed_by


def test_a_forbidden_hello_keeps_retrying() -> None:
    # a peer id another principal holds may be free later: not final
    s, effects, _, _ = refused_session(ErrorCode.FORBIDDEN.value)
    assert s.state is SessionState.HANDSHAKE
    assert s.closed_by is None
    assert not any(isinstance(e, Reject) for e in effects)
    s.connection_lost(0.2)
    assert s.state is SessionState.BACKOFF
    s.handle_timers(s.next_deadline())
    assert s.state is SessionState.CONNECTING
    assert any(isinstance(e, OpenConnection) for e in s.effects())
    s.connection_made(1.0)
    s.receive(Welcome(PROTOCOL_VERSION, "hub1", 3.0, 1.0), 1.0)
    assert s.state is SessionState.READY
    assert s.refused is None


def test_a_call_after_close_fails_at_once_with_connection_closed() -> None:
    s = ClientSession("me", rng=random.Random(1))
    s.connect(0.0)
    s.close(0.0)
    list(s.effects())
    handle = s.query("agents")
    (reject,) = [e for e in s.effects() if isinstance(e, Reject)]
    assert reject.handle == handle
    assert isinstance(reject.error, ConnectionClosed)
