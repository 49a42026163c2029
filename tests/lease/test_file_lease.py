"""The one-host lease: an flock the kernel drops with its holder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import trio

from hulytrio.lease import LeaseError, LeaseLost, open_lease


async def test_one_holder_at_a_time_and_the_term_grows(tmp_path, autojump_clock):
    url = f"file:{tmp_path}/hub.lock"
    with trio.fail_after(60):
        async with open_lease(url) as a, open_lease(url) as b:
            first = await a.campaign("ws://a:3737")
            assert first.term == 1
            assert await b.leader() == "ws://a:3737"
            with trio.move_on_after(5) as waited:
                await b.campaign("ws://b:3737")
            assert waited.cancelled_caught, "b won while a held the lock"
            await a.resign()
            second = await b.campaign("ws://b:3737")
            assert second.term == 2
            assert await a.leader() == "ws://b:3737"


async def test_the_term_survives_every_holder(tmp_path, autojump_clock):
    url = f"file:{tmp_path}/hub.lock"
    terms = []
    with trio.fail_after(60):
        for _ in range(3):
            async with open_lease(url) as lease:
                terms.append((await lease.campaign("me")).term)
    assert terms == [1, 2, 3]


async def test_an_unreadable_term_file_is_refused_not_reset(tmp_path, autojump_clock):
    (tmp_path / "hub.lock.term").write_text("{not json")
    with trio.fail_after(60):
        async with open_lease(f"file:{tmp_path}/hub.lock") as lease:
            with pytest.raises(LeaseError, match=r"hub\.lock\.term: unreadable"):
                await lease.campaign("me")
        # and the lock was not left held by the failed campaign
        (tmp_path / "hub.lock.term").write_text(json.dumps({"term": 7, "holder": "x"}))
        async with open_lease(f"file:{tmp_path}/hub.lock") as lease:
            assert (await lease.campaign("me")).term == 8


async def test_a_replaced_lock_file_ends_the_hold(tmp_path, autojump_clock):
    path = tmp_path / "hub.lock"
    with trio.fail_after(60):
        async with open_lease(f"file:{path}") as lease:
            await lease.campaign("me")
            os.unlink(path)
            with pytest.raises(LeaseLost, match="removed or replaced"):
                await lease.hold()


async def test_after_a_replaced_lock_file_the_campaign_is_for_the_new_file(
        tmp_path, autojump_clock):
    path = tmp_path / "hub.lock"
    with trio.fail_after(60):
        async with open_lease(f"file:{path}") as a, open_lease(f"file:{path}") as b:
            await a.campaign("ws://a")
            os.unlink(path)
            with pytest.raises(LeaseLost):
                await a.hold()
            assert (await b.campaign("ws://b")).term == 2  # b locked the new file
            # a campaigns again (as a stepped-down hub does): it must wait
            # for b, not win the unlinked file it held before.
            with trio.move_on_after(5) as waited:
                await a.campaign("ws://a")
            assert waited.cancelled_caught, "a won a lock file nobody else sees"


async def test_a_waiting_standby_does_not_win_the_replaced_file(tmp_path, autojump_clock):
    path = tmp_path / "hub.lock"
    with trio.fail_after(60):
        async with open_lease(f"file:{path}") as a, open_lease(f"file:{path}") as b, \
                open_lease(f"file:{path}") as c:
            await a.campaign("ws://a")
            async with trio.open_nursery() as nursery:
                won = []

                async def campaign_b():
                    won.append(await b.campaign("ws://b"))

                nursery.start_soon(campaign_b)
                await trio.sleep(1)  # b waits, with the old file open
                os.unlink(path)
                assert (await c.campaign("ws://c")).term == 2  # c locks the new file
                await a.resign()  # the old file's lock is free now
                await trio.sleep(5)
                assert won == [], "b won the unlinked file while c holds the lease"
                await c.resign()
                await trio.sleep(1)
                assert [w.term for w in won] == [3]


async def test_an_unusable_directory_is_a_clear_error(tmp_path):
    with trio.fail_after(10):
        async with open_lease(f"file:{tmp_path}/missing/hub.lock") as lease:
            with pytest.raises(LeaseError, match="cannot open it"):
                await lease.campaign("me")


HOLDER = textwrap.dedent("""
    import sys, trio
    from hulytrio.lease import open_lease
    async def main():
        async with open_lease(sys.argv[1]) as lease:
            won = await lease.campaign("ws://killed:1")
            print(won.term, flush=True)
            await trio.sleep_forever()
    trio.run(main)
""")


@pytest.mark.e2e
async def test_a_standby_takes_over_when_the_holder_is_killed(tmp_path):
    url = f"file:{tmp_path}/hub.lock"
    with trio.fail_after(20):
        holder = await trio.lowlevel.open_process(
            [sys.executable, "-c", HOLDER, url], stdout=subprocess.PIPE)
        try:
            assert holder.stdout is not None
            assert (await holder.stdout.receive_some()).strip() == b"1"
            async with open_lease(url) as standby:
                with trio.move_on_after(0.3) as waited:
                    await standby.campaign("ws://standby:1")
                assert waited.cancelled_caught
                holder.send_signal(signal.SIGKILL)
                won = await standby.campaign("ws://standby:1")
        finally:
            holder.kill()
            await holder.wait()
            await holder.stdout.aclose()
    assert won.term == 2
