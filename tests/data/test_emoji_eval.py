"""The emoji model's evaluation tables: every paraphrase family and probe prompt exists in the emoji captions."""

from ldm.data.emoji import list_emoji
from ldm.data.emoji_eval import DIVERSITY_PROMPTS, PARAPHRASES


def test_paraphrase_list():
    assert len(PARAPHRASES) >= 30


def test_every_family_and_probe_prompt_names_an_emoji_caption():
    # evaluate matches keywords against lower-cased captions: a keyword with a capital never matches,
    # and a family no caption names would count as a miss for any image
    captions = [caption.lower() for _, caption in list_emoji()]
    for prompt, keywords in PARAPHRASES.items():
        assert all(k == k.lower() for k in keywords), prompt
        assert any(k in c for k in keywords for c in captions), prompt
    for prompt in DIVERSITY_PROMPTS:
        assert any(prompt in c for c in captions), prompt
