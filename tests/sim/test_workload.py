"""The workload's inlined draws are the library's own."""

from __future__ import annotations

import random

from hulytrio.sim.workload import randbelow


def test_randbelow_draws_what_randrange_draws() -> None:
    for seed in range(20):
        a = random.Random(seed)
        b = random.Random(seed)
        for n in (1, 2, 3, 4, 5, 7, 8, 9, 100, 1000):
            assert [randbelow(a, n) for _ in range(50)] == [b.randrange(n) for _ in range(50)]
        # and leaves the generator in the same state
        assert a.random() == b.random()
