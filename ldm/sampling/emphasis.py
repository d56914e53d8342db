"""Prompt emphasis on a text encoder's output: each token's embedding scaled by the weight of the text it
came from, then the whole embedding brought back to its original RMS, so that emphasis moves attention
between words rather than making the prompt louder. AUTOMATIC1111 restores the mean instead, which is
safe for CLIP but divides by nearly zero for encoders whose outputs are centred (MiniLM's mean is ~0.01
against a spread of ~0.45)."""

from __future__ import annotations

import torch

from ldm.errors import LdmError
from ldm.sampling.prompt_syntax import Runs, plain_text


def token_weights(tokenizer, runs: Runs) -> torch.Tensor:
    """Each token position's weight (T,) for the runs' plain text, tokenized as diffusers' encode_prompt does
    (padded to the tokenizer's length); special and padding tokens weigh 1."""
    text = plain_text(runs)
    per_char: list[float] = []
    for piece, weight in runs:
        per_char.extend([weight] * len(piece))
    try:
        encoded = tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                            return_offsets_mapping=True)
    except NotImplementedError:
        raise LdmError("prompt emphasis needs a tokenizer that reports character offsets (a fast tokenizer)") \
            from None
    return torch.tensor([per_char[start] if end > start else 1.0 for start, end in encoded["offset_mapping"]])


def apply_weights(embeds: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Embeddings (N, T, D) with row t scaled by weights[t], at the original RMS; unchanged when all are 1."""
    if bool((weights == 1).all()):
        return embeds
    scaled = embeds * weights.to(embeds)[None, :, None]
    rms = embeds.float().pow(2).mean().sqrt()
    new_rms = scaled.float().pow(2).mean().sqrt()
    return scaled if new_rms == 0 else scaled * (rms / new_rms).to(scaled.dtype)
