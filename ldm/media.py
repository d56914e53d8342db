"""Turn image tensors into grids and files."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) floats in [0, 1] -> (N, H, W, 3) uint8."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def make_grid(images: torch.Tensor, cols: int | None = None, pad: int = 2) -> Image.Image:
    """Tile (N, 3, H, W) images in [0, 1] into one white-padded PIL image."""
    arr = to_uint8(images)
    n, h, w, _ = arr.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    canvas = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for k in range(n):
        r, c = divmod(k, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        canvas[y:y + h, x:x + w] = arr[k]
    return Image.fromarray(canvas)


def save_image_atomic(image: Image.Image, path: str | Path, **kwargs) -> Path:
    """Save a PIL image via a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    image.save(tmp, **kwargs)
    os.replace(tmp, path)
    return path
