"""The emoji model's evaluation tables: every paraphrase family and probe prompt exists in the emoji captions,
and no paraphrase is a caption under another name."""

import json

import emoji

from ldm.config import DataConfig
from ldm.data.emoji import build_emoji_dataset, list_emoji
from ldm.data.emoji_captions import caption_key, emoji_captions
from ldm.data.emoji_eval import DIVERSITY_PROMPTS, EMOJI_OFFER, GENERAL_PROMPTS, PARAPHRASES
from ldm.data.offers import evaluation_offer


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


def test_no_paraphrase_is_among_the_captions_the_dataset_trains_on():
    # every caption source (short names, aliases, tags, subgroup phrases): a few tags equal paraphrases
    # ("burger", "puppy"), so the builder leaves those captions out; the paraphrases stay as written
    keys = {caption_key(p) for p in PARAPHRASES}
    raw = {caption_key(c) for char, name in list_emoji() for c, _ in emoji_captions(char, name)}
    assert keys & raw  # what the builder has to leave out (if none, the exclusion below tests nothing)
    trained = {caption_key(c) for char, name in list_emoji() for c, _ in emoji_captions(char, name, frozenset(keys))}
    assert not keys & trained


def test_the_built_dataset_leaves_paraphrases_out(tmp_path, font):
    build_emoji_dataset(tmp_path, only=["🍔", "🐶", "🍆", "📱"])
    keys = {caption_key(p) for p in PARAPHRASES}
    records = [json.loads(line) for line in (tmp_path / "metadata.jsonl").read_text("utf-8").splitlines()]
    assert len(records) == 4
    assert not {caption_key(c) for r in records for c in r["captions"]} & keys
    info = json.loads((tmp_path / "dataset_info.json").read_text("utf-8"))
    assert info["left_out_as_evaluation_prompts"] >= 3
    # the folder declares the tables its evaluation reads (ldm.data.offers)
    assert info["evaluation"] == "emoji"
    assert evaluation_offer(DataConfig(source="files", path=str(tmp_path))) is EMOJI_OFFER
