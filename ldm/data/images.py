"""Decode any image file into a square RGB picture, captions into clean text, and both ways to tensors.

Everything a user's folder can hold goes through `load_image`: every PIL mode ends as RGB (transparency
composited on white), EXIF orientation is applied, decompression bombs and truncated files are refused
with `BadImage`, whose message is a short reason.
"""

from __future__ import annotations

import codecs
import io
import re
import threading
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ldm.errors import LdmError

MAX_PIXELS = 64_000_000  # larger images are refused as decompression bombs
RESAMPLE = Image.Resampling.BICUBIC
REDUCING_GAP = 3.0  # box-reduce first, then bicubic: fast and alias-free for large downscales

# warnings.catch_warnings swaps process-wide filters; serialise the (cheap, header-only) open that
# needs it so that concurrent loader threads never restore each other's filters out of order.
_OPEN_LOCK = threading.Lock()
_BOMB_SIZE = re.compile(r"\((\d+) pixels\)")


class BadImage(LdmError):
    """A file that cannot be used as a training image; the message is the reason."""


def _bomb(pixels: int | None) -> BadImage:
    return BadImage(f"decompression bomb ({pixels} pixels)" if pixels else "decompression bomb")


def _open(path: Path | io.BytesIO, max_pixels: int) -> Image.Image:
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(path)
        except UnidentifiedImageError:
            raise BadImage("not an image") from None
        except PermissionError:
            raise BadImage("unreadable (permission denied)") from None
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            found = _BOMB_SIZE.search(str(exc))
            raise _bomb(int(found.group(1)) if found else None) from None
        except Exception as exc:  # PIL raises many types for a broken header
            raise BadImage(f"truncated or corrupt image ({type(exc).__name__})") from None
    width, height = img.size
    if width <= 0 or height <= 0:
        img.close()
        raise BadImage("truncated or corrupt image (empty size)")
    if width * height > max_pixels:
        img.close()
        raise _bomb(width * height)
    return img


def _gray_to_uint8(img: Image.Image, fmt: str | None) -> Image.Image:
    """Scale a high-bit-depth single-channel image to 8 bits (PIL's own conversion clips at 255)."""
    arr = np.nan_to_num(np.asarray(img).astype(np.float64))
    if not arr.size:
        return Image.new("L", img.size)
    lo, hi = float(arr.min()), float(arr.max())
    if img.mode == "F":
        # float images come either normalised to [0, 1] or in 8-bit units
        if hi <= 1.0:
            arr = arr * 255.0
    elif img.mode.startswith("I;16") or fmt == "PNG":
        arr = arr / 257.0  # PNG's only integer mode beyond 8 bits is 16-bit
    elif lo < 0 or hi > 65535:
        arr = (arr - lo) * (255.0 / max(hi - lo, 1.0))
    elif hi > 255:
        arr = arr / 257.0
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L")


def _to_rgb(img: Image.Image, fmt: str | None = None) -> Image.Image:
    """Any PIL mode -> RGB; transparent pixels become white; `fmt` is the file format, which fixes bit depth."""
    if img.mode == "RGB" and "transparency" not in img.info:
        return img
    if img.mode.startswith("I") or img.mode == "F":
        gray = _gray_to_uint8(img, fmt)
        key = img.info.get("transparency")
        if isinstance(key, int):
            # a 16-bit grey PNG's tRNS names one grey level as transparent
            gray.paste(255, mask=Image.fromarray((np.asarray(img) == key).astype(np.uint8) * 255, "L"))
        return gray.convert("RGB")
    if img.has_transparency_data:
        if img.mode == "La":
            img = img.convert("LA")
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if img.mode == "LAB":
        try:
            from PIL import ImageCms

            lab_to_srgb = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"),
                                                  "LAB", "RGB")
            return ImageCms.applyTransform(img, lab_to_srgb)
        except ImportError:
            pass
    return img.convert("RGB")


def fit(img: Image.Image, size: int, height: int | None = None) -> Image.Image:
    """Scale to cover size x height (height: size when None) and crop the centre, in one resampling pass."""
    out_w, out_h = size, size if height is None else height
    width, in_h = img.size
    if (width, in_h) == (out_w, out_h):
        return img
    scale = max(out_w / width, out_h / in_h)
    box_w, box_h = out_w / scale, out_h / scale
    left, top = (width - box_w) / 2, (in_h - box_h) / 2
    return img.resize((out_w, out_h), RESAMPLE, box=(left, top, left + box_w, top + box_h),
                      reducing_gap=REDUCING_GAP)


def _decode(path: Path, size: int, max_pixels: int) -> tuple[Image.Image, str | None]:
    """The fully decoded, EXIF-oriented image and its file format, or BadImage with a short reason."""
    try:
        nbytes = path.stat().st_size
    except FileNotFoundError:
        raise BadImage("file not found") from None
    except OSError as exc:
        raise BadImage(f"unreadable ({exc.strerror or type(exc).__name__})") from None
    if not path.is_file():
        raise BadImage("not a file")
    if nbytes == 0:
        raise BadImage("empty file (0 bytes)")
    return _decode_opened(_open(path, max_pixels), size)


def _decode_opened(img: Image.Image, size: int) -> tuple[Image.Image, str | None]:
    """Decode an opened image fully and EXIF-orient it, or raise BadImage with a short reason."""
    try:
        with img:
            if img.format == "JPEG":
                # let libjpeg decode at a reduced scale; both sides stay >= size
                img.draft(None, (size, size))
            fmt = img.format
            img.load()  # decode everything now so that truncated files fail here, not mid-training
            try:
                oriented = ImageOps.exif_transpose(img)
            except Exception:  # a broken EXIF block should not cost a good picture
                oriented = img.copy()
        return oriented, fmt
    except BadImage:
        raise
    except MemoryError:
        raise BadImage("too large to decode") from None
    except Exception as exc:  # PIL signals broken data with OSError, SyntaxError, ValueError, zlib.error...
        raise BadImage(f"truncated or corrupt image ({type(exc).__name__})") from None


def image_size(path: str | Path, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """An image file's (width, height) from its header, or BadImage with a short reason."""
    path = Path(path)
    if not path.is_file():
        raise BadImage("file not found" if not path.exists() else "not a file")
    with _open(path, max_pixels) as img:
        return img.size


def decode_image(path: str | Path, size: int, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """An image file fully decoded and EXIF-oriented, in its own mode (a JPEG may decode at a reduced scale
    that keeps both sides >= size), or BadImage with a short reason."""
    return _decode(Path(path), size, max_pixels)[0]


def _fit_decoded(oriented: Image.Image, fmt: str | None, size: int, height: int | None = None) -> Image.Image:
    """A decoded image as RGB, scaled to cover size x size (or size x height) and centre-cropped, or BadImage."""
    try:
        return fit(_to_rgb(oriented, fmt), size, height)
    except MemoryError:
        raise BadImage("too large to decode") from None
    except Exception as exc:
        raise BadImage(f"truncated or corrupt image ({type(exc).__name__})") from None


def load_image(path: str | Path, size: int, max_pixels: int = MAX_PIXELS, height: int | None = None) -> Image.Image:
    """Decode `path` fully into a size x size (or size x height) RGB image, scaled to cover it and centre-
    cropped as training data is, or raise BadImage with a short reason."""
    return _fit_decoded(*_decode(Path(path), max(size, height or size), max_pixels), size, height)


def load_image_bytes(data: bytes, size: int, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """load_image for an image held as bytes (a Parquet cell, a tar member), with the same checks and fitting."""
    if not data:
        raise BadImage("empty image (0 bytes)")
    return _fit_decoded(*_decode_opened(_open(io.BytesIO(data), max_pixels), size), size)


def fit_rgb(img: Image.Image, width: int, height: int) -> Image.Image:
    """Any decoded PIL image as RGB (transparency on white), scaled to cover width x height and centre-cropped."""
    return fit(_to_rgb(img), width, height)


def load_image_with_alpha(path: str | Path, size: int, max_pixels: int = MAX_PIXELS) -> tuple[Image.Image, Image.Image]:
    """load_image's RGB image (transparent pixels on white) and the image's opacity as a size x size 'L'
    image (all 255 when the file has no transparency)."""
    oriented, fmt = _decode(Path(path), size, max_pixels)
    try:
        rgb = fit(_to_rgb(oriented, fmt), size)
        if oriented.mode.startswith("I") or oriented.mode == "F" or not oriented.has_transparency_data:
            return rgb, Image.new("L", (size, size), 255)
        rgba = (oriented.convert("LA") if oriented.mode == "La" else oriented).convert("RGBA")
        alpha = rgba.getchannel("A")
        # the same resampling as the colour, so that colour on white = colour * alpha + white * (1 - alpha) holds
        return rgb, fit(alpha, size)
    except MemoryError:
        raise BadImage("too large to decode") from None
    except Exception as exc:
        raise BadImage(f"truncated or corrupt image ({type(exc).__name__})") from None


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _bomless_utf16(raw: bytes) -> str | None:
    """'utf-16-le'/'utf-16-be' when NUL bytes sit in every other position, as in mostly-ASCII UTF-16."""
    if len(raw) < 2 or len(raw) % 2 or b"\0" not in raw:
        return None
    even, odd = raw[0::2], raw[1::2]
    half = len(raw) // 2
    nul_even, nul_odd = even.count(0), odd.count(0)
    if nul_odd >= 0.5 * half and nul_even <= 0.1 * half:
        return "utf-16-le"
    if nul_even >= 0.5 * half and nul_odd <= 0.1 * half:
        return "utf-16-be"
    return None


def decode_text(raw: bytes) -> str:
    """Bytes of unknown encoding -> str: BOMs, BOM-less UTF-16, UTF-8, then cp1252, then latin-1."""
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            return raw.decode(codec, errors="replace")
    guess = _bomless_utf16(raw)
    if guess:
        try:
            return raw.decode(guess)
        except UnicodeDecodeError:
            pass
    for codec in ("utf-8", "cp1252"):
        try:
            return raw.decode(codec)
        except UnicodeDecodeError:
            pass
    return raw.decode("latin-1")


def clean_caption(text: str) -> str:
    """Strip whitespace and NULs, and join lines with single spaces."""
    return " ".join(line.strip() for line in text.replace("\0", "").splitlines() if line.strip())


def decode_caption(raw: bytes) -> str:
    """A caption file's bytes -> one line of text (may be empty)."""
    return clean_caption(decode_text(raw))


def to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL image -> float32 (3, H, W) tensor in [-1, 1]."""
    if img.mode != "RGB":
        img = _to_rgb(img)
    arr = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True))
    return arr.permute(2, 0, 1).float().div_(127.5).sub_(1.0)


def to_pil(t: torch.Tensor) -> Image.Image:
    """(3, H, W) or (1, H, W) tensor in [-1, 1] (a leading batch of 1 is allowed) -> RGB PIL image."""
    t = t.detach().float().cpu()
    if t.ndim == 4 and t.shape[0] == 1:
        t = t[0]
    if t.ndim != 3 or t.shape[0] not in (1, 3):
        raise ValueError(f"to_pil expects a (3, H, W) or (1, H, W) tensor, got shape {tuple(t.shape)}")
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    arr = ((t.nan_to_num(0.0).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(arr.permute(1, 2, 0).contiguous().numpy(), "RGB")
