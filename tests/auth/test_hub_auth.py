"""Authentication with roles, end to end over loopback: tokens, roles, ownership of ids."""

from __future__ import annotations

import logging
import time
from typing import Any

import jwt
import pytest
import trio

import hulytrio
from hulytrio.auth import load_authenticator

CLIENT = "client-token-0123456789"
WORKER = "worker-token-0123456789"
HEALTHY = "healthy-token-0123456789"
MALLORY = "mallory-token-0123456789"
ADMIN = "admin-token-0123456789"

TOKENS = f"""
[[token]]
token = "{CLIENT}"
subject = "app"
role = "client"

[[token]]
token = "{WORKER}"
subject = "worker"
role = "agent"
agent_ids = ["worker-*"]

[[token]]
token = "{HEALTHY}"
subject = "healthy"
roles = ["agent", "client"]
agent_ids = ["healthy-agent"]

[[token]]
token = "{MALLORY}"
subject = "mallory"
roles = ["agent", "client"]
agent_ids = ["healthy-agent", "mallory-*"]

[[token]]
token = "{ADMIN}"
subject = "ops"
role = "admin"
"""


class Echo(hulytrio.Container):
    def __init__(self, who: str) -> None:
        self.who = who

    async def request(self, operation: str, data: Any = None, client_id: str | None = None
                      ) -> Any:
        return {"who": self.who, "data": data}


def echo_factory(who: str) -> Any:
    async def start(options: hulytrio.GetOptions) -> hulytrio.Container:
        return Echo(who)
    return start


@pytest.fixture
def tokens_spec(tmp_path):
    path = tmp_path / "tokens.toml"
    path.write_text(TOKENS)
    return f"tokens:{path}"


def snapshot(hub: hulytrio.NetworkServer) -> tuple[Any, ...]:
    reg = hub.hub.registry
    return reg.clients(), reg.agents(), reg.list()


async def test_each_role_does_what_it_may(tokens_spec):
    with trio.fail_after(20):
        async with hulytrio.serve_network(port=0, authenticator=load_authenticator(
                tokens_spec)) as hub, \
                hulytrio.open_client(hub.url, token=WORKER) as agent, \
                hulytrio.open_client(hub.url, token=CLIENT) as client, \
                hulytrio.open_client(hub.url, token=ADMIN) as admin:
            served = await agent.serve_agent({"echo": echo_factory("worker")},
                                             agent_id="worker-1")
            assert served.agent_id == "worker-1"
            ref = await client.get("echo")
            assert await ref.request("hi", 1) == {"who": "worker", "data": 1}
            assert [r.uuid for r in await client.list()] == [ref.uuid]
            await ref.release()
            # an admin may do what a client and an agent may
            assert [a.agent_id for a in await admin.agents()] == ["worker-1"]
            own = await admin.serve_agent({"echo": echo_factory("admin")}, agent_id="any-id")
            assert own.agent_id == "any-id"


async def test_a_client_may_not_register_an_agent_nor_an_agent_list(tokens_spec, caplog):
    caplog.set_level(logging.WARNING, logger="hulytrio.audit")
    with trio.fail_after(20):
        async with hulytrio.serve_network(port=0, authenticator=load_authenticator(
                tokens_spec)) as hub, \
                hulytrio.open_client(hub.url, token=CLIENT) as client, \
                hulytrio.open_client(hub.url, token=WORKER) as agent:
            await client.wait_connection()
            await agent.wait_connection()
            before = snapshot(hub)
            with pytest.raises(hulytrio.Forbidden, match="'register' needs a role"):
                await client.serve_agent({"echo": echo_factory("client")}, agent_id="c-1")
            with pytest.raises(hulytrio.Forbidden, match="'query' needs a role"):
                await agent.list()
            assert snapshot(hub) == before
    refused = [r.getMessage() for r in caplog.records if r.name == "hulytrio.audit"]
    assert any("'register'" in line and "'app'" in line for line in refused), refused
    assert any("'query'" in line and "'worker'" in line for line in refused), refused


async def test_an_agent_token_only_registers_the_ids_it_names(tokens_spec):
    with trio.fail_after(20):
        async with hulytrio.serve_network(port=0, authenticator=load_authenticator(
                tokens_spec)) as hub, \
                hulytrio.open_client(hub.url, token=WORKER) as agent:
            await agent.wait_connection()
            before = snapshot(hub)
            with pytest.raises(hulytrio.Forbidden, match="'healthy-agent' is not among"):
                await agent.serve_agent({"echo": echo_factory("worker")},
                                        agent_id="healthy-agent")
            assert snapshot(hub) == before
            await agent.serve_agent({"echo": echo_factory("worker")}, agent_id="worker-7")
            assert [a.agent_id for a in hub.hub.registry.agents()] == ["worker-7"]


@pytest.mark.parametrize(("token", "says"), [
    (None, "no credential"),
    ("not-a-token-at-all-0000", "unknown token"),
])
async def test_a_missing_or_wrong_token_is_refused(tokens_spec, caplog, token, says):
    caplog.set_level(logging.WARNING, logger="hulytrio.audit")
    with trio.fail_after(20):
        async with hulytrio.serve_network(port=0, authenticator=load_authenticator(
                tokens_spec)) as hub:
            before = snapshot(hub)
            async with hulytrio.open_client(hub.url, token=token, client_id="intruder") as c:
                with pytest.raises(hulytrio.Unauthorized, match=says) as info:
                    await c.wait_connection()
                assert not isinstance(info.value, hulytrio.Forbidden)
                assert snapshot(hub) == before
    lines = [r.getMessage() for r in caplog.records if r.name == "hulytrio.audit"]
    assert any("'intruder'" in line and says in line for line in lines), lines


async def test_an_expired_jwt_is_refused_and_a_fresh_one_works(tmp_path):
    secret = b"s" * 40
    (tmp_path / "secret").write_bytes(secret)
    auth = load_authenticator(f"jwt:{tmp_path / 'secret'}")

    def token(exp: float) -> str:
        return jwt.encode({"sub": "app", "role": "client", "exp": int(exp)}, secret, "HS256")

    with trio.fail_after(20):
        async with hulytrio.serve_network(port=0, authenticator=auth) as hub:
            before = snapshot(hub)
            async with hulytrio.open_client(hub.url, token=token(time.time() - 3600)) as c:
                with pytest.raises(hulytrio.Unauthorized, match="token expired"):
                    await c.wait_connection()
            assert snapshot(hub) == before
            async with hulytrio.open_client(hub.url, token=token(time.time() + 3600)) as c:
                await c.wait_connection()
                assert await c.list() == ()


async def test_another_principal_cannot_take_over_an_agent_id(tokens_spec, caplog):
    # The attack: a peer registering 'healthy-agent' answered the real
    # agent's calls with forged data.  Its token even names the id; the id is held.
    caplog.set_level(logging.WARNING, logger="hulytrio.audit")
    with trio.fail_after(20):
        async with hulytrio.serve_network(port=0, authenticator=load_authenticator(
                tokens_spec)) as hub, \
                hulytrio.open_client(hub.url, token=HEALTHY) as healthy, \
                hulytrio.open_client(hub.url, token=CLIENT) as client, \
                hulytrio.open_client(hub.url, token=MALLORY) as mallory:
            await healthy.serve_agent({"echo": echo_factory("healthy")},
                                      agent_id="healthy-agent")
            ref = await client.get("echo")
            await mallory.wait_connection()
            before = snapshot(hub)
            with pytest.raises(hulytrio.Forbidden, match="held by another principal"):
                await mallory.serve_agent({"echo": echo_factory("forged")},
                                          agent_id="healthy-agent")
            assert snapshot(hub) == before
            assert hub.hub.registry.agent_owner("healthy-agent") == healthy.client_id
            for i in range(20):
                assert await ref.request("hi", i) == {"who": "healthy", "data": i}
    assert any("held by another principal" in r.getMessage() for r in caplog.records)


async def test_another_principal_cannot_take_over_a_peer_id(tokens_spec):
    with trio.fail_after(20):
        async with hulytrio.serve_network(port=0, authenticator=load_authenticator(
                tokens_spec)) as hub, \
                hulytrio.open_client(hub.url, token=HEALTHY, client_id="h-peer") as healthy, \
                hulytrio.open_client(hub.url, token=CLIENT) as client:
            await healthy.serve_agent({"echo": echo_factory("healthy")},
                                      agent_id="healthy-agent")
            ref = await client.get("echo")
            before = snapshot(hub)
            async with hulytrio.open_client(hub.url, token=MALLORY, client_id="h-peer") as m:
                with pytest.raises(hulytrio.Forbidden, match="peer id 'h-peer' is held"):
                    await m.wait_connection()
                assert snapshot(hub) == before
                assert await ref.request("hi", 1) == {"who": "healthy", "data": 1}
            # the real session was never knocked off: its connection is the first one
            assert hub.statistics().connections == 2


async def test_the_same_principal_restarted_supersedes(tokens_spec):
    with trio.fail_after(20):
        async with hulytrio.serve_network(port=0, authenticator=load_authenticator(  # noqa: SIM117
                tokens_spec)) as hub, \
                hulytrio.open_client(hub.url, token=CLIENT) as client:
            async with hulytrio.open_client(hub.url, token=HEALTHY) as old:
                await old.serve_agent({"echo": echo_factory("old")}, agent_id="healthy-agent")
                async with hulytrio.open_client(hub.url, token=HEALTHY) as new:
                    # a restarted process (new peer id, same credential): it takes the id over
                    await new.serve_agent({"echo": echo_factory("new")},
                                          agent_id="healthy-agent")
                    assert hub.hub.registry.agent_owner("healthy-agent") == new.client_id
                    ref = await client.get("echo")
                    assert await ref.request("hi", 2) == {"who": "new", "data": 2}
                # and the same peer id, same credential: supersedes the session
                async with hulytrio.open_client(hub.url, token=HEALTHY,
                                                client_id=old.client_id) as again:
                    await again.wait_connection()
                    assert hub.hub.registry.has_client(old.client_id)


async def test_without_authentication_every_peer_may_do_everything_as_before():
    with trio.fail_after(20):
        async with hulytrio.serve_network(port=0) as hub, \
                hulytrio.open_client(hub.url, token="ignored-when-auth-is-off") as a, \
                hulytrio.open_client(hub.url) as b:
            await a.serve_agent({"echo": echo_factory("a")}, agent_id="shared")
            await b.serve_agent({"echo": echo_factory("b")}, agent_id="shared")
            assert hub.hub.registry.agent_owner("shared") == b.client_id
