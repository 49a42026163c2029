"""``hulytrio serve --supervise``: a parent process that restarts a dead hub in milliseconds.

A hub that crashes (a bug, the OOM killer, a stray ``kill -9``) loses its
registry either way; what its clients wait for is a hub to talk to again.
Started cold, a new hub process spends most of its start-up importing
Python modules (about 0.3 s on the 2-core benchmark machine,
docs/performance.md).  With ``--supervise`` the ``serve`` process binds the
port, imports everything, then forks the hub as a worker and waits: when the
worker dies for any reason other than the supervisor stopping it, a fresh
worker is forked from the already-imported parent, on the same listening
socket, so connections that arrive meanwhile wait in the kernel's backlog.

Rules, in one place:

- SIGTERM / SIGINT to the supervisor stop the worker (SIGTERM, it shuts down
  cleanly) and then the supervisor, which exits with 0;
- the worker exiting or being killed otherwise is logged and restarted at
  once; from the second worker in a row that dies within ``QUICK_DEATH``
  seconds of its start, it is a crash loop, slowed down (0.1 s doubling to
  5 s) instead of burning a CPU;
- the supervisor dying (even by SIGKILL) ends the worker: the worker watches
  a pipe whose only write end the supervisor holds (``parent_gone``).

The parent never runs trio: forking a process with a running event loop (or
threads) is not safe, so ``run_worker`` starts its own ``trio.run``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable

__all__ = ["supervise"]

log = logging.getLogger("hulytrio.supervisor")

#: A worker that dies sooner than this after its start counts towards a crash loop.
QUICK_DEATH = 1.0
#: Longest pause between restarts in a crash loop.
MAX_PAUSE = 5.0


def supervise(run_worker: Callable[[int], int]) -> int:
    """Run ``run_worker(parent_gone_fd)`` in forked workers until told to stop.

    ``run_worker`` runs in the child and returns its exit code; the file
    descriptor it gets becomes readable (EOF) when the supervisor is gone.
    Returns the supervisor's exit code (0 after SIGTERM or SIGINT).
    """
    stopping = False
    worker = 0

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        log.info("got %s: stopping the hub worker", signal.Signals(signum).name)
        if worker:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGTERM)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    read_end, write_end = os.pipe()
    quick_deaths = 0
    try:
        while not stopping:
            started = time.monotonic()
            worker = os.fork()
            if worker == 0:  # the worker
                code = 1
                try:
                    for s, handler in previous.items():
                        signal.signal(s, handler)
                    os.close(write_end)
                    code = run_worker(read_end)
                except BaseException:
                    log.exception("the hub worker failed")
                finally:
                    os._exit(code)
            log.info("hub worker %d started", worker)
            _, status = os.waitpid(worker, 0)
            worker = 0
            if stopping:
                break
            lived = time.monotonic() - started
            log.warning("hub worker %s after %.3f s; starting a new one",
                        _describe(status), lived)
            quick_deaths = quick_deaths + 1 if lived < QUICK_DEATH else 0
            pause = 0.0 if quick_deaths < 2 else min(0.1 * 2 ** (quick_deaths - 2), MAX_PAUSE)
            if pause:
                log.warning("the hub keeps dying; waiting %.1f s before the next start", pause)
                time.sleep(pause)
    finally:
        os.close(read_end)
        os.close(write_end)
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"
