"""Image-quality measures on known values."""

import torch

from ldm.metrics import psnr


def test_psnr_known_values():
    a = torch.zeros(2, 3, 8, 8)
    assert torch.allclose(psnr(a, a), torch.tensor([100.0, 100.0]))  # identical: the 1e-10 floor
    b = a.clone()
    b[1] += 0.2  # 0.1 in [0, 1] units everywhere: MSE 0.01 -> 20 dB
    assert torch.allclose(psnr(a, b), torch.tensor([100.0, 20.0]), atol=1e-4)
    assert torch.allclose(psnr(a, a + 5), psnr(a, a + 1))  # values outside [-1, 1] are clamped first
