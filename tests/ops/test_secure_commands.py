"""The operator commands against a hub with authentication and TLS (wss://)."""

from __future__ import annotations

import io
import json
import os
import sys

import trio
from pki import make_pki

import hulytrio
from hulytrio.auth import load_authenticator
from hulytrio.ops.commands import Access, watch
from hulytrio.transport.tls import client_ssl_context, server_ssl_context

OPS = "ops-token-0123456789"
AGENT = "agent-token-0123456789"
TOKENS = f"""
[[token]]
token = "{OPS}"
subject = "ops"
role = "client"

[[token]]
token = "{AGENT}"
subject = "pool"
roles = ["agent", "client"]
"""


class Echo(hulytrio.Container):
    async def request(self, operation, data=None, client_id=None):
        return {"op": operation, "data": data}


async def start_echo(options):
    return Echo()


#: The commands' own ``--timeout``: long, as the hub (this test process) may
#: answer slowly on a loaded machine; the refusals below give short ones.
PATIENCE = 20.0
#: A cap per command: each is a new interpreter, seconds to start on a loaded
#: machine (one cap over a test's ten commands summed their start-ups).
CLI_CAP = 60


async def hulytrio_cli(command: str, *argv: str, env: dict[str, str] | None = None,
                       patience: float = PATIENCE) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HULYTRIO_")}
    with trio.fail_after(CLI_CAP):
        result = await trio.run_process(
            [sys.executable, "-m", "hulytrio", command, "--timeout", f"{patience:g}", *argv],
            capture_stdout=True, capture_stderr=True, check=False,
            env={**clean, **(env or {})})
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def test_operator_commands_with_a_token_and_a_ca_file(tmp_path):
    pki = make_pki(tmp_path)
    (tmp_path / "tokens.toml").write_text(TOKENS)
    token_file = tmp_path / "ops.token"
    token_file.write_text(OPS + "\n")
    creds = ["--token-file", str(token_file), "--ca-file", pki["ca"]]
    with trio.fail_after(10 * CLI_CAP):  # each command has its own cap
        async with hulytrio.serve_network(
                port=0, authenticator=load_authenticator(f"tokens:{tmp_path / 'tokens.toml'}"),
                ssl_context=server_ssl_context(pki["cert"], pki["key"])) as hub, \
                hulytrio.open_client(hub.url, token=AGENT, ca=pki["ca"]) as client:
            assert hub.url.startswith("wss://")
            await client.serve_agent({"echo": start_echo}, agent_id="pool-1")
            ref = await client.get("echo")

            code, out, err = await hulytrio_cli("health", "--url", hub.url, *creds)
            assert (code, out, err) == (0, "Health check: OK (1 containers)\n", "")

            code, out, err = await hulytrio_cli("agents", "--url", hub.url, "--json", *creds)
            assert code == 0, err
            assert [a["agent_id"] for a in json.loads(out)] == ["pool-1"]

            code, out, err = await hulytrio_cli("request", "--url", hub.url, ref.uuid, "ping",
                                                "[1, 2]", *creds)
            assert code == 0, err
            assert json.loads(out) == {"op": "ping", "data": [1, 2]}

            # the same through the environment; top reads /metrics over https
            env = {"HULYTRIO_TOKEN_FILE": str(token_file), "HULYTRIO_CA_FILE": pki["ca"]}
            code, out, err = await hulytrio_cli("top", "--url", hub.url, "--json", env=env)
            assert code == 0, err
            snapshot = json.loads(out)
            assert [c["uuid"] for c in snapshot["containers"]] == [ref.uuid]
            assert snapshot["requests"] is not None

            # watch, in process: the registry as it first sees it
            access = Access(OPS, client_ssl_context(pki["ca"]))
            out_io = io.StringIO()
            await watch(hub.url, 10, out_io, as_json=True, count=1, access=access)
            assert json.loads(out_io.getvalue())["agents"][0]["agent"]["agent_id"] == "pool-1"

            # without the token: refused; without the CA: the certificate is not trusted
            code, out, err = await hulytrio_cli("list", "--url", hub.url, "--ca-file", pki["ca"],
                                                patience=2)
            assert code == 2
            assert err.count("\n") == 1, err
            assert "refused the credential: no credential" in err, err
            code, out, err = await hulytrio_cli("list", "--url", hub.url, "--token-file",
                                                str(token_file), patience=1)
            assert code == 1
            assert err.count("\n") == 1, err


async def test_an_unusable_token_or_ca_file_is_one_line_and_exit_2(tmp_path):
    with trio.fail_after(30):
        for flags, says in ((["--token-file", "/no/token"], "--token-file /no/token"),
                            (["--ca-file", "/no/ca.pem"], "/no/ca.pem: no such file")):
            code, out, err = await hulytrio_cli("agents", "--url", "wss://127.0.0.1:1", *flags)
            assert (code, out) == (2, "")
            assert says in err, err
            assert err.count("\n") == 1, err


ADMIN = "admin-token-0123456789"


async def test_admin_commands_clients_and_terminate(tmp_path):
    (tmp_path / "tokens.toml").write_text(TOKENS + f"""
[[token]]
token = "{ADMIN}"
subject = "root"
role = "admin"
""")
    (tmp_path / "admin.token").write_text(ADMIN)
    (tmp_path / "ops.token").write_text(OPS)
    admin = ["--token-file", str(tmp_path / "admin.token")]
    with trio.fail_after(10 * CLI_CAP):  # each command has its own cap
        async with hulytrio.serve_network(
                port=0, authenticator=load_authenticator(f"tokens:{tmp_path / 'tokens.toml'}")
                ) as hub, \
                hulytrio.open_client(hub.url, token=AGENT, client_id="pool-host") as client:
            await client.serve_agent({"echo": start_echo}, agent_id="pool-1")
            ref = await client.get("echo")

            code, out, err = await hulytrio_cli("clients", "--url", hub.url, "--json", *admin)
            assert code == 0, err
            seen = {c["client_id"]: c for c in json.loads(out)}
            assert seen["pool-host"]["subject"] == "pool"
            assert seen["pool-host"]["holds"] == [ref.uuid]
            assert seen["pool-host"]["agents"] == ["pool-1"]

            # a client's token may do neither: one line, exit 2, nothing changes
            for argv in (["clients"], ["terminate", ref.uuid]):
                code, out, err = await hulytrio_cli(*argv, "--url", hub.url, "--token-file",
                                                    str(tmp_path / "ops.token"))
                assert (code, out) == (2, ""), err
                assert err.count("\n") == 1, err
                assert f"refused '{argv[0]}' for this credential" in err, err
            assert hub.hub.registry.container(ref.uuid) is not None

            before = hub.hub.registry.container(ref.uuid)
            assert before is not None
            code, out, err = await hulytrio_cli("terminate", "--url", hub.url, ref.uuid, *admin)
            assert (code, out, err) == (0, f"terminated {ref.uuid}\n", "")
            # that instance is gone; the holder's reference re-acquires its uuid
            # (a new instance, as after an agent's death)
            assert (await ref.request("again", 1))["data"] == 1
            after = hub.hub.registry.container(ref.uuid)
            assert after is not None
            assert after.instance != before.instance
