"""Roles and agent ids: what a verified peer may do (the core's pure table)."""

from __future__ import annotations

import pytest

from hulytrio.core.principals import ROLE_ACTIONS, UNAUTHENTICATED, Action, Principal, Role

CLIENT = Principal("app", frozenset({Role.CLIENT}))
AGENT = Principal("pool-a", frozenset({Role.AGENT}))
BOTH = Principal("worker", frozenset({Role.AGENT, Role.CLIENT}), ("w-*", "special"))
ADMIN = Principal("ops", frozenset({Role.ADMIN}))


@pytest.mark.parametrize(("principal", "allowed"), [
    (CLIENT, {Action.GET, Action.RELEASE, Action.REQUEST, Action.LIST, Action.CONNECT}),
    (AGENT, {Action.REGISTER_AGENT, Action.SERVE}),
    (BOTH, {Action.GET, Action.RELEASE, Action.REQUEST, Action.LIST, Action.CONNECT,
            Action.REGISTER_AGENT, Action.SERVE}),
    (ADMIN, set(Action)),
    (UNAUTHENTICATED, set(Action)),
])
def test_each_role_allows_exactly_its_actions(principal, allowed):
    assert {a for a in Action if principal.allows(a)} == allowed


def test_only_admins_act_on_what_they_do_not_own():
    for role in (Role.CLIENT, Role.AGENT):
        assert Action.TERMINATE_ANY not in ROLE_ACTIONS[role]
        assert Action.SEE_ALL_CLIENTS not in ROLE_ACTIONS[role]


@pytest.mark.parametrize(("principal", "agent_id", "may"), [
    (AGENT, "pool-a", True),          # default: the subject ...
    (AGENT, "pool-a-7", True),        # ... and subject-*
    (AGENT, "pool-ab", False),
    (AGENT, "healthy-agent", False),
    (BOTH, "w-1", True),              # named prefixes replace the default
    (BOTH, "special", True),
    (BOTH, "special-2", False),
    (BOTH, "worker", False),
    (CLIENT, "app", False),           # no agent role, no agent id
    (ADMIN, "anything", True),
    (UNAUTHENTICATED, "anything", True),
])
def test_agent_ids_a_principal_may_register(principal, agent_id, may):
    assert principal.may_use_agent_id(agent_id) is may


def test_a_restart_of_the_same_principal_may_supersede_another_may_not():
    again = Principal("pool-a", frozenset({Role.AGENT}))
    assert AGENT.same_owner(again)
    assert not AGENT.same_owner(BOTH)
    assert not AGENT.same_owner(UNAUTHENTICATED)
    assert UNAUTHENTICATED.same_owner(UNAUTHENTICATED)
