"""The recombined captions trajectory distillation solves for: new wordings from one image's captions alone,
reproducible from the generator, and never one of the evaluation's paraphrases."""

import torch

from ldm.data.emoji_captions import caption_key
from ldm.data.emoji_eval import EMOJI_OFFER, PARAPHRASES
from ldm.train.solve_prompts import recombine, recombined_prompts

CAPTIONS = ["grinning face with smiling eyes", "beaming face", "a smiling face"]


def _draws(captions, count, seed=0, avoid=frozenset()):
    gen = torch.Generator().manual_seed(seed)
    return [recombine(captions, gen, avoid) for _ in range(count)]


def _is_subsequence(words, of):
    it = iter(of)
    return all(w in it for w in words)


def test_a_recombination_is_two_of_the_captions_with_words_dropped():
    draws = _draws(CAPTIONS, 300)
    splits = [c.split() for c in CAPTIONS]
    for prompt in draws:
        words = prompt.split()
        # some split of its words is a non-empty part of one caption followed by a non-empty part of another
        assert any(_is_subsequence(words[:k], a) and _is_subsequence(words[k:], b)
                   for k in range(1, len(words)) for a in splits for b in splits if a is not b), prompt
    assert sum(p not in CAPTIONS for p in draws) > 250  # new wordings, not the captions again
    assert len(set(draws)) > 50
    assert _draws(CAPTIONS, 20) == _draws(CAPTIONS, 20) != _draws(CAPTIONS, 20, seed=1)


def test_an_image_with_one_caption_gets_its_words_in_order_never_none():
    draws = _draws(["red apple on a plate"], 200)
    assert all(p and _is_subsequence(p.split(), "red apple on a plate".split()) for p in draws)
    assert "red apple on a plate" in draws and len(set(draws)) > 5


def test_the_evaluation_paraphrases_are_never_made():
    held_out = EMOJI_OFFER.heldout_wordings()
    assert held_out == {caption_key(p) for p in PARAPHRASES} and caption_key("Music Notes") in held_out
    # two one-word captions recombine to one order or the other; the paraphrase's order is refused
    draws = _draws(["music", "notes"], 200, avoid=held_out)
    assert "music notes" not in draws and draws.count("notes music") > 190
    assert "music notes" in _draws(["music", "notes"], 200)  # a dataset that holds no wording out
    # when every wording it draws is refused, the image's first caption (trained on anyway) stands in
    assert set(_draws(["music", "notes"], 20, avoid=frozenset({"notes music", "music notes"}))) == {"music"}


def test_prompts_come_from_images_drawn_uniformly():
    lists = [["red square"], ["blue circle"], ["green star"]]
    prompts = recombined_prompts(lists, 600, torch.Generator().manual_seed(0))
    counts = [sum(any(w in p for w in lst[0].split()) for p in prompts) for lst in lists]
    assert all(150 < c < 250 for c in counts), counts
