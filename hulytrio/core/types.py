"""Records the registry keeps and hands out: ids, get options, containers, agents.

Everything here is a frozen, slotted attrs class so it can be shared between
the core, the drivers and user code without defensive copies.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, TypeVar

import attrs

__all__ = [
    "AgentId",
    "AgentInfo",
    "ClientId",
    "ContainerKind",
    "ContainerRecord",
    "ContainerState",
    "ContainerUuid",
    "GetOptions",
    "OfferedContainer",
    "labels_key",
]

AgentId = str
ClientId = str
ContainerKind = str
ContainerUuid = str


def _labels(value: Any) -> tuple[str, ...]:
    """Normalise labels to a sorted tuple without duplicates.

    Labels select containers by their *set*, so order and repetition carry no
    meaning; one canonical form makes them usable as dict keys.
    """
    if value is None or (type(value) is tuple and not value):
        return ()  # the usual case (records of unlabelled containers), at once
    if type(value) is tuple and len(value) == 1 and type(value[0]) is str:
        return value  # one label (a record of a labelled container): canonical already
    if isinstance(value, str):
        return (value,)
    return tuple(sorted(dict.fromkeys(str(v) for v in value)))


_T = TypeVar("_T")

#: class -> the ``__init__`` attrs generated for it (kept for tests that
#: compare it with the one ``fast_init`` puts in its place)
ATTRS_INITS: dict[type, Callable[..., None]] = {}


def fast_init(cls: type[_T]) -> type[_T]:
    """Give a frozen, slotted attrs class a cheaper ``__init__``; returns the class.

    attrs' frozen ``__init__`` sets each field through ``object.__setattr__``
    (bound once per call); this one calls each slot's own setter, half the
    cost for the records and messages the core makes for every request.
    Same signature, defaults, factories and converters, and instances stay
    immutable (only ``__init__`` bypasses the frozen ``__setattr__``, as
    attrs' own does).  It is compiled when the first instance is made, so
    importing the core costs what it did (a hub start makes few kinds).

    Raises:
        TypeError: for a class this cannot copy exactly (not slotted, or
            with validators, ``init=False`` or keyword-only fields, or
            pre/post-init hooks).
    """
    fields = getattr(cls, "__attrs_attrs__", None)
    if fields is None or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a slotted attrs class")
    if hasattr(cls, "__attrs_post_init__") or hasattr(cls, "__attrs_pre_init__"):
        raise TypeError(f"{cls.__name__} has init hooks")
    for f in fields:
        if not f.init or f.kw_only or f.validator is not None or f.alias is None:
            raise TypeError(f"{cls.__name__}.{f.name} needs attrs' own __init__")
        if isinstance(f.default, attrs.Factory) and f.default.takes_self:  # type: ignore[arg-type]
            raise TypeError(f"{cls.__name__}.{f.name} has a factory taking self")
        if isinstance(f.converter, attrs.Converter):
            raise TypeError(f"{cls.__name__}.{f.name} has a converter taking more")
    original = cls.__init__

    def first_init(self: Any, *args: Any, **kwargs: Any) -> None:
        init = _compile_init(cls, fields)
        init.__doc__ = original.__doc__
        setattr(cls, "__init__", init)  # noqa: B010 (mypy forbids assigning a method)
        init(self, *args, **kwargs)

    first_init.__wrapped__ = original  # type: ignore[attr-defined]  # its signature
    first_init.__qualname__ = f"{cls.__qualname__}.__init__"
    ATTRS_INITS[cls] = original
    setattr(cls, "__init__", first_init)  # noqa: B010
    return cls


def _compile_init(cls: type, fields: tuple[Any, ...]) -> Callable[..., None]:
    """Return ``fast_init``'s ``__init__`` for ``cls`` (its fields checked already)."""
    params: list[str] = []
    body: list[str] = []
    scope: dict[str, Any] = {"NOTHING": attrs.NOTHING}
    for i, f in enumerate(fields):
        arg = f.alias
        scope[f"_set{i}"] = getattr(cls, f.name).__set__
        value = arg
        if isinstance(f.default, attrs.Factory):  # type: ignore[arg-type]
            scope[f"_factory{i}"] = f.default.factory
            params.append(f"{arg}=NOTHING")
            value = f"(_factory{i}() if {arg} is NOTHING else {arg})"
        elif f.default is not attrs.NOTHING:
            scope[f"_default{i}"] = f.default
            params.append(f"{arg}=_default{i}")
        else:
            params.append(arg)
        if f.converter is not None:
            # attrs converts defaults (and made ones) too
            scope[f"_conv{i}"] = f.converter
            value = f"_conv{i}({value})"
        body.append(f"    _set{i}(self, {value})")
    source = f"def __init__(self, {', '.join(params)}):\n" + ("\n".join(body) or "    pass")
    exec(compile(source, f"<fast_init {cls.__qualname__}>", "exec"), scope)
    init: Callable[..., None] = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


def labels_key(labels: Any) -> tuple[str, ...]:
    """Return the canonical (sorted, de-duplicated) form of ``labels``."""
    return _labels(labels)


class ContainerState(enum.Enum):
    """Lifecycle of a container as the hub sees it.

    PENDING -> ACTIVE -> ORPHANED -> TERMINATED (gone from the registry);
    ORPHANED -> ACTIVE when a client gets it again before its deadline.  The
    registry's table of legal moves is ``entries.CONTAINER_TRANSITIONS``.
    """

    #: An agent was asked to start it and has not answered yet.
    PENDING = "pending"
    #: Running on its agent; at least one client holds it, or it is stateless.
    ACTIVE = "active"
    #: Running, held by nobody; terminated at ``orphaned_at + unused timeout``.
    ORPHANED = "orphaned"
    #: Gone from the registry (final): stopped, failed, timed out or its agent left.
    TERMINATED = "terminated"


@attrs.frozen
class GetOptions:
    """What a client asks for in ``get``: a fixed uuid, labels and extra data.

    ``labels`` select by exact set (see docs/design.md, "Labels"); ``extra``
    is passed to the agent's factory untouched.
    """

    uuid: ContainerUuid | None = None
    labels: tuple[str, ...] = attrs.field(default=(), converter=_labels)
    extra: dict[str, Any] | None = None


@attrs.frozen
class OfferedContainer:
    """A container an agent reports when it registers.

    ``stateless`` marks a pre-existing HA instance that several agents may
    offer under one uuid; the first offer wins and the rest stand by.
    """

    uuid: ContainerUuid
    kind: ContainerKind
    labels: tuple[str, ...] = attrs.field(default=(), converter=_labels)
    stateless: bool = False


@attrs.frozen
class ContainerRecord:
    """A container as listed by the hub and carried in events.

    ``epoch`` counts ownership changes of a stateless uuid (0 for ordinary
    containers); it only grows within one hub term.  ``instance`` numbers
    this instance of the uuid within one hub's life: a uuid dropped and
    started again gets a new, larger one (a promoted standby keeps it, as
    the holds carry over).
    """

    uuid: ContainerUuid
    kind: ContainerKind
    agent_id: AgentId
    endpoint: str | None = None
    labels: tuple[str, ...] = attrs.field(default=(), converter=_labels)
    stateless: bool = False
    epoch: int = 0
    instance: int = 0


@attrs.frozen
class AgentInfo:
    """An agent as listed by the hub and carried in events."""

    agent_id: AgentId
    kinds: tuple[ContainerKind, ...]
    endpoint: str | None = None
    containers: int = 0


for _cls in (GetOptions, OfferedContainer, ContainerRecord, AgentInfo):
    fast_init(_cls)
