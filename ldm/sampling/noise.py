"""Seeded noise: one CPU generator per image, variation seeds, and per-step noise for ancestral samplers.

A seed means the same image on any device because every draw comes from a CPU generator. An image may
also blend two seeds (AUTOMATIC1111's "variation seed"; a frame of a seed walk is exactly that):
its starting noise is slerp(noise(seed), noise(variation seed), strength), and so is every noise tensor an
ancestral sampler draws during denoising, or the walk would flicker.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from ldm.sampling.interpolate import slerp

_patch_lock = threading.Lock()


@dataclass(frozen=True)
class SeedBlend:
    """The noise recipe of one image: its seed, and optionally a second seed slerped in by `strength`."""

    seed: int
    variation_seed: int | None = None
    strength: float = 0.0

    def generators(self) -> tuple[torch.Generator, torch.Generator | None]:
        """Fresh CPU generators for the seed and the variation seed (None when unused)."""
        main = torch.Generator("cpu").manual_seed(self.seed)
        if self.variation_seed is None or self.strength == 0:
            return main, None
        return main, torch.Generator("cpu").manual_seed(self.variation_seed)


class NoiseSource:
    """Per-image generators for one batch; draws (and blends) every noise tensor the batch needs."""

    def __init__(self, blends: Sequence[SeedBlend]):
        self.blends = list(blends)
        self.pairs = [b.generators() for b in self.blends]

    def randn(self, shape: Sequence[int], dtype: torch.dtype | None = None,
              device: torch.device | str | None = None) -> torch.Tensor:
        """Draw one (C, H, W) tensor per image, each from its own generator(s), stacked to `shape`."""
        if shape[0] != len(self.blends):
            raise ValueError(f"noise for {shape[0]} images requested from a source of {len(self.blends)}")
        item_shape = (1, *shape[1:])
        rows = []
        for blend, (main, other) in zip(self.blends, self.pairs, strict=True):
            a = torch.randn(item_shape, generator=main, dtype=torch.float32)
            if other is not None:
                a = slerp(a, torch.randn(item_shape, generator=other, dtype=torch.float32), blend.strength)
            rows.append(a)
        return torch.cat(rows).to(device=device or "cpu", dtype=dtype or torch.float32)


@contextlib.contextmanager
def scheduler_noise(scheduler, source: NoiseSource) -> Iterator[None]:
    """While active, noise drawn inside `scheduler.step` comes from `source` instead of a torch generator.

    diffusers' schedulers take a generator but no noise tensor, and draw through the module-level
    `randn_tensor`; a blended draw cannot be expressed as a generator, so that one name is swapped for
    the duration of the call, under a lock. Deterministic schedulers never draw, and are left alone.
    """
    module = sys.modules[type(scheduler).__module__]
    if not hasattr(module, "randn_tensor"):
        yield
        return

    def randn_tensor(shape, generator=None, device=None, dtype=None, layout=None):
        return source.randn(shape, dtype=dtype, device=device)

    with _patch_lock:
        original = module.randn_tensor
        module.randn_tensor = randn_tensor
        try:
            yield
        finally:
            module.randn_tensor = original
