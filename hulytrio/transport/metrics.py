"""Prometheus metrics and the health/readiness answers of a running hub.

Theory of operation
-------------------
Nothing here runs per message.  The hub core already keeps O(1) counters
(``Hub.stats``) and the driver its own (``NetworkServer.statistics()``);
``HubCollector`` reads them, and the registry's public views, only when
Prometheus scrapes, and turns them into metric families.  So the routed
request path pays nothing for metrics (``benchmarks/cpu_per_request.py``).

Each hub has its own ``CollectorRegistry``: several hubs in one process
(tests, an embedded hub beside a standby) never clash over names.

Adding a metric is one ``yield`` in ``HubCollector.collect``.  Per-operation
outcomes and durations come from ``Hub.stats`` (the core counts calls and
keeps duration buckets, ``core/tally.py``); lifecycle facts (failovers,
container starts and their durations, orphans terminated, reconnects) from
the driver's ``Lifecycle`` tallies of the core's notices (``lifecycle.py``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from hulytrio.core.effects import Fact
from hulytrio.core.hub import Hub
from hulytrio.core.tally import Durations
from hulytrio.core.types import ContainerState

from .http import HttpRoutes, Reply, json_reply
from .lifecycle import Lifecycle


class NetworkServer(Protocol):
    """What the metrics read of a hub server (``server.NetworkServer`` provides it).

    A protocol, not an import: the server imports this module to answer
    ``/metrics``, and the transport has no import circles.
    """

    hub: Hub
    role: str
    lifecycle: Lifecycle

    @property
    def ready(self) -> bool:
        """True while the hub serves as the active hub."""

    def uptime(self) -> float:
        """Seconds since the hub started."""

    def statistics(self) -> Any:
        """The driver's ``ServerStatistics``."""

__all__ = ["HubCollector", "hub_routes", "metrics_registry"]


class HubCollector(Collector):
    """Reads a ``NetworkServer``'s state at scrape time (see module docstring)."""

    def __init__(self, server: NetworkServer) -> None:
        self.server = server

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily
                                  | HistogramMetricFamily]:
        """Yield every hub metric family, computed now."""
        server = self.server
        hub = server.hub
        reg = hub.registry
        stats = hub.stats
        driver = server.statistics()

        info = GaugeMetricFamily("huly_hub_info", "The hub's id, role and term (value 1)",
                                 labels=["hub_id", "role", "term"])
        info.add_metric([hub.hub_id, server.role, str(hub.term)], 1)
        yield info
        yield GaugeMetricFamily("huly_hub_uptime_seconds", "Seconds since the hub started",
                                value=server.uptime())

        yield GaugeMetricFamily("huly_agents", "Agents registered at the hub",
                                value=len(reg.agents()))
        yield GaugeMetricFamily("huly_clients", "Client sessions the hub knows",
                                value=len(reg.clients()))
        yield GaugeMetricFamily("huly_connections", "Open WebSocket connections",
                                value=driver.connections)

        records = reg.list()
        active: Counter[str] = Counter()
        states: Counter[tuple[str, str]] = Counter()
        for record in records:
            state = reg.container_state(record.uuid)
            name = state.name.lower() if state is not None else "unknown"
            states[record.kind, name] += 1
            if state is ContainerState.ACTIVE:
                active[record.kind] += 1
        by_kind = GaugeMetricFamily("huly_active_containers",
                                    "Containers in the ACTIVE state, per kind",
                                    labels=["kind"])
        for kind in sorted(active):
            by_kind.add_metric([kind], active[kind])
        yield by_kind
        by_state = GaugeMetricFamily("huly_containers", "Containers per kind and state",
                                     labels=["kind", "state"])
        for (kind, name) in sorted(states):
            by_state.add_metric([kind, name], states[kind, name])
        yield by_state
        yield GaugeMetricFamily("huly_pending_starts", "Container starts awaiting an agent",
                                value=reg.pending_count())

        requests = CounterMetricFamily(
            "huly_requests", "Calls the hub answered, per operation and outcome (ok, error; "
            "retry: a container request refused for too many in flight; cancelled: abandoned "
            "by its caller)",
            labels=["operation", "status"])
        # Container requests are counted off the answered path (the routed
        # path pays nothing): ok = forwarded - failed - cancelled - still in flight.
        in_flight = hub.requests_in_flight()
        failed = stats.request_errors + stats.request_lost
        requests.add_metric(["request", "ok"],
                            stats.forwarded - failed - stats.request_cancelled - in_flight)
        requests.add_metric(["request", "error"], failed + stats.not_found)
        requests.add_metric(["request", "retry"], stats.retries)
        requests.add_metric(["request", "cancelled"], stats.request_cancelled)
        for (operation, status) in sorted(stats.calls):
            requests.add_metric([operation, status], stats.calls[operation, status])
        yield requests
        yield CounterMetricFamily("huly_requests_forwarded",
                                  "Container requests forwarded to the owning agent",
                                  value=stats.forwarded)
        durations = HistogramMetricFamily(
            "huly_request_duration_seconds",
            "The hub's time from a call to its answer (request, connect: forwarded to "
            "answered by the agent; get: to the reply, a container start included)",
            labels=["operation"])
        for operation in sorted(stats.durations):
            _add_histogram(durations, [operation], stats.durations[operation])
        yield durations

        life = server.lifecycle
        yield CounterMetricFamily("huly_failovers",
                                  "Stateless containers whose owner was lost and a standby "
                                  "promoted", value=life.count(Fact.STANDBY_PROMOTED))
        failover = HistogramMetricFamily(
            "huly_failover_duration_seconds",
            "From a lost owner's last sign of life to its standby's promotion")
        _add_histogram(failover, [], life.failovers)
        yield failover
        yield CounterMetricFamily("huly_container_starts",
                                  "Container starts an agent answered (started)",
                                  value=life.count(Fact.CONTAINER_STARTED))
        yield CounterMetricFamily("huly_container_start_failures",
                                  "Container starts that failed (agent error, no answer in "
                                  "time, agent gone)", value=life.count(Fact.START_FAILED))
        start = HistogramMetricFamily("huly_container_start_duration_seconds",
                                      "From the start sent to the agent to its answer")
        _add_histogram(start, [], life.starts)
        yield start
        yield CounterMetricFamily("huly_orphans_terminated",
                                  "Orphaned containers terminated after the unused timeout",
                                  value=life.count(Fact.CONTAINER_TERMINATED, "unused timeout"))
        yield CounterMetricFamily("huly_client_reconnects",
                                  "Hellos from a peer id the hub had (or recently had) a "
                                  "session for", value=life.count(Fact.CLIENT_RECONNECTED))
        gone = CounterMetricFamily("huly_agents_dead", "Agents declared dead, by reason",
                                   labels=["reason"])
        for (fact, reason), n in sorted(life.facts.items(), key=lambda kv: kv[0][1]):
            if fact is Fact.AGENT_DEAD:
                gone.add_metric([reason], n)
        yield gone
        yield CounterMetricFamily("huly_messages_received", "Protocol messages the hub read",
                                  value=stats.messages_in)
        yield CounterMetricFamily("huly_frames_received", "WebSocket frames the hub read",
                                  value=driver.frames_in)
        yield CounterMetricFamily("huly_protocol_errors",
                                  "Bad frames or messages answered with a protocol error",
                                  value=stats.errors)
        yield CounterMetricFamily("huly_events_broadcast",
                                  "Registry event batches broadcast to clients",
                                  value=stats.events)
        yield CounterMetricFamily("huly_connections_accepted",
                                  "WebSocket connections accepted since start",
                                  value=driver.accepted)
        yield CounterMetricFamily("huly_slow_peers_dropped",
                                  "Connections dropped because their send queue was full",
                                  value=driver.dropped_slow)


def _add_histogram(family: HistogramMetricFamily, labels: list[str], d: Durations) -> None:
    """Add the buckets of ``d`` to ``family`` as one labelled histogram."""
    family.add_metric(labels, d.cumulative(), d.total)


def metrics_registry(server: NetworkServer) -> CollectorRegistry:
    """Return a fresh registry holding only ``server``'s collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(server))
    return registry


def hub_routes(server: NetworkServer) -> HttpRoutes:
    """Return the hub's routes: ``/health``, ``/ready`` and ``/metrics``.

    ``/ready`` answers 200 only while ``server.ready`` (the active hub).
    """
    registry = metrics_registry(server)

    def health() -> Reply:
        reg = server.hub.registry
        return json_reply(200, {
            "status": "ok",
            "role": server.role,
            "hub_id": server.hub.hub_id,
            "uptime": round(server.uptime(), 3),
            "agents": len(reg.agents()),
            "containers": len(reg.list()),
            "clients": len(reg.clients()),
            "connections": server.statistics().connections,
        })

    def ready() -> Reply:
        if server.ready:
            return json_reply(200, {"ready": True, "role": server.role})
        return json_reply(503, {"ready": False, "role": server.role})

    def metrics() -> Reply:
        return 200, CONTENT_TYPE_LATEST, generate_latest(registry)

    return HttpRoutes({"/health": health, "/ready": ready, "/metrics": metrics})
