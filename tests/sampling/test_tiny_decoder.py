"""A folder's tiny VAE (vae_tiny/): a few-step student decodes with it unless told otherwise, the PNG text says
which decoder made an image and re-creates it, a model without one refuses it in one line, export keeps it."""

import shutil

import pytest
import torch
from support import make_random_pipeline

from ldm.errors import LdmError
from ldm.evaluate import tiny_decoder_psnr
from ldm.folders import TINY_VAE
from ldm.sampling import denoise
from ldm.sampling.export import export_pipeline
from ldm.sampling.parameters import request_values
from ldm.sampling.requests import ImageSpec, Settings, folder_defaults
from ldm.sampling.sampler import load_sampling_model
from ldm.sampling.vae import decode_each


@pytest.fixture(scope="module")
def student_folder(tmp_path_factory):
    """A random tiny few-step student that ships a (random) tiny VAE."""
    return make_random_pipeline(tmp_path_factory.mktemp("tiny_decoder") / "student", seed=2, student=True,
                                tiny_vae=True)


@pytest.fixture(scope="module")
def student(student_folder):
    return load_sampling_model(student_folder, "cpu", "bf16")  # batch-exact, as tiny_model


SPECS = [ImageSpec("a red circle", 1), ImageSpec("a blue square", 2), ImageSpec("a green star", 3)]


def test_a_student_that_ships_a_tiny_vae_decodes_with_it_by_default(student, student_folder):
    assert student.tiny_vae is not None and student.defaults.decoder == "tiny"
    assert folder_defaults(student_folder)[1] == student.defaults  # what the UI reads without loading the model
    default = student.generate(SPECS[:1])
    assert torch.equal(default, student.generate(SPECS[:1], Settings(decoder="tiny")))
    full = student.generate(SPECS[:1], Settings(decoder="full"))
    assert (default - full).abs().max() > 0.05  # a random tiny VAE draws other pixels than the VAE


def test_the_tiny_decoder_decodes_the_latents_the_full_one_would(student, monkeypatch):
    seen = []

    def recording(vae, latents, precision):
        seen.append((vae, latents.clone()))
        return decode_each(vae, latents, precision)

    monkeypatch.setattr(denoise, "decode_each", recording)
    full = student.generate(SPECS[:1], Settings(decoder="full"))
    tiny = student.generate(SPECS[:1], Settings(decoder="tiny"))
    (vae_full, latents_full), (vae_tiny, latents_tiny) = seen
    assert vae_full is student.vae and vae_tiny is student.tiny_vae and torch.equal(latents_full, latents_tiny)
    assert torch.equal(tiny, decode_each(student.tiny_vae, latents_full, student.precision))
    assert torch.equal(full, decode_each(student.vae, latents_full, student.precision))


def test_an_image_decoded_by_the_tiny_vae_is_the_same_in_any_batch(student):
    together = student.generate(SPECS, batch_size=3)
    alone = torch.cat([student.generate([spec], batch_size=1) for spec in SPECS])
    assert torch.equal(together, alone)


def test_the_png_text_says_tiny_and_a_text_without_a_decoder_means_the_full_one(student):
    text = student.parameters_text(SPECS[0], Settings())
    assert "Decoder: tiny" in text
    settings, spec = request_values(text)[0], SPECS[0]
    assert settings["decoder"] == "tiny" and spec.prompt in text
    full = student.parameters_text(SPECS[0], Settings(decoder="full"))
    assert "Decoder" not in full  # as every image before tiny decoders: such texts keep meaning the full VAE
    assert request_values(full)[0]["decoder"] == "full"


def test_a_model_without_a_tiny_vae_refuses_it_in_one_line(tiny_model):
    assert tiny_model.tiny_vae is None and tiny_model.defaults.decoder == "full"
    with pytest.raises(LdmError, match="ships no tiny decoder") as err:
        tiny_model.generate(SPECS[:1], Settings(decoder="tiny"))
    assert "\n" not in str(err.value)


def test_a_full_model_that_ships_one_still_decodes_with_its_vae_unless_asked(tiny_pipeline, student_folder,
                                                                              tmp_path):
    folder = shutil.copytree(tiny_pipeline, tmp_path / "full")
    shutil.copytree(student_folder / TINY_VAE, folder / TINY_VAE)
    model = load_sampling_model(folder, "cpu", "fp32")
    assert model.defaults.decoder == "full" and folder_defaults(folder)[1].decoder == "full"
    assert not torch.equal(model.generate(SPECS[:1], Settings(steps=2)),
                           model.generate(SPECS[:1], Settings(steps=2, decoder="tiny")))


def test_an_exported_student_keeps_its_tiny_vae(student, student_folder, tmp_path):
    out = export_pipeline(student_folder, tmp_path / "export")
    exported = load_sampling_model(out, "cpu", student.precision)
    assert exported.defaults.decoder == "tiny"
    assert torch.equal(exported.generate(SPECS[:1]), student.generate(SPECS[:1]))


def test_the_evaluation_measures_how_far_the_tiny_decoders_pixels_are_from_the_vaes(student, monkeypatch):
    prompts, settings = ["a red circle", "a blue square"], student.resolve(Settings())
    copied = tiny_decoder_psnr(student, prompts, settings, seeds=2)
    assert 0 < copied < 40  # a random tiny VAE is far from the VAE
    monkeypatch.setattr(student, "tiny_vae", student.vae)  # a "tiny" decoder that is the VAE itself
    assert tiny_decoder_psnr(student, prompts, settings, seeds=2) == pytest.approx(100)  # identical pixels
