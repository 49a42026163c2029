"""Transition tables: every lifecycle states its legal moves in one place.

h11's ``_state.py`` is the model: a machine's module opens with a table of
the moves its lifecycle allows, and the machine changes state only through a
``_transition()`` that asks the table first.  An illegal move is a
``LocalProtocolError`` at once (in tests and in production alike) instead of a
silent wrong state found three events later.

A table maps each state to the states it may move to; a state missing from
the table (or mapped to nothing) is final.  Staying in the same state is a
move like any other: it is legal only where the table lists it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar

from .errors import LocalProtocolError

__all__ = ["TransitionTable"]

S = TypeVar("S", bound=enum.Enum)

#: the moves of a final state (one missing from the table)
_FINAL: frozenset[enum.Enum] = frozenset()


class TransitionTable(Generic[S]):
    """The legal moves of one lifecycle enum ``S``.

    ``name`` names the machine in error messages ("container", "session").
    """

    __slots__ = ("_moves", "name")

    def __init__(self, name: str, moves: Mapping[S, Iterable[S]]) -> None:
        self.name = name
        self._moves: dict[S, frozenset[S]] = {
            state: frozenset(targets) for state, targets in moves.items()
        }

    def allows(self, old: S, new: S) -> bool:
        """Return True when the table lets ``old`` move to ``new``."""
        return new in self._moves.get(old, _FINAL)

    def check(self, old: S, new: S) -> S:
        """Return ``new`` when ``old -> new`` is legal.

        Raises ``LocalProtocolError`` (naming the machine and both states)
        when it is not: the caller broke the machine's own rules.
        """
        # One lookup, no call of ``allows``: every state change of every
        # machine passes here.
        if new not in self._moves.get(old, _FINAL):
            raise LocalProtocolError(
                f"illegal {self.name} transition {old.name} -> {new.name}")
        return new

    def moves(self) -> dict[S, frozenset[S]]:
        """Return a copy of the table (for docs and tests)."""
        return dict(self._moves)

    def states(self) -> list[S]:
        """Return every state the table names, in definition order where it can."""
        seen: dict[S, None] = {}
        for state, targets in self._moves.items():
            seen.setdefault(state, None)
            for target in sorted(targets, key=lambda s: str(s.value)):
                seen.setdefault(target, None)
        return list(seen)
