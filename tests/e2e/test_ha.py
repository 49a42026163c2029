"""Two hub processes on one lease (file lock, etcd): standby, redirect, takeover."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request

import pytest
import trio
from e2e_support import free_port, kill, wait_for

import hulytrio

ALIVE = 1.0


def _http(port: int, path: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
    except OSError:
        return 0, {}


async def http(port: int, path: str) -> tuple[int, dict[str, object]]:
    return await trio.to_thread.run_sync(_http, port, path)


async def role(port: int) -> object:
    return (await http(port, "/health"))[1].get("role")


async def _start_pair(procs, lease: str, *extra: str):
    """Hub a (active, waited for), then hub b (standby); returns ports and processes."""
    port_a, port_b = free_port(), free_port()
    flags = ("--lease", lease, "--alive-timeout", str(ALIVE), *extra)
    hub_a = await procs.hub(port_a, *flags)
    await wait_for(lambda: _is(port_a, "active"))
    hub_b = await procs.hub(port_b, *flags)
    await wait_for(lambda: _is(port_b, "standby"))
    return port_a, port_b, hub_a, hub_b


async def _is(port: int, wanted: str) -> bool:
    return await role(port) == wanted


async def _has_agent(c: hulytrio.Client, agent_id: str) -> bool:
    return any(a.agent_id == agent_id for a in await c.agents())


async def _takeover_keeps_the_reference(procs, lease: str, *extra: str) -> None:
    port_a, port_b, hub_a, hub_b = await _start_pair(procs, lease, *extra)
    urls = f"ws://127.0.0.1:{port_a},ws://127.0.0.1:{port_b}"
    # The standby: alive, not ready (a Kubernetes Service routes around it).
    status, body = await http(port_b, "/ready")
    assert (status, body["role"]) == (503, "standby")
    status, body = await http(port_b, "/health")
    assert (status, body["role"]) == (200, "standby")
    assert (await http(port_a, "/ready"))[0] == 200
    agent = await procs.agent(urls, "steady")
    async with hulytrio.open_client(urls) as c:
        await c.wait_connection()
        await wait_for(lambda: _has_agent(c, "steady"))
        ref = await c.get("echo")
        uuid = ref.uuid
        pid = (await ref.request("before"))["pid"]
        await kill(hub_a, signal.SIGKILL)
        # No user code: client and agent move to hub b, which took the lease.
        reply = await ref.request("after")
        assert reply["uuid"] == uuid == ref.uuid
        assert reply["pid"] == pid
        assert c.hub_url == f"ws://127.0.0.1:{port_b}"
        assert c.session.term >= 2
        assert await role(port_b) == "active"
        assert (await http(port_b, "/ready"))[0] == 200
    await kill(agent, signal.SIGTERM)
    assert agent.returncode == 0, procs.logs()
    await kill(hub_b, signal.SIGTERM)
    assert hub_b.returncode == 0, procs.logs()


async def test_file_lease_standby_takes_over_after_kill_9(procs, tmp_path):
    with trio.fail_after(40):
        await _takeover_keeps_the_reference(procs, f"file:{tmp_path}/hub.lock")


async def test_etcd_lease_standby_takes_over_after_kill_9(procs, etcd_url, tmp_path):
    key = f"/hulytrio/test-{tmp_path.name}/leader"
    lease = etcd_url.replace("http://", "etcd://") + key
    with trio.fail_after(40):
        await _takeover_keeps_the_reference(procs, lease, "--lease-ttl", "2")


async def test_a_client_given_only_the_standby_is_redirected(procs, tmp_path):
    with trio.fail_after(30):
        port_a, port_b, hub_a, _ = await _start_pair(procs, f"file:{tmp_path}/hub.lock")
        await trio.sleep(0.3)  # the standby has read who holds the lease
        async with hulytrio.open_client(f"ws://127.0.0.1:{port_b}") as c:
            await c.wait_connection()
            assert c.hub_url == f"ws://127.0.0.1:{port_a}"
            assert list(await c.agents()) == []
        await kill(hub_a, signal.SIGTERM)
        assert hub_a.returncode == 0, procs.logs()
        # A clean stop resigns: the standby is active at once.
        with trio.fail_after(2):
            await wait_for(lambda: _is(port_b, "active"))


async def test_a_hub_that_loses_its_lease_steps_down_and_one_hub_stays_active(
        procs, tmp_path):
    with trio.fail_after(40):
        lock = tmp_path / "hub.lock"
        port_a, port_b, hub_a, hub_b = await _start_pair(procs, f"file:{lock}")
        urls = f"ws://127.0.0.1:{port_a},ws://127.0.0.1:{port_b}"
        agent = await procs.agent(urls, "steady")
        async with hulytrio.open_client(urls) as c:
            await c.wait_connection()
            await wait_for(lambda: _has_agent(c, "steady"))
            ref = await c.get("echo")
            pid = (await ref.request("before"))["pid"]
            assert c.session.term == 1
            # An operator removes the lock file: hub a no longer holds a lease
            # anyone can see, so it must step down (within its 1 s check) and
            # the two hubs campaign again for the new file.
            lock.unlink()
            await wait_for(lambda: c.session.term == 2, interval=0.05)
            reply = await ref.request("after")
            assert reply["pid"] == pid
            roles = sorted([await role(port_a), await role(port_b)])
            assert roles == ["active", "standby"], procs.logs()
            active_port = port_a if await role(port_a) == "active" else port_b
            assert c.hub_url == f"ws://127.0.0.1:{active_port}"
        await kill(agent, signal.SIGTERM)
        for hub in (hub_a, hub_b):
            await kill(hub, signal.SIGTERM)
            assert hub.returncode == 0, procs.logs()


@pytest.mark.parametrize(("args", "message"), [
    (["--lease", "zk://x/y"], "--lease=zk://x/y is not allowed: expected file:PATH"),
    (["--lease", "etcd://127.0.0.1:2379"], "no leader key"),
    (["--lease", "file:/x", "--lease-ttl", "0"], "--lease-ttl=0 is not allowed"),
    (["--advertise-url", "http://a:1"], "--advertise-url=http://a:1 is not allowed"),
    # found only when the hub campaigns: still one line, not a traceback
    (["--lease", "file:/nonexistent-dir/hub.lock", "--log-level", "warning"],
     "hulytrio serve: error: lease file /nonexistent-dir/hub.lock: cannot open it"),
])
async def test_a_bad_lease_setting_is_one_line_and_exit_2(procs, args, message):
    with trio.fail_after(20):
        proc = await procs.hub(free_port(), *args)
        await proc.wait()
        assert proc.returncode == 2
        lines = procs.logs().strip().splitlines()
        assert len(lines) == 1, lines
        assert message in lines[0]


async def test_a_bad_hub_list_is_one_line_and_exit_2(procs):
    with trio.fail_after(20):
        proc = await procs.agent("ws://127.0.0.1:1,,ws://b:2", "x")
        await proc.wait()
        assert proc.returncode == 2
        lines = procs.logs().strip().splitlines()
        assert len(lines) == 1, lines
        assert "hub URL 2 of 3 is empty" in lines[0]


async def _forwarded(port: int) -> bool:
    """Whether the hub on ``port`` has forwarded a request (its /metrics)."""
    def read() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                return r.read().decode()
        except OSError:
            return ""
    text = await trio.to_thread.run_sync(read)
    return any(line.startswith("huly_requests_forwarded_total") and not line.endswith(" 0")
               for line in text.splitlines())


async def test_a_request_in_flight_when_the_active_hub_dies_runs_once(procs, tmp_path):
    """Issue 14, deliverable 5: it ran twice (once per hub); now the resend joins the run."""
    with trio.fail_after(40):
        port_a, port_b, hub_a, hub_b = await _start_pair(procs, f"file:{tmp_path}/hub.lock")
        urls = f"ws://127.0.0.1:{port_a},ws://127.0.0.1:{port_b}"
        agent = await procs.agent(urls, "steady")
        async with hulytrio.open_client(urls) as c:
            await c.wait_connection()
            await wait_for(lambda: _has_agent(c, "steady"))
            ref = await c.get("echo")
            answers: list[object] = []

            async def slow() -> None:
                answers.append(await ref.request("sleep", 2.0))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(slow)
                # The request runs on the agent (it sleeps 2 s) when hub a dies.
                await wait_for(lambda: _forwarded(port_a))
                await kill(hub_a, signal.SIGKILL)
            (reply,) = answers
            assert reply["op"] == "sleep"
            assert c.hub_url == f"ws://127.0.0.1:{port_b}"
            # The resend through hub b joined the first run: it ran once.
            assert (await ref.request("runs"))["sleep"] == 1, procs.logs()
        await kill(agent, signal.SIGTERM)
        assert agent.returncode == 0, procs.logs()
        await kill(hub_b, signal.SIGTERM)


async def _sigterm_hands_over_before_the_drain_ends(procs, lease: str, *extra: str) -> None:
    # Hub a's drain may last 20 s: a request of 4 s is in flight through it.
    # With an alive timeout of 10 s a busy peer may stay up to 5 s (half of
    # it: then the new hub still parks the re-acquires of its containers).
    # (The pair's 1 s alive timeout is at the ping interval: over these
    # seconds peers would be declared dead under load.)
    port_a, port_b, hub_a, hub_b = await _start_pair(procs, lease, "--shutdown-timeout", "20",
                                                     "--alive-timeout", "10", *extra)
    urls = f"ws://127.0.0.1:{port_a},ws://127.0.0.1:{port_b}"
    await procs.agent(urls, "slow")
    async with hulytrio.open_client(urls) as busy, hulytrio.open_client(urls) as c, \
            trio.open_nursery() as nursery:
        await wait_for(lambda: _has_agent(c, "slow"))
        slow_ref = await busy.get("echo")  # on "slow": the only agent yet
        await procs.agent(urls, "steady", env={"E2E_HA_UUID": "ha-term"})
        await wait_for(lambda: _has_agent(c, "steady"))
        ref = await c.get("ha", uuid="ha-term")
        assert (await ref.request("before"))["agent"] == "steady"
        term = c.session.term
        slow_answer: list[object] = []
        slow_done = trio.Event()

        async def slow() -> None:
            slow_answer.append(await slow_ref.request("sleep", 4))
            slow_done.set()

        nursery.start_soon(slow)
        await trio.sleep(0.5)  # the sleep is in flight; b has read who holds the lease
        assert slow_answer == []
        hub_a.send_signal(signal.SIGTERM)
        start = trio.current_time()
        with trio.fail_after(3):  # inside a's 4 s (and 20 s) drain
            # What reached a before the signal did may still be answered
            # there: wait for the first answer of b's (newer) term.
            reply = await ref.request("after")
            while c.session.term == term:
                reply = await ref.request("after")
        elapsed = trio.current_time() - start
        assert reply["agent"] == "steady"
        assert c.hub_url == f"ws://127.0.0.1:{port_b}", procs.logs()
        assert c.session.term >= 2
        assert await role(port_b) == "active"
        assert hub_a.returncode is None  # still draining: the standby did not wait for it
        # The request in flight through a is answered there, then its
        # caller and agent move to b too; the container stays where it was
        # (b parked the caller's re-acquire until its agent re-registered).
        with trio.fail_after(15):
            await slow_done.wait()
            await hub_a.wait()
        assert slow_answer[0]["agent"] == "slow"  # type: ignore[index]
        assert hub_a.returncode == 0, procs.logs()
        again = await slow_ref.request("again")
        assert (again["agent"], again["pid"]) == ("slow", slow_answer[0]["pid"])  # type: ignore[index]
        assert busy.hub_url == f"ws://127.0.0.1:{port_b}"
        assert elapsed < 3
    await kill(hub_b, signal.SIGTERM)


async def test_sigterm_of_the_active_file_lease_hub_hands_over_at_once(procs, tmp_path):
    with trio.fail_after(60):
        await _sigterm_hands_over_before_the_drain_ends(procs, f"file:{tmp_path}/hub.lock")


async def test_sigterm_of_the_active_etcd_hub_hands_over_at_once(procs, etcd_url, tmp_path):
    key = f"/hulytrio/test-{tmp_path.name}/leader"
    lease = etcd_url.replace("http://", "etcd://") + key
    with trio.fail_after(60):
        await _sigterm_hands_over_before_the_drain_ends(procs, lease, "--lease-ttl", "2")
