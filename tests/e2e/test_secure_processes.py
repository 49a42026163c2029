"""Hub and agent processes with tokens and TLS: wss:// to the hub and to the agent's endpoint.

A refused credential ends the agent process (one line, exit code 2)
instead of reconnecting for ever.
"""

from __future__ import annotations

import trio
from e2e_support import free_port, wait_for
from pki import make_pki

import hulytrio

AGENT = "agent-token-0123456789"
CLIENT = "client-token-0123456789"
TOKENS = f"""
[[token]]
token = "{AGENT}"
subject = "pool"
role = "agent"
agent_ids = ["pool-*"]

[[token]]
token = "{CLIENT}"
subject = "app"
role = "client"
"""


def setup(tmp_path):
    pki = make_pki(tmp_path)
    (tmp_path / "tokens.toml").write_text(TOKENS)
    for name, token in (("agent", AGENT), ("client", CLIENT), ("bad", "no-such-token-0000")):
        (tmp_path / f"{name}.token").write_text(token)
    return pki


async def test_tls_hub_and_tls_agent_endpoint_as_processes(procs, tmp_path):
    pki = setup(tmp_path)
    port = free_port()
    url = f"wss://127.0.0.1:{port}"
    with trio.fail_after(60):
        await procs.hub(port, "--auth", f"tokens:{tmp_path / 'tokens.toml'}",
                        "--tls-cert", pki["cert"], "--tls-key", pki["key"])
        await procs.agent(url, "pool-1", "--token-file", str(tmp_path / "agent.token"),
                          "--ca-file", pki["ca"], "--endpoint", "127.0.0.1:0",
                          "--tls-cert", pki["cert"], "--tls-key", pki["key"])
        async with hulytrio.open_client(url, token=CLIENT, ca=pki["ca"]) as client:
            await wait_for(lambda: client.session.welcomes > 0)
            ref = await client.get("echo")
            assert ref.record.endpoint is not None
            assert ref.record.endpoint.startswith("wss://")
            async with ref.connect() as conn:
                assert conn.direct  # over TLS, to the agent process
                assert (await conn.request("hi", 7))["data"] == 7
            assert (await ref.request("hi", 8))["agent"] == "pool-1"


async def test_an_agent_with_a_refused_token_exits_2_with_one_line(procs, tmp_path):
    pki = setup(tmp_path)
    port = free_port()
    url = f"wss://127.0.0.1:{port}"
    with trio.fail_after(60):
        await procs.hub(port, "--auth", f"tokens:{tmp_path / 'tokens.toml'}",
                        "--tls-cert", pki["cert"], "--tls-key", pki["key"])
        bad = await procs.agent(url, "pool-2", "--token-file", str(tmp_path / "bad.token"),
                                "--ca-file", pki["ca"])
        wrong_role = await procs.agent(url, "pool-3", "--token-file",
                                       str(tmp_path / "client.token"), "--ca-file", pki["ca"])
        assert await bad.wait() == 2
        assert await wrong_role.wait() == 2
    lines = [line for line in procs.logs().splitlines() if line.startswith("hulytrio agent:")]
    assert len(lines) == 2, procs.logs()
    assert any("refused this agent's credential: unknown token" in line for line in lines), lines
    assert any("refused this agent's registration" in line for line in lines), lines
