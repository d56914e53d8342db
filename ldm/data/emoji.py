"""The emoji imagefolder: every fully-qualified emoji rendered from a colour font, captioned with its CLDR name."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path

import emoji
import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFont, features

from ldm.data.emoji_captions import HAIR, SKIN_TONES, caption_sources, emoji_captions
from ldm.data.emoji_eval import EMOJI_OFFER
from ldm.data.offers import INFO_NAME
from ldm.errors import LdmError
from ldm.io import atomic_file, one_line

logger = logging.getLogger(__name__)

DEFAULT_FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
# NotoColorEmoji is a CBDT bitmap font with a single strike; FreeType refuses any other pixel size.
EMOJI_PPEM = 109

_HAIR_BASES = ("man", "woman", "person")
_GROUPS = ("couple with heart", "family", "kiss")
_MEMBERS = ("man", "woman", "person", "boy", "girl", "adult", "child")
# The `emoji` package builds its `en` names by dropping ":" and "," and squeezing " - " to "-"; these are the
# few CLDR names where that loses something the generic rules below cannot restore.
_NAME_FIXES = {
    "Congo-Brazzaville": "Congo - Brazzaville",
    "Congo-Kinshasa": "Congo - Kinshasa",
    "St. Helena Ascension & Tristan da Cunha": "St. Helena, Ascension & Tristan da Cunha",
}
_REGIONAL_INDICATORS = range(0x1F1E6, 0x1F200)
_TAG_FLAG_BASE = "\U0001f3f4"  # waving black flag, the base of England/Scotland/Wales tag sequences
_VS16 = "\ufe0f"
_TAGS = range(0xE0020, 0xE0080)
# Sequences no font maps, showing what it draws for a missing glyph: a plane-16 private-use codepoint (.notdef),
# and the invalid flags "ZZ" (regional indicators) and "zzzz" (tags), which Noto draws as a "?" flag.
_NOTDEF_PROBES = ("\U0010fffd", "\U0001f1ff\U0001f1ff", "\U0001f3f4" + "\U000e007a" * 4 + "\U000e007f")


class UnrenderableEmoji(LdmError):
    """The font has no proper glyph for this emoji; `reason` says which check failed."""

    def __init__(self, char: str, reason: str):
        super().__init__(f"font cannot render {char!r}: {reason}")
        self.char = char
        self.reason = reason


def emoji_caption(char: str) -> str:
    """The CLDR name of a fully-qualified emoji, e.g. 'flag: Japan' or 'woman firefighter: medium skin tone'."""
    if char not in emoji.EMOJI_DATA:
        raise LdmError(f"not an emoji known to the emoji package: {char!r}")
    # EMOJI_DATA keeps only the `en` shortcode (CLDR name with spaces -> "_", ":" and "," dropped, and the
    # "flag: " prefix removed), so the CLDR punctuation is rebuilt from the sequence's structure.
    name = emoji.EMOJI_DATA[char]["en"].strip(":").replace("_", " ")
    name = _NAME_FIXES.get(name, name)
    if _is_flag(char):
        return f"flag: {name}"
    if name.startswith("keycap "):  # the digit sequences and U+1F51F "keycap: 10"
        return f"keycap: {name.removeprefix('keycap ')}"
    button = re.fullmatch(r"Japanese (.+) button", name)
    if button:
        return f"Japanese “{button[1]}” button"

    # CLDR orders attributes as: group members, skin tones, hair; the shortcode keeps that order.
    base, hair, tones = name, [], []
    for style in HAIR:
        if base.endswith(" " + style):
            candidate = base[: -len(style) - 1]
            if _strip_tones(candidate)[0] in _HAIR_BASES:
                base, hair = candidate, [style]
            break
    base, tones = _strip_tones(base)
    members: list[str] = []
    for group in _GROUPS:
        rest = base.removeprefix(group + " ").split(" ")
        if base.startswith(group + " ") and all(word in _MEMBERS for word in rest):
            base, members = group, rest
            break
    attributes = members + tones + hair
    return f"{base}: {', '.join(attributes)}" if attributes else base


def list_emoji() -> list[tuple[str, str]]:
    """Every fully-qualified emoji as (char, caption), sorted by caption then codepoints."""
    fully_qualified = emoji.STATUS["fully_qualified"]
    chars = [char for char, data in emoji.EMOJI_DATA.items() if data["status"] == fully_qualified]
    pairs = [(char, emoji_caption(char)) for char in chars]
    return sorted(pairs, key=lambda pair: (pair[1].casefold(), pair[1], pair[0]))


def emoji_file_stem(char: str) -> str:
    """A stable file name stem for an emoji: its codepoints in lowercase hex joined by '-', e.g. '1f1ef-1f1f5'."""
    return "-".join(f"{ord(c):x}" for c in char)


def load_emoji_font(font_path: str | os.PathLike = DEFAULT_FONT) -> ImageFont.FreeTypeFont:
    """Open a colour emoji font at its bitmap size; a missing or unreadable file is an LdmError."""
    # Without libraqm, ZWJ sequences are not ligated and every one would be skipped as several glyphs.
    if features.check("raqm"):
        layout = ImageFont.Layout.RAQM
    else:
        logger.warning("libraqm is not available: emoji ZWJ sequences will render as separate glyphs and be skipped")
        layout = ImageFont.Layout.BASIC
    try:
        return ImageFont.truetype(os.fspath(font_path), EMOJI_PPEM, layout_engine=layout)
    except (OSError, ValueError) as err:
        raise LdmError(f"cannot open emoji font {font_path} at {EMOJI_PPEM} px: {one_line(err)}") from err


def render_emoji(char: str, font: ImageFont.FreeTypeFont, size: int = 64, margin: float = 0.05) -> Image.Image:
    """Render one emoji as a size x size RGB image on white, centred; raises UnrenderableEmoji if the font lacks it."""
    square = _square(char, font, _checked_glyph(char, font), margin, "white")
    return square.resize((size, size), Image.Resampling.LANCZOS)


def render_emoji_rgba(char: str, font: ImageFont.FreeTypeFont, size: int = 64, margin: float = 0.05) -> Image.Image:
    """render_emoji with its transparency: RGBA that composites on white to render_emoji's image (within the
    few levels of LANCZOS ringing that leave [0, 255]), and onto any other background for augmentation."""
    # PIL draws colour bitmaps onto RGBA canvases premultiplied; drawing on white and on black instead gives
    # the coverage exactly: white - black = 255 * (1 - alpha), at full size where nothing has been resampled
    glyph = _checked_glyph(char, font)
    square = _square(char, font, glyph, margin, "white")
    on_white = np.asarray(square, dtype=np.float32)
    on_black = np.asarray(_square(char, font, glyph, margin, "black"), dtype=np.float32)
    alpha = np.clip(_resized(255 - (on_white - on_black).mean(axis=-1), size), 0, 255)
    white = np.asarray(square.resize((size, size), Image.Resampling.LANCZOS), dtype=np.float32)
    colour = (white - 255 + alpha[..., None]) * 255 / np.maximum(alpha[..., None], 1e-3)
    rgba = np.dstack([np.where(alpha[..., None] > 0, np.clip(colour, 0, 255), 0), alpha])
    return Image.fromarray(np.rint(rgba).astype(np.uint8), "RGBA")


def _resized(channel: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(channel.astype(np.float32), "F").resize((size, size), Image.Resampling.LANCZOS))


def _checked_glyph(char: str, font: ImageFont.FreeTypeFont) -> Image.Image:
    """The emoji's glyph (see _glyph_rgba); raises UnrenderableEmoji if the font cannot draw it as one glyph."""
    glyph = _glyph_rgba(char, font)
    if glyph is None:
        raise UnrenderableEmoji(char, "blank")
    if font.getlength(char) > 1.8 * font.size:
        raise UnrenderableEmoji(char, "several glyphs")
    for probe in _NOTDEF_PROBES:
        notdef = _reference_glyph(probe, font)
        if notdef is not None and _same_pixels(glyph, notdef):
            raise UnrenderableEmoji(char, "missing-glyph placeholder")
    if any(ord(c) in _TAGS for c in char):
        # Tags are invisible on their own: an unsupported tag flag shapes to the bare black flag. (A skin-tone
        # sequence drawn like its base is deliberate, e.g. Noto's goggled snowboarder, and is kept.)
        base_glyph = _reference_glyph(_base_of(char), font)
        if base_glyph is not None and _same_pixels(glyph, base_glyph):
            raise UnrenderableEmoji(char, "draws only its base emoji")
    return glyph


def _square(char: str, font: ImageFont.FreeTypeFont, glyph: Image.Image, margin: float,
            background: str) -> Image.Image:
    """The emoji on `background`, centred in a square with `margin` on each side, at the font's size."""
    # PIL hands embedded-colour bitmaps to RGBA canvases premultiplied, so compositing that RGBA on white would
    # darken every edge; drawing straight onto the background lets PIL blend correctly.
    left, top, right, bottom = glyph.info["bbox"]
    drawn = Image.new("RGB", glyph.info["canvas"], background)
    ImageDraw.Draw(drawn).text(glyph.info["origin"], char, font=font, embedded_color=True)
    drawn = drawn.crop((left, top, right, bottom))
    # the caller downsamples; already on the background, so no fringes
    width, height = drawn.size
    side = math.ceil(max(width, height) / (1 - 2 * margin))
    square = Image.new("RGB", (side, side), background)
    square.paste(drawn, ((side - width) // 2, (side - height) // 2))
    return square


def build_emoji_dataset(
    out_dir: str | os.PathLike,
    font_path: str | os.PathLike = DEFAULT_FONT,
    size: int = 64,
    heldout_fraction: float = 0.05,
    seed: int = 0,
    only: Iterable[str] | None = None,
    progress: Callable[[list], Iterable] | None = None,
) -> dict:
    """Write an imagefolder of rendered emoji (images/, metadata.jsonl, heldout.txt, dataset_info.json) and return
    a summary dict.

    Each image has its CLDR name as `text` and every caption it trains under, with their sources, as `captions`
    and `caption_sources` (see ldm.data.emoji_captions); the evaluation's paraphrases are never among them."""
    # 1. check inputs
    if not 0 <= heldout_fraction < 1:
        raise LdmError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
    if size < 1:
        raise LdmError(f"size must be a positive number of pixels, got {size}")
    font = load_emoji_font(font_path)
    items = _selected_emoji(only)

    # 2. render every emoji, each image written atomically
    out = Path(out_dir)
    images_dir = out / "images"
    try:
        images_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise LdmError(f"cannot create {images_dir}: {one_line(err)}") from err
    records, skipped, decontaminated = _render_records(out, progress(items) if progress else items, font, size)

    # 3. held-out split, then metadata last so it never names an image that is not on disk
    heldout_files, info = _write_split_and_metadata(out, records, heldout_fraction, seed, font_path, decontaminated)

    return {
        "written": len(records),
        "skipped": len(skipped),
        "skipped_by_reason": dict(Counter(s["reason"] for s in skipped)),
        "skipped_emoji": skipped,
        "heldout": len(heldout_files),
        "out_dir": str(out),
        "images_dir": str(images_dir),
        "metadata": str(out / "metadata.jsonl"),
        "heldout_file": str(out / "heldout.txt"),
        "info": info,
    }


def _selected_emoji(only: Iterable[str] | None) -> list[tuple[str, str]]:
    """Every fully-qualified emoji with its caption, or just those in `only` (an error names unknown ones)."""
    items = list_emoji()
    if only is None:
        return items
    wanted = list(dict.fromkeys(only))
    known = dict(items)
    unknown = [char for char in wanted if char not in known]
    if unknown:
        raise LdmError(f"not fully-qualified emoji: {' '.join(unknown[:10])}")
    keep = set(wanted)
    return [item for item in items if item[0] in keep]


def _render_records(out: Path, items: Iterable[tuple[str, str]], font: ImageFont.FreeTypeFont,
                    size: int) -> tuple[list[dict], list[dict], int]:
    """Render and write each emoji's image; its metadata record, the skipped emoji, captions left out."""
    records, skipped = [], []
    # the evaluation's paraphrases measure generalisation, so no training caption may equal one
    exclude = EMOJI_OFFER.heldout_wordings()
    decontaminated = 0
    for char, caption in items:
        try:
            image = render_emoji_rgba(char, font, size=size)
        except UnrenderableEmoji as err:
            skipped.append({"emoji": char, "text": caption, "reason": err.reason})
            continue
        file_name = f"images/{emoji_file_stem(char)}.png"
        _write_atomic(out / file_name, lambda tmp, image=image: image.save(tmp, format="PNG"))
        captions = emoji_captions(char, caption, exclude)
        decontaminated += len(emoji_captions(char, caption)) - len(captions)
        records.append({"file_name": file_name, "text": caption, "emoji": char,
                        "captions": [c for c, _ in captions], "caption_sources": [s for _, s in captions]})
    return records, skipped, decontaminated


def _write_split_and_metadata(out: Path, records: list[dict], heldout_fraction: float, seed: int,
                              font_path: str | os.PathLike, decontaminated: int) -> tuple[list[str], dict]:
    """Write heldout.txt, dataset_info.json and metadata.jsonl (last); the held-out files and the info."""
    heldout = heldout_split([r["emoji"] for r in records], heldout_fraction, seed)
    heldout_files = sorted(r["file_name"] for r in records if r["emoji"] in heldout)
    _write_atomic(out / "heldout.txt", lambda tmp: tmp.write_text("".join(f + "\n" for f in heldout_files), "utf-8"))
    lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
    sources = Counter(source for r in records for source in r["caption_sources"])
    info = {"images": len(records), "heldout": len(heldout_files), "font": str(font_path),
            "captions": sum(sources.values()), "captions_by_source": dict(sources),
            "caption_sources": caption_sources(),
            "left_out_as_evaluation_prompts": decontaminated,
            "evaluation": EMOJI_OFFER.name}  # the folder declares its evaluation tables (ldm.data.offers)
    _write_atomic(out / INFO_NAME,
                  lambda tmp: tmp.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", "utf-8"))
    _write_atomic(out / "metadata.jsonl", lambda tmp: tmp.write_text(lines, "utf-8"))
    return heldout_files, info


def heldout_split(chars: Iterable[str], fraction: float, seed: int = 0) -> set[str]:
    """The seeded held-out subset: the round(fraction * n) emoji with the smallest hash of (seed, emoji)."""
    # Ranking by a per-emoji hash instead of shuffling keeps an emoji's split stable when the font or the
    # emoji package adds or drops other emoji, and needs no RNG state.
    chars = list(dict.fromkeys(chars))
    count = round(fraction * len(chars))
    ranked = sorted(chars, key=lambda char: hashlib.sha256(f"{seed}\0{char}".encode()).hexdigest())
    return set(ranked[:count])


def _is_flag(char: str) -> bool:
    return ord(char[0]) in _REGIONAL_INDICATORS or (char.startswith(_TAG_FLAG_BASE) and len(char) > 1)


def _strip_tones(name: str) -> tuple[str, list[str]]:
    tones: list[str] = []
    while True:
        tone = next((t for t in SKIN_TONES if name.endswith(" " + t)), None)
        if tone is None:
            return name, tones
        name, tones = name[: -len(tone) - 1], [tone, *tones]


def _base_of(char: str) -> str:
    """The first codepoint, with its emoji presentation selector if it has one."""
    return char[:2] if char[1:2] == _VS16 else char[:1]


def _glyph_rgba(char: str, font: ImageFont.FreeTypeFont) -> Image.Image | None:
    """The glyph cropped to its alpha bbox (RGBA, premultiplied by PIL), or None if nothing is drawn."""
    pad = font.size // 4
    _, _, right, bottom = font.getbbox(char)
    canvas = (max(right, 1) + 2 * pad, max(bottom, 1) + 2 * pad)
    image = Image.new("RGBA", canvas, (0, 0, 0, 0))
    ImageDraw.Draw(image).text((pad, pad), char, font=font, embedded_color=True)
    bbox = image.getchannel("A").getbbox()
    if bbox is None:
        return None
    glyph = image.crop(bbox)
    glyph.info.update(bbox=bbox, canvas=canvas, origin=(pad, pad))
    return glyph


@lru_cache(maxsize=1024)
def _reference_glyph(char: str, font: ImageFont.FreeTypeFont) -> Image.Image | None:
    """_glyph_rgba cached, for the few glyphs (bases, .notdef) that many emoji are compared against."""
    return _glyph_rgba(char, font)


def _same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and ImageChops.difference(a, b).getbbox(alpha_only=False) is None


def _write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    try:
        with atomic_file(path) as tmp:
            write(tmp)
    except OSError as err:
        raise LdmError(f"cannot write {path}: {one_line(err)}") from err
