"""A refused credential is final (open_client raises); a held peer id keeps retrying."""

from __future__ import annotations

import logging

import pytest
import trio

import hulytrio
from hulytrio.auth import load_authenticator
from hulytrio.core.session import Backoff

GOOD = "good-token-0123456789"
OTHER = "other-token-0123456789"
TOKENS = f"""
[[token]]
token = "{GOOD}"
subject = "app"
role = "client"

[[token]]
token = "{OTHER}"
subject = "someone-else"
role = "client"
"""


@pytest.fixture
def auth(tmp_path):
    path = tmp_path / "tokens.toml"
    path.write_text(TOKENS)
    return load_authenticator(f"tokens:{path}")


def refusals(caplog) -> int:
    return sum(1 for r in caplog.records if r.name == "hulytrio.audit")


async def test_a_refused_token_ends_the_client_with_authentication_error(auth, caplog):
    caplog.set_level(logging.WARNING, logger="hulytrio.audit")
    with trio.fail_after(20):
        async with hulytrio.serve_network(port=0, authenticator=auth) as hub:
            started = trio.current_time()
            with pytest.raises(hulytrio.AuthenticationError, match="unknown token"):
                async with hulytrio.open_client(hub.url, token="wrong-token-000000000"):
                    await trio.sleep_forever()  # the body is cancelled, open_client raises
            assert trio.current_time() - started < 5
            # one attempt, not a reconnect loop
            await trio.sleep(1.0)
            assert refusals(caplog) == 1
            assert hub.hub.registry.clients() == ()


async def test_calls_fail_with_authentication_error_not_hang(auth):
    with trio.fail_after(20):
        async with hulytrio.serve_network(port=0, authenticator=auth) as hub:
            with pytest.raises(hulytrio.AuthenticationError):
                async with hulytrio.open_client(hub.url) as client:  # no token at all
                    await client.get("echo")
            with pytest.raises(hulytrio.AuthenticationError):
                async with hulytrio.open_client(hub.url, token="x" * 24) as client:
                    await client.wait_connection()
            # wait_connection's error is Unauthorized too (what it raised before)
            assert issubclass(hulytrio.AuthenticationError, hulytrio.Unauthorized)


async def test_a_peer_id_held_by_another_principal_keeps_retrying(auth):
    # forbidden, not final: once the holder leaves, the waiting client gets in
    with trio.fail_after(30):
        async with hulytrio.serve_network(port=0, authenticator=auth) as hub:
            leave = trio.Event()

            async def hold(task_status=trio.TASK_STATUS_IGNORED) -> None:
                async with hulytrio.open_client(hub.url, token=OTHER,
                                                client_id="shared") as holder:
                    await holder.wait_connection()
                    task_status.started()
                    await leave.wait()

            async with trio.open_nursery() as nursery:
                await nursery.start(hold)
                async with hulytrio.open_client(hub.url, token=GOOD, client_id="shared",
                                                backoff=Backoff(0.05, 0.2)) as waiter:
                    with pytest.raises(hulytrio.Forbidden):
                        await waiter.wait_connection()
                    leave.set()
                    assert await waiter.list() == ()  # waits for the welcome
                    assert waiter.session.welcomes == 1
