"""load_image, decode_caption, to_tensor and to_pil on real files of every kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ldm.data.images import BadImage, decode_caption, load_image, load_image_with_alpha, to_pil, to_tensor
from ldm.errors import LdmError

WHITE, RED, BLUE = (255, 255, 255), (255, 0, 0), (0, 0, 255)


def px(img: Image.Image, x: int, y: int) -> tuple[int, int, int]:
    return img.getpixel((x, y))


def close(a, b, tol: int = 6) -> bool:
    return all(abs(int(u) - int(v)) <= tol for u, v in zip(a, b))


def half_transparent(mode: str) -> Image.Image:
    """Left half fully transparent (hiding black), right half opaque red (or black for grey modes)."""
    rgba = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (16, 0, 32, 32))
    if mode == "RGBA":
        return rgba
    if mode == "LA":
        return rgba.convert("LA")
    if mode == "P":
        pal = Image.new("P", (32, 32), 0)
        pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * (256 * 3 - 6))
        pal.paste(1, (16, 0, 32, 32))
        pal.info["transparency"] = 0
        return pal
    raise ValueError(mode)


@pytest.mark.parametrize("mode,fmt,ext", [
    ("RGBA", "PNG", "png"), ("LA", "PNG", "png"), ("P", "PNG", "png"), ("P", "GIF", "gif"),
    ("RGBA", "WEBP", "webp"), ("RGBA", "TIFF", "tiff"),
])
def test_transparent_pixels_become_white(tmp_path, mode, fmt, ext):
    path = tmp_path / f"a.{ext}"
    img = half_transparent(mode)
    kwargs = {"lossless": True} if fmt == "WEBP" else {}
    if mode == "P":
        kwargs["transparency"] = 0
    img.save(path, fmt, **kwargs)
    out = load_image(path, 16)
    assert out.mode == "RGB" and out.size == (16, 16)
    assert px(out, 2, 8) == WHITE
    opaque = (76, 76, 76) if mode == "LA" else RED  # LA keeps red's luma
    assert close(px(out, 13, 8), opaque)


def test_rgb_png_with_colour_key_transparency(tmp_path):
    img = Image.new("RGB", (16, 16), (10, 20, 30))
    img.paste(BLUE, (8, 0, 16, 16))
    img.save(tmp_path / "a.png", transparency=(10, 20, 30))
    out = load_image(tmp_path / "a.png", 16)
    assert px(out, 2, 2) == WHITE and px(out, 12, 2) == BLUE


@pytest.mark.parametrize("mode", ["PA", "La", "RGBa"])
def test_in_memory_alpha_modes_to_white(mode):
    t = to_tensor(Image.new(mode, (4, 4)))  # every channel zero: fully transparent
    assert t.shape == (3, 4, 4) and torch.all(t == 1.0)


@pytest.mark.parametrize("fmt,ext", [("PNG", "png"), ("TIFF", "tiff")])
def test_16bit_gray_is_scaled_not_clipped(tmp_path, fmt, ext):
    arr = np.array([[0, 32896], [65535, 32896]], dtype=np.uint16).repeat(8, 0).repeat(8, 1)
    Image.fromarray(arr).save(tmp_path / f"g.{ext}", fmt)
    out = load_image(tmp_path / f"g.{ext}", 16)
    assert px(out, 12, 4) == (128, 128, 128)  # mid-grey stays mid-grey
    assert px(out, 4, 4) == (0, 0, 0) and px(out, 4, 12) == WHITE


def test_16bit_gray_png_transparent_key_becomes_white(tmp_path):
    arr = np.full((8, 8), 32896, dtype=np.uint16)
    arr[:, :4] = 7
    Image.fromarray(arr).save(tmp_path / "g.png", transparency=7)
    out = load_image(tmp_path / "g.png", 8)
    assert px(out, 1, 1) == WHITE and px(out, 6, 1) == (128, 128, 128)


def test_32bit_int_and_float_tiff(tmp_path):
    Image.fromarray(np.full((8, 8), 200, dtype=np.int32), "I").save(tmp_path / "i.tiff")
    Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32), "F").save(tmp_path / "f.tiff")
    assert px(load_image(tmp_path / "i.tiff", 8), 3, 3) == (200, 200, 200)
    assert px(load_image(tmp_path / "f.tiff", 8), 3, 3) == (128, 128, 128)


@pytest.mark.parametrize("mode,color,fmt,expected", [
    ("L", 90, "PNG", (90, 90, 90)),
    ("1", 1, "PNG", WHITE),
    ("CMYK", (0, 255, 255, 0), "TIFF", RED),
    ("CMYK", (0, 255, 255, 0), "JPEG", RED),
    ("LAB", (100, 128, 128), "TIFF", (94, 94, 94)),
    ("RGB", (0, 0, 255), "BMP", BLUE),
])
def test_other_modes_become_rgb(tmp_path, write_image, mode, color, fmt, expected):
    path = write_image(tmp_path / f"x.{fmt.lower()}", color=color, mode=mode, fmt=fmt, size=(16, 16))
    out = load_image(path, 8)
    assert out.mode == "RGB" and out.size == (8, 8)
    assert close(px(out, 4, 4), expected, tol=8), px(out, 4, 4)


def test_ycbcr_and_hsv_convert():
    assert close(to_pil(to_tensor(Image.new("RGB", (4, 4), RED).convert("YCbCr"))).getpixel((1, 1)), RED, 3)
    assert to_pil(to_tensor(Image.new("HSV", (4, 4), (0, 255, 255)))).getpixel((1, 1)) == RED


def test_exif_orientation_is_applied(tmp_path):
    # stored landscape: red left half, blue right half; tag 6 says "rotate 90 degrees clockwise to view"
    img = Image.new("RGB", (40, 20), RED)
    img.paste(BLUE, (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "rotated.jpg", quality=95, exif=exif)
    img.save(tmp_path / "plain.jpg", quality=95)
    rotated = load_image(tmp_path / "rotated.jpg", 16)
    plain = load_image(tmp_path / "plain.jpg", 16)
    # viewed upright the red half is on top and blue below
    assert close(px(rotated, 8, 2), RED, 30) and close(px(rotated, 8, 13), BLUE, 30)
    assert close(px(plain, 2, 8), RED, 30) and close(px(plain, 13, 8), BLUE, 30)


def test_resize_shorter_side_then_center_crop(tmp_path):
    img = Image.new("RGB", (300, 100), RED)
    img.paste((0, 255, 0), (100, 0, 200, 100))
    img.paste(BLUE, (200, 0, 300, 100))
    img.save(tmp_path / "wide.png")
    out = load_image(tmp_path / "wide.png", 10)
    assert out.size == (10, 10)
    # only the middle third survives the crop (the filter may blend a little of its neighbours at the rim)
    assert {px(out, x, y) for x in range(1, 9) for y in range(10)} == {(0, 255, 0)}
    assert all(g > 200 for _, g, _ in out.getdata())


def test_upscales_small_and_large_jpeg(tmp_path, write_image):
    assert load_image(write_image(tmp_path / "s.png", size=(5, 7)), 32).size == (32, 32)
    assert load_image(write_image(tmp_path / "l.jpg", size=(900, 700)), 32).size == (32, 32)


@pytest.mark.parametrize("kind", ["empty", "text", "truncated_png", "truncated_jpeg", "bomb", "huge_bomb"])
def test_bad_files_raise_bad_image_with_reason(tmp_path, write_bad, kind):
    path = tmp_path / ("bad.jpg" if kind == "truncated_jpeg" else "bad.png")
    reason = write_bad(path, kind)
    with pytest.raises(BadImage) as info:
        load_image(path, 16)
    assert str(info.value).startswith(reason)
    assert isinstance(info.value, LdmError)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(BadImage, match="file not found"):
        load_image(tmp_path / "nope.png", 16)
    with pytest.raises(BadImage, match="not a file"):
        load_image(tmp_path, 16)


def test_pixel_limit_is_a_parameter_and_global_limit_untouched(tmp_path, write_image):
    path = write_image(tmp_path / "a.png", size=(40, 30))
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(BadImage, match=r"decompression bomb \(1200 pixels\)"):
        load_image(path, 16, max_pixels=1000)
    assert load_image(path, 16).size == (16, 16)
    assert Image.MAX_IMAGE_PIXELS == before


TEXT = "café – naïve"


@pytest.mark.parametrize("raw", [
    TEXT.encode("utf-8"),
    TEXT.encode("utf-8-sig"),
    TEXT.encode("utf-16"),  # native order with BOM
    b"\xff\xfe" + TEXT.encode("utf-16-le"),
    b"\xfe\xff" + TEXT.encode("utf-16-be"),
    TEXT.encode("utf-16-le"),  # no BOM: found by the NUL pattern
    TEXT.encode("utf-16-be"),
    TEXT.encode("utf-32"),
    TEXT.encode("cp1252"),
], ids=["utf8", "utf8-sig", "utf16", "utf16le-bom", "utf16be-bom", "utf16le", "utf16be", "utf32", "cp1252"])
def test_decode_caption_encodings(raw):
    assert decode_caption(raw) == TEXT


def test_decode_caption_latin1_fallback_whitespace_and_empty():
    assert decode_caption(b"a\x81b") == "a\x81b"  # 0x81 is undefined in cp1252
    assert decode_caption(b"  two\r\nlines\n\n  here \n") == "two lines here"
    assert decode_caption(b"") == ""
    assert decode_caption(b"\xef\xbb\xbf \n ") == ""


def test_to_tensor_to_pil_round_trip():
    arr = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3) * 4
    img = Image.fromarray(arr)
    t = to_tensor(img)
    assert t.dtype == torch.float32 and t.shape == (3, 4, 5)
    assert t.min() >= -1 and t.max() <= 1
    assert to_tensor(Image.new("RGB", (1, 1), (0, 0, 0))).eq(-1).all()
    assert to_tensor(Image.new("RGB", (1, 1), WHITE)).eq(1).all()
    assert np.array_equal(np.asarray(to_pil(t)), arr)
    assert np.array_equal(np.asarray(to_pil(t[None])), arr)


def test_to_pil_clamps_and_rejects_bad_shapes():
    t = torch.tensor([-5.0, 0.0, 5.0, float("nan")]).view(1, 1, 4).expand(3, 1, 4)
    assert [p[0] for p in to_pil(t).getdata()] == [0, 128, 255, 128]
    with pytest.raises(ValueError):
        to_pil(torch.zeros(4, 2, 2))


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_load_with_alpha_gives_the_white_composite_and_the_opacity(tmp_path, mode):
    path = tmp_path / f"{mode}.png"
    half_transparent(mode).save(path)
    rgb, alpha = load_image_with_alpha(path, 32)
    assert rgb.mode == "RGB" and alpha.mode == "L" and alpha.size == rgb.size == (32, 32)
    assert np.array_equal(np.asarray(rgb), np.asarray(load_image(path, 32)))
    opacity = np.asarray(alpha)
    assert opacity.min() == 0 and opacity.max() == 255  # the transparent half and the opaque half


def test_load_with_alpha_resamples_colour_and_opacity_alike(tmp_path):
    # a red disc on transparent, downscaled: on white, every pixel is red * a + white * (1 - a)
    image = Image.new("RGBA", (96, 96), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((10, 10, 86, 86), fill=(220, 20, 20, 255))
    image.save(tmp_path / "disc.png")
    rgb, alpha = load_image_with_alpha(tmp_path / "disc.png", 32)
    a = np.asarray(alpha, dtype=np.float32)[..., None] / 255
    expected = np.array([220, 20, 20]) * a + 255 * (1 - a)
    error = np.abs(np.asarray(rgb, dtype=np.float32) - expected)
    # exact but for ringing the resampler clips at 0 and 255 (a misplaced or differently filtered opacity: ~100)
    assert error.mean() < 1 and error.max() <= 20


def test_an_opaque_file_is_fully_opaque(tmp_path):
    Image.new("RGB", (16, 16), (10, 200, 30)).save(tmp_path / "opaque.png")
    _, alpha = load_image_with_alpha(tmp_path / "opaque.png", 16)
    assert np.asarray(alpha).min() == 255
