"""Labels normalise to one canonical form, whatever shape they come in."""

from __future__ import annotations

import pytest

from hulytrio.core.types import ContainerRecord, labels_key


class _Label(str):
    __slots__ = ()


@pytest.mark.parametrize(("given", "canonical"), [
    (None, ()), ((), ()), ([], ()), ("a", ("a",)), (("a",), ("a",)), (["a"], ("a",)),
    (("b", "a", "b"), ("a", "b")), ({"b", "a"}, ("a", "b")), ((1,), ("1",)),
    ((_Label("a"),), ("a",)),
])
def test_labels_key(given: object, canonical: tuple[str, ...]) -> None:
    key = labels_key(given)
    assert key == canonical
    assert all(type(label) is str for label in key)
    assert ContainerRecord("u", "k", "a", None, given).labels == canonical  # type: ignore[arg-type]
