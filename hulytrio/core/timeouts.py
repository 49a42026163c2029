"""Timeouts with the reference's defaults, all in seconds."""

from __future__ import annotations

import attrs

__all__ = ["Timeouts"]


def _positive(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"{attr.name} must be > 0 seconds, got {value!r}")


@attrs.frozen
class Timeouts:
    """The hub's and the peers' timing parameters.

    - ``alive``: a peer silent for longer is dead (a peer may ask for its own);
    - ``unused_container``: an unreferenced container is terminated after this;
    - ``ping_interval``: how often peers ping;
    - ``event_window``: registry changes are batched for at most this long;
    - ``start``: a container start the agent does not answer fails after this;
    - ``drain_retry``: a call the hub cannot take while it (or the container's
      agent) drains is answered ``Retry`` after this;
    - ``stop``: a container the hub terminated is not started again until
      its agent says it stopped (its last changes saved), or this long.
    """

    alive: float = attrs.field(default=3.0, validator=_positive)
    unused_container: float = attrs.field(default=5.0, validator=_positive)
    ping_interval: float = attrs.field(default=1.0, validator=_positive)
    event_window: float = attrs.field(default=0.01, validator=_positive)
    start: float = attrs.field(default=30.0, validator=_positive)
    drain_retry: float = attrs.field(default=0.05, validator=_positive)
    stop: float = attrs.field(default=10.0, validator=_positive)
