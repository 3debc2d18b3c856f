"""Elastic sampler: exactly once per epoch across world-size changes (pure)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from elastic_trainer.sampler import ElasticSampler, epoch_permutation, split


def run_epoch(n: int, batch: int, plan: list[tuple[int, int]], epoch: int = 0) -> Counter[int]:
    """Consume one epoch in phases: (world size, global steps before the next change; -1 = to the end)."""
    seen: Counter[int] = Counter()
    offset = 0
    for world, steps in plan:
        samplers = [
            ElasticSampler(n, batch_size=batch, rank=r, world_size=world, epoch=epoch, offset=offset, seed=7)
            for r in range(world)
        ]
        lengths = {len(s) for s in samplers}
        assert len(lengths) == 1, "every rank must take the same number of steps"
        iters = [iter(s) for s in samplers]
        todo = len(samplers[0]) if steps < 0 else min(steps, len(samplers[0]))
        for _ in range(todo):
            for it in iters:
                seen.update(next(it))
        offset = samplers[0].consumed_after(todo)
        if offset == n:
            break
    assert offset == n, "the plan must finish the epoch"
    return seen


def test_each_index_once_across_two_world_size_changes() -> None:
    n = 1437  # the digits training split
    seen = run_epoch(n, batch=32, plan=[(2, 7), (3, 5), (1, -1)])
    assert sorted(seen) == list(range(n))
    assert set(seen.values()) == {1}


@given(
    n=st.integers(0, 300),
    batch=st.integers(1, 9),
    worlds=st.lists(st.tuples(st.integers(1, 5), st.integers(0, 12)), min_size=1, max_size=4),
    last=st.integers(1, 5),
    epoch=st.integers(0, 3),
)
def test_exactly_once_property(n: int, batch: int, worlds: list[tuple[int, int]], last: int, epoch: int) -> None:
    seen = run_epoch(n, batch, [*worlds, (last, -1)], epoch)
    assert sorted(seen) == list(range(n)) and all(c == 1 for c in seen.values())


def test_order_depends_on_epoch_not_world() -> None:
    assert epoch_permutation(50, 1) == epoch_permutation(50, 1)
    assert epoch_permutation(50, 1) != epoch_permutation(50, 2)
    a = [i for r in range(2) for b in ElasticSampler(50, batch_size=5, rank=r, world_size=2, epoch=1) for i in b]
    b = [i for b in ElasticSampler(50, batch_size=10, rank=0, world_size=1, epoch=1) for i in b]
    assert sorted(a) == sorted(b) == list(range(50))


def test_split_sizes_differ_by_at_most_one() -> None:
    for count in range(0, 20):
        for world in range(1, 6):
            parts = [split(count, world, r) for r in range(world)]
            sizes = [e - s for s, e in parts]
            assert sum(sizes) == count and max(sizes) - min(sizes) <= 1
            assert all(parts[i][1] == parts[i + 1][0] for i in range(world - 1))


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        ElasticSampler(10, batch_size=1, rank=2, world_size=2)
    with pytest.raises(ValueError):
        ElasticSampler(10, batch_size=1, rank=0, world_size=1, offset=11)
