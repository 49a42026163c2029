"""Who a peer is, and what its roles let it do (pure: no clocks, no I/O).

Theory of operation: a driver verifies the credential a peer presents in its
hello (``hulytrio.auth``) and hands the core a ``Principal``.  The core asks
``principal.allows(action)`` before it acts on the peer's behalf, and
``principal.may_use_agent_id(agent_id)`` before a registration; a refusal is
an ``unauthorized`` error answer that changes nothing in the registry.

Roles and the actions they grant (``ROLE_ACTIONS`` below is the table):

=========  ===============================================================
role       actions
=========  ===============================================================
client     get, release, request, list, connect
agent      register an agent (under the ids its credential names), serve
admin      everything above, terminate any container, see every client
=========  ===============================================================

A credential may carry several roles (an agent process that also calls other
containers carries ``agent`` and ``client``).  With authentication off every
peer is ``UNAUTHENTICATED``, which may do everything, as before there was
authentication (``docs/security.md`` says when that is acceptable).
"""

from __future__ import annotations

import enum

import attrs

__all__ = ["ROLE_ACTIONS", "UNAUTHENTICATED", "Action", "Principal", "Role"]


class Role(enum.Enum):
    """A role a credential grants."""

    #: gets, releases, requests, lists and connects to containers
    CLIENT = "client"
    #: registers agents and serves their containers
    AGENT = "agent"
    #: everything, and operator actions on anything
    ADMIN = "admin"


class Action(enum.Enum):
    """Something a peer asks the hub to do on its behalf."""

    GET = "get"
    RELEASE = "release"
    REQUEST = "request"
    LIST = "list"
    CONNECT = "connect"
    REGISTER_AGENT = "register_agent"
    SERVE = "serve"
    #: terminate a container the peer does not host
    TERMINATE_ANY = "terminate_any"
    #: see every client's id and references
    SEE_ALL_CLIENTS = "see_all_clients"


_CLIENT = frozenset({Action.GET, Action.RELEASE, Action.REQUEST, Action.LIST, Action.CONNECT})
_AGENT = frozenset({Action.REGISTER_AGENT, Action.SERVE})

#: What each role allows.
ROLE_ACTIONS: dict[Role, frozenset[Action]] = {
    Role.CLIENT: _CLIENT,
    Role.AGENT: _AGENT,
    Role.ADMIN: frozenset(Action),
}


@attrs.frozen
class Principal:
    """A verified peer: ``subject`` (the credential's name), its roles, its agent ids.

    ``agent_ids``: the agent ids it may register, each exact or a prefix
    ending in ``*`` (``"pool-a-*"``).  Empty means ``subject`` and
    ``subject-*``.
    """

    subject: str
    roles: frozenset[Role]
    agent_ids: tuple[str, ...] = ()
    #: False only for ``UNAUTHENTICATED`` (authentication off)
    authenticated: bool = True

    def allows(self, action: Action) -> bool:
        """Return True when one of the principal's roles grants ``action``."""
        return any(action in ROLE_ACTIONS[role] for role in self.roles)

    def may_use_agent_id(self, agent_id: str) -> bool:
        """Return True when the principal may register an agent as ``agent_id``.

        Admins and the unauthenticated may use any id; an agent only the ids
        its credential names (see the class docstring).
        """
        if Role.ADMIN in self.roles or not self.authenticated:
            return True
        if Role.AGENT not in self.roles:
            return False
        patterns = self.agent_ids or (self.subject, f"{self.subject}-*")
        for pattern in patterns:
            if pattern.endswith("*"):
                if agent_id.startswith(pattern[:-1]):
                    return True
            elif agent_id == pattern:
                return True
        return False

    def same_owner(self, other: Principal) -> bool:
        """Return True when ``other`` is the same principal (a restart may supersede).

        Two unauthenticated peers count as the same owner: with
        authentication off, a restarted process supersedes as it always did.
        """
        return self.subject == other.subject and self.authenticated == other.authenticated


#: Every peer when authentication is off: may do everything.
UNAUTHENTICATED = Principal("anonymous", frozenset(Role), authenticated=False)
