"""Elastic distributed sampling: every sample exactly once per epoch, across world-size changes.

The order of an epoch is a permutation that depends only on (seed, epoch, dataset length), never on the world size.
Training consumes it in *global* steps: a global step takes the next ``world_size * batch_size`` indices (fewer at
the end of the epoch) and splits them into contiguous per-rank chunks whose sizes differ by at most one. So after k
steps exactly ``offset + min(k * world_size * batch_size, remaining)`` samples of the epoch are consumed, whatever
the rank; a checkpoint stores that global offset and a generation of another size resumes from it.

Every rank gets the same number of steps per epoch (collectives stay aligned); in the last step a rank may get fewer
samples than the others, even none when fewer samples than ranks remain: training code must accept an empty batch
(e.g. a sum-reduced loss over zero samples).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator


def epoch_permutation(n: int, epoch: int, seed: int = 0, shuffle: bool = True) -> list[int]:
    order = list(range(n))
    if shuffle:
        random.Random(f"elastic-sampler:{seed}:{epoch}").shuffle(order)
    return order


def split(count: int, world_size: int, rank: int) -> tuple[int, int]:
    """[start, end) of rank's contiguous chunk when ``count`` items are split over ``world_size`` ranks."""
    q, r = divmod(count, world_size)
    start = rank * q + min(rank, r)
    return start, start + q + (1 if rank < r else 0)


class ElasticSampler:
    """Per-rank batches of dataset indices for the rest of one epoch, from a global offset.

    ``offset``: samples of this epoch consumed before (by any world size). Iterating yields one list of indices per
    global step (a batch sampler: pass it as ``batch_sampler=`` to a DataLoader, or index tensors directly).
    """

    def __init__(
        self,
        dataset_len: int,
        *,
        batch_size: int,
        rank: int,
        world_size: int,
        epoch: int = 0,
        offset: int = 0,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        if dataset_len < 0 or batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad sampler arguments: n={dataset_len} b={batch_size} rank={rank}/{world_size}")
        if not 0 <= offset <= dataset_len:
            raise ValueError(f"offset {offset} outside [0, {dataset_len}]")
        self.n, self.batch_size, self.rank, self.world_size = dataset_len, batch_size, rank, world_size
        self.epoch, self.offset, self.seed, self.shuffle = epoch, offset, seed, shuffle

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        """Global steps left in this epoch (the same on every rank)."""
        return math.ceil((self.n - self.offset) / self.global_batch)

    def consumed_after(self, steps: int) -> int:
        """The epoch offset after ``steps`` more global steps (what a checkpoint stores)."""
        return min(self.n, self.offset + steps * self.global_batch)

    def __iter__(self) -> Iterator[list[int]]:
        order = epoch_permutation(self.n, self.epoch, self.seed, self.shuffle)
        for pos in range(self.offset, self.n, self.global_batch):
            chunk = order[pos : min(self.n, pos + self.global_batch)]
            start, end = split(len(chunk), self.world_size, self.rank)
            yield chunk[start:end]
