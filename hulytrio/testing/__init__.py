"""Helpers that users and tests share: an in-memory cluster of real core machines."""

from .cluster import Cluster

__all__ = ["Cluster"]
