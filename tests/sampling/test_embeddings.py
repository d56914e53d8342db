"""Prompt embeddings: each text encoded once, kept for later calls."""

import torch

from ldm.sampling.requests import ImageSpec, Settings
from ldm.sampling.sampler import load_sampling_model


def test_prompt_embeddings_are_computed_once_per_prompt(tiny_pipeline, monkeypatch):
    model = load_sampling_model(tiny_pipeline, "cpu", "bf16")
    calls = []
    original = model.pipe.encode_prompt
    monkeypatch.setattr(model.pipe, "encode_prompt", lambda prompt, *a, **k: (calls.append(prompt),
                                                                              original(prompt, *a, **k))[1])
    first = model.generate([ImageSpec("a red square", 1)], Settings(steps=2))
    again = model.generate([ImageSpec("a red square", 1), ImageSpec("a blue circle", 2)], Settings(steps=2))
    assert sorted(calls) == ["", "a blue circle", "a red square"]  # each prompt (and the negative) once
    assert torch.equal(first[0], again[0])
