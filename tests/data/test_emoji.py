"""The emoji dataset builder: CLDR captions, rendering checks, the imagefolder it writes, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import emoji
import numpy as np
import pytest
from PIL import Image

from ldm.data.emoji import (
    DEFAULT_FONT,
    UnrenderableEmoji,
    build_emoji_dataset,
    emoji_caption,
    emoji_file_stem,
    heldout_split,
    list_emoji,
    render_emoji,
    render_emoji_rgba,
)
from ldm.data.emoji_captions import SOURCES
from ldm.errors import LdmError

ROOT = Path(__file__).resolve().parents[2]
needs_font = pytest.mark.skipif(not Path(DEFAULT_FONT).is_file(), reason=f"emoji font not installed: {DEFAULT_FONT}")
# Unicode 16-18 emoji that the Debian Noto build lacks; a newer font may draw some of them.
ENGLAND = "🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"
RECENT = ["\U0001fae9", "\U0001fac6", "\U0001fabe", "\U0001fadf"]


# --- captions --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "char, caption",
    [
        ("😀", "grinning face"),
        ("🇯🇵", "flag: Japan"),
        ("🇨🇬", "flag: Congo - Brazzaville"),
        (ENGLAND, "flag: England"),
        ("👩🏽\u200d🚒", "woman firefighter: medium skin tone"),
        ("👍🏿", "thumbs up: dark skin tone"),
        ("🧑🏻\u200d🤝\u200d🧑🏾", "people holding hands: light skin tone, medium-dark skin tone"),
        ("👩🏻\u200d❤️\u200d💋\u200d👨🏿", "kiss: woman, man, light skin tone, dark skin tone"),
        ("💏🏻", "kiss: light skin tone"),
        ("💋", "kiss mark"),
        ("👨\u200d👩\u200d👧", "family: man, woman, girl"),
        ("👪", "family"),
        ("👨🏻\u200d🦰", "man: light skin tone, red hair"),
        ("🧔", "person: beard"),
        ("👱", "person: blond hair"),
        ("#️⃣", "keycap: #"),
        ("🔟", "keycap: 10"),
        ("🈁", "Japanese “here” button"),
        ("🕐", "one o’clock"),
        ("🅰️", "A button (blood type)"),
    ],
)
def test_caption_is_the_cldr_name(char, caption):
    assert emoji_caption(char) == caption


def test_list_emoji_is_every_fully_qualified_emoji_sorted_and_unique():
    fully_qualified = {c for c, d in emoji.EMOJI_DATA.items() if d["status"] == emoji.STATUS["fully_qualified"]}
    items = list_emoji()
    assert {char for char, _ in items} == fully_qualified
    assert items == list_emoji()
    assert items == sorted(items, key=lambda item: (item[1].casefold(), item[1], item[0]))
    captions = [caption for _, caption in items]
    assert len(set(captions)) == len(captions)
    assert all("_" not in c and not c.startswith(":") and c == c.strip() for c in captions)
    assert ("🇯🇵", "flag: Japan") in items


def test_file_stem_is_codepoints():
    assert emoji_file_stem("🇯🇵") == "1f1ef-1f1f5"
    assert emoji_file_stem("❤️") == "2764-fe0f"


def test_heldout_split_is_seeded_and_sized():
    chars = [char for char, _ in list_emoji()[:200]]
    split = heldout_split(chars, 0.05, seed=0)
    assert split == heldout_split(list(reversed(chars)), 0.05, seed=0)
    assert len(split) == 10 and split <= set(chars)
    assert heldout_split(chars, 0.05, seed=1) != split
    assert heldout_split(chars, 0.0) == set()


# --- rendering -------------------------------------------------------------------------------------------------------

@needs_font
@pytest.mark.parametrize("char", ["😀", "🇯🇵", "👩🏽\u200d🚒", "⬛", "🌈"])
def test_rgba_render_keeps_the_white_render_and_gives_true_transparency(font, char):
    rgba = render_emoji_rgba(char, font)
    assert rgba.size == (64, 64) and rgba.mode == "RGBA"
    alpha = np.asarray(rgba.getchannel("A")).astype(int)
    assert alpha[0, 0] == 0 and alpha[32, 32] == 255  # transparent margin, opaque centre
    on_white = np.asarray(Image.alpha_composite(Image.new("RGBA", (64, 64), "white"), rgba).convert("RGB"))
    diff = np.abs(on_white.astype(int) - np.asarray(render_emoji(char, font)).astype(int))
    # equal but for the LANCZOS ringing at the outline that leaves [0, 255] on white
    assert diff.mean() < 1.0 and np.percentile(diff, 99) <= 12
    # on black it is the emoji drawn on black, not a white fringe
    on_black = np.asarray(Image.alpha_composite(Image.new("RGBA", (64, 64), "black"), rgba).convert("RGB"))
    assert on_black[alpha == 0].max() == 0 and on_black[alpha < 64].mean() < 40

@needs_font
@pytest.mark.parametrize("char", ["😀", "🇯🇵", "👩🏽\u200d🚒", "🐸", "❤️", "#️⃣", ENGLAND])
def test_render_is_centred_colour_on_white(font, char):
    image = render_emoji(char, font)
    assert image.size == (64, 64) and image.mode == "RGB"
    pixels = np.asarray(image).astype(int)
    for y, x in [(0, 0), (0, -1), (-1, 0), (-1, -1)]:
        assert (pixels[y, x] >= 250).all(), f"corner {y, x} is not white"
    centre = pixels[16:48, 16:48].reshape(-1, 3)
    assert (centre < 240).any(axis=1).mean() > 0.3, "centre is mostly white"
    assert (centre.max(axis=1) - centre.min(axis=1)).max() > 40, "centre is grey, not coloured"
    # centred: the non-white box has about equal white space on opposite sides
    ys, xs = np.nonzero((pixels < 250).any(axis=2))
    assert abs(xs.min() - (63 - xs.max())) <= 2 and abs(ys.min() - (63 - ys.max())) <= 2


@needs_font
def test_render_size_and_no_dark_fringe(font):
    assert render_emoji("😀", font, size=32).size == (32, 32)
    # A yellow disc blended with white keeps a high red channel everywhere; a premultiplied-alpha mistake
    # darkens its anti-aliased rim (red drops to ~220).
    circle = np.asarray(render_emoji("🟡", font))
    assert circle[..., 0].min() >= 235


@needs_font
@pytest.mark.parametrize(
    "char, reason",
    [
        ("A", "blank"),  # not in the font at all
        ("\U0001f1ff\U0001f1ff", "missing-glyph placeholder"),  # no region "ZZ": Noto draws a "?" flag
        ("😀\u200d🐸", "several glyphs"),  # a ZWJ sequence the font has no ligature for
    ],
)
def test_unrenderable_emoji_are_refused(font, char, reason):
    with pytest.raises(UnrenderableEmoji) as info:
        render_emoji(char, font)
    assert info.value.reason == reason
    assert isinstance(info.value, LdmError)


# --- building --------------------------------------------------------------------------------------------------------

@needs_font
def test_build_subset_writes_an_imagefolder(tmp_path, font):
    refused = []
    for char in RECENT:
        try:
            render_emoji(char, font)
        except UnrenderableEmoji:
            refused.append(char)
    drawable = ["😀", "🇯🇵", "👩🏽\u200d🚒", "🐸", "❤️", "#️⃣", "🦓", "🌈"]
    summary = build_emoji_dataset(tmp_path, only=drawable + RECENT, heldout_fraction=0.25, seed=3)

    assert summary["skipped"] == len(refused)
    assert summary["written"] == len(drawable) + len(RECENT) - len(refused)
    records = [json.loads(line) for line in (tmp_path / "metadata.jsonl").read_text("utf-8").splitlines()]
    assert len(records) == summary["written"]
    assert {r["emoji"] for r in records} == set(drawable + RECENT) - set(refused)
    for record in records:
        assert set(record) == {"file_name", "text", "emoji", "captions", "caption_sources"}
        assert record["text"] == emoji_caption(record["emoji"]) == record["captions"][0]
        assert record["caption_sources"][0] == "cldr-name"
        assert len(record["captions"]) == len(record["caption_sources"]) == len(set(record["captions"]))
        with Image.open(tmp_path / record["file_name"]) as image:
            assert image.size == (64, 64) and image.mode == "RGBA"  # the transparency VAE augmentation uses

    info = json.loads((tmp_path / "dataset_info.json").read_text("utf-8"))
    assert info["images"] == len(records) and info["captions"] == sum(len(r["captions"]) for r in records)
    assert {s for r in records for s in r["caption_sources"]} <= set(info["caption_sources"]) == set(SOURCES)
    assert all(" " in version for version in info["caption_sources"].values())  # package and version

    heldout = (tmp_path / "heldout.txt").read_text("utf-8").splitlines()
    assert len(heldout) == summary["heldout"] == round(0.25 * len(records))
    assert set(heldout) <= {r["file_name"] for r in records}
    assert not list(tmp_path.rglob("*.tmp"))

    again = build_emoji_dataset(tmp_path / "again", only=list(reversed(drawable + RECENT)), heldout_fraction=0.25,
                                seed=3)
    assert (tmp_path / "again" / "heldout.txt").read_text("utf-8") == "\n".join(heldout) + "\n"
    assert again["written"] == summary["written"]


def test_bad_font_is_an_ldm_error(tmp_path):
    with pytest.raises(LdmError, match="cannot open emoji font") as info:
        build_emoji_dataset(tmp_path / "out", font_path=tmp_path / "missing.ttf")
    assert "\n" not in str(info.value)
    not_a_font = tmp_path / "notes.ttf"
    not_a_font.write_text("not a font")
    with pytest.raises(LdmError, match="cannot open emoji font"):
        build_emoji_dataset(tmp_path / "out", font_path=not_a_font)
    assert not (tmp_path / "out" / "metadata.jsonl").exists()


@needs_font
def test_unknown_subset_and_bad_fraction_are_ldm_errors(tmp_path):
    with pytest.raises(LdmError, match="not fully-qualified"):
        build_emoji_dataset(tmp_path, only=["😀", "x"])
    with pytest.raises(LdmError, match="heldout_fraction"):
        build_emoji_dataset(tmp_path, heldout_fraction=1.5)


def test_cli_reports_errors_in_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "scripts/build_emoji_dataset.py", "--out", str(tmp_path / "out"), "--font",
         str(tmp_path / "missing.ttf")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: cannot open emoji font")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
