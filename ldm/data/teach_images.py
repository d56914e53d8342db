"""A user's few images of a new concept: checked, decoded, augmented into views, and written as the image folder
a teach run trains on.

Few images overfit at once, so each is redrawn at several small shifts and scales (and mirrored where the
concept allows it) on its own background: layout changes the VAE encodes faithfully (its layout robustness is
trained for scales 0.4-1.0 of the frame, ldm/data/augment.py), kept small so the concept itself is unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ldm.data.augment import Layout, content_box, redraw
from ldm.data.imagefolder import METADATA_NAME
from ldm.data.images import BadImage, load_image_with_alpha, to_pil, to_tensor
from ldm.errors import LdmError
from ldm.io import atomic_folder

# views shrink the content to no less than this share of its size, and move it within the room that frees
MIN_SCALE = 0.8


def load_concept_images(paths: list[Path], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image as (N, 3, size, size) in [-1, 1] on white and its opacity (N, 1, size, size) in [0, 1]; any
    mode (RGBA, CMYK, 16-bit, palette, animated GIF: its first frame) and size; one line for a file that is not
    a usable image."""
    pixels, opacity = [], []
    for path in paths:
        try:
            rgb, alpha = load_image_with_alpha(path, size)
        except BadImage as exc:
            raise LdmError(f"{path}: {exc}") from None
        pixels.append(to_tensor(rgb))
        opacity.append(torch.from_numpy(np.asarray(alpha, dtype=np.float32) / 255.0)[None])
    return torch.stack(pixels), torch.stack(opacity)


def background_of(pixels: torch.Tensor) -> torch.Tensor:
    """The colour an image sits on, (3, 1, 1): the median of its border pixels (white for a transparent one)."""
    border = torch.cat([pixels[:, 0], pixels[:, -1], pixels[:, :, 0], pixels[:, :, -1]], dim=1)
    return border.median(dim=1).values[:, None, None]


def centred(pixels: torch.Tensor, opacity: torch.Tensor, share: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's content redrawn centred, its longer side `share` of the frame, on its own background (the
    layout of a model's own training images: the emoji set's is 0.9); the opacity of the result (opaque)."""
    out = [redraw(p, _content_alpha(p, a), Layout(share), background_of(p).expand_as(p))
           for p, a in zip(pixels, opacity, strict=True)]
    return torch.stack(out), torch.ones_like(opacity)


def augmented_views(pixels: torch.Tensor, opacity: torch.Tensor, count: int, gen: torch.Generator,
                    flip: bool = True) -> torch.Tensor:
    """`count` views (count, 3, H, W): the images as they are first, then each in turn redrawn at a small random
    scale (MIN_SCALE-1), place and mirroring (when `flip`) on its own background."""
    views = [pixels[k % len(pixels)] for k in range(min(count, len(pixels)))]
    for k in range(len(views), count):
        i = k % len(pixels)
        scale, x, y, mirror = torch.rand(4, generator=gen).tolist()
        alpha = _content_alpha(pixels[i], opacity[i])
        top, left, bottom, right = content_box(alpha)
        size = max(bottom - top, right - left) / min(pixels.shape[-2:])  # Layout's scale is a share of the frame
        layout = Layout(size * (MIN_SCALE + (1 - MIN_SCALE) * scale), x, y, flip and mirror < 0.5)
        background = background_of(pixels[i]).expand_as(pixels[i])
        views.append(redraw(pixels[i], alpha, layout, background))
    return torch.stack(views)


def _content_alpha(pixels: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    # an opaque image moves as its whole frame, which would show as a hard edge: its content is what differs from
    # its background, so that a drawing on white moves as a drawing
    if bool((alpha < 1).any()):
        return alpha
    differs = (pixels - background_of(pixels)).abs().amax(dim=0, keepdim=True) > 0.04
    return differs.float() if bool(differs.any()) else alpha


def write_view_folder(folder: str | Path, views: torch.Tensor, captions: list[str]) -> Path:
    """The image folder a teach run trains on (images/*.png, metadata.jsonl with every view's captions, no
    held-out split), written whole under a temporary name and renamed into place."""
    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        (tmp / "images").mkdir()
        lines = []
        for k, view in enumerate(views):
            name = f"images/view-{k:04d}.png"
            to_pil(view).save(tmp / name)
            lines.append(json.dumps({"file_name": name, "text": list(captions)}))
        (tmp / METADATA_NAME).write_text("\n".join(lines) + "\n", encoding="utf-8")
        (tmp / "heldout.txt").write_text("", encoding="utf-8")  # every view trains
    return folder
