"""Benchmark only: every Python process started with this directory on ``PYTHONPATH``
runs hulytrio on the ``websockets`` framing (``benchmarks/ws_websockets.py``).

``benchmarks/ab.py --variant websockets`` puts it there for the B side of an
interleaved A/B; nothing else does.
"""

from benchmarks.ws_websockets import install

install()
