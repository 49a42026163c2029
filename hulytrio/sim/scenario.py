"""Scenario files: TOML parsed into frozen attrs classes with cattrs.

A scenario names everything a run needs: the hub's timeouts, the agents
(kinds, stateless offers, capacity, start delay, request latency and
failure rates), the clients and their workloads, link properties, a fault
schedule, explicit operations, the run's duration and liveness bound, the
seed, and the expectations the run must meet.

Durations are written ``"50ms"``, ``"3s"``, ``"2m"``, ``"1h"`` or a number of
seconds; a *span* may also be a range ``"1ms..5ms"`` drawn uniformly per use.

A bad file raises ``ScenarioError`` whose message names the key and its line
(``load_scenario`` never lets a traceback through for bad input).
"""

from __future__ import annotations

import math
import random
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import attrs
import cattrs

__all__ = [
    "FAULT_ACTIONS",
    "HUB_ACTIONS",
    "AgentSpec",
    "CheckSpec",
    "ClientSpec",
    "Expectations",
    "FaultSpec",
    "HubSpec",
    "HubsSpec",
    "LinkSpec",
    "OperationSpec",
    "RandomFaults",
    "Scenario",
    "ScenarioError",
    "Seconds",
    "Span",
    "StateSpec",
    "StatelessSpec",
    "dump_scenario",
    "load_scenario",
    "parse_scenario",
    "process_names",
]


class ScenarioError(ValueError):
    """A scenario file is malformed; the message names the key and the line."""


class Seconds(float):
    """A duration in seconds, written in a scenario as ``"50ms"``, ``"3s"`` or a number."""

    __slots__ = ()


# Default durations (module constants: immutable, shared by every instance).
_S_0_0 = Seconds(0.0)
_S_0_01 = Seconds(0.01)
_S_0_05 = Seconds(0.05)
_S_1_0 = Seconds(1.0)
_S_2_0 = Seconds(2.0)
_S_3_0 = Seconds(3.0)
_S_30_0 = Seconds(30.0)
_S_5_0 = Seconds(5.0)

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ms|s|m|h)?\s*$")


def parse_seconds(value: Any) -> Seconds:
    """Return ``value`` ("50ms", "3s", 2.5 ...) in seconds.

    Raises:
        ValueError: if it is not a non-negative duration.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION.match(value)
        if m is None:
            raise ValueError(f"expected a duration like '50ms', '3s', '2m', got {value!r}")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    else:
        raise ValueError(f"expected a duration, got {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration must be finite and >= 0, got {value!r}")
    return Seconds(seconds)


def format_seconds(value: float) -> str:
    """Return ``value`` as a duration string that ``parse_seconds`` reads back exactly."""
    ms = value * 1000.0
    if ms == round(ms) and value < 10:
        return f"{round(ms)}ms"
    return f"{value!r}s"


@attrs.frozen
class Span:
    """A fixed duration (``low == high``) or a uniform range ``[low, high]``."""

    low: float
    high: float

    def draw(self, rng: random.Random) -> float:
        """Return the fixed value, or a uniform draw from ``rng`` for a range."""
        if self.low == self.high:
            return self.low
        return rng.uniform(self.low, self.high)

    def __str__(self) -> str:
        if self.low == self.high:
            return format_seconds(self.low)
        return f"{format_seconds(self.low)}..{format_seconds(self.high)}"


def parse_span(value: Any) -> Span:
    """Return a ``Span`` from ``"5ms"``, ``"1ms..5ms"`` or a number.

    Raises:
        ValueError: if it is not a duration or a range with low <= high.
    """
    if isinstance(value, str) and ".." in value:
        lo_text, hi_text = value.split("..", 1)
        lo, hi = parse_seconds(lo_text), parse_seconds(hi_text)
        if lo > hi:
            raise ValueError(f"range {value!r}: low end above high end")
        return Span(float(lo), float(hi))
    s = parse_seconds(value)
    return Span(float(s), float(s))


_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")


def _name(_inst: object, attr: attrs.Attribute[str], value: str) -> None:
    if not _NAME.match(value):
        raise ValueError(f"{attr.name} {value!r}: use letters, digits and _ . : - only")


def _pattern(_inst: object, attr: attrs.Attribute[str], value: str) -> None:
    if value and not re.match(r"^[A-Za-z0-9_.:*?,\[\]-]+$", value):
        raise ValueError(f"{attr.name} {value!r}: not a process name or pattern")


def _rate(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attr.name} must be within 0..1, got {value!r}")


def _events(_inst: object, attr: attrs.Attribute[str], value: str) -> None:
    if value not in ("all", "own"):
        raise ValueError(f"{attr.name} must be 'all' or 'own', got {value!r}")


def _positive_count(_inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attr.name} must be >= 1, got {value!r}")


@attrs.frozen
class HubSpec:
    """The hub's timeouts (the reference's defaults) and test-only seeded bugs."""

    alive: Seconds = _S_3_0
    unused_container: Seconds = _S_5_0
    ping_interval: Seconds = _S_1_0
    event_window: Seconds = _S_0_01
    start: Seconds = _S_30_0
    #: deliberate faults switched on in the core (the simulator's self-test)
    seeded_bugs: tuple[str, ...] = ()


@attrs.frozen
class StatelessSpec:
    """A pre-existing HA instance an agent offers under a shared uuid."""

    uuid: str = attrs.field(validator=_name)
    kind: str = attrs.field(validator=_name)
    labels: tuple[str, ...] = ()


@attrs.frozen
class AgentSpec:
    """``count`` agent processes named ``name-1`` .. ``name-N`` (or ``name`` if 1)."""

    name: str = attrs.field(validator=_name)
    kinds: tuple[str, ...] = ()
    count: int = attrs.field(default=1, validator=_positive_count)
    stateless: tuple[StatelessSpec, ...] = ()
    max_containers: int | None = None
    start_delay: Span = Span(0.02, 0.02)
    request_latency: Span = Span(0.001, 0.001)
    request_failure_rate: float = attrs.field(default=0.0, validator=_rate)
    start_failure_rate: float = attrs.field(default=0.0, validator=_rate)
    #: when the processes start (later: agents joining under load)
    join_at: Seconds = _S_0_0
    #: the session's seeded bugs (test-only), e.g. "skip-resend"
    seeded_bugs: tuple[str, ...] = ()
    #: registry events the session takes: "all" (full view) or "own"
    events: str = attrs.field(default="all", validator=_events)
    #: every restart gets a new peer id (``name#2``, ...), as a real process
    #: whose client id is drawn at start; false: restarts reuse ``name``
    fresh_peer_id: bool = False


@attrs.frozen
class ClientSpec:
    """``count`` client processes and the workload each runs.

    Each client holds ``references`` references to ``kind`` (a fixed ``uuid``
    and/or ``labels`` if given) and sends a request every ``request_interval``
    (absent: no requests of its own; explicit operations only).  With
    ``hold`` it releases each reference after that
    long and gets a new one; without, references are held for the whole run.
    """

    name: str = attrs.field(validator=_name)
    kind: str = attrs.field(validator=_name)
    count: int = attrs.field(default=1, validator=_positive_count)
    uuid: str | None = None
    labels: tuple[str, ...] = ()
    references: int = 1
    request_interval: Span | None = None
    hold: Seconds | None = None
    #: each reference asks for its own container (a label unique to client and slot)
    private: bool = False
    join_at: Seconds = _S_0_0
    #: session seeded bugs (test-only), e.g. "skip-resend"
    seeded_bugs: tuple[str, ...] = ()
    #: registry events the session takes: "all" (full view) or "own"
    events: str = attrs.field(default="all", validator=_events)
    #: every restart gets a new peer id (see ``AgentSpec.fresh_peer_id``)
    fresh_peer_id: bool = False


@attrs.frozen
class LinkSpec:
    """Latency of every link (one way); a range keeps per-connection FIFO order."""

    latency: Span = Span(0.001, 0.001)
    #: a connection attempt during a partition fails after this long
    connect_timeout: Seconds = _S_3_0
    #: every message is encoded into a wire frame and decoded again on its way
    #: (hulytrio/wire/codec.py), as the WebSocket transport does
    codec: bool = False


FAULT_ACTIONS = (
    "crash", "restart", "pause", "resume", "partition", "heal", "drop-connection",
    "slow-link", "leave", "join", "hub-crash", "hub-restart", "container-exit", "drain",
    "terminate",
    # the state store ([state]): no target
    "store-pause", "store-resume", "store-cut", "store-heal", "store-slow",
    # several hubs on a lease ([hubs])
    "hub-pause", "hub-resume", "hub-partition", "hub-heal", "lease-pause", "lease-resume",
)
FaultAction = Literal[
    "crash", "restart", "pause", "resume", "partition", "heal", "drop-connection",
    "slow-link", "leave", "join", "hub-crash", "hub-restart", "container-exit", "drain",
    "terminate",
    "store-pause", "store-resume", "store-cut", "store-heal", "store-slow",
    "hub-pause", "hub-resume", "hub-partition", "hub-heal", "lease-pause", "lease-resume",
]
#: the fault actions aimed at the state store (they need a ``[state]`` table)
STORE_ACTIONS = ("store-pause", "store-resume", "store-cut", "store-heal", "store-slow")
#: actions that need a ``[hubs]`` table (several hubs on a lease: sim/hubs.py)
HUB_ACTIONS = ("hub-pause", "hub-resume", "hub-partition", "hub-heal", "lease-pause",
               "lease-resume")


@attrs.frozen
class HubsSpec:
    """Several hub processes on a leader lease (``[hubs]``; absent: one hub, always active).

    ``count`` hub processes ``hub-1`` .. ``hub-N`` (URLs ``sim://hub-N``,
    every peer is given all of them in that order) campaign for one lease.
    ``lease``: ``"ttl"`` (etcd: a holder keeps it by keep-alives every
    ``ttl / 3`` and steps down after ``ttl x (1 - margin)`` without an
    answered one; the store frees it ``ttl`` after the last one it
    answered) or ``"file"`` (a file lock: held until the holder process
    dies, released at once then; a paused holder keeps it).  ``poll``: how
    often a standby campaigns (and re-reads the holder for its redirect);
    ``store_latency``: one way between a hub and the lease store.
    """

    # (Checked by _check_hubs, which names the key: a validator's error inside
    # an optional table reaches the user as "invalid value".)
    count: int = 2
    lease: Literal["ttl", "file"] = "ttl"
    ttl: Seconds = _S_2_0
    margin: float = 0.2
    poll: Seconds = _S_0_05
    store_latency: Span = Span(0.001, 0.001)
    #: deliberate faults in the hub processes' lease driver (the simulator's
    #: self-test): ``no-lease-gate``, a hub woken past its lease reads its
    #: backlog before it steps down (``HUB_SEEDED_BUGS``)
    seeded_bugs: tuple[str, ...] = ()


@attrs.frozen
class FaultSpec:
    """One scheduled fault.

    ``target``: a process name, a glob (``"agent-*"``), a comma list, or
    ``"owner:UUID"`` (whichever process the hub lists as the owner of a
    stateless uuid at that moment).  ``duration`` (pause, partition,
    slow-link) undoes the fault after that long; for ``drain`` (an agent's
    graceful shutdown: it asks the hub to move its containers, then leaves)
    it is how long the agent lets its requests finish before it leaves
    (default 1 s, as the transport's shutdown timeout bounds it).  ``mode`` (partition):
    ``hold`` (TCP buffers; delivered after the heal) or ``hang`` (the
    connection is dead but no side sees a close).  ``uuid``
    (container-exit): the container that ends on its own; absent, every
    container the target runs.  ``terminate``: an admin ends a container
    whoever runs it (``hulytrio terminate``), from the target's session:
    ``uuid``, or absent, every container the target runs.
    """

    at: Seconds
    action: FaultAction
    target: str = attrs.field(default="", validator=_pattern)
    duration: Seconds | None = None
    mode: Literal["hold", "hang"] = "hold"
    latency: Span | None = None
    uuid: str | None = None
    #: hub-partition: what the hub is cut from: "lease" (the lease store), a
    #: process name or pattern (those peers), absent: everything
    peers: str | None = attrs.field(default=None, validator=attrs.validators.optional(_pattern))


@attrs.frozen
class RandomFaults:
    """Faults drawn from the seed's ``faults`` stream: ``rate`` per second on ``targets``."""

    rate: float
    actions: tuple[FaultAction, ...] = (
        "crash", "restart", "partition", "pause", "drop-connection")
    targets: str = attrs.field(default="*", validator=_pattern)
    duration: Span = Span(1.0, 5.0)
    mode: Literal["hold", "hang"] = "hold"


@attrs.frozen
class OperationSpec:
    """An explicit client operation (written out by the chaos tests).

    ``ref`` is the client's reference slot: ``get`` fills it, ``request`` and
    ``release`` use it.
    """

    at: Seconds
    client: str = attrs.field(validator=_name)
    op: Literal["get", "request", "release"]
    ref: int = 0


@attrs.frozen
class Expectations:
    """What the run must show besides the invariants.

    ``failover_within``: every failover of a stateless uuid whose owner was
    hit by a fault completes within this (None: not checked).
    ``no_lost_requests``: every request issued by a process that lived to
    the end ended (with a result or an error).  ``requests_succeed``: none
    of them ended in an error other than a configured container failure.
    ``requests_within``: every request that succeeded took at most this,
    re-routes and resends included (None: not checked).
    ``required_probes``: core probes the run must reach.
    """

    failover_within: Seconds | None = None
    no_lost_requests: bool = True
    requests_succeed: bool = False
    requests_within: Seconds | None = None
    required_probes: tuple[str, ...] = ()
    #: invariant names the run must break (seeded-bug scenarios)
    broken_invariants: tuple[str, ...] = ()


@attrs.frozen
class CheckSpec:
    """How often the state invariants are checked and with what slack."""

    #: state invariants run every this much virtual time
    interval: Seconds = _S_0_05
    #: ``Registry.check()`` (O(size)) runs at every Nth check (0: only at the end)
    registry_every: int = 1
    #: client views compared with the hub at the end (a sample for big runs)
    view_sample: int = 50


@attrs.frozen
class StateSpec:
    """Container state and the state store (docs/simulator.md, "Container state").

    Containers of ``kinds`` (ordinary ones and stateless offers alike) have
    state: a counter every request changes.  Their agents checkpoint it to
    one simulated store every ``interval``, restore it before serving, and
    write it one last time on a clean stop.  A store operation takes
    ``store_latency``; while the store is cut off one fails after
    ``store_timeout``.  ``seeded_bugs`` (test-only): the policy's
    ``serve-before-import``, ``skip-final-checkpoint`` and
    ``skip-interval-checkpoints``, the store's ``store-accepts-stale`` and
    ``store-claims-only-saved``, the agents' ``drain-hands-over-first``.
    """

    kinds: tuple[str, ...] = ()
    interval: Seconds = _S_1_0
    store_latency: Span = Span(0.002, 0.002)
    store_timeout: Seconds = _S_1_0
    seeded_bugs: tuple[str, ...] = ()


@attrs.frozen
class Scenario:
    """A whole scenario (see module docstring)."""

    name: str = attrs.field(validator=_name)
    duration: Seconds
    description: str = ""
    seed: int = 1
    #: after the fault phase: faults stop and the system must converge within this
    liveness: Seconds = _S_30_0
    hub: HubSpec = HubSpec()
    links: LinkSpec = LinkSpec()
    agents: tuple[AgentSpec, ...] = ()
    clients: tuple[ClientSpec, ...] = ()
    faults: tuple[FaultSpec, ...] = ()
    random_faults: RandomFaults | None = None
    operations: tuple[OperationSpec, ...] = ()
    expect: Expectations = Expectations()
    checks: CheckSpec = CheckSpec()
    #: container state and its store (None: containers have no state)
    state: StateSpec | None = None
    #: several hubs on a lease (None: one hub, always active)
    hubs: HubsSpec | None = None


def _converter() -> cattrs.Converter:
    conv = cattrs.Converter(forbid_extra_keys=True)
    conv.register_structure_hook(Seconds, lambda v, _t: parse_seconds(v))
    conv.register_structure_hook(Span, lambda v, _t: parse_span(v))

    def strict_int(v: Any, _t: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"expected an integer, got {v!r}")
        return v

    def strict_float(v: Any, _t: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(f"expected a number, got {v!r}")
        return float(v)

    def strict_str(v: Any, _t: Any) -> str:
        if not isinstance(v, str):
            raise ValueError(f"expected a string, got {v!r}")
        return v

    def strict_bool(v: Any, _t: Any) -> bool:
        if not isinstance(v, bool):
            raise ValueError(f"expected true or false, got {v!r}")
        return v

    conv.register_structure_hook(int, strict_int)
    conv.register_structure_hook(float, strict_float)
    conv.register_structure_hook(str, strict_str)
    conv.register_structure_hook(bool, strict_bool)
    return conv


_CONVERTER = _converter()


# --- locating keys in the TOML text ------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\")\s*=")


def _key_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """Map each table and key path (``("agents", 0, "count")``) to its 1-based line."""
    lines: dict[tuple[str | int, ...], int] = {}
    arrays: dict[tuple[str, ...], int] = {}
    table: tuple[str | int, ...] = ()
    for number, line in enumerate(text.splitlines(), 1):
        h = _HEADER.match(line)
        if h is not None:
            parts = tuple(p.strip().strip('"') for p in h.group(2).split("."))
            if h.group(1) == "[[":
                index = arrays.get(parts, -1) + 1
                arrays[parts] = index
                table = (*parts, index)
            else:
                table = parts
            lines.setdefault(table, number)
            continue
        k = _KEY.match(line)
        if k is not None:
            lines.setdefault((*table, k.group(1).strip('"')), number)
    return lines


_PATH_PART = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]|\['([^']*)'\]")


def _parse_path(path: str) -> tuple[str | int, ...]:
    out: list[str | int] = []
    for m in _PATH_PART.finditer(path):
        if m.group(1) is not None:
            out.append(m.group(1))
        elif m.group(2) is not None:
            out.append(int(m.group(2)))
        else:
            out.append(m.group(3))
    return tuple(out)


def _locate(lines: dict[tuple[str | int, ...], int], path: tuple[str | int, ...]) -> int | None:
    """Return the line of ``path`` or of its nearest written ancestor."""
    for n in range(len(path), 0, -1):
        line = lines.get(path[:n])
        if line is not None:
            return line
    return None


def _dotted(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(top level)"


def parse_scenario(text: str, source: str = "<scenario>") -> Scenario:
    """Parse scenario TOML ``text``; returns the ``Scenario``.

    Raises:
        ScenarioError: on a TOML syntax error, an unknown or missing key, or
            a bad value; the message names the key, the line and the problem
            (one line per problem).
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: not valid TOML: {exc}") from None
    try:
        scenario = _CONVERTER.structure(raw, Scenario)
    except Exception as exc:  # cattrs raises exception groups of many kinds
        lines = _key_lines(text)
        messages: list[str] = []
        for item in _problems(exc):
            text_part, _, path_text = item.rpartition(" @ ")
            path = _parse_path(path_text) if path_text.startswith("$") else ()
            if not path_text.startswith("$"):
                text_part = item
            extra = re.search(r"extra fields found \((.*)\)", text_part)
            if extra is not None:
                for key in (k.strip().strip("'") for k in extra.group(1).split(",")):
                    line = _locate(lines, (*path, key))
                    where = f"line {line}" if line else "unknown line"
                    messages.append(f"{source}: {where}: key '{_dotted((*path, key))}': "
                                    f"unknown key")
                continue
            unknown = re.match(r"^unknown error \((.*)\)$", text_part, re.S)
            if unknown is not None:
                text_part = unknown.group(1)
            literal = re.match(r"^(.*) not in literal typing\.Literal\[(.*)\]$", text_part, re.S)
            if literal is not None:
                text_part = f"'{literal.group(1)}' is not one of {literal.group(2)}"
            line = _locate(lines, path)
            where = f"line {line}" if line else "unknown line"
            messages.append(f"{source}: {where}: key '{_dotted(path)}': {text_part}")
        raise ScenarioError("\n".join(messages) or f"{source}: {exc}") from None
    _check_names(scenario, text, source)
    _check_state(scenario, text, source)
    _check_hubs(scenario, text, source)
    return scenario


def process_names(name: str, count: int) -> list[str]:
    """Return the process names of a table with ``name`` and ``count``."""
    return [name] if count == 1 else [f"{name}-{i}" for i in range(1, count + 1)]


def _check_names(scenario: Scenario, text: str, source: str) -> None:
    """Raise ScenarioError if two processes would share a name."""
    seen: dict[str, str] = {}
    tables = [("agents", i, a.name, a.count) for i, a in enumerate(scenario.agents)]
    tables += [("clients", i, c.name, c.count) for i, c in enumerate(scenario.clients)]
    for table, index, name, count in tables:
        for pid in process_names(name, count):
            if pid in seen:
                line = _locate(_key_lines(text), (table, index, "name"))
                where = f"line {line}" if line else "unknown line"
                raise ScenarioError(f"{source}: {where}: key '{table}[{index}].name': process "
                                    f"name {pid!r} is already used by {seen[pid]}")
            seen[pid] = f"{table}[{index}]"


#: the seeded bugs a ``[hubs]`` table may switch on (test-only)
HUB_SEEDED_BUGS = ("no-lease-gate",)
#: the seeded bugs a ``[state]`` table may switch on (test-only)
STATE_SEEDED_BUGS = ("serve-before-import", "skip-final-checkpoint", "skip-interval-checkpoints",
                     "store-accepts-stale", "store-claims-only-saved", "drain-hands-over-first")


def _check_state(scenario: Scenario, text: str, source: str) -> None:
    """Raise ScenarioError for a store fault without a store, or an unknown state bug."""
    lines = _key_lines(text)

    def fail(path: tuple[str | int, ...], problem: str) -> None:
        line = _locate(lines, path)
        where = f"line {line}" if line else "unknown line"
        raise ScenarioError(f"{source}: {where}: key '{_dotted(path)}': {problem}")

    state = scenario.state
    for index, fault in enumerate(scenario.faults):
        if fault.action in STORE_ACTIONS:
            if state is None:
                fail(("faults", index, "action"),
                     f"{fault.action!r} needs a [state] table (there is no store)")
            if fault.target:
                fail(("faults", index, "target"),
                     f"{fault.action!r} acts on the state store and takes no target")
    rf = scenario.random_faults
    if rf is not None and state is None:
        for action in rf.actions:
            if action in STORE_ACTIONS:
                fail(("random_faults", "actions"),
                     f"{action!r} needs a [state] table (there is no store)")
    if state is not None:
        for key in ("interval", "store_timeout"):
            if not getattr(state, key) > 0:
                fail(("state", key), f"{key} must be > 0, got {getattr(state, key)}")
        for bug in state.seeded_bugs:
            if bug not in STATE_SEEDED_BUGS:
                fail(("state", "seeded_bugs"),
                     f"unknown seeded bug {bug!r}; known: {', '.join(STATE_SEEDED_BUGS)}")
        if state.store_latency.high > state.store_timeout:
            fail(("state", "store_latency"),
                 f"the latency {state.store_latency} exceeds store_timeout "
                 f"{format_seconds(state.store_timeout)}")


def hub_names(hubs: HubsSpec) -> list[str]:
    """Return the hub process names of a ``[hubs]`` table: ``hub-1`` .. ``hub-N``."""
    return [f"hub-{i}" for i in range(1, hubs.count + 1)]


def _check_hubs(scenario: Scenario, text: str, source: str) -> None:
    """Raise ScenarioError if a fault needs ``[hubs]`` (or names a hub) it does not have."""
    hubs = scenario.hubs
    lines = _key_lines(text)

    def fail(path: tuple[str | int, ...], problem: str) -> None:
        line = _locate(lines, path)
        where = f"line {line}" if line else "unknown line"
        raise ScenarioError(f"{source}: {where}: key '{_dotted(path)}': {problem}")

    if hubs is not None:
        if hubs.count < 1:
            fail(("hubs", "count"), f"count must be >= 1, got {hubs.count}")
        if not 0.0 <= hubs.margin < 1.0:
            fail(("hubs", "margin"), f"margin must be within 0..1 (1 excluded), got "
                                     f"{hubs.margin!r}")
        for key in ("ttl", "poll"):
            if not getattr(hubs, key) > 0:
                fail(("hubs", key), f"{key} must be above 0")
        for bug in hubs.seeded_bugs:
            if bug not in HUB_SEEDED_BUGS:
                fail(("hubs", "seeded_bugs"),
                     f"unknown seeded bug {bug!r}; known: {', '.join(HUB_SEEDED_BUGS)}")
    for i, f in enumerate(scenario.faults):
        hubby = f.action in HUB_ACTIONS or (hubs is not None and f.action in ("hub-crash",
                                                                             "hub-restart"))
        if f.action in HUB_ACTIONS and hubs is None:
            fail(("faults", i, "action"), f"{f.action!r} needs a [hubs] table (several hubs "
                                          f"on a lease)")
        if f.peers is not None and f.action != "hub-partition":
            fail(("faults", i, "peers"), f"only hub-partition takes peers, not {f.action!r}")
        if hubs is None or not hubby or f.action.startswith("lease-"):
            continue
        names = hub_names(hubs)
        for part in (f.target or "active").split(","):
            if part not in ("active", "down") and part not in names:
                fail(("faults", i, "target"), f"{part!r} is not a hub: expected 'active', "
                                              f"'down' or one of {', '.join(names)}")
    if hubs is not None and hubs.lease == "file":
        for i, f in enumerate(scenario.faults):
            if f.action in ("lease-pause", "lease-resume"):
                fail(("faults", i, "action"), f"{f.action!r} needs hubs.lease = 'ttl': a file "
                                              f"lock is the kernel's, it does not pause")
    if hubs is not None and scenario.random_faults is not None:
        bad = [a for a in scenario.random_faults.actions if a in HUB_ACTIONS or
               a in ("hub-crash", "hub-restart")]
        if bad:
            fail(("random_faults", "actions"), f"hub faults are not drawn at random: {bad}")


def _problems(exc: BaseException) -> list[str]:
    try:
        return list(cattrs.transform_error(exc, path="$"))
    except Exception:
        return [str(exc)]


def load_scenario(path: str | Path) -> Scenario:
    """Read and parse the scenario file at ``path``.

    Raises:
        ScenarioError: if the file cannot be read or is malformed.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{p}: not UTF-8 text") from None
    return parse_scenario(text, str(p))


# --- writing scenarios back out (the chaos tests' minimal examples) ----------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Seconds):
        return f'"{format_seconds(value)}"'
    if isinstance(value, Span):
        return f'"{value}"'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if attrs.has(type(value)):
        fields = _changed_fields(value)
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in fields) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def _changed_fields(obj: Any) -> list[tuple[str, Any]]:
    """Return the fields of attrs ``obj`` that differ from their defaults (and required ones)."""
    out: list[tuple[str, Any]] = []
    for field in attrs.fields(type(obj)):
        value = getattr(obj, field.name)
        if field.default is not attrs.NOTHING and value == field.default:
            continue
        if value is None:
            continue
        out.append((field.name, value))
    return out


def dump_scenario(scenario: Scenario) -> str:
    """Return TOML text that ``parse_scenario`` reads back to an equal ``Scenario``."""
    top: list[str] = []
    tables: list[str] = []
    for name, value in _changed_fields(scenario):
        if isinstance(value, tuple) and value and attrs.has(type(value[0])):
            for item in value:
                tables.append(f"\n[[{name}]]")
                tables.extend(f"{k} = {_toml_value(v)}" for k, v in _changed_fields(item))
        elif attrs.has(type(value)):
            tables.append(f"\n[{name}]")
            tables.extend(f"{k} = {_toml_value(v)}" for k, v in _changed_fields(value))
        else:
            top.append(f"{name} = {_toml_value(value)}")
    return "\n".join(top + tables) + "\n"
