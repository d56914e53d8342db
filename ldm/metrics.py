"""Measures of image quality that training, evaluation and the explorer share (no training code here).

Images are compared in a fixed, model-free feature space: 16x16 area-downsampled RGB. Images the
feature space cannot tell apart (the font draws "flag: France" and "flag: St. Martin" identically) are
twins: no image can be nearer to one than to the other.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

FEATURE_SIZE = 16
# Feature distance at or below which two dataset images are the same picture. In the emoji dataset the
# pixel-identical pairs (flags of a country and its territories, "family" and its first variants) are
# <= 0.011 apart and the nearest distinct pair (two skin tones) 0.18; the median nearest-neighbour 2.0.
TWIN_DISTANCE = 0.05


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
    # batch by batch, so that a large held-out set is never in memory at once
    batches = (torch.stack([dataset.load(i) for i in range(start, min(start + batch_size, len(dataset)))])
               for start in range(0, len(dataset), batch_size))
    return _mean_round_trip_psnr(vae, batches, device)


def _mean_round_trip_psnr(vae, batches: Iterable[torch.Tensor], device) -> float:
    """Mean PSNR (dB) of every image of the batches against its VAE round trip (nan when there are none)."""
    scores = []
    for pixels in batches:
        pixels = pixels.to(device)
        scores.append(psnr(vae_round_trip(vae, pixels), pixels.float()).cpu())
    return float(torch.cat(scores).mean()) if scores else float("nan")


@torch.no_grad()
def redrawn_images(dataset, layout, background: str, seed: int = 0) -> torch.Tensor:
    """The dataset's images redrawn at `layout` on a `background` of ldm.data.augment's kinds (colours and
    gradients drawn from `seed`, so every model sees the same ones)."""
    from ldm.data.augment import make_background, redraw  # data code, needed only here

    gen = torch.Generator().manual_seed(seed)
    drawn = []
    for i in range(len(dataset)):
        pixels, alpha = dataset.load_with_alpha(i)
        drawn.append(redraw(pixels, alpha, layout, make_background(background, pixels.shape[-1], gen)))
    return torch.stack(drawn) if drawn else torch.empty(0)


@torch.no_grad()
def round_trip_psnr(vae, images: torch.Tensor, device, batch_size: int = 64) -> float:
    """Mean reconstruction PSNR (dB) of a batch of images in [-1, 1] (nan when there are none)."""
    return _mean_round_trip_psnr(vae, (images[i:i + batch_size] for i in range(0, len(images), batch_size)), device)


def redrawn_psnr(vae, dataset, device, layout, background: str, seed: int = 0) -> float:
    """round_trip_psnr of redrawn_images."""
    return round_trip_psnr(vae, redrawn_images(dataset, layout, background, seed), device)


def downsample_psnr(images: torch.Tensor, factor: int) -> float:
    """PSNR of images (in [-1, 1]) squeezed through a factor-times smaller RGB image and back: the naive
    compression a VAE has to beat."""
    small = F.interpolate(images, scale_factor=1 / factor, mode="area")
    back = F.interpolate(small, size=images.shape[-2:], mode="bilinear", align_corners=False)
    return float(psnr(back, images).mean())


def image_features(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> (N, 3*16*16) area-downsampled RGB vectors."""
    return F.interpolate(images.float(), size=(FEATURE_SIZE, FEATURE_SIZE), mode="area").flatten(1)


def nearest(queries: torch.Tensor, references: torch.Tensor, k: int = 5) -> torch.Tensor:
    """Indices (N, k) of each query's k nearest references (Euclidean)."""
    return torch.cdist(queries, references).topk(k, largest=False).indices


def twin_groups(features: torch.Tensor, distance: float = TWIN_DISTANCE, block: int = 512) -> torch.Tensor:
    """For each row, the lowest index of the rows within `distance` of it (its own index when none is)."""
    groups = torch.arange(len(features))
    for start in range(0, len(features), block):
        close = torch.cdist(features[start:start + block], features) <= distance
        groups[start:start + block] = close.int().argmax(1)  # the first True: the row itself at the latest
    return groups


def mean_pairwise_distance(features: torch.Tensor) -> float:
    """Mean Euclidean distance over all distinct pairs."""
    d = torch.cdist(features, features)
    n = len(features)
    return float(d.sum() / (n * (n - 1)))
