"""Inpainting's pictures: the mask (white = repaint), its blur, what the masked area starts as, the
"only masked" crop and pasting the result back. The denoising itself is diffusers' inpainting pipeline
(sampler.py): with any text-to-image UNet it re-noises the known latents to each step's level and keeps
them outside the mask; a 9-channel inpainting UNet gets the mask and masked image as it expects."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageChops, ImageFilter

from ldm.data.images import BadImage, decode_image, fit, image_size
from ldm.errors import LdmError


@dataclass(frozen=True, eq=False)
class Mask:
    """Where to repaint: (1, H, W) in [0, 1] at the request's size (1 = repaint), and a hash of it."""

    weights: torch.Tensor
    digest: str


def mask_from_pil(img: Image.Image, width: int, height: int) -> Mask:
    """A picture's brightness as the mask (transparent pixels are black: keep), fitted to width x height as
    the init image is (scaled to cover, centre-cropped)."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(black, rgba)
    grey = fit(img.convert("L"), width, height)
    weights = torch.frombuffer(bytearray(grey.tobytes()), dtype=torch.uint8).float().div(255).view(1, height, width)
    return Mask(weights, hashlib.sha256(grey.tobytes()).hexdigest()[:10])


def mask_from_strokes(picture_size: tuple[int, int], layers: list[tuple[str | Path, str]], width: int,
                      height: int) -> Mask | None:
    """An image editor's painted layers (files, with the names messages use) as the inpainting mask: where any
    layer is opaque, fitted to width x height as the picture is; None when nothing was painted. Each layer must
    have the picture's size."""
    strokes = None
    for path, name in layers:
        try:
            alpha = decode_image(path, max(width, height)).convert("RGBA").getchannel("A")
        except BadImage as exc:
            raise LdmError(f"cannot use the mask layer {name}: {exc}") from None
        if alpha.size != picture_size:
            raise LdmError(f"the mask layer is {alpha.size[0]}x{alpha.size[1]} but the image is "
                           f"{picture_size[0]}x{picture_size[1]}")
        strokes = alpha if strokes is None else ImageChops.lighter(strokes, alpha)
    if strokes is None or strokes.getextrema()[1] == 0:
        return None
    return mask_from_pil(strokes, width, height)


def load_mask(path: str | Path, width: int, height: int, init_path: str | Path | None = None) -> Mask:
    """A mask file at width x height; it must have the size of the init image file, when given."""
    try:
        img = decode_image(path, max(width, height))
        size = image_size(path)
    except BadImage as exc:
        raise LdmError(f"mask {path}: {exc}") from None
    if init_path is not None:
        try:
            init_size = image_size(init_path)
        except BadImage as exc:
            raise LdmError(f"init image {init_path}: {exc}") from None
        if size != init_size:
            raise LdmError(f"mask {path} is {size[0]}x{size[1]} but the init image is {init_size[0]}x{init_size[1]}:"
                           " paint the mask over the same picture")
    return mask_from_pil(img, width, height)


def blurred(mask: Mask, radius: float) -> torch.Tensor:
    """The mask softened by a Gaussian of `radius` pixels (AUTOMATIC1111's mask blur), (1, H, W)."""
    if radius <= 0:
        return mask.weights
    img = Image.fromarray((mask.weights[0] * 255).round().byte().numpy(), "L")
    soft = img.filter(ImageFilter.GaussianBlur(radius))
    return torch.frombuffer(bytearray(soft.tobytes()), dtype=torch.uint8).float().div(255).view_as(mask.weights)


def check_mask(mask: Mask) -> None:
    """A one-line error for a mask that repaints nothing."""
    if float(mask.weights.max()) < 0.5:
        raise LdmError("the mask is empty: paint the area to repaint in white")


def fill(pixels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`pixels` (3, H, W) with the masked area filled from its surroundings ("fill", as AUTOMATIC1111's):
    averages of the known pixels over ever smaller windows, each finer one laid over the coarser where it
    reaches, so that every masked pixel takes the colours nearest to it."""
    known = (mask < 0.5).float()
    out = torch.zeros_like(pixels)
    for size in (32, 16, 8, 4, 2, 1):
        k = 2 * size + 1
        sums = F.avg_pool2d((pixels * known)[None], k, 1, size, count_include_pad=False)[0]
        counts = F.avg_pool2d(known[None], k, 1, size, count_include_pad=False)[0]
        reach = (counts > 0).float()
        out = reach * sums / counts.clamp_min(1e-6) + (1 - reach) * out
    return known * pixels + (1 - known) * out


def crop_box(mask: torch.Tensor, padding: int, aspect: float) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) around the mask's painted pixels, `padding` pixels wider on each side and
    grown to width / height = `aspect` inside the picture ("Only masked")."""
    _, height, width = mask.shape
    rows, cols = torch.nonzero(mask[0] >= 0.5, as_tuple=True)
    left, right = int(cols.min()) - padding, int(cols.max()) + 1 + padding
    top, bottom = int(rows.min()) - padding, int(rows.max()) + 1 + padding
    left, top, right, bottom = max(left, 0), max(top, 0), min(right, width), min(bottom, height)
    w, h = right - left, bottom - top
    if w / h < aspect:  # too narrow: widen, centred, within the picture
        w = min(width, round(h * aspect))
    else:
        h = min(height, round(w / aspect))
    cx, cy = (left + right) / 2, (top + bottom) / 2
    left = int(min(max(round(cx - w / 2), 0), width - w))
    top = int(min(max(round(cy - h / 2), 0), height - h))
    return left, top, left + w, top + h


def resize(t: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """A (C, H, W) tensor resized (bicubic, antialiased) to width x height."""
    if t.shape[1:] == (height, width):
        return t
    return F.interpolate(t[None], size=(height, width), mode="bicubic", antialias=True, align_corners=False)[0]


def paste(base: torch.Tensor, patch: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
    """`base` (3, H, W) with `patch` resized into box (left, top, right, bottom)."""
    left, top, right, bottom = box
    out = base.clone()
    out[:, top:bottom, left:right] = resize(patch, right - left, bottom - top)
    return out


@dataclass(frozen=True, eq=False)
class InpaintPlan:
    """What the model works on for one inpainting request, and how its output goes back into the picture."""

    picture: torch.Tensor  # (3, h, w) in [-1, 1]: the init image or its crop, masked area as masked_content says
    masked_picture: torch.Tensor  # (3, h, w): the same with the masked area blacked out (inpainting UNets read it)
    mask: torch.Tensor  # (1, h, w) in [0, 1], blurred, at the working size
    overlay: torch.Tensor  # (1, H, W): the blurred mask at the request's size, for pasting the result
    box: tuple[int, int, int, int] | None  # the crop ("Only masked"), None for the whole picture

    def compose(self, generated: torch.Tensor, init: torch.Tensor) -> torch.Tensor:
        """Generated images (N, 3, h, w) in [0, 1] put back into the init image (3, H, W) in [-1, 1]: inside
        the blurred mask the new pixels, outside it the init image's own."""
        original = (init / 2 + 0.5).clamp(0, 1)
        out = []
        for image in generated:
            full = image if self.box is None else paste(original, image, self.box)
            out.append(self.overlay * full + (1 - self.overlay) * original)
        return torch.stack(out)


def plan_inpaint(init: torch.Tensor, mask: Mask, blur: float, masked_content: str, area: str,
                 padding: int) -> InpaintPlan:
    """The working picture and masks for an init image (3, H, W) in [-1, 1] and a mask at the same size."""
    check_mask(mask)
    overlay = blurred(mask, blur)
    picture, soft, box = init, overlay, None
    if area == "masked":
        _, height, width = init.shape
        box = crop_box(mask.weights, padding, width / height)
        left, top, right, bottom = box
        picture = resize(init[:, top:bottom, left:right], width, height).clamp(-1, 1)
        soft = resize(overlay[:, top:bottom, left:right], width, height).clamp(0, 1)
    masked_picture = picture * (soft < 0.5)
    if masked_content == "fill":
        picture = fill(picture, soft)
    return InpaintPlan(picture, masked_picture, soft, overlay, box)
