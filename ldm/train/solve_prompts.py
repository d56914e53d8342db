"""Wordings the teacher solves for in trajectory distillation beyond the dataset's own captions.

A student distilled on the training captions alone copies the teacher well there and worse on wordings it
never saw (the emoji student's image lands where its teacher's deterministic solve from the same seed does for
0.875 of training captions and 0.496 of paraphrases: scripts/evaluate.py --teacher). The student's target is
the teacher's output, not an image, so any wording can be distilled: recombining one image's captions gives new
wordings near what that image shows, from the training data alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ldm.data.offers import caption_key

KEEP_WORD = 0.7  # each word survives with this chance: new word sets, still mostly about the same thing
TRIES = 8  # draws before a recombination that keeps hitting an evaluation prompt gives way to a plain caption


def recombine(captions: Sequence[str], generator: torch.Generator, avoid: frozenset[str] = frozenset()) -> str:
    """Two of one image's captions (its only one, when it has one) in a random order, joined, each losing words
    at random (never all of them); never a wording in `avoid` (caption_keys: EvaluationOffer.heldout_wordings)."""
    # the evaluation measures generalisation on the held-out wordings, so a solve never uses one (dropped words
    # can make "music notes" of "musical notes" and "notes"); compared as the dataset compares its captions
    for _ in range(TRIES):
        prompt = _recombine_once(captions, generator)
        if caption_key(prompt) not in avoid:
            return prompt
    return captions[0]


def _recombine_once(captions: Sequence[str], generator: torch.Generator) -> str:
    parts = []
    for i in torch.randperm(len(captions), generator=generator)[:2].tolist():
        words = captions[i].split()
        if not words:
            continue
        keep = torch.rand(len(words), generator=generator) < KEEP_WORD
        if not keep.any():
            keep[int(torch.randint(len(words), (1,), generator=generator))] = True
        parts.append(" ".join(w for w, k in zip(words, keep.tolist(), strict=True) if k))
    return " ".join(parts)


def recombined_prompts(caption_lists: Sequence[Sequence[str]], count: int, generator: torch.Generator,
                       avoid: frozenset[str] = frozenset()) -> list[str]:
    """`count` recombinations, each of the captions of an image drawn uniformly, none a wording in `avoid`."""
    images = torch.randint(len(caption_lists), (count,), generator=generator).tolist()
    return [recombine(caption_lists[i], generator, avoid) for i in images]
