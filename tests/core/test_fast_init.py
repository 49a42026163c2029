"""The cheaper constructors of the core's frozen records build what attrs' own built."""

from __future__ import annotations

import inspect

import attrs
import pytest

import hulytrio.core.effects
import hulytrio.core.events
import hulytrio.core.messages
import hulytrio.core.types
from hulytrio.core.fastinit import ATTRS_INITS, fast_init
from hulytrio.core.types import ContainerRecord, GetOptions

CLASSES = sorted(ATTRS_INITS, key=lambda c: (c.__module__, c.__qualname__))


def _fields(obj: object) -> tuple[object, ...]:
    return tuple(getattr(obj, f.name) for f in attrs.fields(type(obj)))


def _build(cls: type, init: object, *args: object, **kwargs: object) -> object:
    obj = object.__new__(cls)
    init(obj, *args, **kwargs)  # type: ignore[operator]
    return obj


def test_every_record_class_has_one() -> None:
    modules = (hulytrio.core.messages, hulytrio.core.effects, hulytrio.core.events,
               hulytrio.core.types)
    classes = [getattr(module, name) for module in modules for name in module.__all__]
    records = [cls for cls in classes if isinstance(cls, type) and attrs.has(cls)]
    # one of each module, so a module left out of the scan shows
    assert {hulytrio.core.messages.Welcome, hulytrio.core.effects.Send,
            hulytrio.core.events.NetworkEvent, ContainerRecord} <= set(records)
    for cls in records:
        assert cls in ATTRS_INITS, cls.__qualname__


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__qualname__)
def test_same_signature_and_fields(cls: type) -> None:
    original = ATTRS_INITS[cls]
    sig = inspect.signature(cls.__init__)
    assert list(sig.parameters) == list(inspect.signature(original).parameters)
    params = list(sig.parameters.values())[1:]
    converted = {f.alias for f in attrs.fields(cls) if f.converter is not None}

    def value(name: str) -> object:
        # Labels, the one converted field, are normalised: a list of strings.
        return ["b", "a", "b"] if name in converted else object()

    required = [value(p.name) for p in params if p.default is inspect.Parameter.empty]
    # Only the required arguments: the defaults (and factories) fill the rest.
    assert _fields(cls(*required)) == _fields(_build(cls, original, *required))
    # Every argument given, by position and by keyword.
    every = [value(p.name) for p in params]
    fast = cls(*every)
    assert _fields(fast) == _fields(_build(cls, original, *every))
    by_name = {p.name: v for p, v in zip(params, every, strict=True)}
    assert _fields(cls(**by_name)) == _fields(fast)
    fields = attrs.fields(cls)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        fast.__setattr__(fields[0].name if fields else "x", None)
    with pytest.raises(TypeError):
        cls(*every, object())


def test_converters_apply_to_values_and_defaults() -> None:
    rec = ContainerRecord("u", "k", "a", None, ["b", "a", "b"])
    assert rec.labels == ("a", "b")
    assert ContainerRecord("u", "k", "a").labels == ()
    assert GetOptions(labels="x").labels == ("x",)
    assert attrs.evolve(rec, epoch=2) == ContainerRecord("u", "k", "a", None, ("a", "b"),
                                                         False, 2)


def test_refuses_what_it_cannot_copy() -> None:
    @attrs.frozen
    class Checked:
        x: int = attrs.field(validator=attrs.validators.instance_of(int))

    @attrs.frozen
    class Hooked:
        x: int

        def __attrs_post_init__(self) -> None:
            pass

    @attrs.define(slots=False)
    class Loose:
        x: int

    for cls in (Checked, Hooked, Loose):
        with pytest.raises(TypeError):
            fast_init(cls)


def test_compiled_at_the_first_instance_not_at_import() -> None:
    # Importing the core compiles nothing (a hub's start-up stays as cheap):
    # each class's constructor is compiled when its first instance is made.
    import subprocess
    import sys

    code = (
        "from hulytrio.core.messages import Welcome\n"
        "before = Welcome.__init__.__code__.co_filename\n"
        "Welcome(1, 'h', 3.0, 1.0)\n"
        "print(before, Welcome.__init__.__code__.co_filename, sep='|')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip().split("|")
    assert out[0].endswith("fastinit.py")
    assert out[1] == "<fast_init Welcome>"
