"""The two loops the training benchmark times: ours is ldm's trainer set-up and step, naive the example's."""

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
from diffusers.training_utils import EMAModel
from support import TINY

from benchmarks import loops
from ldm.config import load_config


def test_squares_are_in_range_and_captioned():
    data = loops.SquaresDataset(8, 16, seed=1)
    assert data.load(0).shape == (3, 16, 16)
    assert data.pixels.min() >= -1 and data.pixels.max() <= 1
    assert len(data.captions) == 8 and all(c.startswith("a ") for c in data.captions)


def _processors(unet) -> set[type]:
    return {type(p) for p in unet.attn_processors.values()}


@pytest.fixture(scope="module")
def data():
    return loops.SquaresDataset(4, load_config(TINY).data.resolution)


@pytest.mark.parametrize("precision, attention, expected", [
    ("bf16", "trainer", AttnProcessor),  # the trainer's CPU choice under bf16 autocast
    ("no", "trainer", AttnProcessor2_0),
    ("bf16", "sdpa", AttnProcessor2_0),
    ("no", "classic", AttnProcessor),
])
def test_ours_is_the_trainer_with_the_asked_attention(data, precision, attention, expected):
    cfg = load_config(TINY, ["train_unet.batch_size=2"])
    loop = loops.ours(cfg, data, precision, attention, channels_last=False)
    try:
        assert _processors(loop.unet) == {expected}
        assert loop.cache_s > 0 and loop.ema and loop.samples_per_step == 2
        loop.step(0)  # the LR warm-up starts at 0: the first update changes nothing
        before = [p.detach().clone() for p in loop.unet.parameters()]
        loss, data_s = loop.step(1)
        assert torch.isfinite(torch.tensor(loss)) and data_s > 0
        assert any(not torch.equal(a, b) for a, b in zip(before, loop.unet.parameters()))
    finally:
        loop.close()


def test_naive_keeps_the_examples_defaults(data, monkeypatch):
    made = []
    monkeypatch.setattr(loops, "EMAModel", lambda *a, **k: made.append(k) or EMAModel(*a, **k))
    cfg = load_config(TINY, ["train_unet.batch_size=2"])
    loop = loops.naive(cfg, data, "no", "sdpa", channels_last=False)
    assert _processors(loop.unet) == {AttnProcessor2_0}
    assert made and "foreach" not in made[0]  # EMAModel's default: a per-tensor loop
    loss, data_s = loop.step(0)
    assert torch.isfinite(torch.tensor(loss)) and data_s > 0 and loop.cache_s == 0
    assert loop.count_flops() > 0
