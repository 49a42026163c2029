"""The operator commands against a running loopback hub with an agent and containers."""

from __future__ import annotations

import io
import json
import socket
import sys
from functools import partial

import trio

import hulytrio
from hulytrio.ops.commands import Snapshot, top_view, watch


class Echo(hulytrio.Container):
    async def request(self, operation, data=None, client_id=None):
        if operation == "fail":
            raise ValueError("asked to fail")
        return {"op": operation, "data": data}


async def start_echo(options):
    return Echo()


#: The commands' own ``--timeout``: long, as the hub (this test process) may
#: answer slowly on a loaded machine; the unreachable-hub test checks the
#: timeout itself with a short one.
PATIENCE = 20.0
#: A cap per command: each is a new interpreter, seconds to start on a loaded
#: machine (one cap over a test's fourteen commands summed their start-ups).
CLI_CAP = 60


async def hulytrio_cli(command: str, *argv: str, patience: float = PATIENCE
                       ) -> tuple[int, str, str]:
    with trio.fail_after(CLI_CAP):
        result = await trio.run_process(
            [sys.executable, "-m", "hulytrio", command, "--timeout", f"{patience:g}", *argv],
            capture_stdout=True, capture_stderr=True, check=False)
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def free_port() -> int:
    # a port nobody listens on: bound, then closed
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_commands_show_agents_and_containers():
    # Each command has its cap (``hulytrio_cli``); this one only ends a hang
    # of the hub's set-up or teardown.
    with trio.fail_after(20 * CLI_CAP):
        async with hulytrio.serve_network(host="127.0.0.1", port=0) as hub, \
                hulytrio.open_client(hub.url) as client:
            agent = await client.serve_agent({"echo": start_echo, "kv": start_echo},
                                             agent_id="agent-one")
            ref = await client.get("echo", labels=["tenant-a"])
            other = await client.get("kv")
            http_url = hub.url.replace("ws://", "http://")

            code, out, err = await hulytrio_cli("health", "--url", http_url)
            assert (code, err) == (0, "")
            assert out == "Health check: OK (2 containers)\n"

            code, out, _ = await hulytrio_cli("agents", "--url", hub.url)
            assert code == 0
            assert "1 agents" in out
            assert "agent-one" in out
            assert "echo, kv" in out

            code, out, _ = await hulytrio_cli("agents", "--url", hub.url, "--json")
            assert code == 0
            assert json.loads(out) == [{"agent_id": "agent-one", "kinds": ["echo", "kv"],
                                        "endpoint": None, "containers": 2}]

            code, out, _ = await hulytrio_cli("list", "--url", hub.url)
            assert code == 0
            assert "2 containers" in out
            assert ref.uuid in out
            assert other.uuid in out

            code, out, _ = await hulytrio_cli("list", "--url", hub.url, "--json",
                                              "--label", "tenant-a")
            assert code == 0
            [record] = json.loads(out)
            assert (record["uuid"], record["kind"], record["labels"]) == (
                ref.uuid, "echo", ["tenant-a"])
            assert record["agent_id"] == agent.agent_id

            code, out, _ = await hulytrio_cli("list", "--url", hub.url, "--json",
                                              "--kind", "kv")
            assert [r["uuid"] for r in json.loads(out)] == [other.uuid]

            code, out, _ = await hulytrio_cli("request", "--url", hub.url, ref.uuid,
                                              "hello", '{"n": 1}')
            assert code == 0
            assert json.loads(out) == {"op": "hello", "data": {"n": 1}}

            code, out, err = await hulytrio_cli("request", "--url", hub.url, ref.uuid, "fail")
            assert code == 1
            assert out == ""
            assert "RemoteError" in err
            assert "asked to fail" in err

            code, _, err = await hulytrio_cli("request", "--url", hub.url, "no-such", "x")
            assert code == 1
            assert "no container 'no-such'" in err

            code, _, err = await hulytrio_cli("request", "--url", hub.url, ref.uuid, "x", "{")
            assert code == 2
            assert "not valid JSON" in err

            code, out, _ = await hulytrio_cli("top", "--url", hub.url, "--once")
            assert code == 0
            assert "requests forwarded" in out
            assert "agent-one" in out
            assert "containers per kind" in out

            code, out, _ = await hulytrio_cli("top", "--url", hub.url, "--json")
            assert code == 0
            snap = json.loads(out)
            assert len(snap["agents"]) == 1
            assert sorted(c["kind"] for c in snap["containers"]) == ["echo", "kv"]
            # the requests above: one ok, one failed at the container, both forwarded
            assert snap["requests"] == 2


async def test_unreachable_hub_gives_one_line_and_exit_1():
    url = f"ws://127.0.0.1:{free_port()}"
    for command in ("health", "agents", "list"):
        # A cap per command (a new interpreter each, slow to start on a loaded
        # machine); the command's own 0.5 s timeout is what the test checks.
        with trio.fail_after(30):
            code, out, err = await hulytrio_cli(command, "--url", url, patience=0.5)
            assert code == 1
            assert out == ""
            assert err.count("\n") == 1
            assert url in err
            assert "0.5 s" in err


async def test_watch_prints_registry_events_as_they_come():
    # One hub per round: a hub shared by both rounds could send the second
    # watcher the first round's agent leaving as its one event.
    for as_json in (False, True):
        with trio.fail_after(20):
            async with hulytrio.serve_network(host="127.0.0.1", port=0) as hub, \
                    hulytrio.open_client(hub.url) as client:
                out = io.StringIO()
                listening = trio.Event()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(partial(watch, hub.url, 5, out, as_json=as_json,
                                               count=1, ready=listening.set))
                    await listening.wait()
                    agent = await client.serve_agent({"echo": start_echo})
                lines = out.getvalue().splitlines()
                if as_json:
                    [event] = [json.loads(line) for line in lines]
                    changes = {a["agent"]["agent_id"]: a["change"] for a in event["agents"]}
                    assert changes == {agent.agent_id: "added"}
                else:
                    assert any(f"agent added {agent.agent_id} kinds=echo" in line
                               for line in lines)
                await agent.aclose()


def test_top_view_computes_the_request_rate_between_frames():
    from rich.console import Console

    agents = (hulytrio.AgentInfo("a1", ("echo",), None, 1),)
    containers = (hulytrio.ContainerRecord("u1", "echo", "a1"),)
    before = Snapshot(agents, containers, 100.0, 10.0)
    now = Snapshot(agents, containers, 160.0, 12.0)
    out = io.StringIO()
    Console(file=out, width=120).print(top_view(now, before))
    text = out.getvalue()
    assert "30.0/s" in text
    assert "a1" in text
    out = io.StringIO()
    Console(file=out, width=120).print(top_view(Snapshot(agents, containers, None, 1.0), None))
    assert "30.0/s" not in out.getvalue()
