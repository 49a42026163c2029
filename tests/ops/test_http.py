"""/health, /ready and /metrics on a real loopback hub and agent endpoint."""

from __future__ import annotations

import json

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

import hulytrio
from hulytrio.transport.http import fetch


class Echo(hulytrio.Container):
    async def request(self, operation, data=None, client_id=None):
        return {"op": operation, "data": data}


async def start_echo(options):
    return Echo()


async def raw(port: int, request: bytes) -> bytes:
    """Send ``request`` as is; return everything the server sends before it closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(request)
        received = b""
        while data := await stream.receive_some(65536):
            received += data
    return received


def split(answer: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return status, headers, body


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_health_and_ready_answer_on_the_websocket_port():
    with trio.fail_after(10):
        async with hulytrio.serve_network(host="127.0.0.1", port=0) as hub:
            status, body = await fetch(hub.url, "/health")
            assert status == 200
            health = json.loads(body)
            assert health["status"] == "ok"
            assert health["role"] == "active"
            assert health["hub_id"] == hub.hub.hub_id
            assert (health["agents"], health["containers"], health["clients"]) == (0, 0, 0)
            assert health["uptime"] >= 0
            assert await fetch(hub.url, "/ready") == (200, b'{"ready":true,"role":"active"}')

            # a standby hub (role hook) is alive but not ready
            hub.role = "standby"
            status, body = await fetch(hub.url, "/ready")
            assert status == 503
            assert json.loads(body) == {"ready": False, "role": "standby"}
            assert (await fetch(hub.url, "/health"))[0] == 200


async def test_http_answers_are_complete_and_close_the_connection():
    with trio.fail_after(10):
        async with hulytrio.serve_network(host="127.0.0.1", port=0) as hub:
            answer = await raw(hub.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body = split(answer)
            assert status == "HTTP/1.1 200 OK"
            assert headers["connection"] == "close"
            assert headers["content-type"] == "application/json"
            assert int(headers["content-length"]) == len(body)

            status, headers, body = split(
                await raw(hub.port, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"))
            assert status == "HTTP/1.1 404 Not Found"
            assert int(headers["content-length"]) == len(body)

            status, headers, _ = split(
                await raw(hub.port, b"POST /health HTTP/1.1\r\nHost: x\r\n"
                                    b"Content-Length: 0\r\n\r\n"))
            assert status == "HTTP/1.1 405 Method Not Allowed"
            assert headers["allow"] == "GET"
            assert headers["connection"] == "close"

            status, _, _ = split(await raw(hub.port, b"GARBAGE\r\n\r\n"))
            assert status == "HTTP/1.1 400 Bad Request"

            # the hub still serves WebSocket clients after all that
            async with hulytrio.open_client(hub.url) as client:
                await client.wait_connection()
                assert await client.list() == ()
            assert hub.statistics().connections == 0


async def test_metrics_reflect_agents_containers_and_requests():
    with trio.fail_after(15):
        async with hulytrio.serve_network(host="127.0.0.1", port=0, metrics_port=0) as hub, \
                hulytrio.open_client(hub.url) as client:
            updates = client.updates()
            await client.serve_agent({"echo": start_echo, "other": start_echo})
            await updates.__anext__()  # a registry event was broadcast
            ref = await client.get("echo")
            await client.get("echo", labels=["b"])
            await client.get("other")
            for n in range(3):
                await ref.request("hello", n)

            status, body = await fetch(hub.url, "/metrics")
            assert status == 200
            got = samples(body.decode())
            assert got["huly_agents", ()] == 1
            assert got["huly_clients", ()] == 1
            assert got["huly_connections", ()] == 1
            assert got["huly_active_containers", (("kind", "echo"),)] == 2
            assert got["huly_active_containers", (("kind", "other"),)] == 1
            assert got["huly_containers", (("kind", "echo"), ("state", "active"))] == 2
            assert got["huly_requests_forwarded_total", ()] == 3
            assert got["huly_requests_total",
                       (("operation", "request"), ("status", "ok"))] == 3
            assert got["huly_requests_total",
                       (("operation", "request"), ("status", "error"))] == 0
            assert got["huly_requests_total", (("operation", "get"), ("status", "ok"))] == 3
            assert got["huly_requests_total",
                       (("operation", "register"), ("status", "ok"))] == 1
            assert got["huly_request_duration_seconds_count", (("operation", "request"),)] == 3
            assert got["huly_request_duration_seconds_count", (("operation", "get"),)] == 3
            assert got["huly_container_starts_total", ()] == 3
            assert got["huly_container_start_duration_seconds_count", ()] == 3
            assert got["huly_requests_total",
                       (("operation", "request"), ("status", "retry"))] == 0
            assert got["huly_connections_accepted_total", ()] == 1
            assert got["huly_slow_peers_dropped_total", ()] == 0
            assert got["huly_events_broadcast_total", ()] >= 1
            assert got["huly_hub_info", (("hub_id", hub.hub.hub_id), ("role", "active"),
                                         ("term", "1"))] == 1

            # the same registry on the separate metrics port
            assert hub.metrics_port is not None
            status, body = await fetch(f"http://127.0.0.1:{hub.metrics_port}", "/metrics")
            assert status == 200
            assert samples(body.decode())["huly_agents", ()] == 1
            status, _ = await fetch(f"http://127.0.0.1:{hub.metrics_port}", "/health")
            assert status == 200


async def test_two_hubs_in_one_process_keep_their_own_metrics():
    with trio.fail_after(10):
        async with hulytrio.serve_network(host="127.0.0.1", port=0) as one, \
                hulytrio.serve_network(host="127.0.0.1", port=0) as two:
            async with hulytrio.open_client(one.url) as client:
                await client.serve_agent({"echo": start_echo})
                await client.get("echo")
                first = samples((await fetch(one.url, "/metrics"))[1].decode())
                second = samples((await fetch(two.url, "/metrics"))[1].decode())
            assert first["huly_agents", ()] == 1
            assert second["huly_agents", ()] == 0
            assert ("huly_active_containers", (("kind", "echo"),)) not in second


async def test_agent_endpoint_answers_health():
    with trio.fail_after(10):
        async with hulytrio.serve_network(host="127.0.0.1", port=0) as hub, \
                hulytrio.open_client(hub.url) as client:
            agent = await client.serve_agent({"echo": start_echo},
                                             endpoint="127.0.0.1:0")
            ref = await client.get("echo")
            assert agent.endpoint is not None
            status, body = await fetch(agent.endpoint, "/health")
            assert status == 200
            health = json.loads(body)
            assert health["role"] == "agent"
            assert health["agent_id"] == agent.agent_id
            assert health["containers"] == 1
            assert (await fetch(agent.endpoint, "/ready"))[0] == 200
            assert (await fetch(agent.endpoint, "/metrics"))[0] == 404
            # and the endpoint still serves direct connections
            async with ref.connect() as conn:
                assert await conn.request("hi", 1) == {"op": "hi", "data": 1}


@pytest.mark.parametrize("head", [b"GET /health HTTP/1.1\r\n\r\n", b"\xff\xfe\r\n\r\n"])
async def test_metrics_port_rejects_bad_or_hostless_requests_without_harm(head):
    with trio.fail_after(10):
        async with hulytrio.serve_network(host="127.0.0.1", port=0, metrics_port=0) as hub:
            assert hub.metrics_port is not None
            status, _, _ = split(await raw(hub.metrics_port, head))
            # HTTP/1.1 without Host is a bad request to h11, as is garbage
            assert status == "HTTP/1.1 400 Bad Request"
            assert (await fetch(hub.url, "/health"))[0] == 200
