"""Teach a tiny autoencoder (diffusers' AutoencoderTiny, TAESD's design) to copy a trained VAE.

A few-step student spends a third of an image's time in the VAE's decoder on a CPU; the tiny decoder does
the same job several times faster. It learns the VAE's own decode of the latents its encoder gives (posterior
draws, plus a little noise: a sampler's latents lie near them, not on them), so an image decoded by either
looks the same. The tiny encoder learns the VAE's posterior means, so that the folder is a whole autoencoder
plain diffusers can use (`AutoencoderTiny.from_pretrained`). It reads and writes latents as the UNet sees them
(scaled): its `scaling_factor` is 1, as TAESD's.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, AutoencoderTiny

from ldm.config import Config, TinyVAETrainConfig, downsampling_factor
from ldm.data.dataset import build_dataset
from ldm.errors import LdmError
from ldm.folders import TINY_VAE
from ldm.io import atomic_folder
from ldm.media import make_grid, save_image_atomic
from ldm.metrics import psnr
from ldm.models import load_vae
from ldm.train.checkpoints import TrainingState
from ldm.train.loop import Run
from ldm.train.optimization import make_lr_scheduler, make_optimizer
from ldm.train.runtime import count_params, make_accelerator, start_logs
from ldm.train.vae import check_resolution, pixel_steps

log = logging.getLogger("ldm")


def build_tiny_vae(vae: AutoencoderKL, tc: TinyVAETrainConfig) -> AutoencoderTiny:
    """A fresh AutoencoderTiny with `vae`'s latent channels and downsampling, the config's width and blocks."""
    levels = len(vae.config.block_out_channels)
    for key in ("decoder_blocks", "encoder_blocks"):
        blocks = getattr(tc, key)
        if len(blocks) != levels or min(blocks) < 0:
            raise LdmError(f"config key 'train_tiny_vae.{key}': needs {levels} counts >= 0 (one per level of the "
                           f"VAE it copies, which downsamples {downsampling_factor(vae.config.block_out_channels)}x),"
                           f" got {blocks}")
    if tc.encoder_blocks[0] < 1:
        raise LdmError("config key 'train_tiny_vae.encoder_blocks': the first level needs at least 1 block")
    return AutoencoderTiny(
        in_channels=vae.config.in_channels, out_channels=vae.config.out_channels,
        latent_channels=vae.config.latent_channels, upsampling_scaling_factor=2,
        encoder_block_out_channels=(tc.encoder_channels,) * levels, decoder_block_out_channels=(tc.channels,) * levels,
        num_encoder_blocks=tuple(tc.encoder_blocks), num_decoder_blocks=tuple(tc.decoder_blocks),
        scaling_factor=1.0, shift_factor=0.0)


@torch.no_grad()
def teacher_targets(vae: AutoencoderKL, pixels: torch.Tensor, eps: torch.Tensor, noise: torch.Tensor,
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What the tiny model learns from `vae` for a batch: (posterior draws, scaled, plus `noise`; the VAE's
    decode of those; its posterior means, scaled)."""
    dist = vae.encode(pixels).latent_dist
    scale = vae.config.scaling_factor
    latents = (dist.mean + dist.std * eps) * scale + noise
    return latents, vae.decode(latents / scale).sample.float(), dist.mean.float() * scale


class TinyVAEObjective(torch.nn.Module):
    """The tiny model and its loss as one module (DDP sees its encoder and decoder in one forward)."""

    def __init__(self, tiny: AutoencoderTiny, encoder_weight: float):
        super().__init__()
        self.tiny, self.encoder_weight = tiny, encoder_weight

    def forward(self, pixels, latents, decoded, means) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, the decoder's pixel loss, the encoder's latent loss): L1 + MSE to the VAE's decode, which
        keeps edges sharp and colours exact; MSE to its posterior means."""
        out = self.tiny.decoder(latents)
        pixel_loss = F.l1_loss(out.float(), decoded) + F.mse_loss(out.float(), decoded)
        latent_loss = F.mse_loss(self.tiny.encoder(pixels).float(), means)
        return pixel_loss + self.encoder_weight * latent_loss, pixel_loss.detach(), latent_loss.detach()


def train_tiny_vae(cfg: Config, output_dir: str | Path, vae_dir: str | Path, resume: str | None = None,
                   trust_pickle: bool = False) -> Path:
    """Teach a tiny VAE to copy the VAE in `vae_dir` on the config's images; checkpoints under
    output_dir/checkpoints/tiny_vae, the model in output_dir/vae_tiny (copy it into a pipeline folder to use it)."""
    output_dir = Path(output_dir)
    tc = cfg.train_tiny_vae
    accelerator = make_accelerator(tc, output_dir)
    device = accelerator.device

    # 1. data, the VAE to copy, the tiny model, optimizer
    train_set = build_dataset(cfg.data, "train", seed=tc.seed)
    heldout = build_dataset(cfg.data, "heldout", seed=tc.seed)
    vae = load_vae(vae_dir).requires_grad_(False).eval().to(device)
    check_resolution(cfg, vae)
    start_logs(accelerator, "tiny_vae")
    torch.manual_seed(tc.seed)
    tiny = build_tiny_vae(vae, tc)
    optimizer = make_optimizer(list(tiny.parameters()), tc)
    lr_scheduler = make_lr_scheduler(optimizer, tc, accelerator.num_processes)
    objective = TinyVAEObjective(tiny, tc.encoder_weight)
    objective, optimizer, lr_scheduler = accelerator.prepare(objective, optimizer, lr_scheduler)
    run = Run(accelerator, cfg, tc, "tiny_vae", output_dir, TrainingState([objective], optimizer, lr_scheduler))

    # 2. resume, then the loop
    start = run.resume(resume, trust_pickle)
    log.info("tiny vae %s params (the VAE it copies: %s), %d training / %d held-out images, batch %d x %d processes",
             count_params(tiny), count_params(vae), len(train_set), len(heldout), tc.batch_size,
             accelerator.num_processes)

    def forward(pixels: torch.Tensor, eps: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        noise = tc.latent_noise * torch.randn(eps.shape, generator=gen)
        latents, decoded, means = teacher_targets(vae, pixels, eps, noise.to(eps.device))
        loss, pixel_loss, latent_loss = objective(pixels, latents, decoded, means)
        return loss, {"decoder": float(pixel_loss), "encoder": float(latent_loss)}

    def evaluate(done: int) -> None:
        copy_psnr(vae, tiny, heldout, device, output_dir, done, accelerator)
        objective.train()

    objective.train()
    run.loop(start, pixel_steps(run, vae, train_set, start, forward), shown="decoder",
             preview=evaluate if len(heldout) else None, preview_every=tc.eval_every, preview_at_end=True)

    # 3. the model
    if accelerator.is_main_process:
        tiny.eval()
        with atomic_folder(output_dir / TINY_VAE) as tmp:
            tiny.save_pretrained(tmp, safe_serialization=True)
        log.info("tiny vae -> %s (copy it into a pipeline folder as %s/)", output_dir / TINY_VAE, TINY_VAE)
    run.end()
    return output_dir / TINY_VAE


@torch.no_grad()
def decode_psnr(vae: AutoencoderKL, tiny: AutoencoderTiny, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: PSNR (dB) of the tiny decoder's image against the VAE's, both from the VAE's posterior mean;
    and the VAE's decode itself (for a preview)."""
    latents = vae.encode(pixels).latent_dist.mean
    full = vae.decode(latents).sample.float()
    return psnr(tiny.decode(latents * vae.config.scaling_factor).sample.float(), full), full


@torch.no_grad()
def copy_psnr(vae, tiny, heldout, device, output_dir: Path, step: int, accelerator) -> float:
    """Mean held-out decode_psnr, logged, and a grid of the VAE's and the tiny decoder's images side by side."""
    tiny.eval()
    scores, shown = [], None
    for start in range(0, len(heldout), 64):
        pixels = torch.stack([heldout.load(i) for i in range(start, min(start + 64, len(heldout)))]).to(device)
        score, full = decode_psnr(vae, tiny, pixels)
        scores.append(score.cpu())
        if shown is None:
            latents = vae.encode(pixels[:16]).latent_dist.mean * vae.config.scaling_factor
            shown = torch.stack([full[:16], tiny.decode(latents).sample.float()], dim=1).flatten(0, 1)
    mean = float(torch.cat(scores).mean())
    save_image_atomic(make_grid((shown.cpu().clamp(-1, 1) + 1) / 2, cols=8),
                      output_dir / "samples" / f"tiny-vae-{step:07d}.png")
    accelerator.log({"heldout_copy_psnr": mean}, step=step)
    log.info("step %d: the tiny decoder's images are %.2f dB from the VAE's (held-out)", step, mean)
    return mean
