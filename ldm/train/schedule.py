"""Which samples a step reads and which random numbers it draws: pure functions of the step.

Deriving both from (seed, step) rather than from stateful iterators makes a resumed run read the
exact next batch, mid-epoch included, and draw the same noise as an uninterrupted one.
"""

from __future__ import annotations

from functools import lru_cache

import torch


@lru_cache(maxsize=4)
def _permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def batch_indices(
    step: int, micro: int, accum: int, batch_size: int, n: int, seed: int, rank: int = 0, world: int = 1
) -> list[int]:
    """Dataset indices for one process's micro-batch: a fresh shuffle each epoch, sharded by rank."""
    global_batch = batch_size * world
    start = (step * accum + micro) * global_batch + rank * batch_size
    out = []
    for k in range(start, start + batch_size):
        epoch, pos = divmod(k, n)
        out.append(int(_permutation(n, seed, epoch)[pos]))
    return out


def step_generator(seed: int, step: int, micro: int = 0, rank: int = 0) -> torch.Generator:
    """A CPU generator for one micro-batch's noise, timesteps and dropout."""
    return torch.Generator().manual_seed(((seed * 7919 + step) * 131 + micro) * 257 + rank)

