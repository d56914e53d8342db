"""What a dataset declares for its evaluation: nothing for the shapes and a plain folder, the emoji tables for a
folder the emoji builder made (before and after it wrote the declaration), one line for a name nobody knows."""

import json

import pytest

from ldm.config import DataConfig
from ldm.data.offers import NOTHING, caption_key, evaluation_offer
from ldm.errors import LdmError


def _folder(tmp_path, info=None):
    tmp_path.mkdir(exist_ok=True)
    if info is not None:
        (tmp_path / "dataset_info.json").write_text(info if isinstance(info, str) else json.dumps(info))
    return DataConfig(source="files", path=str(tmp_path))


def test_the_shapes_and_a_plain_folder_declare_nothing(tmp_path):
    assert evaluation_offer(DataConfig(source="shapes")) is NOTHING
    assert evaluation_offer(_folder(tmp_path)) is NOTHING
    # a datasets save_to_disk folder has a dataset_info.json of its own, which declares nothing to us
    assert evaluation_offer(_folder(tmp_path / "hf", {"description": "", "features": {}})) is NOTHING
    assert evaluation_offer(_folder(tmp_path / "list", [1, 2])) is NOTHING
    assert NOTHING.heldout_wordings() == frozenset() and not NOTHING.paraphrases and not NOTHING.probe_prompts


def test_an_emoji_folder_declares_the_emoji_tables(tmp_path):
    from ldm.data.emoji_eval import DIVERSITY_PROMPTS, EMOJI_OFFER, GENERAL_PROMPTS, PARAPHRASES

    offer = evaluation_offer(_folder(tmp_path / "new", {"images": 4, "evaluation": "emoji"}))
    assert offer is EMOJI_OFFER and offer.name == "emoji"
    assert (offer.paraphrases, offer.general_prompts, offer.probe_prompts) == (PARAPHRASES, GENERAL_PROMPTS,
                                                                              DIVERSITY_PROMPTS)
    assert offer.heldout_wordings() == {caption_key(p) for p in PARAPHRASES}
    # a folder built before the builder wrote "evaluation" is known by the builder's own keys
    built_before = {"images": 4, "font": "NotoColorEmoji.ttf", "caption_sources": {"cldr-name": "emoji 2.14"}}
    assert evaluation_offer(_folder(tmp_path / "old", built_before)) is EMOJI_OFFER


@pytest.mark.parametrize("info, message", [
    ({"evaluation": "emojis"}, "\"evaluation\" names 'emojis', not one of: emoji"),
    ({"evaluation": ["emoji"]}, "not one of: emoji"),
    ("{not json", "is not valid JSON"),
])
def test_a_declaration_nobody_knows_is_one_line(tmp_path, info, message):
    with pytest.raises(LdmError, match="dataset_info.json") as caught:
        evaluation_offer(_folder(tmp_path, info))
    assert message in str(caught.value) and "\n" not in str(caught.value)
