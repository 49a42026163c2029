"""``RetryLog``: a failure that repeats is logged once, then again with backoff.

A client (or agent) whose hub is down retries every 50 ms to 2 s for ever
(``client.RECONNECT_BACKOFF``): one line per attempt would flood the log,
and none at all leaves an operator staring at a silent process.  So the
first failure is logged at once, the next report comes ``first_repeat``
seconds later, and the gap doubles up to ``maximum``; each report counts the
attempts since the failures began.  The first success after a report is
logged too, with how long the outage lasted.

Time is a parameter (``now``), as in the core: the test drives it by hand.
"""

from __future__ import annotations

import logging

__all__ = ["RetryLog"]


class RetryLog:
    """Reports repeated failures of one operation (``what``) to ``logger`` with backoff."""

    def __init__(self, logger: logging.Logger, what: str, *, first_repeat: float = 5.0,
                 maximum: float = 300.0) -> None:
        self.logger = logger
        self.what = what
        self.first_repeat = first_repeat
        self.maximum = maximum
        #: failed attempts since the last success
        self.failures = 0
        self._since = 0.0
        self._gap = first_repeat
        self._next_report = 0.0

    def failed(self, now: float, error: str) -> bool:
        """An attempt failed at ``now`` with ``error``; returns whether it was logged."""
        self.failures += 1
        if self.failures == 1:
            self._since = now
            self._gap = self.first_repeat
            self._next_report = now + self._gap
            self.logger.warning("cannot %s: %s; retrying (next report in %.0f s)",
                                self.what, error, self._gap)
            return True
        if now < self._next_report:
            return False
        self._gap = min(self._gap * 2, self.maximum)
        self._next_report = now + self._gap
        self.logger.warning("still cannot %s after %d attempts over %.0f s: %s; retrying "
                            "(next report in %.0f s)", self.what, self.failures,
                            now - self._since, error, self._gap)
        return True

    def succeeded(self, now: float) -> bool:
        """An attempt succeeded at ``now``; returns whether the recovery was logged."""
        failures, self.failures = self.failures, 0
        if failures == 0:
            return False
        self.logger.info("could %s again after %d failed attempts over %.1f s", self.what,
                         failures, now - self._since)
        return True
