"""The lease tests run against a real etcd (``etcd_server.etcd_url``)."""

from __future__ import annotations

from etcd_server import etcd_url

__all__ = ["etcd_url"]
