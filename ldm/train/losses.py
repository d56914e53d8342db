"""Training objectives as pure functions of tensors and models."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.training_utils import compute_snr


def diffusion_loss(unet, noise_scheduler, latents: torch.Tensor, embeds: torch.Tensor,
                   generator: torch.Generator, snr_gamma: float | None = None) -> torch.Tensor:
    """Denoising loss (epsilon or v target), optionally min-SNR-gamma weighted (Hang et al. 2023)."""
    return per_sample_diffusion_loss(unet, noise_scheduler, latents, embeds, generator, snr_gamma).mean()


def per_sample_diffusion_loss(unet, noise_scheduler, latents: torch.Tensor, embeds: torch.Tensor,
                              generator: torch.Generator, snr_gamma: float | None = None) -> torch.Tensor:
    """diffusion_loss of each row of the batch, (N,)."""
    noisy, t, target = noised(noise_scheduler, latents, generator)
    pred = unet(noisy, t, encoder_hidden_states=embeds).sample
    return row_losses(pred, target, noise_scheduler, t, snr_gamma)


def noised(noise_scheduler, latents: torch.Tensor, generator: torch.Generator
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row noised at a random timestep: (x_t, t, the denoising target: epsilon or v)."""
    # x_0 = latents, eps = noise, x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps.
    # Noise and timesteps are drawn on the CPU generator so a seed means the same run on any device.
    noise = torch.randn(latents.shape, generator=generator).to(latents.device)
    t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator)
    t = t.to(latents.device)
    noisy = noise_scheduler.add_noise(latents, noise, t)
    target = noise if noise_scheduler.config.prediction_type == "epsilon" else \
        noise_scheduler.get_velocity(latents, noise, t)
    return noisy, t, target


def row_losses(pred: torch.Tensor, target: torch.Tensor, noise_scheduler, t: torch.Tensor,
               snr_gamma: float | None = None) -> torch.Tensor:
    """Each row's mean squared error, optionally min-SNR-gamma weighted, (N,)."""
    per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    if snr_gamma:
        snr = compute_snr(noise_scheduler, t)
        v = noise_scheduler.config.prediction_type == "v_prediction"
        per_sample = per_sample * torch.clamp(snr, max=snr_gamma) / (snr + 1 if v else snr)
    return per_sample


def vae_loss(vae, pixels: torch.Tensor, eps: torch.Tensor, kl_weight: float,
             recon: str = "l1") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, reconstruction, KL): L1 or MSE of a posterior sample's decoding plus a weighted KL to N(0, I)."""
    posterior = vae.encode(pixels).latent_dist
    z = posterior.mean + posterior.std * eps.to(posterior.mean.dtype)
    decoded = vae.decode(z).sample.float()
    if recon == "l1":
        rec = F.l1_loss(decoded, pixels.float())
    else:
        rec = F.mse_loss(decoded, pixels.float())
    kl = posterior.kl().float().mean() / pixels[0].numel()
    return rec + kl_weight * kl, rec.detach(), kl.detach()
