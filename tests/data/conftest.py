"""Fixtures for the data tests: small real image files, good and broken, written into tmp_path."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from ldm.data.dataset import clear_scan_cache
from ldm.data.emoji import DEFAULT_FONT, load_emoji_font


@pytest.fixture(scope="session")
def font():
    """The Debian colour emoji font (CI installs it; elsewhere the tests that draw emoji skip)."""
    if not Path(DEFAULT_FONT).is_file():
        pytest.skip(f"emoji font not installed: {DEFAULT_FONT}")
    return load_emoji_font()


@pytest.fixture(autouse=True)
def _fresh_scan_cache():
    """Scans are remembered per process; each test starts without them."""
    clear_scan_cache()
    yield
    clear_scan_cache()


def _png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but which holds almost no data (a decompression bomb)."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    # IHDR is the first chunk: 8-byte signature, 4-byte length, b"IHDR", then width and height
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.fixture
def write_image():
    """write_image(path, color=..., size=(w, h), mode="RGB", fmt=None, **save_kwargs) -> path."""
    def write(path: Path, color=(200, 30, 30), size=(24, 24), mode: str = "RGB", fmt: str | None = None,
              **save_kwargs) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new(mode, size, color).save(path, fmt, **save_kwargs)
        return path
    return write


@pytest.fixture
def write_bad():
    """write_bad(path, kind) writes a broken file of one kind and returns the reason load_image must give."""
    def write(path: Path, kind: str) -> str:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "empty":
            path.write_bytes(b"")
            return "empty file (0 bytes)"
        if kind == "text":
            path.write_text("this is not a picture, just some text\n")
            return "not an image"
        if kind == "truncated_png":
            buf = io.BytesIO()
            Image.effect_noise((64, 64), 60).convert("RGB").save(buf, "PNG")
            path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
            return "truncated or corrupt image"
        if kind == "truncated_jpeg":
            buf = io.BytesIO()
            Image.effect_noise((64, 64), 60).convert("RGB").save(buf, "JPEG", quality=95)
            path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
            return "truncated or corrupt image"
        if kind == "bomb":
            path.write_bytes(_png_with_size(9000, 9000))  # 81 Mpx: over our 64 Mpx, under PIL's own limit
            return "decompression bomb (81000000 pixels)"
        if kind == "huge_bomb":
            path.write_bytes(_png_with_size(20000, 20000))  # over PIL's hard limit as well
            return "decompression bomb (400000000 pixels)"
        raise ValueError(kind)
    return write
