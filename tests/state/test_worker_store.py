"""The store in a child process (``open_state_store(url, worker=True)``): what only it can do wrong.

The store's rules themselves run against it in ``test_store.py`` (the
``worker`` fixture); here: its child dying, being signalled, being
cancelled mid-call, a batch bigger than the shared file, and what the
child's command line shows.
"""

from __future__ import annotations

import signal

import pytest
import trio

from hulytrio.state import StateStoreError, open_state_store, worker
from hulytrio.state.worker import FIRST_CAPACITY, WorkerStateStore


def _child(store: object) -> trio.Process:
    assert isinstance(store, WorkerStateStore)
    process = store._process
    assert process is not None
    return process


async def test_a_child_killed_fails_the_call_in_flight_and_the_next_call_starts_another(
        tmp_path):
    with trio.fail_after(30):
        async with open_state_store(f"sqlite:{tmp_path}/state.db", worker=True) as store:
            await store.put("kept", b"before the crash", 1)
            process = _child(store)
            process.kill()
            await process.wait()
            with pytest.raises(StateStoreError, match=r"worker process exited \(code -9\) "
                                                      r"during 'put_many'"):
                await store.put("lost", b"while it was down", 1)
            got = await store.get("kept")  # a new child, the same file
            assert got is not None
            assert got.state == b"before the crash"
            assert await store.get("lost") is None
            assert isinstance(store, WorkerStateStore)
            assert store.starts == 2
            assert _child(store).pid != process.pid


async def test_the_child_ignores_a_process_group_sigterm_until_the_agent_is_done(tmp_path):
    """A service manager's SIGTERM reaches every process of the group: the child must
    stay for the agent's last checkpoint, and go when the agent closes the store."""
    with trio.fail_after(30):
        async with open_state_store(f"sqlite:{tmp_path}/state.db", worker=True) as store:
            process = _child(store)
            process.send_signal(signal.SIGTERM)
            process.send_signal(signal.SIGINT)
            await trio.sleep(0.2)
            await store.put("last", b"the last checkpoint", 1)
            got = await store.get("last")
            assert got is not None
            assert process.returncode is None
        assert await process.wait() == 0


async def test_a_call_cancelled_half_way_leaves_the_pipe_in_step(tmp_path):
    items = [(f"c{i}", bytes([i % 256]) * 1024, 1) for i in range(5000)]
    with trio.fail_after(30):
        async with open_state_store(f"sqlite:{tmp_path}/state.db", worker=True) as store:
            with trio.move_on_after(0.001):
                await store.put_many(items)  # runs to its end: a write is one step
            await store.put("after", b"next call", 2)
            got = await store.get("after")
            assert got is not None
            assert (got.state, got.epoch) == (b"next call", 2)
            listed = await store.list()
            assert len(listed) == len(items) + 1


async def test_a_batch_bigger_than_the_shared_file_grows_it(tmp_path):
    size = 64 * 1024
    count = 3 * FIRST_CAPACITY // size
    items = [(f"big-{i}", bytes([i]) * size, 4) for i in range(count)]
    with trio.fail_after(30):
        async with open_state_store(f"sqlite:{tmp_path}/state.db", worker=True) as store:
            assert await store.put_many(items) == []
            for i in (0, count // 2, count - 1):
                got = await store.get(f"big-{i}")
                assert got is not None
                assert got.state == bytes([i]) * size
            assert isinstance(store, WorkerStateStore)
            assert store._capacity >= count * size


async def test_a_store_that_cannot_open_says_why_and_leaves_no_child(tmp_path):
    with trio.fail_after(30):
        with pytest.raises(StateStoreError, match=r"sqlite:.*missing/state\.db"):
            async with open_state_store(f"sqlite:{tmp_path}/missing/state.db", worker=True):
                pass  # pragma: no cover


async def test_the_url_never_reaches_the_childs_command_line(tmp_path):
    """A PostgreSQL URL may hold a password: ``ps`` must not show it."""
    url = f"sqlite:{tmp_path}/secret-name.db"
    with trio.fail_after(30):
        async with open_state_store(url, worker=True) as store:
            cmdline = await trio.Path(f"/proc/{_child(store).pid}/cmdline").read_bytes()
            assert b"secret-name" not in cmdline
            assert b"hulytrio.state.worker" in cmdline
            assert await trio.Path(tmp_path, "secret-name.db").exists()


async def test_a_shared_file_that_cannot_be_made_is_a_store_error(tmp_path, monkeypatch):
    def no_memory() -> int:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(worker, "_shared_file", no_memory)
    with trio.fail_after(30):
        with pytest.raises(StateStoreError, match=r"shared batch file cannot be made: .*"
                                                  r"Cannot allocate memory"):
            async with open_state_store(f"sqlite:{tmp_path}/state.db", worker=True):
                pass  # pragma: no cover


async def test_a_batch_whose_file_cannot_grow_sends_nothing_and_the_store_goes_on(
        tmp_path, monkeypatch):
    with trio.fail_after(30):
        async with open_state_store(f"sqlite:{tmp_path}/state.db", worker=True) as store:
            real = worker.os.ftruncate

            def full(fd: int, size: int) -> None:
                raise OSError(28, "No space left on device")

            monkeypatch.setattr(worker.os, "ftruncate", full)
            with pytest.raises(StateStoreError, match="does not fit in its shared file"):
                await store.put_many([("big", bytes(2 * FIRST_CAPACITY), 1)])
            monkeypatch.setattr(worker.os, "ftruncate", real)
            assert await store.get("big") is None
            await store.put("small", b"fits", 1)
            got = await store.get("small")
            assert got is not None
            assert got.state == b"fits"


def test_the_child_started_by_hand_says_how_it_is_meant_to_run(capsys):
    assert worker.main([]) == 2
    assert "started by an agent's open_state_store(url, worker=True)" in capsys.readouterr().err
