"""Containers the e2e agent processes run (``--factories e2e_containers:FACTORIES``)."""

from __future__ import annotations

import os

import trio

import hulytrio

AGENT = os.environ.get("AGENT_ID", "?")


class Echo(hulytrio.Container):
    """Echoes requests; ``emit`` broadcasts to connected clients; ``fail`` raises.

    ``runs`` answers how many times each operation ran on this instance.
    """

    def __init__(self, uuid: str | None) -> None:
        self.uuid = uuid
        self.streams: dict[str, hulytrio.Broadcast] = {}
        self.runs: dict[str, int] = {}

    async def request(self, operation, data=None, client_id=None):
        if operation == "runs":
            return dict(self.runs)
        self.runs[operation] = self.runs.get(operation, 0) + 1
        if operation == "fail":
            raise ValueError(f"asked to fail: {data}")
        if operation == "emit":
            for broadcast in list(self.streams.values()):
                await broadcast(data)
            return len(self.streams)
        if operation == "sleep":
            await trio.sleep(data)
        return {"op": operation, "data": data, "agent": AGENT, "uuid": self.uuid,
                "pid": os.getpid()}

    async def connect(self, client_id, broadcast):
        self.streams[client_id] = broadcast
        await broadcast({"welcome": client_id})

    async def disconnect(self, client_id):
        self.streams.pop(client_id, None)


async def start_echo(options):
    return Echo(options.uuid)


FACTORIES = {"echo": start_echo}

#: A stateless HA instance when the test asks for one.
STATELESS = (
    [hulytrio.StatelessContainer(os.environ["E2E_HA_UUID"], "ha",
                                 Echo(os.environ["E2E_HA_UUID"]))]
    if os.environ.get("E2E_HA_UUID") else []
)


class Counter(hulytrio.Container):
    """A container with state: ``inc`` adds one, ``get`` reads; export/import keep the count."""

    def __init__(self) -> None:
        self.count = 0

    async def request(self, operation, data=None, client_id=None):
        if operation == "inc":
            self.count += 1
            self.state_version += 1
        return {"count": self.count, "agent": AGENT}

    async def export_state(self):
        return {"count": self.count}

    async def import_state(self, state):
        self.count = state["count"]


async def start_counter(options):
    return Counter()


#: ``--factories e2e_containers:STATEFUL``: agents with a state store.
STATEFUL = {"counter": start_counter}
