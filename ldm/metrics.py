"""Measures of image quality that training, evaluation and the explorer share (no training code here)."""

from __future__ import annotations

import torch


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB for images in [-1, 1]."""
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


@torch.no_grad()
def vae_round_trip(vae, pixels: torch.Tensor) -> torch.Tensor:
    """Decode the posterior mean of each image (the deterministic reconstruction)."""
    return vae.decode(vae.encode(pixels).latent_dist.mean).sample.float()


@torch.no_grad()
def heldout_psnr(vae, dataset, device, batch_size: int = 64) -> float:
    """Mean reconstruction PSNR (dB) over a dataset (nan when it is empty)."""
    if len(dataset) == 0:
        return float("nan")
    scores = []
    for start in range(0, len(dataset), batch_size):
        pixels = torch.stack([dataset.load(i) for i in range(start, min(start + batch_size, len(dataset)))])
        pixels = pixels.to(device)
        scores.append(psnr(vae_round_trip(vae, pixels), pixels.float()).cpu())
    return float(torch.cat(scores).mean())
