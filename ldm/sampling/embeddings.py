"""Prompt embeddings: each text encoded once (recent ones kept), then blended per image and step."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace

import torch

from ldm.sampling.emphasis import apply_weights, token_weights
from ldm.sampling.interpolate import blend
from ldm.sampling.prompt_syntax import Runs, parse_prompt, plain_text
from ldm.sampling.requests import ImageSpec

EMBEDDING_BLENDS = ("slerp", "lerp")  # morph modes that blend the two prompts' embeddings (else: predictions)

EMBEDDING_CACHE = 256  # texts whose embeddings a PromptEmbeddings keeps


class PromptEmbeddings:
    """A pipeline's text encoder behind a cache of its recent texts (per active LoRA), in fp32.

    Live controls ask for the same few prompts many times a second, and the encoder costs as much as a
    student's step. The caller serialises calls (the sampler's lock): the cache is not thread-safe.
    """

    def __init__(self, pipe, device: torch.device, capacity: int = EMBEDDING_CACHE):
        self.pipe, self.device, self.capacity = pipe, device, capacity
        self._kept: OrderedDict[tuple, torch.Tensor] = OrderedDict()

    def __call__(self, prompts: Sequence[str], lora: tuple, steps: int) -> dict[Runs, torch.Tensor]:
        """Embeddings of every text the prompts take over `steps` steps, keyed by their runs (text, weight);
        `lora` (file, scale) names the adapter active in the text encoder."""
        texts = dict.fromkeys(runs for prompt in dict.fromkeys(prompts)
                              for _, runs in parse_prompt(prompt).schedule(steps))
        out = {}
        for runs in texts:
            key = (runs, *lora)
            if key not in self._kept:
                self._kept[key] = self._encode(runs)
                while len(self._kept) > self.capacity:
                    self._kept.popitem(last=False)
            self._kept.move_to_end(key)
            out[runs] = self._kept[key]
        return out

    def _encode(self, runs: Runs) -> torch.Tensor:
        # fp32, so that morphs blend exact endpoint embeddings
        embeds = self.pipe.encode_prompt(plain_text(runs), self.device, 1, False)[0].float()
        if all(w == 1 for _, w in runs):
            return embeds
        return apply_weights(embeds, token_weights(self.pipe.tokenizer, runs))


def conditioning(spec: ImageSpec, embeds: dict[Runs, torch.Tensor], step: int = 1, steps: int = 1) -> torch.Tensor:
    """One image's prompt embedding at 1-based denoising `step` of `steps` (prompt editing and alternation
    change the text between steps): its prompt or morph blend, plus its mix terms."""
    def embed(prompt: str) -> torch.Tensor:
        return embeds[parse_prompt(prompt).runs_at(step, steps)]

    cond = embed(spec.prompt)
    if spec.morph_to is not None and spec.morph_mode in EMBEDDING_BLENDS:
        cond = blend(cond, embed(spec.morph_to), spec.morph_t, spec.morph_mode)
    for prompt, weight in spec.mix:
        cond = cond + weight * embed(prompt)
    return cond


def blends_predictions(spec: ImageSpec) -> bool:
    """A morph frame between its two prompts whose model predictions, not embeddings, are blended."""
    return spec.morph_to is not None and spec.morph_mode == "predictions" and 0 < spec.morph_t


def morph_conditioning(spec: ImageSpec, embeds: dict[Runs, torch.Tensor], step: int = 1,
                       steps: int = 1) -> torch.Tensor:
    """A prediction morph's other end at `step`: its morph-to prompt, with the same mix terms."""
    return conditioning(replace(spec, prompt=spec.morph_to, morph_to=None), embeds, step, steps)


def prompt_step(i: int, iterations: int, steps: int) -> int:
    """The 1-based sampling step that denoising-loop iteration i belongs to (second-order samplers run
    more iterations than steps)."""
    return min(steps, i * steps // max(iterations, 1) + 1)
