"""Deterministic data order and per-step randomness.

Everything random in a training step is a pure function of ``(seed, step, rank)``:
the global batch is a window of an endless stream of seeded epoch permutations,
and the timesteps, noise and label dropout come from a generator seeded by
``step_seed``.  Resuming at step ``s`` therefore replays exactly the batches and
noise an uninterrupted run would have seen, whatever the world size was.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


def step_seed(seed: int, step: int, rank: int = 0, stream: int = 0) -> int:
    """A 63-bit seed unique to (seed, step, rank, stream)."""
    state = np.random.SeedSequence([int(seed), int(step), int(rank), int(stream)]).generate_state(2, np.uint64)
    return int(state[0] >> np.uint64(1))


def step_generator(seed: int, step: int, rank: int = 0, stream: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(step_seed(seed, step, rank, stream))


class BatchSchedule:
    """Which dataset indices (and epoch) make up global batch ``step``."""

    def __init__(self, dataset_size: int, global_batch: int, seed: int):
        if dataset_size < 1:
            raise ValueError("the dataset is empty")
        self.size, self.batch, self.seed = int(dataset_size), int(global_batch), int(seed)
        self._perm_cache: dict[int, np.ndarray] = {}

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._perm_cache:
            if len(self._perm_cache) > 4:
                self._perm_cache.clear()
            self._perm_cache[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.size)
        return self._perm_cache[epoch]

    def global_batch(self, step: int) -> list[tuple[int, int]]:
        """``[(epoch, index), ...]`` of the ``global_batch`` samples of ``step``."""
        start = step * self.batch
        out = []
        for pos in range(start, start + self.batch):
            epoch, offset = divmod(pos, self.size)
            out.append((epoch, int(self.permutation(epoch)[offset])))
        return out

    def epoch_of(self, step: int) -> float:
        return step * self.batch / self.size


def load_batch(dataset: Dataset, items: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack the samples ``items`` (epoch, index); flips follow each sample's epoch."""
    xs, ys = [], []
    for epoch, index in items:
        if hasattr(dataset, "set_epoch") and getattr(dataset, "epoch", None) != epoch:
            dataset.set_epoch(epoch)
        x, y = dataset[index]
        xs.append(x)
        ys.append(y)
    return torch.stack(xs), torch.stack(ys).long()


def shard(items: list, rank: int, world_size: int, micro_batch: int, accum_step: int) -> list:
    """The micro-batch of ``rank`` for accumulation step ``accum_step`` of a global batch."""
    per_step = micro_batch * world_size
    chunk = items[accum_step * per_step:(accum_step + 1) * per_step]
    return chunk[rank * micro_batch:(rank + 1) * micro_batch]
