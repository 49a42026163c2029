"""Compare wire encodings for hulytrio frames: msgpack vs orjson vs stdlib json.

Every variant does the whole job a driver needs, message objects -> bytes ->
message objects, and shares the codec's array layout (``[tag, fields...]``) and
its strict decoder, so the only difference is the serialisation layer.  JSON
cannot carry bytes, so the JSON variants base64 the payload fields (that is
what a JSON wire would have to do).

A second table compares the codec's precomputed generic path with cattrs
(tuple strategy) for the nested messages, both over msgpack.

Usage: .venv/bin/python benchmarks/codec_bench.py [--quick]
Prints tables and, last, one JSON line with every figure.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import attrs
import cattrs
import msgpack
import orjson

from hulytrio.core.events import AgentEvent, ChangeKind, ContainerEvent, NetworkEvent
from hulytrio.core.messages import Event, GetReply, Message, Ping, Request, Response
from hulytrio.core.types import AgentInfo, ContainerRecord
from hulytrio.wire import codec

# --- the messages -------------------------------------------------------------

PAYLOAD = codec.encode_payload({"op": "update", "doc": "x" * 60, "n": 12345, "tags": ["a", "b"]})
RECORD = ContainerRecord(
    uuid="3f0b8a52-2c4e-4a8e-9d57-0c1f7e1f2a11",
    kind="session",
    agent_id="agent-7",
    endpoint="ws://10.0.0.7:9001",
    labels=("tenant-a", "eu"),
    stateless=False,
    epoch=0,
)


def _record(i: int) -> ContainerRecord:
    return ContainerRecord(
        uuid=f"3f0b8a52-2c4e-4a8e-9d57-0c1f7e1f2a{i:02d}",
        kind="session",
        agent_id=f"agent-{i % 3}",
        endpoint=f"ws://10.0.0.{i}:9001",
        labels=("tenant-a",),
    )


MESSAGES: dict[str, Message] = {
    "Request": Request(
        id=41, uuid=RECORD.uuid, operation="update", payload=PAYLOAD, client_id="client-12"
    ),
    "Response": Response(id=41, payload=PAYLOAD[:40]),
    "Ping": Ping(),
    "GetReply": GetReply(id=42, container=RECORD),
    "Event": Event(
        NetworkEvent(
            seq=1001,
            agents=(
                AgentEvent(
                    ChangeKind.UPDATED,
                    AgentInfo("agent-1", ("session", "echo"), "ws://10.0.0.1:9001", 12),
                ),
            ),
            containers=tuple(
                ContainerEvent(ChangeKind.ADDED if i % 2 else ChangeKind.REMOVED, _record(i))
                for i in range(4)
            ),
        )
    ),
}

#: A realistic 20-message frame: mostly container traffic, some pings, a little registry.
MIX: list[Message] = (
    [MESSAGES["Request"]] * 8
    + [MESSAGES["Response"]] * 8
    + [MESSAGES["Ping"]] * 2
    + [MESSAGES["GetReply"], MESSAGES["Event"]]
)

# --- the codecs under test ----------------------------------------------------

# Position of the bytes field in the wire array, for the JSON variants.
_BYTES_AT = {"req": 4, "res": 2, "push": 2}


def _b64_out(wire: list[Any]) -> list[Any]:
    at = _BYTES_AT.get(wire[0])
    if at is not None:
        wire = list(wire)
        wire[at] = base64.b64encode(wire[at]).decode("ascii")
    return wire


def _b64_in(wire: list[Any]) -> list[Any]:
    at = _BYTES_AT.get(wire[0])
    if at is not None:
        wire[at] = base64.b64decode(wire[at])
    return wire


def _json_codec(
    dumps: Callable[[Any], bytes], loads: Callable[[bytes], Any]
) -> tuple[Callable[[list[Message]], bytes], Callable[[bytes], list[Message]]]:
    def encode(messages: list[Message]) -> bytes:
        return dumps([_b64_out(codec._to_wire(m)) for m in messages])

    def decode(data: bytes) -> list[Message]:
        return [codec._from_wire(_b64_in(w), i) for i, w in enumerate(loads(data))]

    return encode, decode


def _stdlib_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


CODECS = {
    "msgpack": (codec.encode_frame, codec.decode_frame),
    "orjson": _json_codec(orjson.dumps, orjson.loads),
    "json": _json_codec(_stdlib_dumps, json.loads),
}

# --- timing -------------------------------------------------------------------


def _rate(fn: Callable[[], object], per_call: int, budget: float) -> float:
    """Return calls of ``fn`` per second times ``per_call`` (best of 5 runs)."""
    n = 1
    while True:  # size the loop to about budget/5 seconds
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt > budget / 50:
            break
        n *= 2
    n = max(1, int(n * (budget / 5) / dt))
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - t0)
    return n * per_call / best


def _measure(messages: list[Message], budget: float) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for name, (encode, decode) in CODECS.items():
        frame = encode(messages)
        assert decode(frame) == messages, name
        out[name] = {
            "encode_per_s": _rate(lambda e=encode: e(messages), len(messages), budget),
            "decode_per_s": _rate(lambda d=decode, f=frame: d(f), len(messages), budget),
            "bytes_per_msg": len(frame) / len(messages),
        }
    return out


def _cattrs_codec() -> tuple[Callable[[Message], bytes], Callable[[bytes], Message]]:
    """The same wire arrays built by cattrs (AS_TUPLE) instead of the codec's specs."""
    # cattrs needs real types, and the core modules use string annotations.
    for cls in (
        GetReply,
        Event,
        NetworkEvent,
        AgentEvent,
        ContainerEvent,
        ContainerRecord,
        AgentInfo,
    ):
        attrs.resolve_types(cls)
    conv = cattrs.Converter(unstruct_strat=cattrs.UnstructureStrategy.AS_TUPLE)

    def encode(message: Message) -> bytes:
        return msgpack.packb([message.TAG, *conv.unstructure(message)], use_bin_type=True)

    def decode(data: bytes) -> Message:
        wire = msgpack.unpackb(data, use_list=True, strict_map_key=False)
        cls = codec.MESSAGE_TYPES[wire[0]]
        return conv.structure(wire[1:], cls)

    return encode, decode


def _measure_generic(budget: float) -> dict[str, dict[str, float]]:
    c_encode, c_decode = _cattrs_codec()
    out: dict[str, dict[str, float]] = {}
    for kind in ("GetReply", "Event"):
        m = MESSAGES[kind]
        assert c_decode(c_encode(m)) == m
        frame = codec.encode_frame([m])
        c_frame = c_encode(m)
        out[kind] = {
            "codec_encode_per_s": _rate(lambda m=m: codec.encode_frame([m]), 1, budget),
            "codec_decode_per_s": _rate(lambda f=frame: codec.decode_frame(f), 1, budget),
            "cattrs_encode_per_s": _rate(lambda m=m: c_encode(m), 1, budget),
            "cattrs_decode_per_s": _rate(lambda f=c_frame: c_decode(f), 1, budget),
        }
    return out


def main() -> None:
    budget = 0.25 if "--quick" in sys.argv else 1.0
    results: dict[str, Any] = {
        "python": sys.version.split()[0],
        "msgpack": ".".join(map(str, msgpack.version)),
        "orjson": orjson.__version__,
        "cpus": os.cpu_count(),
        "payload_bytes": len(PAYLOAD),
        "single": {},
    }
    print(f"payload: {len(PAYLOAD)} bytes of msgpack user data\n")
    header = f"{'case':<24}{'codec':<9}{'encode msg/s':>14}{'decode msg/s':>14}{'bytes/msg':>11}"
    print(header)
    print("-" * len(header))
    cases = [(kind, [m]) for kind, m in MESSAGES.items()]
    cases.append(("mix (20 per frame)", MIX))
    for case, messages in cases:
        figures = _measure(messages, budget)
        for name, f in figures.items():
            print(
                f"{case:<24}{name:<9}{f['encode_per_s']:>14,.0f}"
                f"{f['decode_per_s']:>14,.0f}{f['bytes_per_msg']:>11.1f}"
            )
        print()
        if case.startswith("mix"):
            results["mix"] = figures
        else:
            results["single"][case] = figures

    print("generic path over msgpack, one message per frame (msg/s):")
    header = (
        f"{'message':<10}{'codec enc':>12}{'cattrs enc':>12}{'codec dec':>12}{'cattrs dec':>12}"
    )
    print(header)
    print("-" * len(header))
    generic = _measure_generic(budget)
    for kind, f in generic.items():
        print(
            f"{kind:<10}{f['codec_encode_per_s']:>12,.0f}{f['cattrs_encode_per_s']:>12,.0f}"
            f"{f['codec_decode_per_s']:>12,.0f}{f['cattrs_decode_per_s']:>12,.0f}"
        )
    results["generic"] = generic
    print()
    print(json.dumps(results, sort_keys=True))


if __name__ == "__main__":
    main()
