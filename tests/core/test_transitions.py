"""The transition table every lifecycle states its moves in."""

from __future__ import annotations

import enum

import pytest

from hulytrio.core.errors import LocalProtocolError
from hulytrio.core.transitions import TransitionTable


class Light(enum.Enum):
    RED = "red"
    GREEN = "green"
    YELLOW = "yellow"
    OFF = "off"


TABLE = TransitionTable("light", {
    Light.RED: {Light.GREEN, Light.OFF},
    Light.GREEN: {Light.YELLOW, Light.OFF},
    Light.YELLOW: {Light.RED, Light.OFF},
})


def test_legal_moves_return_the_new_state():
    assert TABLE.check(Light.RED, Light.GREEN) is Light.GREEN
    assert TABLE.allows(Light.YELLOW, Light.RED)


@pytest.mark.parametrize(("old", "new"), [
    (Light.RED, Light.YELLOW),
    (Light.RED, Light.RED),  # staying put is a move too
    (Light.OFF, Light.RED),  # OFF is final: it is not a key
])
def test_illegal_moves_name_the_machine_and_both_states(old, new):
    with pytest.raises(LocalProtocolError,
                       match=f"illegal light transition {old.name} -> {new.name}"):
        TABLE.check(old, new)


def test_states_lists_every_state_once():
    assert sorted(s.value for s in TABLE.states()) == ["green", "off", "red", "yellow"]
    assert TABLE.moves()[Light.RED] == frozenset({Light.GREEN, Light.OFF})
