"""Generate's decoder choice, for a served student that ships a tiny VAE: its default, the PNG's decoder back
into the controls, one-line refusals; no server, no Gradio."""

from __future__ import annotations

import pytest

from app.handlers.generate import GenerateHandlers
from app.handlers.png_info import PngInfoHandlers
from app.handlers.shared import Shared
from app.tabs.generate import generate_fields, model_controls
from ldm.errors import LdmError


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A random tiny few-step student with a (random) tiny VAE, loaded at the batch-exact bf16."""
    from support import make_random_pipeline

    from ldm.sampling.sampler import load_sampling_model

    folder = make_random_pipeline(tmp_path_factory.mktemp("decoder_choice") / "student", seed=3, student=True,
                                  tiny_vae=True)
    return load_sampling_model(folder, "cpu", "bf16")


@pytest.fixture
def shared(tiny_model, student, tmp_path):
    return Shared(tiny_model, None, tmp_path, live=student)


def test_the_students_png_brings_its_decoder_back_and_the_full_vae_is_a_choice(shared, student):
    h, png = GenerateHandlers(shared), PngInfoHandlers(shared)
    _, tiny_texts, _ = h.generate("a red square", seed=3, num_images=1, model=student.name)
    _, full_texts, _ = h.generate("a red square", seed=3, num_images=1, model=student.name, decoder="full")
    assert "Decoder: tiny" in tiny_texts and "Decoder" not in full_texts
    assert png.png_fields(tiny_texts)[-2:] == (student.name, "tiny")
    assert png.png_fields(full_texts)[-2:] == (student.name, "full")  # re-created as made, not at the default
    shown = generate_fields(shared, png.png_fields(tiny_texts))[-1]
    assert shown["value"] == "tiny" and shown["visible"] is True
    assert model_controls(shared, student.name)[-1] == {"value": "tiny", "visible": True, "__type__": "update"}
    assert model_controls(shared, shared.model.name)[-1]["visible"] is False  # the full model ships none


@pytest.mark.parametrize("model, decoder, message", [
    (None, "tiny", "this model ships no tiny decoder"),
    (None, "magic", "decoder must be one of full, tiny"),
])
def test_a_decoder_the_model_cannot_use_is_refused_in_one_line(shared, model, decoder, message):
    with pytest.raises(LdmError, match=message) as err:
        GenerateHandlers(shared).generate("a red square", num_images=1, model=model, decoder=decoder)
    assert "\n" not in str(err.value)
