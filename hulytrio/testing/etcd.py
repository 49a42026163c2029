"""A throwaway etcd on 127.0.0.1, for the lease tests and the takeover benchmark.

``run_etcd(directory)`` starts Debian's ``etcd`` (package ``etcd-server``;
``make system-deps`` installs it) on free loopback ports with its data in
``directory``, waits until it reports healthy and stops it on exit.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["EtcdMissing", "run_etcd"]


class EtcdMissing(RuntimeError):
    """No ``etcd`` binary on the PATH."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def run_etcd(directory: Path, *, start_timeout: float = 20.0) -> Iterator[str]:
    """Run an etcd with its data in ``directory``; yields its ``http://127.0.0.1:PORT``.

    Raises:
        EtcdMissing: ``etcd`` is not installed.
        RuntimeError: it did not become healthy within ``start_timeout``
            (its log is ``directory/etcd.log``).
    """
    binary = shutil.which("etcd")
    if binary is None:
        raise EtcdMissing("etcd is not installed (make system-deps installs Debian's "
                          "etcd-server)")
    client, peer = _free_port(), _free_port()
    url = f"http://127.0.0.1:{client}"
    with open(directory / "etcd.log", "wb") as log:
        proc = subprocess.Popen(
            [binary, "--data-dir", str(directory / "data"), "--name", "test",
             "--listen-client-urls", url, "--advertise-client-urls", url,
             "--listen-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-cluster", f"test=http://127.0.0.1:{peer}"],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/health", timeout=1) as r:
                        if b'"true"' in r.read():
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"etcd did not start; see {directory}/etcd.log")
                time.sleep(0.05)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
