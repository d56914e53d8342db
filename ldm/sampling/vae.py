"""The VAE at sampling time: a picture's posterior (image to image's start) and latents decoded to pixels."""

from __future__ import annotations

import torch

from ldm.precision import autocast


def posterior(vae, picture: torch.Tensor, precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The VAE posterior of a picture (3, H, W) in [-1, 1]: its (1, C, h, w) mean and std, unscaled, on the CPU
    (each image then draws its own sample from its seeds)."""
    pixels = picture[None].to(vae.device, memory_format=torch.channels_last)
    with autocast(precision, vae.device):
        dist = vae.encode(pixels).latent_dist
    return dist.mean.float().cpu(), dist.std.float().cpu()


def decode(vae, latents: torch.Tensor, precision: str) -> torch.Tensor:
    """Latents (N, C, h, w) as the UNet sees them (scaled) -> images in [0, 1] (N, 3, H, W), in fp32.

    The decode runs in the model's precision: for a few-step student it is a quarter of an image's time
    in fp32, and bf16 moves its pixels by a few levels of 255 at most (50 dB PSNR against fp32)."""
    latents = latents.to(vae.device, torch.float32) / vae.config.scaling_factor
    with autocast(precision, vae.device):
        image = vae.decode(latents.contiguous(memory_format=torch.channels_last), return_dict=False)[0]
    return (image.float().cpu() / 2 + 0.5).clamp(0, 1)


def decode_each(vae, latents: torch.Tensor, precision: str) -> torch.Tensor:
    """decode() one image at a time: the VAE's convolutions give batch-size-dependent bits, and a seed must
    mean the same pixels in a batch of one or sixteen."""
    return torch.cat([decode(vae, latent, precision) for latent in latents.float().split(1)])
