"""Latents and text embeddings of a dataset, encoded once and cached on disk as safetensors.

The file name is a hash of everything the contents depend on (VAE and text encoder weights, data,
size, flip, token length), so a stale cache can never be read.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ldm.io import atomic_file
from ldm.models import encode_prompts

log = logging.getLogger("ldm")

# 2: every caption of an image (unique caption embeddings, caption_index and caption_offsets)
CACHE_VERSION = "2"


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 over a model's config and parameter bytes."""
    h = hashlib.sha256()
    config = getattr(model, "config", None)
    h.update(repr(sorted(dict(config).items()) if hasattr(config, "items") else config).encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        # the bytes in row-major order whatever the memory format (a channels_last 1x1 conv weight counts as
        # contiguous yet has a last stride above 1)
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def cache_key(vae, text_encoder, tokenizer, dataset, flip: bool) -> str:
    """A short hash naming the cache file for this exact combination."""
    h = hashlib.sha256()
    for part in (CACHE_VERSION, weights_digest(vae), weights_digest(text_encoder),
                 str(tokenizer.model_max_length), dataset.fingerprint(), str(flip)):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def caption_table(caption_lists: list[tuple[str, ...]]) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(unique captions, each image's captions as indices into them flattened, offsets of each image's run).

    Image i's captions are unique[caption_index[caption_offsets[i]:caption_offsets[i + 1]]], primary first."""
    position: dict[str, int] = {}
    index, offsets = [], [0]
    for captions in caption_lists:
        for caption in captions:
            index.append(position.setdefault(caption, len(position)))
        offsets.append(len(index))
    return list(position), torch.tensor(index, dtype=torch.int64), torch.tensor(offsets, dtype=torch.int64)


@torch.no_grad()
def encode_dataset(vae, tokenizer, text_encoder, dataset, flip: bool, batch_size: int = 64,
                   num_workers: int = 0, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Encode every image (and its mirror when flip) to posterior mean/std, and every distinct caption of
    every image to embeddings (see caption_table for how images find theirs)."""
    vae = vae.to(device).eval()
    text_encoder = text_encoder.to(device)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, shuffle=False)
    means, stds, fmeans, fstds = [], [], [], []
    for batch in tqdm(loader, desc="encoding latents", leave=False):
        pixels = batch["pixel_values"].to(device)
        dist = vae.encode(pixels).latent_dist
        means.append(dist.mean.float().cpu())
        stds.append(dist.std.float().cpu())
        if flip:
            fdist = vae.encode(pixels.flip(-1)).latent_dist
            fmeans.append(fdist.mean.float().cpu())
            fstds.append(fdist.std.float().cpu())
    unique, caption_index, caption_offsets = caption_table(dataset.caption_lists)
    embeds = [encode_prompts(tokenizer, text_encoder, unique[i:i + batch_size]).to(torch.float16).cpu()
              for i in tqdm(range(0, len(unique), batch_size), desc="encoding captions", leave=False)]
    out = {
        "mean": torch.cat(means),
        "std": torch.cat(stds),
        "embeds": torch.cat(embeds),
        "caption_index": caption_index,
        "caption_offsets": caption_offsets,
        "uncond": encode_prompts(tokenizer, text_encoder, [""]).to(torch.float16).cpu(),
    }
    if flip:
        out["mean_flip"] = torch.cat(fmeans)
        out["std_flip"] = torch.cat(fstds)
    return out


def save_cache(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    """Write the cache atomically."""
    with atomic_file(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)


def load_or_build_cache(accelerator, cache_dir: Path, vae, tokenizer, text_encoder, dataset, flip: bool,
                        num_workers: int = 0) -> dict[str, torch.Tensor]:
    """Return the dataset's cached encodings, building them on the main process if missing."""
    key = cache_key(vae, text_encoder, tokenizer, dataset, flip)
    path = Path(cache_dir) / f"latents-{key}.safetensors"
    if accelerator.is_main_process and not path.is_file():
        log.info("encoding %d images and captions into %s", len(dataset), path)
        tensors = encode_dataset(vae, tokenizer, text_encoder, dataset, flip,
                                 num_workers=num_workers, device=accelerator.device)
        save_cache(path, tensors, {"key": key, "count": str(len(dataset))})
    elif accelerator.is_main_process:
        log.info("using latent cache %s", path)
    accelerator.wait_for_everyone()
    return load_file(str(path))


def pick_captions(cache: dict[str, torch.Tensor], indices: list[int] | torch.Tensor, generator: torch.Generator,
                  primary_share: float) -> torch.Tensor:
    """For each image, the position (into caption_index) of the caption it is drawn with this time: its primary
    caption with probability primary_share, else one of its others uniformly; an image with one caption keeps it."""
    idx = torch.as_tensor(indices, dtype=torch.int64)
    offsets = cache["caption_offsets"]
    start, count = offsets[idx], offsets[idx + 1] - offsets[idx]
    if cache["caption_index"].numel() == offsets.numel() - 1:  # one caption per image: draw nothing, as before
        return start
    primary = torch.rand(len(idx), generator=generator) < primary_share
    other = 1 + (torch.rand(len(idx), generator=generator) * (count - 1)).long().clamp(max=(count - 2).clamp(min=0))
    return torch.where(primary | (count == 1), start, start + other)


def sample_batch(cache: dict[str, torch.Tensor], indices: list[int], generator: torch.Generator,
                 scaling_factor: float, caption_dropout: float, primary_share: float = 1.0,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw latents from the cached posteriors (a fresh sample each step), one caption per image (see
    pick_captions) and its embedding, and which captions were dropped (replaced by the empty prompt).

    Returns (latents, embeddings, dropped, caption positions)."""
    idx = torch.tensor(indices)
    mean, std = cache["mean"][idx], cache["std"][idx]
    if "mean_flip" in cache:
        flip = torch.rand(len(idx), generator=generator) < 0.5
        mean = torch.where(flip[:, None, None, None], cache["mean_flip"][idx], mean)
        std = torch.where(flip[:, None, None, None], cache["std_flip"][idx], std)
    latents = (mean + std * torch.randn(mean.shape, generator=generator)) * scaling_factor
    picks = pick_captions(cache, idx, generator, primary_share)
    embeds = cache["embeds"][cache["caption_index"][picks]].float()
    drop = torch.zeros(len(idx), dtype=torch.bool)
    if caption_dropout > 0:
        drop = torch.rand(len(idx), generator=generator) < caption_dropout
        embeds = torch.where(drop[:, None, None], cache["uncond"].float(), embeds)
    return latents, embeds, drop, picks
