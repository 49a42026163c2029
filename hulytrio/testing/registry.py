"""A registry filled with many held containers, for cost tests and benchmarks."""

from __future__ import annotations

from ..core.effects import Send
from ..core.messages import RegisterAgent, Start
from ..core.registry import Registry
from ..core.timeouts import Timeouts
from ..core.types import GetOptions

__all__ = ["FOREVER", "answer_starts", "populated_registry"]

#: an alive timeout nobody outlives while a test moves time
FOREVER = 1e12


def answer_starts(reg: Registry, now: float) -> str | None:
    """Answer every ``Start`` among the registry's effects as the agent would.

    Returns the last uuid started (None: there was no start).  Takes the
    registry's effects.
    """
    uuid = None
    for effect in reg.take_effects():
        if isinstance(effect, Send) and isinstance(effect.message, Start):
            assert isinstance(effect.conn, str)
            reg.started(effect.conn, effect.message.id, effect.message.uuid, None, now)
            uuid = effect.message.uuid
    reg.take_effects()  # the answers to the gets the starts were for
    return uuid


def populated_registry(n: int, *, agents: int = 10, clients: int = 50,
                       flush_every: int = 1024) -> Registry:
    """Return a ``Registry`` holding ``n`` live containers.

    Agents ``ag0..`` (sessions ``h0..``) host kind "echo"; clients ``c0..``
    hold the containers round-robin, plus an idle client "probe".  Even
    containers were asked by uuid ``u{i}`` (sharing one index bucket), odd
    ones by a label set of their own ``t{i}`` (n/2 selectors).  Events are
    flushed and every stale start timer has surfaced.
    """
    reg = Registry("hub", Timeouts())
    for a in range(agents):
        reg.add_client(f"h{a}", FOREVER, 0.0)
        reg.register(f"h{a}", RegisterAgent(1, f"ag{a}", ("echo",)), 0.0)
    for c in range(clients):
        reg.add_client(f"c{c}", FOREVER, 0.0)
    reg.add_client("probe", FOREVER, 0.0)
    for i in range(n):
        opts = GetOptions(uuid=f"u{i}") if i % 2 == 0 else GetOptions(labels=(f"t{i}",))
        reg.get(f"c{i % clients}", i, "echo", opts, 0.0)
        answer_starts(reg, 0.0)
        if i % flush_every == 0:
            reg.events.flush()
    reg.events.flush()
    # Every start timer was cancelled lazily; let them surface and go.
    reg.handle_timers(31.0)
    reg.take_effects()
    return reg
