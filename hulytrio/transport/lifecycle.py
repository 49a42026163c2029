"""The hub's lifecycle notices: one info line each, and the tallies /metrics reads.

Theory of operation
-------------------
The core decides the facts (an agent registered or declared dead, a
container started, orphaned or terminated, a standby promoted, a client
gone or back) and says so with a ``Notice`` effect; it never logs.  The hub
driver hands every notice to ``Lifecycle.notice``, which writes one line at
info on ``hulytrio.hub`` (the ids as structured fields: python-json-logger
puts ``extra`` in the JSON object) and counts it.  Notices come per
lifecycle change, never per request, so none of this is on the request path.
``HubCollector`` (``metrics.py``) reads the counts at scrape time.
"""

from __future__ import annotations

import logging

from hulytrio.core.effects import Fact, Notice
from hulytrio.core.tally import Durations

__all__ = ["Lifecycle"]

log = logging.getLogger("hulytrio.hub")


class Lifecycle:
    """Logs each ``Notice`` and counts them (see module docstring).

    ``facts[(fact, reason)]`` counts notices; ``starts`` holds the
    start-to-started durations, ``failovers`` the owner-lost-to-promoted ones.
    """

    def __init__(self) -> None:
        self.facts: dict[tuple[Fact, str], int] = {}
        self.starts = Durations()
        self.failovers = Durations()

    def count(self, fact: Fact, reason: str | None = None) -> int:
        """Return how many ``fact`` notices came (with ``reason``, if given)."""
        return sum(n for (f, r), n in self.facts.items()
                   if f is fact and (reason is None or r == reason))

    def notice(self, n: Notice) -> None:
        """Log ``n`` at info and count it."""
        key = (n.fact, _reason_label(n))
        self.facts[key] = self.facts.get(key, 0) + 1
        if n.duration is not None:
            if n.fact is Fact.CONTAINER_STARTED:
                self.starts.observe(n.duration)
            elif n.fact is Fact.STANDBY_PROMOTED:
                self.failovers.observe(n.duration)
        if not log.isEnabledFor(logging.INFO):
            return
        ids = (("agent_id", n.agent_id), ("uuid", n.uuid), ("kind", n.kind),
               ("client_id", n.client_id))
        fields: dict[str, object] = {"event": n.fact.name.lower()}
        parts: list[str] = []
        for name, value in ids:
            if value is not None:
                fields[name] = value
                parts.append(f"{name}={value}")
        if n.reason:
            fields["reason"] = n.reason
            parts.append(f"reason={n.reason!r}")
        if n.duration is not None:
            fields["duration"] = round(n.duration, 6)
            parts.append(f"duration={n.duration:.3f}s")
        log.info("%s: %s", n.fact.value, " ".join(parts), extra=fields)


def _reason_label(n: Notice) -> str:
    """Return the reason as a bounded label: free text (ids, errors) is cut to its kind."""
    match n.fact:
        case Fact.AGENT_SUPERSEDED | Fact.START_FAILED | Fact.STANDBY_PROMOTED:
            return ""
        case _:
            return n.reason
