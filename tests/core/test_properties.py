"""Property tests: random operation sequences over an in-memory cluster keep the invariants.

Drives the sync core with ``hypothesis.stateful`` directly (no hypothesis-trio).
Invariants, checked after every step:

- the registry's own consistency check is clean (holder counts mirrored and
  positive, indexes complete, every container linked to a live agent);
- no uuid is owned by two agents, and at most one connected agent serves a
  stateless uuid;
- every orphan is terminated by ``orphaned_at + unused timeout``;
- once the event window has flushed, every ready client's view built from
  events equals the registry;
- after quiescence, every client's references point at live containers it
  holds, with the hub's counts, and no request waits on a working reference.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from hulytrio.core.agent import AgentState
from hulytrio.core.session import RefStatus, SessionState
from hulytrio.core.types import GetOptions, OfferedContainer
from hulytrio.testing import Cluster

HOSTS = ("h0", "h1", "h2")
USERS = ("u0", "u1")
KINDS = {"h0": ("echo",), "h1": ("echo", "db"), "h2": ("db",)}
HA = OfferedContainer("ha-1", "ha", stateless=True)
LABELS = ((), ("t1",), ("t1", "t2"))


class WatchedCluster(Cluster):
    """A cluster that fails, instead of hanging, when messages bounce forever."""

    LIMIT = 20_000

    def pump(self) -> None:
        self.bounces = 0
        super().pump()

    def _client_effect(self, *args: Any) -> None:
        self.bounces += 1
        if self.bounces > self.LIMIT:
            raise AssertionError("livelock: effects keep flowing at one instant")
        super()._client_effect(*args)


class ClusterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.c = WatchedCluster(seed=0)
        #: user -> (request handle, ref id) of every request it made
        self.requests: dict[str, list[tuple[int, int]]] = {}

    # --- helpers -------------------------------------------------------------

    def live(self, name: str) -> bool:
        return name in self.c.sessions

    def ready(self, name: str) -> bool:
        s = self.c.sessions.get(name)
        return s is not None and s.state is SessionState.READY and self.c.connected.get(name, False)

    # --- rules -----------------------------------------------------------------

    @initialize(ha=st.booleans())
    def populate(self, ha: bool) -> None:
        """Start from a working cluster so most steps act on something."""
        for host in HOSTS[:2]:
            self.start_host(host, ha)
        for user in USERS:
            self.start_user(user)

    @rule(host=st.sampled_from(HOSTS), ha=st.booleans())
    def start_host(self, host: str, ha: bool) -> None:
        if self.live(host):
            return
        self.c.add_client(host)
        agent = AgentState(f"a-{host}", KINDS[host], endpoint=f"ws://{host}",
                           stateless=(HA,) if ha else ())
        self.c.add_agent(host, agent)

    @rule(user=st.sampled_from(USERS))
    def start_user(self, user: str) -> None:
        if not self.live(user):
            self.c.add_client(user)

    @rule(data=st.data(), user=st.sampled_from(USERS + HOSTS),
          kind=st.sampled_from(("echo", "db", "ha")), labels=st.sampled_from(LABELS),
          by_uuid=st.booleans())
    def get(self, data: st.DataObject, user: str, kind: str, labels: tuple[str, ...],
            by_uuid: bool) -> None:
        if not self.live(user):
            return
        uuid = None
        if kind == "ha":
            uuid = HA.uuid
        elif by_uuid:
            known = sorted(r.uuid for r in self.c.hub.registry.list(kind))
            if known:
                uuid = data.draw(st.sampled_from(known))
        self.c.sessions[user].get(kind, GetOptions(uuid, labels))
        self.c.pump()

    @rule(data=st.data(), user=st.sampled_from(USERS + HOSTS))
    def release(self, data: st.DataObject, user: str) -> None:
        if not self.live(user):
            return
        refs = sorted(self.c.sessions[user].references())
        if refs:
            self.c.sessions[user].release(data.draw(st.sampled_from(refs)))
            self.c.pump()

    @rule(data=st.data(), user=st.sampled_from(USERS))
    def request(self, data: st.DataObject, user: str) -> None:
        if not self.live(user):
            return
        refs = sorted(self.c.sessions[user].references())
        if refs:
            ref_id = data.draw(st.sampled_from(refs))
            handle = self.c.sessions[user].request(ref_id, "op", b"x")
            self.requests.setdefault(user, []).append((handle, ref_id))
            self.c.pump()

    @rule(dt=st.sampled_from((0.001, 0.01, 0.3, 1.0, 2.9, 3.1, 5.0, 7.0)))
    def advance(self, dt: float) -> None:
        self.c.advance(self.c.now + dt)

    @rule(name=st.sampled_from(USERS + HOSTS))
    def crash(self, name: str) -> None:
        if self.live(name):
            self.c.crash(name)
            self.requests.pop(name, None)

    @rule(name=st.sampled_from(USERS + HOSTS))
    def drop_connection(self, name: str) -> None:
        if self.live(name):
            self.c.disconnect(name)

    @rule()
    def restart_hub(self) -> None:
        self.c.restart_hub()

    @rule(data=st.data(), host=st.sampled_from(HOSTS))
    def container_ends(self, data: st.DataObject, host: str) -> None:
        if not self.live(host):
            return
        agent_id = f"a-{host}"
        agent = self.c.sessions[host].agent(agent_id)
        running = sorted(agent.running()) if agent is not None else []
        if running:
            uuid = data.draw(st.sampled_from(running))
            self.c.running.get(agent_id, {}).pop(uuid, None)
            self.c.sessions[host].agent_stopped(agent_id, uuid)
            self.c.pump()

    @rule(host=st.sampled_from(HOSTS))
    def unregister(self, host: str) -> None:
        s = self.c.sessions.get(host)
        if s is not None and s.agent(f"a-{host}") is not None:
            s.unregister_agent(f"a-{host}")
            self.c.pump()

    @rule()
    def quiesce(self) -> None:
        """Let everything settle, then every reference must have converged."""
        for _ in range(3):
            self.c.advance(self.c.now + 6.0)
            self.orphans_terminated_by_deadline()
        reg = self.c.hub.registry
        for name, s in self.c.sessions.items():
            if not self.ready(name):
                continue
            counts: dict[str, int] = {}
            for ref_id, record in s.references().items():
                if s.ref_status(ref_id) is not RefStatus.READY:
                    # Only a kind nobody hosts may keep a reference waiting.
                    assert record is None or reg.container(record.uuid) is None
                    continue
                assert record is not None
                live = reg.container(record.uuid)
                assert live is not None, f"{name} ref {ref_id} -> dead {record.uuid}"
                assert live.agent_id == record.agent_id
                counts[record.uuid] = counts.get(record.uuid, 0) + 1
            assert reg.holds(name) == counts, (name, reg.holds(name), counts)
            # No request hangs on a reference that works again.
            for handle, ref_id in self.requests.get(name, []):
                if self.c.result(name, handle) is None:
                    assert s.ref_status(ref_id) is not RefStatus.READY, (name, handle)

    # --- invariants --------------------------------------------------------------

    @invariant()
    def orphans_terminated_by_deadline(self) -> None:
        reg = self.c.hub.registry
        limit = self.c.timeouts.unused_container
        for rec in reg.list():
            at = reg.orphaned_at(rec.uuid)
            assert at is None or at + limit > self.c.now, (rec.uuid, at, self.c.now)

    @invariant()
    def registry_consistent(self) -> None:
        assert self.c.hub.registry.check() == []

    @invariant()
    def counts_positive(self) -> None:
        reg = self.c.hub.registry
        for rec in reg.list():
            assert all(n > 0 for n in reg.holders(rec.uuid).values())
        for client in reg.clients():
            assert all(n > 0 for n in reg.holds(client).values())

    @invariant()
    def single_owner(self) -> None:
        reg = self.c.hub.registry
        owners: dict[str, str] = {}
        for agent in reg.agents():
            for uuid in reg.agent_containers(agent.agent_id):
                assert uuid not in owners, (uuid, owners.get(uuid), agent.agent_id)
                owners[uuid] = agent.agent_id
        assert owners == {r.uuid: r.agent_id for r in reg.list()}
        serving = [
            name for name, s in self.c.sessions.items()
            if self.ready(name) and (a := s.agent(f"a-{name}")) is not None
            and HA.uuid in a.serving()
        ]
        assert len(serving) <= 1, serving

    @invariant()
    def views_match_registry_after_flush(self) -> None:
        reg = self.c.hub.registry
        if len(reg.events):
            return  # changes still inside the batching window
        want_c = {r.uuid: r for r in reg.list()}
        want_a = {a.agent_id: a for a in reg.agents()}
        for name, s in self.c.sessions.items():
            if self.ready(name):
                assert s.view_containers == want_c, name
                assert s.view_agents == want_a, name


ClusterMachine.TestCase.settings = settings(
    # CI budget: a few seconds.  A longer bug hunt:
    # HULYTRIO_PROPERTY_EXAMPLES=5000 pytest tests/core/test_properties.py
    max_examples=int(os.environ.get("HULYTRIO_PROPERTY_EXAMPLES", "200")),
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_cluster = ClusterMachine.TestCase
