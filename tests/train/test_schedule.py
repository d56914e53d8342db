"""Batch order and per-step randomness are pure functions of the step."""

from collections import Counter

import torch

from ldm.train.schedule import batch_indices, step_generator


def test_each_epoch_visits_every_sample_once():
    n, bs = 50, 8
    seen = [i for step in range(0, 50) for i in batch_indices(step, 0, 1, bs, n, seed=3)]
    # 400 samples = 8 full epochs: every index exactly 8 times
    assert Counter(seen) == {i: 8 for i in range(n)}


def test_ranks_and_micro_batches_partition_the_global_batch():
    n, bs, world, accum = 64, 4, 2, 2
    step_items = []
    for micro in range(accum):
        for rank in range(world):
            step_items += batch_indices(5, micro, accum, bs, n, seed=0, rank=rank, world=world)
    assert len(step_items) == len(set(step_items)) == bs * world * accum


def test_resume_mid_epoch_reads_the_same_batches():
    full = [batch_indices(s, 0, 1, 6, 20, seed=1) for s in range(10)]
    resumed = [batch_indices(s, 0, 1, 6, 20, seed=1) for s in range(7, 10)]
    assert full[7:] == resumed
    assert full[0] != batch_indices(0, 0, 1, 6, 20, seed=2)


def test_step_generators_are_reproducible_and_distinct():
    a = torch.randn(4, generator=step_generator(0, 10))
    assert torch.equal(a, torch.randn(4, generator=step_generator(0, 10)))
    assert not torch.equal(a, torch.randn(4, generator=step_generator(0, 11)))
    assert not torch.equal(a, torch.randn(4, generator=step_generator(0, 10, rank=1)))
