"""Start, talk to, sample and always kill the processes of one scenario.

``Processes`` is a context manager owning every process a scenario starts:
on exit (normal or not) each is sent SIGTERM, given a moment, then SIGKILL,
process group and all.  A ``Proc`` started with ``pipe=True`` speaks JSON
lines: the harness writes commands to its stdin and reads replies from its
stdout with a deadline, so a wedged process fails the scenario instead of
hanging the harness.  Every process's stderr goes to a temporary file whose
tail is quoted when something goes wrong.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from .stats import ProcSample, sample_process

__all__ = ["BenchError", "Proc", "Processes", "child_environment", "free_port",
           "wait_for_port"]

#: The checkout holding ``benchmarks/``: the harness's processes import its
#: modules by name (``-m benchmarks.harness.worker``, ``--factories
#: hulytrio.testing.echo:FACTORIES``), from any working directory.
CHECKOUT = Path(__file__).resolve().parents[2]


class BenchError(Exception):
    """A scenario could not run (a process died, did not answer, or answered wrongly)."""


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the environment of a process the harness starts: ours plus ``extra``.

    The checkout goes *last* on ``PYTHONPATH``: it supplies ``benchmarks``, and
    whatever ``hulytrio`` comes first (a compiled build, or the working
    directory under ``-m``, which is how ``benchmarks/ab.py`` runs an older
    revision) stays first.
    """
    env = {**os.environ, **(extra or {})}
    path = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([*path, str(CHECKOUT)])
    return env


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Proc:
    """One running process of a scenario (see module docstring)."""

    def __init__(self, name: str, argv: Sequence[str], *, pipe: bool) -> None:
        self.name = name
        self.argv = list(argv)
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in kill()
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE if pipe else subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipe else subprocess.DEVNULL,
            stderr=self._stderr,
            env=child_environment(),
            start_new_session=True,  # its own group: killing it takes its children too
        )
        self._buffer = b""
        self.last_sample: ProcSample | None = None

    @property
    def pid(self) -> int:
        """Return the process id."""
        return self.popen.pid

    def alive(self) -> bool:
        """Return True while the process has not exited."""
        return self.popen.poll() is None

    def stderr_tail(self, limit: int = 2000) -> str:
        """Return the last ``limit`` characters the process wrote to stderr."""
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - limit))
            return self._stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    def send(self, command: dict[str, Any]) -> None:
        """Write one JSON command line to the process's stdin.

        Raises:
            BenchError: if the process has exited or closed its stdin.
        """
        stdin = self.popen.stdin
        if stdin is None:
            raise BenchError(f"{self.name} was not started with a pipe")
        try:
            stdin.write(json.dumps(command).encode() + b"\n")
            stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise self._failure(f"cannot send {command.get('cmd')!r}: {exc}") from None

    def read(self, timeout: float) -> dict[str, Any]:
        """Return the next JSON object the process prints on stdout.

        Raises:
            BenchError: if no line arrives within ``timeout`` seconds, the
                process exits first, or it reports ``{"error": ...}``.
        """
        stdout = self.popen.stdout
        if stdout is None:
            raise BenchError(f"{self.name} was not started with a pipe")
        fd = stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._failure(f"no answer within {timeout:g} s")
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise self._failure("exited")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        try:
            reply: dict[str, Any] = json.loads(line)
        except ValueError:
            raise self._failure(f"printed a line that is not JSON: {line[:200]!r}") from None
        if "error" in reply:
            raise self._failure(f"reported: {reply['error']}")
        return reply

    def sample(self) -> ProcSample | None:
        """Return the process's CPU and memory now (kept as ``last_sample``)."""
        s = sample_process(self.pid)
        if s is not None:
            self.last_sample = s
        return s

    def kill(self) -> None:
        """Stop the process: SIGTERM, then SIGKILL after 2 s; idempotent."""
        if self.alive():
            self.sample()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(2.0)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait()
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def close(self) -> None:
        """Kill the process and drop its stderr file."""
        self.kill()
        self._stderr.close()

    def _failure(self, what: str) -> BenchError:
        code = self.popen.poll()
        status = "" if code is None else f" (exit code {code})"
        tail = self.stderr_tail()
        return BenchError(f"{self.name}{status}: {what}" + (f"\n--- stderr ---\n{tail}"
                                                            if tail else ""))


class Processes:
    """Owns every process of one scenario; kills them all on exit."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []

    def start(self, name: str, argv: Sequence[str], *, pipe: bool = False) -> Proc:
        """Start ``argv`` as process ``name``; returns its ``Proc``."""
        proc = Proc(name, argv, pipe=pipe)
        self.procs.append(proc)
        return proc

    def python(self, name: str, *args: str, pipe: bool = False) -> Proc:
        """Start ``python -m ...`` with this interpreter; returns its ``Proc``."""
        return self.start(name, [sys.executable, *args], pipe=pipe)

    def sample_all(self) -> dict[str, ProcSample | None]:
        """Return a sample of every process still running, by name."""
        return {p.name: p.sample() for p in self.procs}

    def close(self) -> None:
        """Kill every process (idempotent)."""
        for proc in reversed(self.procs):
            proc.close()

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def wait_for_port(proc: Proc, port: int, timeout: float = 15.0) -> None:
    """Return once something accepts TCP connections on 127.0.0.1:``port``.

    Raises:
        BenchError: if ``proc`` exits first or ``timeout`` seconds pass.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise proc._failure("exited before listening")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                time.sleep(0.02)
                continue
            return
    raise proc._failure(f"not listening on port {port} after {timeout:g} s")
