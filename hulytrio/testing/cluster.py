"""An in-memory cluster: one ``Hub`` and any number of ``ClientSession``s,
wired by perfect links that a test pumps by hand (h11's ``ConnectionPair``
idea, for a hub and many peers).

Time is explicit: every call takes ``now``; ``advance(now)`` fires due
timers and delivers messages until nothing is left to do.  Containers start
and stop instantly unless a test holds them (``auto_start=False``,
``auto_stop=False``), and requests are
answered by ``responder`` (default: echo the payload).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import assert_never

from ..core.agent import AgentState
from ..core.effects import (
    CancelRequest,
    CloseConnection,
    ConnectContainer,
    DeliverEvent,
    DeliverPush,
    DisconnectContainer,
    Effect,
    Notice,
    OpenConnection,
    ReferenceChanged,
    Refused,
    Reject,
    Resolve,
    RunRequest,
    Send,
    SessionEffect,
    SetServing,
    StartContainer,
    StopContainer,
)
from ..core.hub import Hub
from ..core.session import ClientSession
from ..core.timeouts import Timeouts

__all__ = ["Cluster"]


class Cluster:
    """A hub plus client sessions exchanging messages in memory.

    ``results[client_id][handle]`` holds each operation's outcome (a
    ``Resolve`` or ``Reject``); ``running[agent_id]`` the containers each
    agent's driver really runs; ``events[client_id]`` the delivered events;
    ``notices`` the hub's lifecycle notices, in order.
    """

    def __init__(self, timeouts: Timeouts | None = None, *, seed: int = 0,
                 hub_id: str = "hub1") -> None:
        self.timeouts = timeouts if timeouts is not None else Timeouts()
        self.hub = Hub(hub_id, self.timeouts)
        self.rng = random.Random(seed)
        self.sessions: dict[str, ClientSession] = {}
        self.connected: dict[str, bool] = {}
        self.results: dict[str, dict[int, Effect]] = {}
        self.events: dict[str, list[DeliverEvent]] = {}
        self.running: dict[str, dict[str, str]] = {}
        self.auto_start = True
        self.held_starts: list[tuple[str, StartContainer]] = []
        #: like ``auto_start``, for the agents' word that a terminated container stopped
        self.auto_stop = True
        self.held_stops: list[tuple[str, StopContainer]] = []
        self.responder: Callable[[RunRequest], bytes] = lambda r: r.payload
        self.now = 0.0
        self._hub_count = 1
        self.notices: list[Notice] = []

    def add_client(self, client_id: str, *, alive_timeout: float | None = None,
                   events: str = "all") -> ClientSession:
        """Create a session (receiving ``events``: "all" or "own") and connect it now."""
        s = ClientSession(client_id, rng=random.Random(self.rng.random()),
                          alive_timeout=alive_timeout, events=events)
        self.sessions[client_id] = s
        self.results[client_id] = {}
        self.events[client_id] = []
        self.connected[client_id] = False
        s.connect(self.now)
        self.pump()
        return s

    def add_agent(self, client_id: str, agent: AgentState) -> int:
        """Host ``agent`` in ``client_id``'s session; returns the register handle."""
        self.running.setdefault(agent.agent_id, {})
        h = self.sessions[client_id].register_agent(agent)
        self.pump()
        return h

    def result(self, client_id: str, handle: int) -> Effect | None:
        """Return the outcome of ``handle`` (``Resolve``/``Reject``) or None if pending."""
        return self.results[client_id].get(handle)

    def value(self, client_id: str, handle: int) -> object:
        """Return the resolved value of ``handle``; raises AssertionError otherwise."""
        r = self.results[client_id].get(handle)
        assert isinstance(r, Resolve), f"handle {handle} of {client_id}: {r!r}"
        return r.value

    def disconnect(self, client_id: str) -> None:
        """Cut ``client_id``'s connection cleanly (both sides see it at once)."""
        if self.connected.get(client_id):
            self.connected[client_id] = False
            self.hub.connection_lost(client_id, self.now)
            self.sessions[client_id].connection_lost(self.now)
            self.pump()

    def crash(self, client_id: str) -> None:
        """The client process dies silently: the hub only learns by timeout."""
        self.connected[client_id] = False
        del self.sessions[client_id]

    def restart_hub(self, *, term: int = 1) -> None:
        """Replace the hub with a fresh one of ``term``; every connection drops."""
        self._hub_count += 1
        self.hub = Hub(f"hub{self._hub_count}", self.timeouts, term=term)
        for client_id, s in self.sessions.items():
            if self.connected[client_id]:
                self.connected[client_id] = False
                s.connection_lost(self.now)
        self.pump()

    def advance(self, now: float) -> None:
        """Move time to ``now``, firing every deadline on the way in order."""
        while True:
            deadlines = [d for d in [self.hub.next_deadline()] if d is not None]
            deadlines += [d for s in self.sessions.values()
                          if (d := s.next_deadline()) is not None]
            nxt = min(deadlines, default=None)
            if nxt is None or nxt > now:
                break
            self.now = max(self.now, nxt)
            self.hub.handle_timers(self.now)
            for s in list(self.sessions.values()):
                s.handle_timers(self.now)
            self.pump()
        self.now = now
        self.pump()

    def wait_for_recovery(self) -> None:
        """Advance past the hub's recovery window, if it is open.

        Until it closes, a stateless uuid offered only by agents that did not
        serve it has no owner (docs/high-availability.md, "A new hub and
        stateless owners"): at boot, its first offer owns it then.
        """
        until = self.hub.registry.recovery_until()
        if until is not None and until > self.now:
            self.advance(until)

    def pump(self) -> None:
        """Deliver every message and effect until the cluster is quiet."""
        busy = True
        while busy:
            busy = False
            for client_id, s in list(self.sessions.items()):
                for effect in s.effects():
                    busy = True
                    self._client_effect(client_id, s, effect)
            for out in self.hub.effects():
                busy = True
                match out:
                    case Send(conn=conn, message=message):
                        target = self.sessions.get(str(conn))
                        if target is not None and self.connected.get(str(conn)):
                            target.receive(message, self.now)
                    case CloseConnection(conn=conn):
                        client_id = str(conn)
                        if self.connected.get(client_id):
                            self.connected[client_id] = False
                            self.hub.connection_lost(client_id, self.now)
                            if client_id in self.sessions:
                                self.sessions[client_id].connection_lost(self.now)
                    case Notice():
                        self.notices.append(out)
                    case Refused():
                        pass  # the in-memory cluster runs without authentication
                    case _:
                        assert_never(out)

    def _client_effect(self, client_id: str, s: ClientSession, effect: SessionEffect) -> None:
        # Every effect a session can emit is named here: mypy strict fails
        # this driver (assert_never) if a new one is added and not handled.
        match effect:
            case Send(message=message):
                if self.connected.get(client_id):
                    self.hub.receive(client_id, message, self.now)
            case OpenConnection():
                # ``url`` (a standby's redirect) is ignored: one hub here.
                self.connected[client_id] = True
                self.hub.connection_made(client_id, self.now)
                s.connection_made(self.now)
            case CloseConnection():
                if self.connected.get(client_id):
                    self.connected[client_id] = False
                    self.hub.connection_lost(client_id, self.now)
            case Resolve() | Reject():
                self.results[client_id][effect.handle] = effect
            case DeliverEvent():
                self.events[client_id].append(effect)
            case StartContainer(agent_id=agent_id, uuid=uuid, kind=kind):
                if self.auto_start:
                    self.running[agent_id][uuid] = kind
                    s.agent_started(agent_id, uuid)
                else:
                    self.held_starts.append((client_id, effect))
            case StopContainer(agent_id=agent_id, uuid=uuid):
                self.running.get(agent_id, {}).pop(uuid, None)
                if self.auto_stop:
                    s.agent_terminated(agent_id, uuid)  # nothing to save in memory
                else:
                    self.held_stops.append((client_id, effect))
            case RunRequest(call_id=call_id):
                s.agent_reply(call_id, self.responder(effect), now=self.now)
            case CancelRequest():
                pass  # requests are answered at once here: none is left to stop
            case ReferenceChanged() | DeliverPush() | SetServing() | ConnectContainer() \
                    | DisconnectContainer():
                pass  # nothing to do in memory: tests read them from the session
            case _:
                assert_never(effect)
