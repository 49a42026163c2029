"""The one-host lease: an exclusive ``flock`` on a lock file.

Why ``flock``: the kernel drops the lock when the holding process dies, by
``kill -9`` as much as by exit, so a standby polling with ``LOCK_NB`` takes
over within one poll interval (10 ms by default) and nobody has to guess
whether a silent holder is dead.  A blocking ``flock`` in a worker thread
would wake faster, but a cancelled wait would leave that thread to take the
lock later for a campaign nobody runs any more.

The term lives beside the lock, in ``PATH.term``: read, incremented and
replaced (write to a temporary file, fsync, rename) only while the lock is
held, so it only grows and a crash mid-write leaves the old value whole.
The holder's URL is written there too, for ``leader()``.

``valid_until`` is +inf while the lock is held: the lock does not expire
while the process lives, and a paused holder keeps it (nobody takes over
until it resumes or dies), so a woken holder is still the only active hub.
What the gate cannot see is the lock file being removed or replaced
(``hold`` checks that every ``_CHECK_INTERVAL``): a stat before every read
would cost more than the case is worth (an operator deleting the lock of a
running hub).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os

import trio

from .base import Leadership, Lease, LeaseError, LeaseLost

__all__ = ["FileLease"]

#: How often a holder checks that its lock file is still the one at PATH.
_CHECK_INTERVAL = 1.0


class FileLease(Lease):
    """An exclusive lock on ``path``; the term counter in ``path + ".term"``."""

    def __init__(self, path: str, *, poll_interval: float = 0.01) -> None:
        self.path = os.path.abspath(path)
        self.term_path = self.path + ".term"
        self.poll_interval = poll_interval
        self._fd: int | None = None
        self._held = False

    def _open(self) -> int:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise LeaseError(f"lease file {self.path}: cannot open it: {exc.strerror}") from exc
        return self._fd

    async def campaign(self, holder: str) -> Leadership:
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                await trio.sleep(self.poll_interval)
                continue
            except OSError as exc:
                raise LeaseError(f"lease file {self.path}: cannot lock it: {exc.strerror}") from exc
            if self._is_current(fd):
                break
            # The file was removed or replaced while we waited: the lock on
            # the old one means nothing (a hub locking the file now at PATH
            # would be active too).  Start over on the current file.
            fcntl.flock(fd, fcntl.LOCK_UN)
            self._close()
        self._held = True
        self.valid_until = math.inf
        try:
            previous = self._read_record().get("term", 0)
            assert isinstance(previous, int)  # _read_record checked it
            term = previous + 1
            self._write_record({"term": term, "holder": holder})
        except BaseException:
            self._unlock()
            raise
        return Leadership(term, holder)

    def _is_current(self, fd: int) -> bool:
        """Return whether ``fd`` is the file now at ``path`` (not an unlinked one)."""
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def _read_record(self) -> dict[str, int | str]:
        try:
            with open(self.term_path, encoding="utf-8") as f:
                record = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            # Refuse rather than restart the count at 1: a term that goes
            # back would let a deposed hub's orders pass as current.
            raise LeaseError(f"lease term file {self.term_path}: unreadable ({exc}); "
                             "restore it or remove it together with every running hub") from exc
        if not isinstance(record, dict) or not isinstance(record.get("term"), int):
            raise LeaseError(f"lease term file {self.term_path}: no integer 'term'")
        return record

    def _write_record(self, record: dict[str, int | str]) -> None:
        tmp = f"{self.term_path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(record, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.term_path)
            dir_fd = os.open(os.path.dirname(self.term_path), os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise LeaseError(f"lease term file {self.term_path}: cannot write it: "
                             f"{exc.strerror}") from exc

    async def hold(self) -> None:
        if not self._held or self._fd is None:
            raise LeaseLost(f"lease file {self.path}: not held")
        mine = os.fstat(self._fd).st_ino
        while True:
            await trio.sleep(_CHECK_INTERVAL)
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = -1
            if current != mine:
                # Someone removed or replaced the lock file: another hub can
                # now lock a new file at PATH, so this one must step down,
                # and campaign again on the file now at PATH (locking the
                # old, unlinked one would "win" a lease nobody else sees).
                self._unlock()
                self._close()
                raise LeaseLost(f"lease file {self.path}: removed or replaced")

    async def leader(self) -> str | None:
        try:
            holder = self._read_record().get("holder")
        except LeaseError:
            return None
        return holder if isinstance(holder, str) else None

    def _unlock(self) -> None:
        if self._held and self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._held = False
        self.valid_until = -math.inf

    async def resign(self) -> None:
        self._unlock()

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    async def aclose(self) -> None:
        self._unlock()
        self._close()
