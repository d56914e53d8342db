"""The emoji model's evaluation tables: every paraphrase family and probe prompt exists in the emoji captions,
and no paraphrase is a caption under another name."""

import emoji

from ldm.data.emoji import list_emoji
from ldm.data.emoji_eval import DIVERSITY_PROMPTS, GENERAL_PROMPTS, PARAPHRASES


def test_the_tables_are_large_enough_to_measure():
    assert len(PARAPHRASES) >= 120
    assert len(GENERAL_PROMPTS) >= 20


def test_every_family_and_probe_prompt_names_an_emoji_caption():
    # evaluate matches keywords against lower-cased captions: a keyword with a capital never matches,
    # and a family no caption names would count as a miss for any image
    captions = [caption.lower() for _, caption in list_emoji()]
    for prompt, keywords in {**PARAPHRASES, **GENERAL_PROMPTS}.items():
        assert all(k == k.lower() for k in keywords), prompt
        assert any(k in c for k in keywords for c in captions), prompt
    for prompt in DIVERSITY_PROMPTS:
        assert any(prompt in c for c in captions), prompt
    for prompt, keywords in GENERAL_PROMPTS.items():  # many right answers, or variety cannot show
        assert sum(any(k in c for k in keywords) for c in captions) >= 8, prompt


def test_no_paraphrase_is_a_caption_or_a_name_the_emoji_package_gives():
    # the paraphrase set measures generalisation: it must stay apart from every name a caption is made from
    names = {caption.lower() for _, caption in list_emoji()}
    for data in emoji.EMOJI_DATA.values():
        for name in [data["en"], *data.get("alias", [])]:
            names.add(name.strip(":").replace("_", " ").lower())
    assert not [p for p in PARAPHRASES if p.lower() in names]
    assert not [p for p in PARAPHRASES if p.lower() in {c.replace("-", " ") for c in names}]
