"""Lifecycle facts on a real loopback hub: info lines with the ids, and their metrics."""

from __future__ import annotations

import logging

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

import hulytrio
from hulytrio.core.timeouts import Timeouts
from hulytrio.transport.http import fetch


class Echo(hulytrio.Container):
    async def request(self, operation, data=None, client_id=None):
        return data


async def start_echo(options):
    return Echo()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


class Seen(logging.Handler):
    """Sets a ``trio.Event`` per lifecycle ``event`` once a line of it is logged."""

    def __init__(self) -> None:
        super().__init__()
        self.events: dict[str, trio.Event] = {}

    def __getitem__(self, event: str) -> trio.Event:
        return self.events.setdefault(event, trio.Event())

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "event", None)
        if event is not None:
            self[event].set()


def lines(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name == "hulytrio.hub" and getattr(r, "event", None) == event]


async def test_register_start_orphan_terminate_are_logged_and_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hulytrio.hub")
    timeouts = Timeouts(unused_container=0.3)
    seen = Seen()
    logging.getLogger("hulytrio.hub").addHandler(seen)
    try:
        await _scenario(caplog, seen, timeouts)
    finally:
        logging.getLogger("hulytrio.hub").removeHandler(seen)


async def _scenario(caplog: pytest.LogCaptureFixture, seen: Seen, timeouts: Timeouts) -> None:
    with trio.fail_after(20):
        async with hulytrio.serve_network(host="127.0.0.1", port=0, timeouts=timeouts) as hub:
            async with hulytrio.open_client(hub.url) as host:
                await host.serve_agent({"echo": start_echo}, agent_id="agent-7")
                async with hulytrio.open_client(hub.url) as user:
                    ref = await user.get("echo")
                    assert await ref.request("x", 1) == 1
                    uuid = ref.uuid
                    await ref.release()
                    await seen["container_terminated"].wait()

                (registered,) = lines(caplog, "agent_registered")
                assert registered.levelno == logging.INFO
                assert (registered.agent_id, registered.kind) == ("agent-7", "echo")
                assert "agent-7" in registered.getMessage()
                (started,) = lines(caplog, "container_started")
                assert (started.agent_id, started.uuid, started.kind) == ("agent-7", uuid, "echo")
                assert started.duration >= 0
                (orphaned,) = lines(caplog, "container_orphaned")
                assert (orphaned.agent_id, orphaned.uuid, orphaned.kind) == (
                    "agent-7", uuid, "echo")
                (terminated,) = lines(caplog, "container_terminated")
                assert (terminated.uuid, terminated.reason) == (uuid, "unused timeout")
                # nothing per request above debug
                assert not [r for r in caplog.records if r.levelno >= logging.INFO
                            and "request" in r.getMessage().lower()]

                status, body = await fetch(hub.url, "/metrics")
                assert status == 200
                got = samples(body.decode())
                assert got["huly_container_starts_total", ()] == 1
                assert got["huly_container_start_duration_seconds_count", ()] == 1
                assert got["huly_orphans_terminated_total", ()] == 1
                assert got["huly_requests_total",
                           (("operation", "request"), ("status", "ok"))] == 1
                assert got["huly_requests_total", (("operation", "get"), ("status", "ok"))] == 1
                assert got["huly_requests_total",
                           (("operation", "release"), ("status", "ok"))] == 1
                assert got["huly_request_duration_seconds_count",
                           (("operation", "request"),)] == 1
                assert got["huly_failovers_total", ()] == 0
            # the user's session ended, then the host's with its agent
            await seen["agent_dead"].wait()
            (dead,) = lines(caplog, "agent_dead")
            assert (dead.agent_id, dead.reason) == ("agent-7", "unregistered")  # a clean close
            assert {r.reason for r in lines(caplog, "client_gone")} == {"client closed"}
