"""Self-fencing with a real hub process: a paused hub's agent stops serving in time."""

from __future__ import annotations

import signal

import trio
import trio.testing
from e2e_support import free_port, kill, wait_for

import hulytrio
from hulytrio.core.agent import LocalStatus

ALIVE = 2.0  # the hub's alive timeout: the agent's fence lease is 0.9 x 2.0 = 1.8 s


class Recorder(hulytrio.Container):
    """Answers every request and notes when it ran (this process's trio clock)."""

    def __init__(self) -> None:
        self.runs: list[tuple[float, str]] = []

    async def request(self, operation, data=None, client_id=None):
        self.runs.append((trio.current_time(), operation))
        return {"op": operation, "ran": len(self.runs)}


async def test_an_agent_cut_off_from_its_hub_stops_serving_until_the_hub_accepts_it_again(
        procs):
    with trio.fail_after(40):
        port = free_port()
        hub = await procs.hub(port, "--alive-timeout", str(ALIVE))
        url = f"ws://127.0.0.1:{port}"
        container = Recorder()
        async with hulytrio.open_client(url) as host, hulytrio.open_client(url) as caller:
            await host.serve_agent({}, agent_id="fencer", stateless=[
                hulytrio.StatelessContainer("ha-1", "ha", container)])
            state = host.session.agent("fencer")
            assert state is not None
            ref = await caller.get("ha", uuid="ha-1")
            assert await ref.request("before") == {"op": "before", "ran": 1}
            assert state.status("ha-1") is LocalStatus.ACTIVE

            # The hub could make a standby owner ALIVE once its alive timeout
            # has passed since it last heard the agent: the agent's lease,
            # counted from the last ping the hub answered, ends sooner.
            lease = host.session.fence_lease_for(ALIVE)
            assert lease < ALIVE
            hub.send_signal(signal.SIGSTOP)  # the hub hears and says nothing
            stopped = trio.current_time()
            # The last ping the hub answered was sent before `stopped`: the
            # lease is over at `stopped + lease` at the latest, and the agent's
            # own timer, due by then, has fired once this process ran on past
            # that moment (however late a loaded machine lets it run: a check
            # of the time it is observed would measure the machine).
            await trio.sleep_until(stopped + lease)
            await trio.testing.wait_all_tasks_blocked()
            assert state.is_fenced("ha-1"), trio.current_time() - stopped
            assert state.status("ha-1") is LocalStatus.STANDBY
            await trio.sleep_until(stopped + ALIVE + 0.5)  # well past the alive timeout
            assert state.is_fenced("ha-1")  # still not serving: no hub accepted it

            hub.send_signal(signal.SIGCONT)
            resumed = trio.current_time()
            # Reconnect, re-register: the hub's answer makes it the owner again.
            await wait_for(lambda: state.status("ha-1") is LocalStatus.ACTIVE)
            assert not state.is_fenced("ha-1")
            reply = await ref.request("after")  # the caller's session found it again
            assert reply == {"op": "after", "ran": 2}
            assert all(t < stopped or t > resumed for t, _ in container.runs)
        await kill(hub, signal.SIGTERM)
        assert hub.returncode == 0, procs.logs()
