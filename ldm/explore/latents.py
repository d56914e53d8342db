"""A dataset through the model: VAE latents and reconstructions (and their report), caption features, principal
directions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ldm.metrics import psnr


@dataclass
class PrincipalDirections:
    """The top principal directions of a set of latents, with the spread along each."""

    mean: torch.Tensor  # (C, h, w)
    directions: torch.Tensor  # (k, C*h*w), unit rows
    stds: torch.Tensor  # (k,)

    @classmethod
    def fit(cls, latents: torch.Tensor, k: int = 4) -> PrincipalDirections:
        """PCA of (N, C, h, w) latents (scikit-learn's, in float64)."""
        from sklearn.decomposition import PCA

        flat = latents.flatten(1).double().numpy()
        pca = PCA(n_components=min(k, *flat.shape), svd_solver="full").fit(flat)
        return cls(torch.from_numpy(pca.mean_).reshape(latents.shape[1:]).float(),
                   torch.from_numpy(pca.components_).float(), torch.from_numpy(pca.explained_variance_ ** 0.5).float())

    def traverse(self, latent: torch.Tensor, amounts: Sequence[float]) -> torch.Tensor:
        """Move (C, h, w) `latent` by amounts[i] standard deviations along direction i."""
        shift = sum(a * s * d for a, s, d in zip(amounts, self.stds, self.directions, strict=False))
        return latent + torch.as_tensor(shift).reshape(latent.shape) if len(amounts) else latent


@torch.no_grad()
def prompt_features(model, prompts: Sequence[str]) -> torch.Tensor:
    """One vector per prompt: a SamplingModel's text-encoder states averaged over the real (unpadded) tokens."""
    tokenizer, encoder = model.pipe.tokenizer, model.pipe.text_encoder
    tokens = tokenizer(list(prompts), padding="max_length", truncation=True, max_length=tokenizer.model_max_length,
                       return_tensors="pt")
    states = encoder(tokens.input_ids.to(model.device), attention_mask=tokens.attention_mask.to(model.device))[0]
    mask = tokens.attention_mask[..., None].float()
    return (states.float().cpu() * mask).sum(1) / mask.sum(1).clamp_min(1)


@torch.no_grad()
def encode_latents(vae, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] -> posterior means (N, C, h, w), unscaled."""
    out = []
    for start in range(0, len(images), batch):
        out.append(vae.encode(images[start:start + batch].to(vae.device, vae.dtype)).latent_dist.mean.float().cpu())
    return torch.cat(out)


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """Unscaled latents (N, C, h, w) -> images in [0, 1]."""
    return (vae.decode(latents.to(vae.device, vae.dtype)).sample.float().cpu() / 2 + 0.5).clamp(0, 1)


@dataclass
class Reconstruction:
    """An image through the VAE and what that says about it."""

    image: torch.Tensor  # (3, H, W) in [0, 1]
    reconstruction: torch.Tensor
    latent: torch.Tensor  # (C, h, w)
    psnr_db: float
    error: float  # mean squared error in [0, 1] units
    compression: float  # pixel bytes (uint8 RGB) over latent bytes (fp16)


def reconstruct(vae, image: torch.Tensor) -> Reconstruction:
    """Encode and decode one (3, H, W) image in [0, 1]; report PSNR and the compression ratio."""
    latent = encode_latents(vae, image[None] * 2 - 1)[0]
    recon = decode_latents(vae, latent[None])[0]
    error = float(((recon - image) ** 2).mean())
    pixel_bytes = image.numel()  # one byte per channel value
    latent_bytes = latent.numel() * 2  # stored as fp16
    return Reconstruction(image, recon, latent, float(psnr(recon[None] * 2 - 1, image[None] * 2 - 1)), error,
                          pixel_bytes / latent_bytes)


def anomaly_percentile(error: float, reference_errors: torch.Tensor) -> float:
    """Percent of the training set reconstructed better than this image (100: stranger than all of it)."""
    return float((reference_errors < error).float().mean() * 100)


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, ..., 21st, ..."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def reconstruction_report(r: Reconstruction, anomaly: float | None = None) -> str:
    """A reconstruction's PSNR and compression, and its anomaly percentile when there is a dataset, as Markdown."""
    report = [f"**PSNR** {r.psnr_db:.2f} dB  ·  **compression** {r.compression:.1f}x "
              f"({r.image.numel():,} pixel bytes vs {r.latent.numel() * 2:,} latent bytes at fp16)"]
    if anomaly is not None:
        report.append(f"**anomaly score** {ordinal(round(anomaly))} percentile of the training set's reconstruction "
                      "error")
    return "\n\n".join(report)
