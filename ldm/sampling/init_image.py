"""The starting picture of image-to-image: loaded at the request's size as training data is (scaled to
cover, centre-cropped, transparency on white) and named by a short hash of its pixels, so that a PNG's
parameters can tell whether `--from-png` was given the same picture."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from ldm.data.images import BadImage, fit_rgb, load_image, to_tensor
from ldm.errors import LdmError


@dataclass(frozen=True, eq=False)
class InitImage:
    """An image-to-image start: pixels (3, H, W) in [-1, 1] at the request's size, and their hash."""

    pixels: torch.Tensor
    digest: str

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.pixels.shape[2], self.pixels.shape[1]


def _from_rgb(img: Image.Image) -> InitImage:
    digest = hashlib.sha256(img.tobytes()).hexdigest()[:10]
    return InitImage(to_tensor(img), digest)


def load_init_image(path: str | Path, width: int, height: int) -> InitImage:
    """An image file at width x height, or a one-line LdmError naming the file and what is wrong."""
    try:
        return _from_rgb(load_image(path, width, height=height))
    except BadImage as exc:
        raise LdmError(f"init image {path}: {exc}") from None


def init_image_from_pil(img: Image.Image, width: int, height: int) -> InitImage:
    """A PIL image (an upload) at width x height, fitted as a file would be."""
    return _from_rgb(fit_rgb(img, width, height))
