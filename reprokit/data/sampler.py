"""A step-indexed batch sampler: the batch at step ``s`` is a pure function of (seed, stream, s).

The sample stream is the concatenation of seeded permutations of the data set (one per pass), cut
into global batches of ``batch * world_size``; rank ``r`` takes every ``world_size``-th item. Each
item carries its own augmentation seed, so resuming at step ``s`` reproduces the exact images and
augmentations of an uninterrupted run without saving any loader or worker state.
"""
from __future__ import annotations

import numpy as np
import torch


class StepBatchSampler(torch.utils.data.Sampler):
    def __init__(self, size: int, batch: int, seed: int, stream: int, start_step: int = 0,
                 total_steps: int | None = None, rank: int = 0, world_size: int = 1):
        if size <= 0:
            raise ValueError("cannot sample batches from an empty data set")
        self.size, self.batch, self.seed, self.stream = size, batch, seed, stream
        self.start_step, self.total_steps = start_step, total_steps
        self.rank, self.world_size = rank, world_size
        self._perm_cache: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perm_cache:
            self._perm_cache = {epoch: np.random.default_rng([self.seed, self.stream, epoch]).permutation(self.size)}
        return self._perm_cache[epoch]

    def batch_at(self, step: int) -> list[tuple[int, int]]:
        """[(dataset index, augmentation seed)] for this rank at ``step``."""
        global_batch = self.batch * self.world_size
        out = []
        for j in range(self.rank, global_batch, self.world_size):
            pos = step * global_batch + j
            epoch, offset = divmod(pos, self.size)
            aug_seed = int(np.random.SeedSequence([self.seed, self.stream, pos]).generate_state(1)[0])
            out.append((int(self._perm(epoch)[offset]), aug_seed))
        return out

    def __iter__(self):
        step = self.start_step
        while self.total_steps is None or step < self.total_steps:
            yield self.batch_at(step)
            step += 1

    def __len__(self):
        if self.total_steps is None:
            raise TypeError("infinite sampler has no length")
        return max(0, self.total_steps - self.start_step)
