"""The registry's self-check: every index agrees with every other.

Theory of operation
-------------------
``problems()`` walks the registry's entries once and names each broken link,
in a fixed order (containers, then agents, then clients).  The simulator
runs it at every check interval of a busy run, so the sound case is kept
cheap: the walk over the containers tests each container's own links, and
the reverse walks (does an agent list a uuid it does not own? does a client
hold one that does not name it?) follow from two counts instead when every
container passed.  When every container is listed by its agent, the agents
list nothing else exactly when they list as many uuids as there are
containers; when every holder is mirrored by a client's hold, the clients
hold nothing else exactly when they have as many holds as there are holders.
Only a registry that fails somewhere is walked in reverse, to name it all.
"""

from __future__ import annotations

from collections.abc import Mapping

from .entries import AgentEntry, ClientEntry, ContainerEntry
from .placement import Selector
from .types import AgentId, ClientId, ContainerKind, ContainerState, ContainerUuid

__all__ = ["problems"]

_ORPHANED = ContainerState.ORPHANED
_ACTIVE = ContainerState.ACTIVE
_DRAINING = ContainerState.DRAINING


def problems(
    containers: Mapping[ContainerUuid, ContainerEntry],
    agents: Mapping[AgentId, AgentEntry],
    clients: Mapping[ClientId, ClientEntry],
    by_selector: Mapping[Selector, Mapping[ContainerUuid, None]],
    in_line: Mapping[ContainerKind, Mapping[AgentId, None]],
) -> list[str]:
    """Return every broken invariant of the registry made of these indexes (empty: sound).

    ``containers``, ``agents`` and ``clients`` are the entries by id;
    ``by_selector`` the live containers per selector; ``in_line`` the agents
    in line for a start per kind.  O(size); never the hot path.
    """
    found: list[str] = []
    report = found.append
    holders_seen = 0
    # Subscripts in try blocks (free in 3.11 when nothing is missing) keep
    # the sound walk cheap; a missing entry is reported like a wrong one.
    for uuid, c in containers.items():
        try:
            linked = uuid in agents[c.agent_id].containers
        except KeyError:
            linked = False
        if not linked:
            report(f"container {uuid} not linked to agent {c.agent_id}")
        holders = c.holders
        if holders:  # (most containers of a busy run have one holder or none)
            for client_id, n in holders.items():
                holders_seen += 1
                if n <= 0:
                    report(f"container {uuid}: holder {client_id} count {n}")
                try:
                    mirrored = clients[client_id].holds[uuid] == n
                except KeyError:
                    mirrored = False
                if not mirrored:
                    report(f"container {uuid}: holder {client_id} not mirrored")
        state = c.state
        if holders:
            if state is _ORPHANED:
                report(f"container {uuid} held but orphaned")
        elif state is _ACTIVE and not c.stateless:
            report(f"container {uuid} unheld but not orphaned")
        if (state is _ORPHANED) is (c.orphaned_at is None):
            report(f"container {uuid} is {state.name} with orphaned_at {c.orphaned_at}")
        try:
            indexed = uuid in by_selector[(c.kind, c.labels)]
        except KeyError:
            indexed = False
        if state is _DRAINING:
            if indexed:
                # A draining container is out of the index: no get may reuse it.
                report(f"container {uuid} is DRAINING but in its selector index")
        elif not indexed:
            report(f"container {uuid} missing from its selector index")
    listed = 0
    for a in agents.values():
        listed += len(a.containers)
    walk_listings = bool(found) or listed != len(containers)
    no_agents: dict[AgentId, None] = {}
    for agent_id, a in agents.items():
        if walk_listings:
            for uuid in a.containers:
                c2 = containers.get(uuid)
                if c2 is None or c2.agent_id != agent_id:
                    report(f"agent {agent_id} lists {uuid} it does not own")
        if a.owner not in clients:
            report(f"agent {agent_id} owned by unknown client {a.owner}")
        if a.parked and a.has_room():
            report(f"agent {agent_id} set aside as full but has room")
        for kind in a.kinds:
            if (agent_id in in_line.get(kind, no_agents)) is a.parked:
                where = "set aside as full but still" if a.parked else "not"
                report(f"agent {agent_id} {where} in line for kind {kind}")
    held = 0
    for cl in clients.values():
        held += len(cl.holds)
    if found or held != holders_seen:
        for client_id, cl in clients.items():
            for uuid, n in cl.holds.items():
                c3 = containers.get(uuid)
                if c3 is None or c3.holders.get(client_id) != n:
                    report(f"client {client_id} holds {uuid} not mirrored")
    return found
