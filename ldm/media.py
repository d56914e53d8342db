"""Turn image tensors into grids and files.

GIF and MP4 are written here rather than with diffusers.utils.export_to_gif/export_to_video, which
take PIL lists or arrays at their own size and write in place: ours write whole-or-nothing
(ldm.io.atomic_file), scale 64 px frames up (nearest) to a viewable size, accept fractional frame rates,
and pad odd sides by edge replication instead of letting ffmpeg rescale (its macro_block_size) for
H.264 yuv420p with faststart, which browsers play as soon as it starts loading.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ldm.errors import LdmError
from ldm.io import atomic_file


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


def grid_tiles(picture: Image.Image, size: int, pad: int = 2) -> torch.Tensor:
    """The images make_grid tiled into `picture` (each size x size, `pad` apart), row by row, in [0, 1]
    (N, 3, size, size); the blank cells that fill its last row are left out."""
    arr = np.asarray(picture.convert("RGB"))
    cols, rows = (arr.shape[1] - pad) // (size + pad), (arr.shape[0] - pad) // (size + pad)
    if cols < 1 or rows < 1:
        raise LdmError(f"a {picture.width}x{picture.height} picture holds no {size}x{size} tile")
    at = [pad + k * (size + pad) for k in range(max(rows, cols))]
    tiles = [arr[at[r]:at[r] + size, at[c]:at[c] + size] for r in range(rows) for c in range(cols)]
    while len(tiles) > 1 and (tiles[-1] == 255).all():
        tiles.pop()
    return torch.from_numpy(np.stack(tiles)).permute(0, 3, 1, 2).float() / 255


def labelled_grid(images: torch.Tensor, x_labels: list[str], y_labels: list[str], z_labels: list[str],
                  min_side: int = 128, pad: int = 2) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """An X/Y/Z plot: (Z*Y*X, 3, H, W) images in [0, 1], X fastest, as one image with the X labels over the
    columns, the Y labels left of the rows and one block per Z value under its label; small images are
    scaled up (nearest, a whole factor) to min_side. Returns the image and each cell's (left, top, right,
    bottom) box in it."""
    from PIL import ImageDraw, ImageFont

    arr = to_uint8(images)
    scale = max(1, math.ceil(min_side / min(arr.shape[1:3])))
    h, w = arr.shape[1] * scale, arr.shape[2] * scale
    font = ImageFont.load_default(size=max(11, min(h, w) // 10))
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def fit(text: str, width: int) -> str:  # shorten what does not fit, keeping the start
        if probe.textlength(text, font=font) <= width:
            return text
        while text and probe.textlength(text + "…", font=font) > width:
            text = text[:-1]
        return text + "…"

    line = int(font.size * 1.4)
    left = (max((int(probe.textlength(t, font=font)) for t in y_labels if t), default=0) + 8) if any(y_labels) else 0
    left = min(left, 2 * w)
    top = line if any(x_labels) else 0
    title = line if any(z_labels) else 0
    cols, rows = len(x_labels), len(y_labels)
    block_h = title + top + rows * (h + pad) + pad
    canvas = Image.new("RGB", (left + cols * (w + pad) + pad, len(z_labels) * block_h), "white")
    draw = ImageDraw.Draw(canvas)
    boxes = []
    for k in range(len(arr)):
        z, rest = divmod(k, cols * rows)
        y, x = divmod(rest, cols)
        x0, y0 = left + pad + x * (w + pad), z * block_h + title + top + pad + y * (h + pad)
        canvas.paste(Image.fromarray(arr[k]).resize((w, h), Image.Resampling.NEAREST), (x0, y0))
        boxes.append((x0, y0, x0 + w, y0 + h))
    for z, z_label in enumerate(z_labels):
        base = z * block_h
        if z_label:
            draw.text((4, base + 2), fit(z_label, canvas.width - 8), fill="black", font=font)
        for x, label in enumerate(x_labels):
            text = fit(label, w)
            cx = left + pad + x * (w + pad) + (w - probe.textlength(text, font=font)) / 2
            draw.text((cx, base + title + 2), text, fill="black", font=font)
        for y, label in enumerate(y_labels):
            cy = base + title + top + pad + y * (h + pad) + (h - font.size) / 2
            draw.text((4, cy), fit(label, left - 8), fill="black", font=font)
    return canvas, boxes


def save_image_atomic(image: Image.Image, path: str | Path, overwrite: bool = True, **kwargs) -> Path:
    """Save a PIL image whole or not at all (see ldm.io.atomic_file; overwrite=False never replaces a file)."""
    with atomic_file(path, overwrite) as tmp:
        image.save(tmp, **kwargs)
    return Path(path)


def save_png(image: torch.Tensor, path: str | Path, parameters: str | None = None, overwrite: bool = True) -> Path:
    """Save one (3, H, W) image in [0, 1] as PNG, with an AUTOMATIC1111 `parameters` chunk when given."""
    from ldm.sampling.parameters import png_info

    pil = Image.fromarray(to_uint8(image[None])[0])
    return save_image_atomic(pil, path, overwrite, **({"pnginfo": png_info(parameters)} if parameters else {}))


def viewing_scale(frames: np.ndarray, min_side: int = 256) -> int:
    """The whole factor that brings (N, H, W, 3) frames' shorter side to at least min_side (1: as they are)."""
    return max(1, math.ceil(min_side / min(frames.shape[1:3])))


def upscale_for_viewing(frames: np.ndarray, min_side: int = 256) -> np.ndarray:
    """Nearest-neighbour integer upscaling of (N, H, W, 3) frames so small images are watchable."""
    scale = viewing_scale(frames, min_side)
    return frames.repeat(scale, axis=1).repeat(scale, axis=2) if scale > 1 else frames


def save_gif(frames: torch.Tensor, path: str | Path, fps: float = 12, min_side: int = 256) -> Path:
    """An endlessly looping animated GIF of (N, 3, H, W) frames in [0, 1]."""
    arr = to_uint8(frames)
    scale = viewing_scale(arr, min_side)
    # Each frame gets its palette at its own size, as PIL's GIF writer would give it (median cut), and is
    # upscaled afterwards: nearest-neighbour copies leave the colours' shares as they are, so the palettes
    # and the file are the same as quantizing the upscaled frame, with 1/scale^2 of the pixels to quantize
    # (quantizing 256 px frames was the walk's costliest write).
    images = [Image.fromarray(a).convert("P", palette=Image.Palette.ADAPTIVE) for a in arr]
    if scale > 1:
        images = [im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST) for im in images]
    return save_image_atomic(images[0], path, format="GIF", save_all=True, append_images=images[1:],
                             duration=round(1000 / fps), loop=0, disposal=1)


def save_mp4(frames: torch.Tensor, path: str | Path, fps: float = 12, min_side: int = 256) -> Path:
    """An H.264 MP4 (yuv420p, plays everywhere) through the ffmpeg that imageio-ffmpeg ships."""
    import imageio_ffmpeg

    arr = upscale_for_viewing(to_uint8(frames), min_side)
    h, w = arr.shape[1:3]
    # H.264 with yuv420p needs even sides; pad by edge replication rather than distort (only when odd: np.pad
    # copies every frame even when it adds nothing).
    if h % 2 or w % 2:
        arr = np.pad(arr, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    with atomic_file(path) as tmp:
        writer = imageio_ffmpeg.write_frames(str(tmp), (arr.shape[2], arr.shape[1]), fps=fps, codec="libx264",
                                             pix_fmt_out="yuv420p", macro_block_size=1, quality=8,
                                             ffmpeg_log_level="error",
                                             # veryfast: half of x264's time at 64-256 px, no larger files
                                             output_params=["-preset", "veryfast", "-movflags", "+faststart"])
        try:
            writer.send(None)
            for frame in arr:
                writer.send(np.ascontiguousarray(frame))
        finally:
            writer.close()
    return Path(path)


def write_images(out_dir: str | Path, images: torch.Tensor, parameters: list[str], names: list[str],
                 grid: bool = True) -> list[Path]:
    """PNG files (each with its parameters) and, for more than one image, a contact-sheet grid.png."""
    out = Path(out_dir)
    paths = [save_png(img, out / name, text) for img, text, name in zip(images, parameters, names, strict=True)]
    if grid and len(images) > 1:
        paths.append(save_image_atomic(make_grid(images), out / "grid.png"))
    return paths


def write_animation(out_dir: str | Path, frames: torch.Tensor, parameters: list[str], fps: float = 12) -> list[Path]:
    """Numbered PNG frames, grid.png, animation.gif and animation.mp4."""
    out = Path(out_dir)
    names = [f"frame-{k:04d}.png" for k in range(len(frames))]
    return write_images(out, frames, parameters, names) + write_movies(out, frames, fps)


def write_movies(out_dir: str | Path, frames: torch.Tensor, fps: float = 12) -> list[Path]:
    """animation.gif and animation.mp4 of the frames."""
    out = Path(out_dir)
    return [save_gif(frames, out / "animation.gif", fps), save_mp4(frames, out / "animation.mp4", fps)]
