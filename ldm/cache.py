"""Latents and text embeddings of a dataset, encoded once and cached on disk as shards whose rows training reads
as batches need them, so that a process's memory does not grow with the dataset.

A cache is a folder named by a hash of everything an encoding depends on besides the images (VAE and text
encoder weights, image size, flip, token length). In it, each shard holds the encodings of a few thousand
images, and names them by row keys (a hash of one image's pixels source and captions, see
ImageCaptionDataset.row_keys); an index per dataset (named by the hash of its row keys) says where each of
its rows lives. So a stale encoding is never read, an interrupted build resumes from the shards already
written (each is written atomically), adding images encodes only the new ones, and under
`accelerate launch` every process encodes its own share of the missing shards.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import threading
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ldm.models import encode_prompts
from ldm.shards import ShardFile, map_arrays, metadata, write_tensors

log = logging.getLogger("ldm")

# 3: sharded; rows named by content (2: every caption of an image; 1: one file per dataset)
CACHE_VERSION = "3"
SHARD_ROWS = 4096  # ~80 MB a shard at 64 px with MiniLM captions; small enough to spread over processes


def weights_digest(model: torch.nn.Module, known_tokens: int | None = None) -> str:
    """sha256 over a model's config and parameter bytes as loaded: LoRA adapters (peft's layers) left out and,
    given `known_tokens` (a text encoder's), the embedding rows of tokens added since (textual inversion)."""
    h = hashlib.sha256()
    config = getattr(model, "config", None)
    if known_tokens is not None and getattr(config, "vocab_size", known_tokens) != known_tokens:
        config = copy.deepcopy(config)
        config.vocab_size = known_tokens  # as it was before tokens were added
    # diffusers' own entries (_use_default_values, _name_or_path, ...) are bookkeeping, and one is a list in set
    # order, which differs between processes: a key must be the same in every process of a launch
    items = sorted((k, v) for k, v in dict(config).items() if not str(k).startswith("_")) \
        if hasattr(config, "items") else config
    h.update(repr(items).encode())
    for name, tensor in sorted(base_weights(model, known_tokens).items()):
        h.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        # the bytes in row-major order whatever the memory format (a channels_last 1x1 conv weight counts as
        # contiguous yet has a last stride above 1)
        h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def base_weights(model: torch.nn.Module, known_tokens: int | None = None) -> dict[str, torch.Tensor]:
    """A model's state dict under its own names without the LoRA adapters loaded into it (a LoRA switched on for
    one request changes no weight of the model), and with `known_tokens`, without rows of tokens added since."""
    state = {name.replace(".base_layer.", "."): tensor for name, tensor in model.state_dict().items()
             if not any(part.startswith("lora_") for part in name.split("."))}
    if known_tokens is not None and hasattr(model, "get_input_embeddings"):
        table = next(name for name, module in model.named_modules() if module is model.get_input_embeddings())
        state[f"{table}.weight"] = state[f"{table}.weight"][:known_tokens]
    return state


def _digest(parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def encoder_key(vae, text_encoder, tokenizer, size: int, flip: bool) -> str:
    """A short hash of everything an image's encodings depend on besides the image and its captions."""
    return _digest((CACHE_VERSION, weights_digest(vae), weights_digest(text_encoder),
                    str(tokenizer.model_max_length), str(size), str(flip)))[:20]


def cache_key(vae, text_encoder, tokenizer, dataset, flip: bool) -> str:
    """A short hash naming this exact combination of encoders, settings and dataset rows."""
    return _digest((encoder_key(vae, text_encoder, tokenizer, dataset.size, flip), *dataset.row_keys()))[:20]


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
                   num_workers: int = 0, device: torch.device | str = "cpu",
                   rows: list[int] | None = None, progress: bool = True) -> dict[str, torch.Tensor]:
    """Encode every image (or the given rows) and its mirror when flip to posterior mean/std, and every distinct
    caption of those images to embeddings (see caption_table for how images find theirs)."""
    vae = vae.to(device).eval()
    text_encoder = text_encoder.to(device)
    rows = list(range(len(dataset))) if rows is None else rows
    subset = torch.utils.data.Subset(dataset, rows)
    loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, num_workers=num_workers, shuffle=False)
    means, stds, fmeans, fstds = [], [], [], []
    for batch in tqdm(loader, desc="encoding latents", leave=False, disable=not progress):
        pixels = batch["pixel_values"].to(device)
        dist = vae.encode(pixels).latent_dist
        means.append(dist.mean.float().cpu())
        stds.append(dist.std.float().cpu())
        if flip:
            fdist = vae.encode(pixels.flip(-1)).latent_dist
            fmeans.append(fdist.mean.float().cpu())
            fstds.append(fdist.std.float().cpu())
    all_lists = dataset.caption_lists
    unique, caption_index, caption_offsets = caption_table([all_lists[i] for i in rows])
    embeds = [encode_prompts(tokenizer, text_encoder, unique[i:i + batch_size]).to(torch.float16).cpu()
              for i in tqdm(range(0, len(unique), batch_size), desc="encoding captions", leave=False,
                            disable=not progress)]
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


class MemoryCache:
    """Encodings held in memory (encode_dataset's dict), read as ShardedCache is: for tests and small data."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors
        self.has_flip = "mean_flip" in tensors
        self.uncond = tensors["uncond"]
        self._offsets = tensors["caption_offsets"]

    def __len__(self) -> int:
        return self.tensors["mean"].shape[0]

    @property
    def total_captions(self) -> int:
        """How many (image, caption) pairs the rows have."""
        return int(self._offsets[-1])

    def caption_spans(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row, the flat position of its first (primary) caption and how many captions it has."""
        return self._offsets[idx], self._offsets[idx + 1] - self._offsets[idx]

    def posteriors(self, idx: torch.Tensor, flipped: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and std of the rows (of their mirror images when flipped)."""
        suffix = "_flip" if flipped else ""
        return self.tensors["mean" + suffix][idx], self.tensors["std" + suffix][idx]

    def embeddings(self, picks: torch.Tensor) -> torch.Tensor:
        """The embeddings of captions by flat position (a row's first caption's position + which of its captions)."""
        return self.tensors["embeds"][self.tensors["caption_index"][picks]]


class ShardedCache:
    """A dataset's encodings in shard files: each batch reads its rows alone (ldm.shards), so what a process
    holds is the index (16 bytes an image, memory-mapped) and the empty prompt's embedding, not the rows.

    Several threads may read at once (CachedBatches' workers): each keeps its own open shard files, so none
    closes a file another is reading."""

    MAX_OPEN = 64  # shard files a thread keeps open at once (a 10M-image cache has ~2,500)

    def __init__(self, folder: Path, index_path: Path):
        meta, index = map_arrays(index_path)
        self.folder = folder
        self.shard_names: list[str] = json.loads(meta["shards"])
        self.has_flip = bool(int(meta["flip"]))
        self._shard_of, self._row_of, self._offsets = index["shard"], index["row"], index["caption_offsets"]
        self.uncond = torch.from_numpy(np.array(index["uncond"]))
        self._local = threading.local()  # each thread's open shard files
        self._count = threading.Lock()
        self.rows_read = 0  # posterior rows gathered so far (each read copies those rows alone)

    def __len__(self) -> int:
        return len(self._shard_of)

    def held_bytes(self) -> int:
        """Bytes this object holds in process memory besides memory maps: the same for any row count."""
        return self.uncond.numel() * self.uncond.element_size()

    @property
    def total_captions(self) -> int:
        """How many (image, caption) pairs the rows have."""
        return int(self._offsets[-1])

    def caption_spans(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per row, the flat position of its first (primary) caption and how many captions it has."""
        i = np.asarray(idx, dtype=np.int64)
        start, stop = self._offsets[i], self._offsets[i + 1]
        return torch.from_numpy(np.array(start)), torch.from_numpy(np.array(stop - start))

    def _shard(self, k: int) -> ShardFile:
        shards = self._local.__dict__.setdefault("shards", {})
        if k not in shards:
            if len(shards) >= self.MAX_OPEN:
                shards.pop(next(iter(shards))).close()  # this thread's longest open
            shards[k] = ShardFile(self.folder / self.shard_names[k])
        return shards[k]

    def _gather(self, idx, read) -> torch.Tensor:
        """read(shard file, its row numbers, their places in idx) for each shard the rows touch, in idx's order."""
        idx = np.asarray(idx, dtype=np.int64)
        shard, row = self._shard_of[idx], self._row_of[idx]
        out = None
        for k in np.unique(shard):
            where = np.nonzero(shard == k)[0]
            part = torch.from_numpy(read(self._shard(int(k)), row[where], where))
            if out is None:
                out = torch.empty((len(idx), *part.shape[1:]), dtype=part.dtype)
            out[torch.from_numpy(where)] = part
        return out

    def posteriors(self, idx: torch.Tensor, flipped: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and std of the rows (of their mirror images when flipped)."""
        suffix = "_flip" if flipped else ""
        with self._count:
            self.rows_read += len(idx)
        return (self._gather(idx, lambda f, r, _: f.rows("mean" + suffix, r)),
                self._gather(idx, lambda f, r, _: f.rows("std" + suffix, r)))

    def embeddings(self, picks: torch.Tensor) -> torch.Tensor:
        """The embeddings of captions by flat position (a row's first caption's position + which of its captions)."""
        picks = np.asarray(picks, dtype=np.int64)
        image = np.searchsorted(self._offsets, picks, side="right") - 1
        which = picks - self._offsets[image]

        def read(f: ShardFile, r: np.ndarray, where: np.ndarray) -> np.ndarray:
            local = f.rows("caption_offsets", r) + which[where]
            return f.rows("embeds", f.rows("caption_index", local))

        return self._gather(image, read)


def pick_captions(cache, indices: list[int] | torch.Tensor, generator: torch.Generator,
                  primary_share: float) -> torch.Tensor:
    """For each image, the flat position of the caption it is drawn with this time: its primary caption with
    probability primary_share, else one of its others uniformly; an image with one caption keeps it."""
    idx = torch.as_tensor(indices, dtype=torch.int64)
    start, count = cache.caption_spans(idx)
    if cache.total_captions == len(cache):  # one caption per image: draw nothing, as before
        return start
    primary = torch.rand(len(idx), generator=generator) < primary_share
    other = 1 + (torch.rand(len(idx), generator=generator) * (count - 1)).long().clamp(max=(count - 2).clamp(min=0))
    return torch.where(primary | (count == 1), start, start + other)


def sample_batch(cache, indices: list[int], generator: torch.Generator,
                 scaling_factor: float, caption_dropout: float, primary_share: float = 1.0,
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw latents from the cached posteriors (a fresh sample each step), one caption per image (see
    pick_captions) and its embedding, and which captions were dropped (replaced by the empty prompt).

    `cache` is a ShardedCache or a MemoryCache. Returns (latents, embeddings, dropped, caption positions)."""
    idx = torch.as_tensor(indices, dtype=torch.int64)
    mean, std = cache.posteriors(idx)
    if cache.has_flip:
        flip = torch.rand(len(idx), generator=generator) < 0.5
        mean_flip, std_flip = cache.posteriors(idx, flipped=True)
        mean = torch.where(flip[:, None, None, None], mean_flip, mean)
        std = torch.where(flip[:, None, None, None], std_flip, std)
    latents = (mean + std * torch.randn(mean.shape, generator=generator)) * scaling_factor
    picks = pick_captions(cache, idx, generator, primary_share)
    embeds = cache.embeddings(picks).float()
    drop = torch.zeros(len(idx), dtype=torch.bool)
    if caption_dropout > 0:
        drop = torch.rand(len(idx), generator=generator) < caption_dropout
        embeds = torch.where(drop[:, None, None], cache.uncond.float(), embeds)
    return latents, embeds, drop, picks


# ---- building -------------------------------------------------------------------------------------------------

def shard_places(folder: Path) -> dict[str, tuple[str, int]]:
    """Row key -> (shard file, row in it) for every row of the folder's complete shards, from their headers."""
    places: dict[str, tuple[str, int]] = {}
    for path in sorted(folder.glob("shard-*.safetensors")):
        for r, key in enumerate(json.loads(metadata(path)["row_keys"])):
            places.setdefault(key, (path.name, r))
    return places


def plan_shards(folder: Path, row_keys: list[str], shard_rows: int = SHARD_ROWS) -> list[tuple[str, list[int]]]:
    """The new shards the rows no complete shard holds go into, as (file name, dataset rows in order); named by
    their rows, so that every process, and a resumed build, plans the same shards."""
    held = shard_places(folder)
    missing, seen = [], set()
    for i, key in enumerate(row_keys):
        if key not in held and key not in seen:
            seen.add(key)
            missing.append(i)
    return [(f"shard-{_digest(row_keys[i] for i in chunk)[:16]}.safetensors", chunk)
            for chunk in (missing[start:start + shard_rows] for start in range(0, len(missing), shard_rows))]


def write_shard(path: Path, tensors: dict[str, torch.Tensor], keys: list[str]) -> None:
    """One shard: the rows' encodings (without the empty prompt's) and their row keys, atomically."""
    body = {k: v for k, v in tensors.items() if k != "uncond"}
    write_tensors(path, body, {"row_keys": json.dumps(keys), "rows": str(len(keys))})


def write_index(path: Path, folder: Path, row_keys: list[str], caption_counts: list[int], uncond: torch.Tensor,
                flip: bool) -> None:
    """The dataset's index: each row's shard and row in it, the flat caption offsets, the empty prompt."""
    place = shard_places(folder)
    names = sorted({place[k][0] for k in row_keys})
    number = {n: i for i, n in enumerate(names)}
    shard = torch.tensor([number[place[k][0]] for k in row_keys], dtype=torch.int32)
    row = torch.tensor([place[k][1] for k in row_keys], dtype=torch.int32)
    offsets = torch.zeros(len(row_keys) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(torch.tensor(caption_counts, dtype=torch.int64), 0)
    write_tensors(path, {"shard": shard, "row": row, "caption_offsets": offsets, "uncond": uncond},
                  {"shards": json.dumps(names), "flip": str(int(flip)), "rows": str(len(row_keys))})


def load_or_build_cache(accelerator, cache_dir: Path, vae, tokenizer, text_encoder, dataset, flip: bool,
                        num_workers: int = 0, shard_rows: int = SHARD_ROWS) -> ShardedCache:
    """The dataset's encodings, encoding what no shard holds yet: each process its share of the new shards."""
    folder = Path(cache_dir) / f"latents-{encoder_key(vae, text_encoder, tokenizer, dataset.size, flip)}"
    row_keys = dataset.row_keys()
    index = folder / f"index-{_digest(row_keys)[:20]}.safetensors"
    if not index.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        plan = plan_shards(folder, row_keys, shard_rows)
        accelerator.wait_for_everyone()  # every process planned before any writes a shard
        rank, world = accelerator.process_index, accelerator.num_processes
        mine = [(name, chunk) for k, (name, chunk) in enumerate(plan) if k % world == rank]
        if accelerator.is_main_process:
            todo = sum(len(c) for _, c in plan)
            log.info("encoding %d of %d images into %d new shards in %s (%d processes); %d rows cached already",
                     todo, len(row_keys), len(plan), folder, world, len(row_keys) - todo)
        for name, chunk in tqdm(mine, desc="cache shards", disable=not accelerator.is_local_main_process):
            if (folder / name).is_file():  # written meanwhile by another run sharing this cache
                continue
            tensors = encode_dataset(vae, tokenizer, text_encoder, dataset, flip, num_workers=num_workers,
                                     device=accelerator.device, rows=chunk, progress=False)
            write_shard(folder / name, tensors, [row_keys[i] for i in chunk])
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            uncond = encode_prompts(tokenizer, text_encoder.to(accelerator.device), [""]).to(torch.float16).cpu()
            write_index(index, folder, row_keys, [len(c) for c in dataset.caption_lists], uncond, flip)
        accelerator.wait_for_everyone()
    elif accelerator.is_main_process:
        log.info("using latent cache %s", index)
    return ShardedCache(folder, index)
