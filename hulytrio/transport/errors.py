"""Exception plumbing shared by the drivers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["single_errors"]


@contextmanager
def single_errors() -> Iterator[None]:
    """Re-raise a nursery's group of exactly one exception as that exception.

    The drivers' context managers run background tasks in a nursery around
    the user's block, so an error raised *by the user's code* would reach
    them wrapped in an ``ExceptionGroup``; a caller of ``open_client`` expects
    the ``RemoteError`` (or ``KeyboardInterrupt``) it raised.  Groups of
    several exceptions are real concurrent failures and stay groups.  Nested
    groups of one (a nursery inside a nursery) unwrap to the one exception.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        inner: BaseException = group
        while isinstance(inner, BaseExceptionGroup) and len(inner.exceptions) == 1:
            inner = inner.exceptions[0]
        if inner is group:
            raise
        raise inner from None
