"""An agent's state store in a process of its own (``open_state_store(url, worker=True)``).

Theory of operation
-------------------
The backends' drivers block, so the in-process stores run them on a worker
thread (``blocking.py``).  That thread still needs Python's lock to bind each
statement's parameters, and the agent's trio thread needs it back after every
poll for I/O: during a checkpoint of 10,000 states the lock changed hands
thousands of times, and requests through the agent waited for it (p99 2.3-3x
their idle one, docs/performance.md "What requests wait for during a
checkpoint").  Here the store runs in a child process (``python -m
hulytrio.state.worker FD``) with its own interpreter and its own lock, and
the agent's loop only moves bytes:

- a checkpoint's states go through a shared memory file (``FD``: a
  ``memfd``, or an unlinked temporary file where there is none), which the
  trio thread fills in slices (``SLICE``), one record per state: a header
  (``RECORD``: uuid length, epoch, state length), the uuid, the state.  Only
  the batch's size and count go through the pipe;
- every other call (``get``, ``claim``, ``delete``, ``list``, ``close``) and
  every answer is one frame on the child's stdin/stdout: a 4-byte length,
  then msgpack ``[op, *args]``, answered ``["ok", value]`` or ``["error",
  message]`` (a ``StateStoreError`` raised here).

The first frame is ``["open", url]`` (the URL may hold a password: it never
goes on a command line).  One call at a time (a lock), and a call once sent
always reads its answer, cancelled or not: the pipe stays in step.  If the
child dies (a crash, the OOM killer), the call in flight raises
``StateStoreError`` (a checkpoint is then logged as failed and its changes
stay due) and the next call starts a new child.  The child ignores SIGINT
and SIGTERM: a Ctrl-C or a service manager's SIGTERM to the whole process
group must not take the store away before the agent's last checkpoint; it
exits when its stdin closes, which the agent's exit (of any kind) does.
"""

from __future__ import annotations

import logging
import mmap
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import IO, Any

import msgpack
import trio

from .base import (
    Claim,
    StaleEpoch,
    StateInfo,
    StateStore,
    StateStoreError,
    StoredState,
    parse_state_url,
)
from .blocking import BlockingStateStore, empty_state

__all__ = ["RECORD", "SLICE", "WorkerStateStore", "main"]

log = logging.getLogger("hulytrio.state")

#: One state in the shared file: uuid length, epoch, state length (then the
#: uuid's UTF-8 bytes and the state).
RECORD = struct.Struct("<IqI")
#: A frame's length prefix on the pipe.
FRAME = struct.Struct(">I")
#: The longest stretch of packing a batch without letting other tasks in
#: (seconds): as ``transport.checkpoints.SLICE``.
SLICE = 0.0001
#: Records packed between two looks at the clock.
PACK_RUN = 64
#: The shared file's first size; it doubles as batches need (and stays).
FIRST_CAPACITY = 1 << 20
#: Seconds ``aclose`` waits for the child to close its connection and exit.
CLOSE_WAIT = 5.0


def _frame(value: Any) -> bytes:
    body: bytes = msgpack.packb(value, use_bin_type=True)
    return FRAME.pack(len(body)) + body


def _shared_file() -> int:
    """Return the descriptor of a new, empty file that lives only in memory where it can."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("hulytrio-state-batch")
    with tempfile.TemporaryFile() as f:  # unlinked at once; the dup keeps it
        return os.dup(f.fileno())


class WorkerStateStore(StateStore):
    """The store at ``url``, run by a child process (see module docstring)."""

    def __init__(self, url: str) -> None:
        """Check ``url`` and make the shared file (``open`` starts the child).

        Raises ``StateStoreError`` for a malformed URL or a shared file that
        cannot be made (no memory, no descriptors left).
        """
        parse_state_url(url)  # a malformed URL fails here, not in the child
        self.url = url
        self._lock = trio.Lock()
        self._capacity = FIRST_CAPACITY
        try:
            self._fd = _shared_file()
        except OSError as exc:
            raise StateStoreError(f"state store: its shared batch file cannot be made: "
                                  f"{exc}") from exc
        try:
            os.ftruncate(self._fd, self._capacity)
            self._buffer = mmap.mmap(self._fd, self._capacity)
        except OSError as exc:
            os.close(self._fd)
            raise StateStoreError(f"state store: its shared batch file cannot be made: "
                                  f"{exc}") from exc
        self._process: trio.Process | None = None
        self._received = bytearray()
        #: children started (1 after ``open``; more after crashes)
        self.starts = 0

    @classmethod
    async def open(cls, url: str) -> WorkerStateStore:
        """Return the store at ``url`` with its child started and the store opened.

        Raises ``StateStoreError`` for a malformed URL, a store that cannot be
        opened (the child's message), or a child that cannot be started.
        """
        store = cls(url)
        try:
            async with store._lock:
                await store._exchange(None)
        except BaseException:
            await store.aclose()
            raise
        return store

    # -- the child and the pipe -------------------------------------------------------

    async def _start(self) -> trio.Process:
        argv = [sys.executable, "-m", "hulytrio.state.worker", str(self._fd)]
        try:
            process = await trio.lowlevel.open_process(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(self._fd,))
        except OSError as exc:
            raise StateStoreError(f"state store: its worker process cannot start: {exc}"
                                  ) from exc
        self._process = process
        self._received.clear()
        self.starts += 1
        try:
            await self._send_receive(process, ["open", self.url])
        except BaseException:
            self._process = None
            process.kill()
            await process.wait()
            raise
        return process

    async def _exchange(self, request: list[Any] | None) -> Any:
        """Send ``request`` (None: only make sure the child runs) and return its answer.

        Called under the lock.  Never cancelled half-way: the answer to a
        request sent is always read.
        """
        with trio.CancelScope(shield=True):
            process = self._process
            if process is None:
                process = await self._start()
            if request is None:
                return None
            return await self._send_receive(process, request)

    async def _send_receive(self, process: trio.Process, request: list[Any]) -> Any:
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            await process.stdin.send_all(_frame(request))
            reply = await self._receive(process.stdout)
        except (trio.BrokenResourceError, trio.ClosedResourceError, EOFError):
            self._process = None
            code = await self._reap(process)
            raise StateStoreError(f"state store: its worker process exited (code {code}) "
                                  f"during {request[0]!r}; a new one starts at the next "
                                  f"call") from None
        kind, value = reply
        if kind == "error":
            raise StateStoreError(value)
        return value

    async def _receive(self, stream: trio.abc.ReceiveStream) -> Any:
        received = self._received
        while True:
            if len(received) >= FRAME.size:
                (size,) = FRAME.unpack_from(received)
                if len(received) >= FRAME.size + size:
                    body = bytes(received[FRAME.size:FRAME.size + size])
                    del received[:FRAME.size + size]
                    return msgpack.unpackb(body, raw=False)
            data = await stream.receive_some(1 << 16)
            if not data:
                raise EOFError
            received += data

    @staticmethod
    async def _reap(process: trio.Process) -> int | None:
        with trio.move_on_after(CLOSE_WAIT):
            return await process.wait()
        process.kill()
        return await process.wait()

    async def _call(self, *request: Any) -> Any:
        async with self._lock:
            return await self._exchange(list(request))

    # -- the batch through the shared file ---------------------------------------------------

    def _grow(self, needed: int) -> None:
        """Make the shared file at least ``needed`` bytes; raises ``StateStoreError``."""
        capacity = self._capacity
        while capacity < needed:
            capacity *= 2
        try:
            os.ftruncate(self._fd, capacity)
            buffer = mmap.mmap(self._fd, capacity)
        except OSError as exc:
            raise StateStoreError(f"state store: a batch of {needed} bytes does not fit in "
                                  f"its shared file: {exc}") from exc
        self._buffer.close()
        self._buffer = buffer
        self._capacity = capacity

    async def _pack(self, items: Sequence[tuple[str, bytes, int]]) -> tuple[int, int]:
        """Write ``items`` into the shared file; return their count and size in bytes.

        Raises ``ValueError`` (nothing sent) when a state is empty,
        ``StateStoreError`` (nothing sent) when the file cannot grow.
        """
        offset = count = 0
        started = time.perf_counter()
        header = RECORD
        for uuid, state, epoch in items:
            if not state:
                raise empty_state(uuid)
            key = uuid.encode()
            body = offset + header.size + len(key)
            end = body + len(state)
            if end > self._capacity:
                self._grow(end)
            buffer = self._buffer
            header.pack_into(buffer, offset, len(key), epoch, len(state))
            buffer[offset + header.size:body] = key
            buffer[body:end] = state
            offset = end
            count += 1
            if count % PACK_RUN == 0 and time.perf_counter() - started > SLICE:
                # Not cancellable: put_many is one step for its caller, as
                # the thread call it replaces was.
                await trio.lowlevel.cancel_shielded_checkpoint()
                started = time.perf_counter()
        return count, offset

    # -- the StateStore interface --------------------------------------------------------

    async def put_many(self, items: Sequence[tuple[str, bytes, int]]) -> list[StaleEpoch]:
        async with self._lock:
            count, size = await self._pack(items)
            refused = await self._exchange(["put_many", count, size])
        return [StaleEpoch(uuid, epoch, stored) for uuid, epoch, stored in refused]

    async def put(self, uuid: str, state: bytes, epoch: int) -> None:
        refused = await self.put_many([(uuid, state, epoch)])
        if refused:
            raise refused[0]

    async def get(self, uuid: str) -> StoredState | None:
        found = await self._call("get", uuid)
        if found is None:
            return None
        state, epoch, written_at = found
        return StoredState(uuid, state, epoch, written_at)

    async def claim(self, uuid: str, epoch: int) -> Claim:
        claimed, state, written_at = await self._call("claim", uuid, epoch)
        if state is None:
            return Claim(uuid, claimed, None)
        return Claim(uuid, claimed, StoredState(uuid, state, claimed, written_at))

    async def delete(self, uuid: str) -> bool:
        return bool(await self._call("delete", uuid))

    async def list(self) -> list[StateInfo]:
        return [StateInfo(*row) for row in await self._call("list")]

    async def aclose(self) -> None:
        """Close the store in the child, let it exit, and free the shared file."""
        with trio.CancelScope(shield=True):
            async with self._lock:
                process, self._process = self._process, None
                if process is not None:
                    assert process.stdin is not None
                    try:
                        await process.stdin.send_all(_frame(["close"]))
                        await process.stdin.aclose()
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
                    await self._reap(process)
                if self._fd >= 0:
                    self._buffer.close()
                    os.close(self._fd)
                    self._fd = -1


# --- the child ------------------------------------------------------------------------------


def _read_frame(stream: IO[bytes]) -> Any:
    """Return the next frame's value, or None at the end of the stream."""
    head = stream.read(FRAME.size)
    if len(head) < FRAME.size:
        return None
    (size,) = FRAME.unpack(head)
    body = stream.read(size)
    if len(body) < size:
        return None
    return msgpack.unpackb(body, raw=False)


def _unpack(fd: int, count: int, size: int) -> list[tuple[str, bytes, int]]:
    """Return the ``count`` records in the first ``size`` bytes of the shared file."""
    if count == 0:
        return []
    with mmap.mmap(fd, size, prot=mmap.PROT_READ) as shared:
        data = shared[:size]
    items = []
    offset = 0
    header = RECORD
    for _ in range(count):
        key_length, epoch, state_length = header.unpack_from(data, offset)
        body = offset + header.size + key_length
        end = body + state_length
        items.append((data[offset + header.size:body].decode(), data[body:end], epoch))
        offset = end
    return items


def _open(url: str) -> BlockingStateStore:
    parsed = parse_state_url(url)
    if parsed.kind == "sqlite":
        from .sqlite import SqliteStateStore
        return SqliteStateStore.open_blocking(parsed.target)
    from .postgres import PostgresStateStore
    return PostgresStateStore.open_blocking(parsed.target)


def _answer(store: BlockingStateStore, fd: int, op: str, args: list[Any]) -> Any:
    """Run request ``op`` on ``store``; return its value (raises ``StateStoreError``)."""
    if op == "put_many":
        refused = store._put_many(_unpack(fd, *args))
        return [[r.uuid, r.epoch, r.stored] for r in refused]
    if op == "get":
        found = store._get(*args)
        return None if found is None else [found.state, found.epoch, found.written_at]
    if op == "claim":
        claim = store._claim(*args)
        saved = claim.saved
        return [claim.epoch, None if saved is None else saved.state,
                None if saved is None else saved.written_at]
    if op == "delete":
        return store._delete(*args)
    if op == "list":
        return [[i.uuid, i.epoch, i.size, i.written_at] for i in store._list()]
    raise StateStoreError(f"state store worker: unknown request {op!r}")


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the store's requests on stdin/stdout until stdin closes; returns the exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m hulytrio.state.worker FD (started by an agent's "
              "open_state_store(url, worker=True), not by hand)", file=sys.stderr)
        return 2
    fd = int(args[0])
    # Stopped only by the agent (stdin closing): see the module docstring.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The pipe is ours alone: anything printed goes to stderr instead.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    stream = sys.stdin.buffer
    store: BlockingStateStore | None = None
    try:
        while True:
            request = _read_frame(stream)
            if request is None or request[0] == "close":
                return 0
            op, *rest = request
            try:
                if op == "open":
                    store = _open(rest[0])
                    value = None
                elif store is None:
                    raise StateStoreError("state store worker: no store is open")
                else:
                    value = _answer(store, fd, op, rest)
                reply = ["ok", value]
            except StateStoreError as exc:
                reply = ["error", str(exc)]
            except Exception as exc:  # a bug here: the agent hears it, the child lives on
                reply = ["error", f"state store worker: {op} raised {type(exc).__name__}: "
                                  f"{exc}"]
            out.write(_frame(reply))
            out.flush()
    finally:
        if store is not None:
            store._conn.close()


if __name__ == "__main__":
    sys.exit(main())
