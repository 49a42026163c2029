"""``@fast_init``: a cheaper ``__init__`` for the core's frozen, slotted attrs classes.

attrs' frozen ``__init__`` sets each field through ``object.__setattr__``
(bound once per call); the one ``fast_init`` puts in its place calls each
slot's own setter, half the cost (~0.3 us instead of ~0.6 us for a two-field
``Send``).  The core makes a message, an effect or a record for every
request, reply and registry change, so this buys about 4% of the simulator's
instructions per churn event (``benchmarks/sim_speed.py``; docs/simulator.md,
"Cheaper constructors").  It is applied, visibly, as the outer decorator of
each class that uses it::

    @fast_init
    @attrs.frozen
    class Send(BaseEffect): ...

The messages, effects, events and records stay pure Python in the mypyc
build (tools/build_compiled.py), so this is their fast path there too.
``tests/core/test_fast_init.py`` builds every decorated class with both
constructors and compares the fields.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import attrs

__all__ = ["ATTRS_INITS", "fast_init"]

_T = TypeVar("_T")

#: class -> the ``__init__`` attrs generated for it (kept for tests that
#: compare it with the one ``fast_init`` puts in its place)
ATTRS_INITS: dict[type, Callable[..., None]] = {}


def fast_init(cls: type[_T]) -> type[_T]:
    """Give a frozen, slotted attrs class a cheaper ``__init__``; returns the class.

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
