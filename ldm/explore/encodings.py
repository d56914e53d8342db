"""A dataset view's encodings (VAE latents, caption features, reconstruction errors): computed once, with
progress that other threads can follow, and kept on disk keyed by the weights and the data."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file

from ldm.cache import weights_digest
from ldm.explore.latents import decode_latents, encode_latents, prompt_features
from ldm.sampling.requests import Progress
from ldm.shards import write_tensors

ERROR_IMAGES = 1024  # reconstruction errors of this many images are the yardstick for anomaly scores
IMAGE_BATCH, TEXT_BATCH = 64, 256


def model_digests(model) -> dict[str, str]:
    """What a view's encodings depend on besides its images: the VAE's and the text encoder's weights, as loaded
    (a LoRA or a taught word loaded since changes no caption's encoding)."""
    with model.exclusive():  # not while a request switches a LoRA into the text encoder
        return {"vae": weights_digest(model.vae),
                "text_encoder": weights_digest(model.pipe.text_encoder, model.pipe.tokenizer.vocab_size)}


def explorer_cache_dir() -> Path:
    """Where the explorer keeps its encodings: $XDG_CACHE_HOME/ldm/explorer (~/.cache/ldm/explorer)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ldm" / "explorer"


def cache_key(images: torch.Tensor, captions: list[str], digests: dict[str, str]) -> str:
    """The name of a view's cache file: its weights, captions and pixels."""
    h = hashlib.sha256()
    for part in ("explorer-1", digests["vae"], digests["text_encoder"], "\n".join(captions)):
        h.update(part.encode())
        h.update(b"\0")
    h.update(images.contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:20]


def batch_starts(count: int) -> tuple[list[int], list[int], list[int]]:
    """Where each batch of latents, of reconstruction errors and of captions starts."""
    return (list(range(0, count, IMAGE_BATCH)), list(range(0, min(count, ERROR_IMAGES), IMAGE_BATCH)),
            list(range(0, count, TEXT_BATCH)))


@torch.no_grad()
def encode_all(model, images: torch.Tensor, captions: list[str], step: Callable[[], None]) -> dict[str, torch.Tensor]:
    """Every image's latent, the first ERROR_IMAGES' reconstruction errors and every caption's features;
    step() after each batch (batch_starts says how many)."""
    latent_starts, error_starts, text_starts = batch_starts(len(captions))
    latents, errors, embeddings = [], [], []
    for s in latent_starts:
        latents.append(encode_latents(model.vae, images[s:s + IMAGE_BATCH]))
        step()
    latents = torch.cat(latents)
    for s in error_starts:
        recon = decode_latents(model.vae, latents[s:s + IMAGE_BATCH])
        errors.append(((recon - (images[s:s + IMAGE_BATCH] / 2 + 0.5)) ** 2).flatten(1).mean(1))
        step()
    for s in text_starts:
        with model.exclusive():  # the plain text encoder, not one a request has adapted with a LoRA
            model.loras.use(None)
            embeddings.append(prompt_features(model, captions[s:s + TEXT_BATCH]))
        step()
    return {"latents": latents, "errors": torch.cat(errors), "embeddings": torch.cat(embeddings)}


class Encodings:
    """A dataset's encodings, computed once: prepare() in one thread, wait() in the others (which follow its
    progress); with a cache_dir, read from (or written to) a file keyed by the weights and the data."""

    def __init__(self, images: torch.Tensor, captions: list[str], model, cache_dir: Path | None = None,
                 encoded: dict[str, torch.Tensor] | None = None):
        self.images, self.captions, self.model, self.cache_dir = images, captions, model, cache_dir
        self.done, self.total = 0, 1  # progress of prepare(), read by waiting threads
        self._encoded = encoded  # given (a map file's): nothing left to prepare
        self._lock = threading.Lock()

    def prepare(self, progress: Progress | None = None) -> None:
        """Encode everything once, reporting progress(done, total); a cached file makes it a read."""
        with self._lock:
            if self._encoded is not None:
                return
            self.done = 0
            self.total = sum(map(len, batch_starts(len(self.captions))))
            path = None
            if self.cache_dir is not None:
                digests = model_digests(self.model)
                path = Path(self.cache_dir) / f"explorer-{cache_key(self.images, self.captions, digests)}.safetensors"
                if path.is_file():
                    self._encoded = load_file(str(path))
                    self.done = self.total
                    return

            def step():
                self.done += 1
                if progress is not None:
                    progress(self.done, self.total)

            encoded = encode_all(self.model, self.images, self.captions, step)  # a Stop from progress: nothing kept
            if path is not None:
                write_tensors(path, encoded, {"count": str(len(self.captions))})
            self._encoded = encoded

    def wait(self, progress: Progress | None = None, poll_s: float = 0.25) -> None:
        """prepare() here, or, while another thread prepares, report its progress until it is done."""
        while self._encoded is None:
            if self._lock.acquire(timeout=poll_s):
                self._lock.release()
                self.prepare(progress)
            elif progress is not None:
                progress(self.done, self.total)

    @property
    def ready(self) -> bool:
        """True once the encodings are in memory."""
        return self._encoded is not None

    def __getitem__(self, name: str) -> torch.Tensor:
        """'latents', 'embeddings' or 'errors', prepared first if need be."""
        self.wait()
        return self._encoded[name]
