"""The registry's lifecycles refuse illegal moves: container, peer, standby group."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hulytrio.core.effects import Send
from hulytrio.core.entries import (
    AGENT_TRANSITIONS,
    CONTAINER_TRANSITIONS,
    PEER_TRANSITIONS,
    AgentEntry,
    ClientEntry,
    ContainerEntry,
    PeerState,
)
from hulytrio.core.errors import LocalProtocolError
from hulytrio.core.messages import RegisterAgent, Start
from hulytrio.core.registry import Registry
from hulytrio.core.standby import STANDBY_TRANSITIONS, Standbys, StandbyState
from hulytrio.core.timeouts import Timeouts
from hulytrio.core.transitions import TransitionTable
from hulytrio.core.types import ContainerState, GetOptions, OfferedContainer
from hulytrio.testing.registry import FOREVER, answer_starts


def _entry(state: ContainerState) -> ContainerEntry:
    return ContainerEntry("u", "echo", "ag", None, (), False, state)


def test_a_terminated_container_cannot_come_back() -> None:
    c = _entry(ContainerState.ACTIVE)
    c.transition(ContainerState.TERMINATED)
    with pytest.raises(LocalProtocolError,
                       match="illegal container transition TERMINATED -> ACTIVE"):
        c.transition(ContainerState.ACTIVE)
    assert c.state is ContainerState.TERMINATED


@pytest.mark.parametrize(("old", "new"), [
    (ContainerState.PENDING, ContainerState.ORPHANED),  # a start nobody answered is not running
    (ContainerState.ACTIVE, ContainerState.PENDING),
    (ContainerState.ACTIVE, ContainerState.ACTIVE),
    (ContainerState.ORPHANED, ContainerState.PENDING),
])
def test_illegal_container_moves_raise_and_keep_the_state(old: ContainerState,
                                                          new: ContainerState) -> None:
    c = _entry(old)
    with pytest.raises(LocalProtocolError, match=f"{old.name} -> {new.name}"):
        c.transition(new)
    assert c.state is old


def test_the_registry_moves_its_containers_through_the_table() -> None:
    reg = Registry("hub", Timeouts())
    reg.add_client("h", FOREVER, 0.0)
    reg.add_client("c", FOREVER, 0.0)
    reg.register("h", RegisterAgent(1, "ag", ("echo",)), 0.0)
    reg.get("c", 2, "echo", GetOptions(uuid="x"), 0.0)
    assert reg.container_state("x") is ContainerState.PENDING
    answer_starts(reg, 0.0)
    assert reg.container_state("x") is ContainerState.ACTIVE
    reg.release("c", 3, "x", 1.0)
    assert reg.container_state("x") is ContainerState.ORPHANED
    entry = reg._containers["x"]
    # An orphan cannot be started again: the registry's own rules refuse it.
    with pytest.raises(LocalProtocolError, match="ORPHANED -> PENDING"):
        entry.transition(ContainerState.PENDING)
    reg.handle_timers(1.0 + reg.timeouts.unused_container)
    assert reg.container_state("x") is None
    assert entry.state is ContainerState.TERMINATED
    assert reg.check() == []


def test_a_dead_peer_stays_dead() -> None:
    cl = ClientEntry("c", 5.0, 0.0)
    cl.transition(PeerState.DEAD)
    with pytest.raises(LocalProtocolError, match="illegal peer transition DEAD -> ALIVE"):
        cl.transition(PeerState.ALIVE)
    with pytest.raises(LocalProtocolError, match="DEAD -> DEAD"):
        cl.transition(PeerState.DEAD)


def test_a_removed_client_entry_is_dead() -> None:
    reg = Registry("hub", Timeouts())
    reg.add_client("c", FOREVER, 0.0)
    entry = reg._clients["c"]
    reg.remove_client("c", 1.0)
    assert entry.state is PeerState.DEAD


def _offer(uuid: str = "s") -> OfferedContainer:
    return OfferedContainer(uuid, "db", stateless=True)


def test_a_standby_group_behind_an_owner_cannot_go_back_behind_a_start() -> None:
    standbys = Standbys()
    b = AgentEntry("B", "hb", ("db",), None, None)
    standbys.stand_by(b, _offer(), StandbyState.BEHIND_OWNER)
    with pytest.raises(LocalProtocolError,
                       match="illegal standby transition BEHIND_OWNER -> BEHIND_START"):
        standbys.stand_by(AgentEntry("C", "hc", ("db",), None, None), _offer(),
                          StandbyState.BEHIND_START)
    assert standbys.state("s") is StandbyState.BEHIND_OWNER
    assert tuple(standbys.agents("s")) == ("B",)


def test_a_standby_group_moves_behind_the_start_it_waited_for_and_disbands() -> None:
    standbys = Standbys()
    b = AgentEntry("B", "hb", ("db",), None, None)
    c = AgentEntry("C", "hc", ("db",), None, None)
    standbys.stand_by(b, _offer(), StandbyState.BEHIND_START)
    standbys.stand_by(c, _offer(), StandbyState.BEHIND_START)
    standbys.owner_arrived("s")
    assert standbys.state("s") is StandbyState.BEHIND_OWNER
    # B's agent is gone: C is the next standby, and the group disbands.
    taken = standbys.next_standby("s", {"C": c})
    assert taken is not None
    assert taken[0] is c
    assert "s" not in standbys
    assert standbys.state("s") is StandbyState.DISBANDED
    assert c.standby == {}


def test_the_tables_name_their_machines() -> None:
    assert CONTAINER_TRANSITIONS.name == "container"
    assert PEER_TRANSITIONS.name == "peer"
    assert STANDBY_TRANSITIONS.name == "standby"
    # Final states are not keys: nothing leaves them.
    assert ContainerState.TERMINATED not in CONTAINER_TRANSITIONS.moves()
    assert PeerState.DEAD not in PEER_TRANSITIONS.moves()
    assert StandbyState.DISBANDED not in STANDBY_TRANSITIONS.moves()


def test_a_start_answered_with_an_orphans_uuid_restarts_its_unused_timeout() -> None:
    reg = Registry("hub", Timeouts())
    reg.add_client("h", FOREVER, 0.0)
    reg.add_client("c", FOREVER, 0.0)
    reg.register("h", RegisterAgent(1, "ag", ("echo",)), 0.0)
    reg.get("c", 2, "echo", GetOptions(uuid="x"), 0.0)
    answer_starts(reg, 0.0)
    reg.release("c", 3, "x", 1.0)
    reg.remove_client("c", 1.0)  # nobody waits for the next start
    reg.add_client("d", FOREVER, 1.0)
    reg.get("d", 4, "echo", GetOptions(uuid="y"), 1.0)
    reg.remove_client("d", 1.5)
    # The start the agent was sent for y, the only one pending.
    (start_id,) = [e.message.id for e in reg.take_effects()
                   if isinstance(e, Send) and isinstance(e.message, Start)
                   and e.message.uuid == "y"]
    reg.started("h", start_id, "x", None, 2.0)  # a misbehaving agent: x, not y
    assert reg.container_state("x") is ContainerState.ORPHANED
    assert reg.orphaned_at("x") == 2.0
    assert reg.check() == []


DOC = Path(__file__).resolve().parents[2] / "docs" / "machines" / "registry.md"


@pytest.mark.parametrize("table", [CONTAINER_TRANSITIONS, PEER_TRANSITIONS, STANDBY_TRANSITIONS,
                                   AGENT_TRANSITIONS],
                         ids=lambda t: t.name)
def test_the_docs_list_exactly_the_codes_moves(table: TransitionTable[Any]) -> None:
    text = DOC.read_text()
    section = text.split(f"<!-- table: {table.name} -->\n", 1)[1].split("\n\n", 1)[0]
    lines = section.splitlines()
    assert lines[0].startswith("| from | to |")
    rows = {tuple(cell.strip() for cell in line.split("|")[1:3]) for line in lines[2:]}
    code = {(old.name, new.name) for old, targets in table.moves().items() for new in targets}
    assert rows == code
