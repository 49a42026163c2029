"""Deliberate faults in the registry, for the simulator's self-test only.

The simulator proves its invariants can fail by running a hub with a known
bug switched on (``Hub(seeded_bugs={...})``, a scenario's ``[hub]
seeded_bugs``) and expecting the invariant that names it to break.  Production
never sets one.  Each bug is a name below and the one wrong step it takes.
"""

from __future__ import annotations

from .entries import AgentEntry, ContainerEntry

__all__ = ["RESTART_BEFORE_STOPPED", "STATELESS_DOUBLE_OWNER", "second_owner_wins"]

#: A second agent offering a stateless uuid wins it, while the first one goes
#: on serving: the ``exclusive-serving`` invariant must catch it.
STATELESS_DOUBLE_OWNER = "stateless-double-owner"

#: A container the hub terminates may start again at once, on any agent,
#: before its old agent's last checkpoint is written: the new owner's claim
#: fences that write, and ``clean-stop-saves-all`` must catch it.
RESTART_BEFORE_STOPPED = "restart-before-stopped"


def second_owner_wins(c: ContainerEntry, agent: AgentEntry) -> None:
    """Give stateless ``c`` to ``agent`` without telling its old owner (the bug).

    The caller has taken ``c`` off its old owner's list already.
    """
    c.agent_id = agent.agent_id
    agent.containers[c.uuid] = None
