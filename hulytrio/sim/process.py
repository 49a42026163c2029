"""A simulated OS process: its session, its agent, its link and its ground truth.

The ground truth is what the process's driver really does, whatever the hub
believes: which containers run here (``running``, after the agent's start
delay), which stateless instances really serve (``serving``), and which
clients are connected to which container (``connected``).  The invariants
compare it with the hub's registry.
"""

from __future__ import annotations

import random

from ..core.agent import AgentState
from ..core.session import ClientSession
from .clock import Event
from .links import Connection, LinkProfile
from .scenario import AgentSpec, ClientSpec, Span
from .workload import Workload

__all__ = ["Process"]


class Process:
    """One simulated process (see module docstring)."""

    __slots__ = (
        "agent", "agent_spec", "alive", "armed", "client_spec", "conn", "connected", "deferred",
        "episode", "incarnation", "left", "link", "load", "mark", "mark_timers",
        "partition", "paused", "peer", "pid", "rng_agent", "running", "serving", "session",
        "started",
        "starting", "starts",
    )

    def __init__(self, pid: str, agent_spec: AgentSpec | None, client_spec: ClientSpec | None,
                 link: LinkProfile) -> None:
        self.pid = pid
        #: the peer id of the current (or last) session: ``pid``, or a new one
        #: per start with ``fresh_peer_id``
        self.peer = pid
        self.agent_spec = agent_spec
        self.client_spec = client_spec
        self.session: ClientSession | None = None
        self.agent: AgentState | None = None
        self.load: Workload | None = None
        self.alive = False
        self.started = False
        self.left = False
        self.paused = False
        self.partition: str | None = None
        #: how this process's connections behave (latency, its random draws)
        self.link = link
        self.incarnation = 0
        #: how many times the process has started
        self.starts = 0
        #: bumped whenever the process falls silent (crash, pause, partition)
        self.episode = 0
        self.conn: Connection | None = None
        #: the deadline of the session's live wake-up on the clock
        self.armed: float | None = None
        #: the session timers' ``armings`` when ``armed`` was last decided
        self.mark = -1
        self.mark_timers: object | None = None
        #: events that came due while paused, fired on resume
        self.deferred: list[Event] = []
        #: ground truth: uuid -> kind of every container really running here
        self.running: dict[str, str] = {}
        #: ground truth: stateless uuid -> whether this instance really serves
        self.serving: dict[str, bool] = {}
        #: starts the driver is performing (uuid -> kind)
        self.starting: dict[str, str] = {}
        #: the container code's draws (start delays, failures, request latency)
        self.rng_agent = random.Random(0)
        #: ground truth: (uuid, client id) of every client connected to a container here
        self.connected: dict[tuple[str, str], None] = {}

    @property
    def is_agent(self) -> bool:
        """Return whether this process hosts an agent."""
        return self.agent_spec is not None

    @property
    def latency(self) -> Span:
        """Return the latency range of this process's links now."""
        return self.link.span()

    def active(self) -> set[str]:
        """Return the uuids this process really runs and serves."""
        return {u for u in self.running if self.serving.get(u, True)}

    def forget(self) -> None:
        """Drop the ground truth of the driver's work (the process died or restarts)."""
        self.running = {}
        self.serving = {}
        self.starting = {}
        self.connected = {}
        self.deferred = []
