"""The admin role at the hub: terminate any container, see every client."""

from __future__ import annotations

from hulytrio.core.effects import Refused
from hulytrio.core.errors import ErrorCode
from hulytrio.core.messages import (
    PROTOCOL_VERSION,
    ClientsReply,
    Error,
    Get,
    GetReply,
    Hello,
    Ok,
    Query,
    RegisterAgent,
    Start,
    Started,
    Terminate,
    TerminateAny,
)
from hulytrio.core.principals import Principal, Role
from hulytrio.core.types import ClientInfo

ADMIN = Principal("ops", frozenset({Role.ADMIN}))
APP = Principal("app", frozenset({Role.CLIENT}))
POOL = Principal("pool", frozenset({Role.AGENT}))


def hello(raw, conn: str, principal: Principal) -> None:
    raw.hub.connection_made(conn, 0.0)
    raw.hub.receive_hello(conn, Hello(PROTOCOL_VERSION, conn), principal, 0.0)
    raw.drain()
    raw.take(conn)


def served(raw) -> str:
    """Agent "pool-1" (session "h") runs a container that client "c" holds; returns its uuid."""
    hello(raw, "h", POOL)
    hello(raw, "c", APP)
    hello(raw, "ops", ADMIN)
    raw.send("h", RegisterAgent(1, "pool-1", ("echo",)))
    raw.send("c", Get(1, "echo"))
    (start,) = [m for m in raw.take("h") if isinstance(m, Start)]
    raw.send("h", Started(start.id, start.uuid))
    (reply,) = [m for m in raw.take("c") if isinstance(m, GetReply)]
    return reply.container.uuid


def audited(raw) -> list[Refused]:
    """Make ``raw`` keep the ``Refused`` effects (audit records) it drains; returns the list."""
    kept: list[Refused] = []
    effects = raw.hub.effects

    def keep():
        out = effects()
        kept.extend(e for e in out if isinstance(e, Refused))
        return out

    raw.hub.effects = keep
    return kept


def test_an_admin_terminates_a_container_it_neither_hosts_nor_holds(raw) -> None:
    uuid = served(raw)
    assert raw.send("ops", TerminateAny(5, uuid)) == [Ok(5)]
    assert Terminate("pool-1", uuid) in raw.take("h")
    assert raw.hub.registry.container(uuid) is None
    assert raw.hub.registry.holds("c") == {}
    # gone, or never there: not_found
    (again,) = raw.send("ops", TerminateAny(6, uuid))
    assert isinstance(again, Error)
    assert (again.id, again.code) == (6, ErrorCode.NOT_FOUND.value)


def test_a_client_may_not_terminate_nor_see_every_client(raw) -> None:
    uuid = served(raw)
    audit = audited(raw)
    (denied,) = raw.send("c", TerminateAny(7, uuid))
    assert isinstance(denied, Error)
    assert (denied.id, denied.code) == (7, ErrorCode.FORBIDDEN.value)
    (hidden,) = raw.send("c", Query(8, "clients"))
    assert isinstance(hidden, Error)
    assert (hidden.id, hidden.code) == (8, ErrorCode.FORBIDDEN.value)
    assert "admin" in hidden.message
    # nothing changed, and each refusal is an audit line (a Refused effect)
    assert raw.hub.registry.container(uuid) is not None
    assert [(r.peer, r.what) for r in audit] == [("app", "terminate_any"), ("app", "query")]


def test_an_admin_sees_every_client_with_its_subject_references_and_agents(raw) -> None:
    uuid = served(raw)
    (reply,) = raw.send("ops", Query(9, "clients"))
    assert reply == ClientsReply(9, (
        ClientInfo("c", "app", (uuid,), ()),
        ClientInfo("h", "pool", (), ("pool-1",)),
        ClientInfo("ops", "ops", (), ()),
    ))
