"""The optimizer and EMA the trainers build: fused AdamW and foreach EMA, the same updates as the slow loops."""

import torch
from diffusers.training_utils import EMAModel

from ldm.config import TrainConfig
from ldm.train.optimization import can_fuse, make_ema, make_optimizer


def _model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.GroupNorm(4, 8), torch.nn.Flatten(),
                               torch.nn.Linear(8 * 6 * 6, 5))


def _train(model, optimizer, ema, steps: int = 5) -> None:
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(4, 3, 8, 8, generator=gen)
        model(x).pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        ema.step(model.parameters())


def test_fused_adamw_and_foreach_ema_match_the_reference_loops():
    tc = TrainConfig(learning_rate=1e-2, weight_decay=0.05)
    ours, ref = _model(0), _model(0)
    optimizer = make_optimizer(ours.parameters(), tc)
    assert optimizer.param_groups[0]["fused"]
    ours_ema = make_ema(ours.parameters(), 0.9)
    assert ours_ema.foreach
    _train(ours, optimizer, ours_ema)
    reference = torch.optim.AdamW(ref.parameters(), lr=1e-2, weight_decay=0.05, foreach=False)
    ref_ema = EMAModel(ref.parameters(), decay=0.9, foreach=False)
    _train(ref, reference, ref_ema)
    for a, b in zip(ours.parameters(), ref.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), (a - b).abs().max()
    assert not torch.equal(ours[0].weight, _model(0)[0].weight)  # it did train
    for a, b in zip(ours_ema.shadow_params, ref_ema.shadow_params, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_fusing_needs_floating_point_parameters():
    assert can_fuse([torch.zeros(3, requires_grad=True)])
    assert not can_fuse([torch.zeros(3, dtype=torch.int64)])
    assert not can_fuse([])
