"""Seeded noise: per-image generators, variation seeds, and scheduler noise drawn from them."""

import pytest
import torch
from diffusers import EulerAncestralDiscreteScheduler

from ldm.sampling.interpolate import slerp
from ldm.sampling.noise import NoiseSource, SeedBlend, scheduler_noise

SHAPE = (3, 4, 8, 8)


def test_an_image_gets_the_same_noise_whatever_its_batch():
    alone = NoiseSource([SeedBlend(7)]).randn((1, *SHAPE[1:]))
    batch = NoiseSource([SeedBlend(5), SeedBlend(7), SeedBlend(9)]).randn(SHAPE)
    assert torch.equal(batch[1:2], alone)
    assert not torch.equal(batch[0], batch[1])
    assert torch.equal(alone[0], torch.randn((1, *SHAPE[1:]), generator=torch.Generator().manual_seed(7))[0])


def test_variation_seed_slerps_the_two_seeds_noise():
    plain = lambda seed: NoiseSource([SeedBlend(seed)]).randn((1, 4, 8, 8))  # noqa: E731
    assert torch.equal(NoiseSource([SeedBlend(1, 2, 0.0)]).randn((1, 4, 8, 8)), plain(1))
    half = NoiseSource([SeedBlend(1, 2, 0.5)]).randn((1, 4, 8, 8))
    assert torch.allclose(half, slerp(plain(1), plain(2), 0.5))
    assert torch.allclose(NoiseSource([SeedBlend(1, 2, 1.0)]).randn((1, 4, 8, 8)), plain(2), atol=1e-6)


def test_every_draw_continues_each_images_own_stream():
    source = NoiseSource([SeedBlend(3), SeedBlend(4)])
    first, second = source.randn((2, 4, 8, 8)), source.randn((2, 4, 8, 8))
    gen = torch.Generator().manual_seed(4)
    torch.randn((1, 4, 8, 8), generator=gen)
    assert torch.equal(second[1:], torch.randn((1, 4, 8, 8), generator=gen))
    assert not torch.equal(first, second)
    with pytest.raises(ValueError, match="noise for 3 images"):
        source.randn((3, 4, 8, 8))


def test_ancestral_scheduler_draws_from_the_source_only_inside_the_block():
    scheduler = EulerAncestralDiscreteScheduler(num_train_timesteps=100)
    scheduler.set_timesteps(5)
    sample, model_output = torch.zeros(2, 4, 8, 8), torch.zeros(2, 4, 8, 8)
    t = scheduler.timesteps[0]

    def step(source):
        scheduler._step_index = None  # each call starts from the first step again
        with scheduler_noise(scheduler, source):
            return scheduler.step(model_output, t, sample).prev_sample

    a = step(NoiseSource([SeedBlend(1), SeedBlend(2)]))
    b = step(NoiseSource([SeedBlend(1), SeedBlend(2)]))
    c = step(NoiseSource([SeedBlend(1), SeedBlend(3)]))
    assert torch.equal(a, b) and torch.equal(a[0], c[0]) and not torch.equal(a[1], c[1])
    module = __import__(type(scheduler).__module__, fromlist=["randn_tensor"])
    from diffusers.utils.torch_utils import randn_tensor

    assert module.randn_tensor is randn_tensor  # put back after the block
