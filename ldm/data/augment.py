"""Layout augmentation for the autoencoder: an image redrawn at another size and place, mirrored, on another
background (white, black, grey, a colour, a gradient or a crop of a photograph), so that the VAE learns to
reconstruct content wherever and on whatever it is drawn, not one layout.

Images are tensors in [-1, 1] drawn on white with their opacity in [0, 1] (ImageCaptionDataset.load_with_alpha);
an image without transparency moves as an opaque rectangle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

# kind -> share of augmented draws: plain backgrounds most, since the app's uploads and emoji sit on them
BACKGROUNDS: dict[str, float] = {"white": 0.25, "black": 0.15, "grey": 0.10, "colour": 0.20, "gradient": 0.15,
                                 "photo": 0.15}
MIN_SCALE, MAX_SCALE = 0.4, 1.0


@dataclass(frozen=True)
class Layout:
    """Where content is redrawn: its longer side as a share of the frame, its place in the free space (0: left or
    top edge, 1: right or bottom edge) and whether it is mirrored."""

    scale: float = 1.0
    x: float = 0.5
    y: float = 0.5
    flip: bool = False


def content_box(alpha: torch.Tensor) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the visible pixels of a (1, H, W) opacity; the whole frame if none is."""
    visible = alpha[0] > 0.5 / 255
    rows, cols = visible.any(dim=1).nonzero(), visible.any(dim=0).nonzero()
    if len(rows) == 0:
        return 0, 0, alpha.shape[1], alpha.shape[2]
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def redraw(pixels: torch.Tensor, alpha: torch.Tensor, layout: Layout, background: torch.Tensor) -> torch.Tensor:
    """The content of a (3, H, W) image on white with opacity (1, H, W), redrawn at `layout` over `background`."""
    _, height, width = pixels.shape
    top, left, bottom, right = content_box(alpha)
    # the image on white and its opacity resample alike (both linearly), so compositing stays exact
    both = torch.cat([pixels, alpha])[:, top:bottom, left:right]
    longer = max(bottom - top, right - left)
    target = max(1, round(layout.scale * min(height, width)))
    size = (max(1, round((bottom - top) * target / longer)), max(1, round((right - left) * target / longer)))
    if size != tuple(both.shape[1:]):
        both = F.interpolate(both[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    if layout.flip:
        both = both.flip(-1)
    y0 = round(layout.y * (height - size[0]))
    x0 = round(layout.x * (width - size[1]))
    on_white = torch.ones(3, height, width)
    opacity = torch.zeros(1, height, width)
    on_white[:, y0:y0 + size[0], x0:x0 + size[1]] = both[:3]
    opacity[:, y0:y0 + size[0], x0:x0 + size[1]] = both[3:].clamp(0, 1)
    # colour * a + background * (1 - a), written with the colour already on white: on_white + (bg - white)(1 - a)
    return (on_white + (background - 1) * (1 - opacity)).clamp(-1, 1)


def make_background(kind: str, size: int, gen: torch.Generator) -> torch.Tensor:
    """A (3, size, size) background in [-1, 1] of one of BACKGROUNDS' kinds, drawn from `gen`."""
    def colour() -> torch.Tensor:
        return torch.rand(3, 1, 1, generator=gen) * 2 - 1

    if kind == "white":
        return torch.ones(3, size, size)
    if kind == "black":
        return -torch.ones(3, size, size)
    if kind == "grey":
        return (torch.rand(1, generator=gen) * 1.6 - 0.8).expand(3, size, size).clone()
    if kind == "colour":
        return colour().expand(3, size, size).clone()
    if kind == "gradient":
        start, end = colour(), colour()
        angle = float(torch.rand(1, generator=gen)) * 2 * math.pi
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
        t = (math.cos(angle) * xs + math.sin(angle) * ys) / (abs(math.cos(angle)) + abs(math.sin(angle)))
        return start + (end - start) * ((t + 1) / 2)[None]
    if kind == "photo":
        photo = _photos()[int(torch.randint(len(_photos()), (1,), generator=gen))]
        _, height, width = photo.shape
        side = int(torch.randint(min(size, height, width), min(height, width) + 1, (1,), generator=gen))
        top = int(torch.randint(height - side + 1, (1,), generator=gen))
        left = int(torch.randint(width - side + 1, (1,), generator=gen))
        crop = photo[:, top:top + side, left:left + side]
        return F.interpolate(crop[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    raise ValueError(f"unknown background {kind!r}; expected one of {', '.join(BACKGROUNDS)}")


def random_layout(gen: torch.Generator) -> Layout:
    """A layout drawn from `gen`: scale in [MIN_SCALE, MAX_SCALE], anywhere in the frame, mirrored half the time."""
    scale, x, y, flip = torch.rand(4, generator=gen).tolist()
    return Layout(MIN_SCALE + (MAX_SCALE - MIN_SCALE) * scale, x, y, flip < 0.5)


def augment_batch(pixels: torch.Tensor, alpha: torch.Tensor, gen: torch.Generator, share: float) -> torch.Tensor:
    """A batch (N, 3, H, W) with each image redrawn at a random layout and background with probability `share`,
    else left as it is."""
    out = pixels.clone()
    kinds, weights = list(BACKGROUNDS), torch.tensor(list(BACKGROUNDS.values()))
    for i in range(pixels.shape[0]):
        if float(torch.rand(1, generator=gen)) >= share:
            continue
        kind = kinds[int(torch.multinomial(weights, 1, generator=gen))]
        layout = random_layout(gen)
        out[i] = redraw(pixels[i].float(), alpha[i].float(), layout, make_background(kind, pixels.shape[-1], gen))
    return out


@lru_cache(maxsize=1)
def _photos() -> tuple[torch.Tensor, ...]:
    """The natural photographs scikit-learn ships (a temple in China, a flower), as (3, H, W) in [-1, 1]."""
    from sklearn.datasets import load_sample_images

    return tuple(torch.from_numpy(image.copy()).permute(2, 0, 1).float() / 127.5 - 1
                 for image in load_sample_images().images)
